"""Errors as data: every problem in a spec becomes a Diagnostic with a location and a hint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


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

    def format(self) -> str:
        where = f"{self.location}: " if self.location else ""
        lines = [f"{where}error[{self.code}]: {self.message}"]
        if self.path:
            lines.append(f"  in: {self.path}")
        for label, loc in self.related:
            lines.append(f"  {label}: {loc}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        if self.detail:
            lines.append(self.detail)
        return "\n".join(lines)

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
            raise SpecError(self.items)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' hint, or '' when nothing is close."""
    import difflib  # only when a hint is needed: keeps `archc check` start-up short

    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return ""
