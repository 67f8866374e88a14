"""Safe YAML loading that remembers where every key and value came from.

We compose the YAML node graph (no object construction, so no python tags can run) and build
plain dicts, lists and scalars ourselves, recording a Location for each value and each mapping
key by its path. Duplicate keys, non-standard tags and alias-expansion bombs are errors.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .diagnostics import Diagnostic, Location, SpecError, short_repr
from .expr import MAX_INT_BITS

PathKey = tuple[str | int, ...]

MAX_VALUES = 200_000  # values after alias expansion; bounds "billion laughs" documents
MAX_DEPTH = 64
MAX_FILE_BYTES = 10 * 2**20

_STD = "tag:yaml.org,2002:"
_INT, _FLOAT = f"{_STD}int", f"{_STD}float"
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
# Numbers follow the YAML 1.2 core schema, as users expect: PyYAML implements YAML 1.1, where
# 1:20 is 80, 0b101 is 5, 1_6 is 16, 010 is 8 and 1e-4 is a string. Here those are the
# strings '1:20', '0b101' and '1_6', ten, and a float.
_INT_12 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_12 = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


class _Loader(_Base):  # type: ignore[misc]
    """PyYAML's safe loader, resolving plain numbers by the YAML 1.2 core schema."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(_INT, _INT_12, list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT, _FLOAT_12, list("-+0123456789."))

_constructor = yaml.constructor.SafeConstructor()


def _int_12(text: str) -> int:
    """A YAML 1.2 integer: ValueError if text is none, OverflowError past MAX_INT_BITS."""
    if not _INT_12.match(text):
        raise ValueError(text)
    base = {"0x": 16, "0o": 8}.get(text[:2], 10)
    digits = (text[2:] if base != 10 else text.lstrip("+-")).lstrip("0")
    if len(digits) > MAX_INT_BITS:  # more digits than bits: too large in any base
        raise OverflowError(text)
    value = int(digits or "0", base)
    if value.bit_length() > MAX_INT_BITS:
        raise OverflowError(text)
    return -value if text.startswith("-") else value


def _float_12(text: str) -> float:
    """A YAML 1.2 float (integers included); ValueError if text is none."""
    if not _FLOAT_12.match(text):
        raise ValueError(text)
    if text.lower().endswith((".inf", ".nan")):
        return float(text.replace(".", ""))
    return float(text)


@dataclass
class Document:
    """Plain data from a YAML file plus the location of every value and key."""

    file: str
    data: Any
    values: dict[PathKey, Location] = field(default_factory=dict)
    keys: dict[PathKey, Location] = field(default_factory=dict)
    sha256: str = ""  # of the bytes read (the file's, or the text's UTF-8)

    def loc(self, path: PathKey, *, key: bool = False) -> Location:
        """Location of the value (or its key) at path, else of its nearest ancestor."""
        path = tuple(path)
        while True:
            table = self.keys if key else self.values
            if path in table:
                return table[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return Location(self.file, 1, 1)
            path = path[:-1]


class _Builder:
    def __init__(self, file: str):
        self.doc = Document(file=file, data=None)
        self.count = 0
        self.errors: list[Diagnostic] = []

    def at(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.doc.file, mark.line + 1, mark.column + 1)

    def error(self, node: yaml.Node, code: str, message: str, hint: str = "") -> None:
        self.errors.append(Diagnostic(code, message, self.at(node), hint=hint))

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise SpecError(
                [
                    Diagnostic(
                        "E004",
                        f"document expands to more than {MAX_VALUES:,} values",
                        self.at(node),
                        hint="YAML aliases (*name) are expanded; an alias bomb is rejected",
                    )
                ]
            )
        if depth > MAX_DEPTH:
            raise SpecError(
                [Diagnostic("E005", f"document nested deeper than {MAX_DEPTH}", self.at(node))]
            )
        self.doc.values[path] = self.at(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != f"{_STD}seq":
                self.bad_tag(node)
            return [self.build(v, (*path, i), depth + 1) for i, v in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node)

    def mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        if node.tag != f"{_STD}map":
            self.bad_tag(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_STD}merge":
                self.error(
                    key_node,
                    "E006",
                    "YAML merge keys ('<<') are not supported",
                    hint="use 'defaults:' or a reusable block instead",
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, "E006", "mapping keys must be plain strings")
                continue
            key = str(self.scalar(key_node))
            if key in out:
                first = self.doc.keys[(*path, key)]
                self.errors.append(
                    Diagnostic(
                        "E007",
                        f"duplicate key '{key}'",
                        self.at(key_node),
                        hint=f"'{key}' is first given at {first}; YAML keeps only one of them",
                    )
                )
                continue
            self.doc.keys[(*path, key)] = self.at(key_node)
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag not in _SCALAR_TAGS:
            self.bad_tag(node)
            return node.value
        if tag in (f"{_STD}str", f"{_STD}timestamp"):
            return node.value  # dates stay as the text the user wrote
        try:
            if tag == _INT:
                return _int_12(node.value)
            if tag == _FLOAT:
                return _float_12(node.value)
            if tag == f"{_STD}bool":
                return _constructor.construct_yaml_bool(node)
            return _constructor.construct_yaml_null(node)
        except OverflowError:
            self.error(
                node,
                "E009",
                f"integer too large (more than {MAX_INT_BITS} bits)",
                hint=f"integers in a spec must fit in {MAX_INT_BITS} bits",
            )
        except (ValueError, yaml.YAMLError):
            self.error(
                node, "E008", f"cannot read scalar {short_repr(node.value)} as {tag[len(_STD) :]}"
            )
        return node.value

    def bad_tag(self, node: yaml.Node) -> None:
        self.error(
            node,
            "E003",
            f"YAML tag '{node.tag}' is not allowed",
            hint="specs are plain data: remove the tag (python and custom tags never run)",
        )


def _syntax_error(exc: yaml.YAMLError, text: str, file: str) -> Diagnostic:
    """A YAML syntax error as a diagnostic: where it was found, and where the construct
    that it breaks (a bracket, a quote, a mapping) started."""
    if isinstance(exc, yaml.reader.ReaderError):
        return _bad_character(exc, text, file)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Diagnostic("E002", f"YAML error: {exc}", Location(file, 1, 1))
    mark = exc.problem_mark or exc.context_mark
    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    problem, context = exc.problem or "", exc.context or ""
    tab = _indenting_tab(mark, text)
    if tab is not None:
        return Diagnostic(
            "E002",
            f"YAML syntax error: a tab in the indentation (column {tab}); YAML forbids tabs "
            "in indentation",
            Location(file, loc.line, tab),
            hint="indent with spaces (an editor setting: insert spaces for tabs)",
        )
    if context and problem.startswith("but "):
        return Diagnostic("E002", f"YAML syntax error: {context} {problem}", loc)
    if problem == "found undefined alias" and mark is not None:
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        alias = re.match(r"\*([^\s,\[\]{}]+)", line[mark.column :])
        if alias:
            return Diagnostic(
                "E002",
                f"YAML syntax error: found undefined alias '{alias.group(1)}'",
                loc,
                hint=f"define the anchor '&{alias.group(1)}' before using it",
            )
    hint = "check indentation, colons and quotes near this position"
    if context and exc.context_mark is not None:
        cm = exc.context_mark
        hint = f"{context} started at {file}:{cm.line + 1}:{cm.column + 1}"
    return Diagnostic("E002", f"YAML syntax error: {problem or context}", loc, hint=hint)


def _indenting_tab(mark: yaml.Mark | None, text: str) -> int | None:
    """The column of the first tab in the indentation of the line an error was found on,
    where the error lies in that indentation (or at its end); None otherwise."""
    lines = text.splitlines()
    if mark is None or mark.line >= len(lines):
        return None
    line = lines[mark.line]
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    if "\t" not in indent or mark.column > len(indent):
        return None
    return indent.index("\t") + 1


def _bad_character(exc: yaml.reader.ReaderError, text: str, file: str) -> Diagnostic:
    """A character that YAML never allows (NUL, other control characters), located."""
    pos = exc.position
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    hint = (
        "a spec is UTF-8 text; NUL characters suggest a UTF-16 or binary file"
        if code == 0
        else 'write control characters as escapes in a double-quoted string, e.g. "\\t"'
    )
    return Diagnostic(
        "E002",
        f"character U+{code:04X} is not allowed in YAML",
        Location(file, line, col),
        hint=hint,
    )


def load_text(text: str, file: str = "<string>", sha256: str | None = None) -> Document:
    """Parse YAML text into a Document; raises SpecError on any problem."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise SpecError([_syntax_error(exc, text, file)]) from None
    builder = _Builder(file)
    builder.doc.sha256 = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    if node is None:
        builder.doc.data = None
    else:
        builder.doc.data = builder.build(node, (), 0)
    if builder.errors:
        raise SpecError(builder.errors)
    return builder.doc


def load_file(path: str | Path) -> Document:
    data = _read(Path(path))
    return load_text(_decode(data, str(path)), str(path), hashlib.sha256(data).hexdigest())


def _read(p: Path) -> bytes:
    """The file's bytes; at most MAX_FILE_BYTES + 1 are read, so /dev/zero is refused too."""
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Diagnostic("E001", f"spec file not found: {p}")]) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic("E001", f"spec path is a directory: {p}")]) from None
    except OSError as exc:
        raise SpecError(
            [Diagnostic("E001", f"cannot read spec file {p}: {exc.strerror}")]
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(
            [
                Diagnostic(
                    "E001",
                    f"spec file is larger than {MAX_FILE_BYTES // 2**20} MiB",
                    Location(str(p), 1, 1),
                    hint="a spec is a short text file; check the path",
                )
            ]
        )
    return data


_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _decode(data: bytes, file: str) -> str:
    """UTF-8 text; other encodings are refused at the first byte that is not UTF-8."""
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            message = f"spec file is {encoding} text, not UTF-8"
            hint = "save the file as UTF-8"
            raise SpecError([Diagnostic("E001", message, Location(file, 1, 1), hint=hint)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8")) + 1
        raise SpecError(
            [
                Diagnostic(
                    "E001",
                    f"spec file is not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be read "
                    f"as UTF-8 ({exc.reason})",
                    Location(file, line, col),
                    hint="save the file as UTF-8 "
                    "(this looks like Latin-1 or another legacy encoding)",
                )
            ]
        ) from None
