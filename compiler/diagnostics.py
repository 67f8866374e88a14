"""Errors as data: every problem in a spec becomes a Diagnostic with a location and a hint."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 1000  # characters kept of a message, hint, path or detail line


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a spec file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    location: Location | None = None
    path: str = ""
    hint: str = ""
    related: tuple[tuple[str, Location], ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        # Values echoed in messages can be huge: keep every field to a readable size.
        for name in ("message", "path", "hint"):
            object.__setattr__(self, name, shorten(getattr(self, name), MAX_TEXT))
        if len(self.detail) > MAX_TEXT:
            lines = self.detail.split("\n")
            object.__setattr__(self, "detail", "\n".join(shorten(x, MAX_TEXT) for x in lines))

    def format(self) -> str:
        """The diagnostic as text for a terminal: control and bidi characters escaped."""
        where = f"{self.location}: " if self.location else ""
        lines = [f"{where}error[{self.code}]: {self.message}"]
        if self.path:
            lines.append(f"  in: {self.path}")
        for label, loc in self.related:
            lines.append(f"  {label}: {loc}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        if self.detail:
            lines += self.detail.split("\n")
        return "\n".join(map(printable, lines))

    def to_json(self) -> dict[str, object]:
        loc = self.location
        return {
            "code": self.code,
            "message": self.message,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "path": self.path,
            "hint": self.hint,
            "related": [{"label": label, "at": str(where)} for label, where in self.related],
            "detail": self.detail,
        }


class SpecError(Exception):
    """One or more user errors; never a bug in archc."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class Collector:
    """Accumulates diagnostics so that one run reports every independent error."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, diagnostic: Diagnostic) -> None:
        if diagnostic not in self.items:
            self.items.append(diagnostic)

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            self.add(d)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(merged(self.items))


def merged(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """One diagnostic per mistake: the same error met in every iteration of a repeat (or in
    every call of a block) is reported once, its path naming them all ('stage 1-6')."""
    groups: dict[tuple[Any, ...], list[Diagnostic]] = {}
    for d in diagnostics:
        key = (d.code, d.message, d.location, d.hint, d.related, d.detail)
        groups.setdefault(key, []).append(d)
    out = []
    for same in groups.values():
        paths = list(dict.fromkeys(d.path for d in same))
        out.append(dataclasses.replace(same[0], path=_joined_paths(paths)))
    return out


_ITERATION = re.compile(r"(.*) (-?\d+)")


def _joined_paths(paths: list[str]) -> str:
    if len(paths) == 1:
        return paths[0]
    split = [p.split(" > ") for p in paths]
    if len({len(parts) for parts in split}) == 1:
        joined = []
        for segments in zip(*split, strict=True):
            if len(set(segments)) == 1:
                joined.append(segments[0])
                continue
            found = [_ITERATION.fullmatch(seg) for seg in segments]
            labels = {m.group(1) for m in found if m}
            if not all(found) or len(labels) != 1:
                break
            numbers = sorted({int(m.group(2)) for m in found if m})
            if numbers == list(range(numbers[0], numbers[-1] + 1)):
                joined.append(f"{labels.pop()} {numbers[0]}-{numbers[-1]}")
            else:
                joined.append(f"{labels.pop()} " + ", ".join(map(str, numbers)))
        else:
            return " > ".join(joined)
    return f"{paths[0]} (and {len(paths) - 1} more)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' hint, or '' when nothing is close."""
    import difflib  # only when a hint is needed: keeps `archc check` start-up short

    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return ""


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: str) -> str:
    """Text safe to print to a terminal: characters that are not printable (control
    characters such as ESC, bidi overrides, invisible formatting) are shown as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """text cut to limit characters, ending with "…" where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BIG_INT_BITS = 256  # longer integers are described, not printed (int -> str may refuse)


def short_repr(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters with '…', without building the whole repr:
    use it for every value echoed in a message."""
    pieces, size = [], 0
    for piece in _repr_pieces(value, limit):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            break
    return shorten("".join(pieces), limit)


def _repr_pieces(value: Any, limit: int) -> Iterator[str]:
    if isinstance(value, list | tuple):
        yield "[" if isinstance(value, list) else "("
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _repr_pieces(item, limit)
        yield "," if isinstance(value, tuple) and len(value) == 1 else ""
        yield "]" if isinstance(value, list) else ")"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _repr_pieces(key, limit)
            yield ": "
            yield from _repr_pieces(item, limit)
        yield "}"
    elif isinstance(value, str) and len(value) > limit:
        yield repr(value[: limit + 1])  # the closing quote falls past the cut
    elif isinstance(value, int) and abs(value).bit_length() > _BIG_INT_BITS:
        yield f"<integer of {abs(value).bit_length()} bits>"
    else:
        yield repr(value)
