"""Safe YAML loading: positions of values and keys, and every way a document is refused."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import Diagnostic, Location, SpecError
from archc.compiler.load import loads
from archc.compiler.yaml_loader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    Document,
    load_file,
    load_text,
)

FILE = "spec.yaml"


def at(line: int, col: int) -> Location:
    return Location(FILE, line, col)


def spec_errors(action: Callable[[], object]) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        action()
    return list(info.value.diagnostics)


def errors(text: str) -> list[Diagnostic]:
    """The diagnostics that loading `text` raises (fails the test if it loads)."""
    return spec_errors(lambda: load_text(text, FILE))


def only_error(text: str) -> Diagnostic:
    found = errors(text)
    assert len(found) == 1, [d.format() for d in found]
    return found[0]


def data(text: str) -> Any:
    return load_text(text, FILE).data


def path_id(value: object) -> str | None:
    """Test ids for paths such as ("layers", 0, "op"): 'layers.0.op'."""
    if isinstance(value, tuple):
        return ".".join(map(str, value)) or "root"
    return None


# -- positions -----------------------------------------------------------------------------------

POSITIONS_TEXT = """\
name: net
layers:
  - op: conv2d
    kernel: [3, 5]
  - {op: add, inputs: [prev, input]}
"""


@pytest.fixture(scope="module")
def positioned() -> Document:
    return load_text(POSITIONS_TEXT, FILE)


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ((), at(1, 1)),
        (("name",), at(1, 7)),
        (("layers",), at(3, 3)),
        (("layers", 0), at(3, 5)),
        (("layers", 0, "op"), at(3, 9)),
        (("layers", 0, "kernel"), at(4, 13)),
        (("layers", 0, "kernel", 1), at(4, 17)),
        (("layers", 1), at(5, 5)),
        (("layers", 1, "op"), at(5, 10)),
        (("layers", 1, "inputs", 1), at(5, 30)),
    ],
    ids=path_id,
)
def test_value_positions(
    positioned: Document, path: tuple[str | int, ...], where: Location
) -> None:
    assert positioned.values[path] == where
    assert positioned.loc(path) == where


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (("name",), at(1, 1)),
        (("layers",), at(2, 1)),
        (("layers", 0, "op"), at(3, 5)),
        (("layers", 0, "kernel"), at(4, 5)),
        (("layers", 1, "inputs"), at(5, 15)),
    ],
    ids=path_id,
)
def test_key_positions(positioned: Document, path: tuple[str | int, ...], where: Location) -> None:
    assert positioned.keys[path] == where
    assert positioned.loc(path, key=True) == where


def test_loc_falls_back_to_the_nearest_ancestor(positioned: Document) -> None:
    assert positioned.loc(("layers", 0, "filters")) == at(3, 5)  # a missing key: its mapping
    assert positioned.loc(("layers", 0, "kernel", 7)) == at(4, 13)
    assert positioned.loc(("layers", 1), key=True) == at(5, 5)  # list items have no key
    assert positioned.loc(("nothing", "here")) == at(1, 1)


def test_data_is_plain_python(positioned: Document) -> None:
    assert positioned.data == {
        "name": "net",
        "layers": [
            {"op": "conv2d", "kernel": [3, 5]},
            {"op": "add", "inputs": ["prev", "input"]},
        ],
    }


@pytest.mark.parametrize(("text", "expected"), [("", None), ("# only a comment\n", None)])
def test_empty_document(text: str, expected: Any) -> None:
    assert data(text) is expected


# -- scalars: YAML 1.2 floats, everything else as written ----------------------------------------

SCALARS: dict[str, Any] = {
    "1e-4": 1e-4,
    "1E5": 1e5,
    "-2e-3": -2e-3,
    "+1.5e+3": 1.5e3,
    ".5e3": 500.0,
    "1.e2": 100.0,
    "0.001": 0.001,
    "1.5": 1.5,
    "42": 42,
    "-7": -7,
    "'1e-4'": "1e-4",
    '"1e-4"': "1e-4",
    "1e4x": "1e4x",
    "e5": "e5",
    "1e": "1e",
    "true": True,
    "false": False,
    "~": None,
    "null": None,
    "2001-01-01": "2001-01-01",  # dates stay as the text the user wrote
    "!!str 12": "12",
    "!!float 1": 1.0,
    "!!int '7'": 7,
    # YAML 1.2 core schema integers: decimal, 0o octal and 0x hex only
    "+12": 12,
    "0o17": 15,
    "0x1F": 31,
    "-0": 0,
    "18446744073709551615": 2**64 - 1,  # the largest integer of 64 bits
    "-18446744073709551615": -(2**64 - 1),
    "0xffffffffffffffff": 2**64 - 1,
    "0o1777777777777777777777": 2**64 - 1,  # 1 + 21 * 3 = 64 bits
    "0" * 5000 + "7": 7,  # leading zeros add no bits
    # YAML 1.1 forms that YAML 1.2 reads as text
    "1:20": "1:20",  # sexagesimal 80 in YAML 1.1
    "1:20.5": "1:20.5",
    "1_6": "1_6",
    "1_000.5": "1_000.5",
    "0b101": "0b101",
    "-0x10": "-0x10",  # 1.2 hex has no sign
    "0O17": "0O17",
    # YAML 1.2 core schema floats
    "1.": 1.0,
    "-.5": -0.5,
    ".inf": math.inf,
    "-.Inf": -math.inf,
}


@pytest.mark.parametrize(("text", "expected"), SCALARS.items(), ids=[k[:24] for k in SCALARS])
def test_scalar(text: str, expected: Any) -> None:
    value = data(f"value: {text}\n")["value"]
    assert value == expected
    assert type(value) is type(expected)


def test_nan_is_a_float() -> None:
    value = data("value: .NaN\n")["value"]
    assert isinstance(value, float) and math.isnan(value)


TOO_LARGE = "integer too large (more than 64 bits)"


@pytest.mark.parametrize(
    "text",
    [
        "18446744073709551616",  # 2 ** 64
        "-18446744073709551616",
        "0x10000000000000000",
        "0o2000000000000000000000",
        "9" * 5000,  # past Python's 4300-digit limit for int(str)
        "0x" + "f" * 3600,
        "!!int 0x" + "f" * 3600,
    ],
    ids=["2**64", "-2**64", "hex-2**64", "octal-2**64", "5000-digits", "3600-hex", "tagged"],
)
def test_integers_are_bounded_to_64_bits(text: str) -> None:
    d = only_error(f"value: {text}\n")
    assert (d.code, d.message, d.location, d.hint) == (
        "E009",
        TOO_LARGE,
        at(1, 8),
        "integers in a spec must fit in 64 bits",
    )


def test_huge_integer_key_is_bounded() -> None:
    d = only_error(f"{'9' * 30}: 1\n")
    assert (d.code, d.message, d.location) == ("E009", TOO_LARGE, at(1, 1))


@pytest.mark.parametrize("text", ["!!int 0b101", "!!int 1:20", "!!float 1:20.5"])
def test_tagged_yaml11_numbers_are_unreadable(text: str) -> None:
    value, tag = text.split(" ")[1], text.split(" ")[0][2:]
    d = only_error(f"value: {text}\n")
    assert (d.code, d.message) == ("E008", f"cannot read scalar '{value}' as {tag}")


@pytest.mark.parametrize("value", ["1:20", "1_6", "0b101"])
def test_yaml11_numbers_reach_ops_as_text_and_are_refused(value: str) -> None:
    spec = f"""\
archc: 1
name: net
inputs: [{{name: x, shape: [8, 8, 3]}}]
layers:
  - {{op: conv2d, filters: {value}, kernel: 3}}
"""
    [d] = spec_errors(lambda: compile_spec(loads(spec, FILE)))
    assert d.code == "E032"
    assert d.message.startswith(f"invalid conv2d.filters '{value}': ")
    assert d.location == at(5, 27)


def test_exponent_float_reaches_ops_as_a_float() -> None:
    spec = """\
archc: 1
name: net
inputs: [{name: x, shape: [4, 4, 3]}]
layers:
  - {op: batch_norm, name: bn, epsilon: 1e-5}
"""
    node = compile_spec(loads(spec, FILE)).graph.node("bn")
    assert node.attrs.epsilon == 1e-5


def test_leading_zero_integer_is_decimal() -> None:
    assert data("filters: 010\n") == {"filters": 10}


def test_unreadable_scalar() -> None:
    d = only_error("value: !!int abc\n")
    assert (d.code, d.message, d.location) == ("E008", "cannot read scalar 'abc' as int", at(1, 8))


# -- refused documents ---------------------------------------------------------------------------


def test_duplicate_key() -> None:
    d = only_error("name: a\nlayers: []\nname: b\n")
    assert (d.code, d.message, d.location) == ("E007", "duplicate key 'name'", at(3, 1))
    assert d.hint == "'name' is first given at spec.yaml:1:1; YAML keeps only one of them"


def test_every_duplicate_key_is_reported() -> None:
    found = errors("a: 1\nb: 2\na: 3\nb: 4\nc:\n  - {x: 1, x: 2}\n")
    assert [(d.code, d.message, d.location) for d in found] == [
        ("E007", "duplicate key 'a'", at(3, 1)),
        ("E007", "duplicate key 'b'", at(4, 1)),
        ("E007", "duplicate key 'x'", at(6, 12)),
    ]
    assert found[2].hint == "'x' is first given at spec.yaml:6:6; YAML keeps only one of them"


TAG_HINT = "specs are plain data: remove the tag (python and custom tags never run)"


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (
            "!!python/object/apply:os.system ['true']",
            "tag:yaml.org,2002:python/object/apply:os.system",
        ),
        ("!!python/name:os.system", "tag:yaml.org,2002:python/name:os.system"),
        (
            "!!python/object/new:builtins.dict {}",
            "tag:yaml.org,2002:python/object/new:builtins.dict",
        ),
        ("!!python/tuple [1, 2]", "tag:yaml.org,2002:python/tuple"),
        ("!custom 1", "!custom"),
        ("!!set {a, b}", "tag:yaml.org,2002:set"),
        ("!!binary aGVsbG8=", "tag:yaml.org,2002:binary"),
        ("!!omap [{a: 1}]", "tag:yaml.org,2002:omap"),
    ],
)
def test_tags_are_rejected(value: str, tag: str) -> None:
    d = only_error(f"name: net\nvalue: {value}\n")
    assert (d.code, d.message, d.location, d.hint) == (
        "E003",
        f"YAML tag '{tag}' is not allowed",
        at(2, 8),
        TAG_HINT,
    )


def test_python_tags_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    only_error(f"value: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("base: &b {x: 1}\nitem:\n  <<: *b\n  y: 2\n", at(3, 3)),
        ("base: &b {x: 1}\nitem: {<<: *b, y: 2}\n", at(2, 8)),
    ],
)
def test_merge_keys_are_rejected(text: str, where: Location) -> None:
    d = only_error(text)
    assert (d.code, d.message, d.location, d.hint) == (
        "E006",
        "YAML merge keys ('<<') are not supported",
        where,
        "use 'defaults:' or a reusable block instead",
    )


def test_non_string_keys_are_rejected() -> None:
    d = only_error("? [1, 2]\n: 3\n")
    assert (d.code, d.message, d.location) == (
        "E006",
        "mapping keys must be plain strings",
        at(1, 3),
    )


def test_small_aliases_are_expanded_into_independent_values() -> None:
    loaded = data("a: &x [1, 2]\nb: *x\n")
    assert loaded == {"a": [1, 2], "b": [1, 2]}
    assert loaded["a"] is not loaded["b"]


def billion_laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_bounded() -> None:
    d = only_error(billion_laughs(10))  # 9**10 strings if it were expanded
    assert (d.code, d.message, d.hint) == (
        "E004",
        f"document expands to more than {MAX_VALUES:,} values",
        "YAML aliases (*name) are expanded; an alias bomb is rejected",
    )
    assert d.location is not None and d.location.file == FILE


def test_deep_nesting_is_rejected() -> None:
    depth = MAX_DEPTH + 10
    d = only_error("a: " + "[" * depth + "]" * depth + "\n")
    assert (d.code, d.message) == ("E005", f"document nested deeper than {MAX_DEPTH}")


# -- syntax errors: where, and what ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "message", "hint"),
    [
        (
            "name: net\nshape: [1, 2\nlayers: []\n",
            at(3, 7),
            "did not find expected ',' or ']'",
            "while parsing a flow sequence started at spec.yaml:2:8",
        ),
        (
            "name: net\nitem: {op: conv2d\nlayers: []\n",
            at(3, 7),
            "did not find expected ',' or '}'",
            "while parsing a flow mapping started at spec.yaml:2:7",
        ),
        (
            "name: net: bad\n",
            at(1, 10),
            "mapping values are not allowed in this context",
            "check indentation, colons and quotes near this position",
        ),
        (
            "name: net\n  doc: indented\n",
            at(2, 6),
            "mapping values are not allowed in this context",
            "check indentation, colons and quotes near this position",
        ),
        (
            "name: 'net\n",
            at(2, 1),
            "found unexpected end of stream",
            "while scanning a quoted scalar started at spec.yaml:1:7",
        ),
    ],
    ids=["flow-sequence", "flow-mapping", "colon", "indent", "quote"],
)
def test_syntax_error(text: str, where: Location, message: str, hint: str) -> None:
    d = only_error(text)
    assert (d.code, d.message, d.location, d.hint) == (
        "E002",
        f"YAML syntax error: {message}",
        where,
        hint,
    )


TAB_HINT = "indent with spaces (an editor setting: insert spaces for tabs)"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: net\nlayers:\n\t- a\n", at(3, 1)),  # PyYAML: cannot start any token
        ("name: net\nlayers:\n  \t- a\n", at(3, 3)),  # after spaces: the tab's column
        ("inputs:\n- name: img\n\tshape: [8, 8, 3]\n", at(3, 1)),  # violates indentation
        ("params:\n  a: 1\n\tb: 2\n", at(3, 1)),
    ],
    ids=["first-column", "after-spaces", "in-a-list-item", "in-a-mapping"],
)
def test_tab_in_indentation_is_named(text: str, where: Location) -> None:
    d = only_error(text)
    message = (
        f"YAML syntax error: a tab in the indentation (column {where.col}); YAML forbids tabs "
        "in indentation"
    )
    assert (d.code, d.message, d.location, d.hint) == ("E002", message, where, TAB_HINT)


def test_tab_after_a_key_is_allowed() -> None:
    assert data("name:\tnet\nlayers: 3\n") == {"name": "net", "layers": 3}


def test_tab_inside_a_value_is_no_indentation_error() -> None:
    d = only_error("name: [a,\tb\nlayers: 3\n")  # an unclosed bracket, a tab within it
    assert "tab" not in d.message, d.message


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (
            "name: net\nshape: [1, 2\nlayers: []\n",
            "while parsing a flow sequence started at spec.yaml:2:8",
        ),
        ("name: 'net\n", "while scanning a quoted scalar started at spec.yaml:1:7"),
    ],
    ids=["flow-sequence", "quote"],
)
def test_syntax_error_hint_says_where_the_construct_started(text: str, hint: str) -> None:
    assert only_error(text).hint == hint


def test_several_documents() -> None:
    d = only_error("name: a\n---\nname: b\n")
    assert (d.code, d.message, d.location) == (
        "E002",
        "YAML syntax error: expected a single document in the stream but found another document",
        at(2, 1),
    )


def test_undefined_alias_is_named() -> None:
    d = only_error("name: net\nvalue: *nope\n")
    assert (d.code, d.message, d.location) == (
        "E002",
        "YAML syntax error: found undefined alias 'nope'",
        at(2, 8),
    )


# -- files ---------------------------------------------------------------------------------------


def test_load_file_keeps_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "net.yaml").write_text("name: net\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    doc = load_file("net.yaml")
    assert (doc.file, doc.data, doc.loc(("name",))) == (
        "net.yaml",
        {"name": "net"},
        Location("net.yaml", 1, 7),
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.yaml", None, "spec file not found: {path}"),
        ("folder", "dir", "spec path is a directory: {path}"),
    ],
)
def test_unreadable_files(
    tmp_path: Path, name: str, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    found = spec_errors(lambda: load_file(path))
    assert [(d.code, d.message, d.location) for d in found] == [
        ("E001", message.format(path=path), None)
    ]


NOT_UTF8_HINT = "save the file as UTF-8 (this looks like Latin-1 or another legacy encoding)"


@pytest.mark.parametrize(
    ("content", "line", "col", "byte", "reason"),
    [
        (b"name: \xe9t\xe9\n", 1, 7, "0xe9", "invalid continuation byte"),
        (b"name: net\nx: caf\xe9", 2, 7, "0xe9", "unexpected end of data"),
        # columns count characters, as YAML positions do: "\xc3\xa9" is one character
        (b"a: \xc3\xa9 \xff\n", 1, 6, "0xff", "invalid start byte"),
    ],
    ids=["latin1", "second-line", "after-a-multibyte-character"],
)
def test_bad_bytes_are_located(
    tmp_path: Path, content: bytes, line: int, col: int, byte: str, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    [d] = spec_errors(lambda: load_file(path))
    assert (d.code, d.message, d.location, d.hint) == (
        "E001",
        f"spec file is not UTF-8 text: byte {byte} cannot be read as UTF-8 ({reason})",
        Location(str(path), line, col),
        NOT_UTF8_HINT,
    )


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")],
)
def test_utf16_and_utf32_files_are_named(tmp_path: Path, encoding: str, name: str) -> None:
    path = tmp_path / "wide.yaml"
    text = "name: net\n"
    path.write_bytes(("\ufeff" + text if encoding == "utf-16-be" else text).encode(encoding))
    [d] = spec_errors(lambda: load_file(path))
    assert (d.code, d.message, d.location, d.hint) == (
        "E001",
        f"spec file is {name} text, not UTF-8",
        Location(str(path), 1, 1),
        "save the file as UTF-8",
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: net\n")
    assert load_file(path).data == {"name": "net"}


NUL_HINT = "a spec is UTF-8 text; NUL characters suggest a UTF-16 or binary file"
CONTROL_HINT = 'write control characters as escapes in a double-quoted string, e.g. "\\t"'


@pytest.mark.parametrize(
    ("text", "where", "message", "hint"),
    [
        ("name: net\nx: a\x00b\n", at(2, 5), "character U+0000 is not allowed in YAML", NUL_HINT),
        # UTF-16 without a byte order mark: ASCII letters with NULs between them
        ("n\x00a\x00m\x00e\x00", at(1, 2), "character U+0000 is not allowed in YAML", NUL_HINT),
        ("a: b\x1b[2J\n", at(1, 5), "character U+001B is not allowed in YAML", CONTROL_HINT),
        ("a: 1\nb: \x07\n", at(2, 4), "character U+0007 is not allowed in YAML", CONTROL_HINT),
    ],
    ids=["nul", "utf16-without-bom", "escape", "bell"],
)
def test_unacceptable_characters_are_located(
    text: str, where: Location, message: str, hint: str
) -> None:
    d = only_error(text)
    assert (d.code, d.message, d.location, d.hint) == ("E002", message, where, hint)


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    [d] = spec_errors(lambda: load_file(path))
    assert (d.code, d.message, d.location) == (
        "E001",
        "spec file is larger than 10 MiB",
        Location(str(path), 1, 1),
    )


def test_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "limit.yaml"
    line = b"name: net\n"
    path.write_bytes(line + b"#" * (MAX_FILE_BYTES - len(line) - 1) + b"\n")
    assert load_file(path).data == {"name": "net"}


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_file_is_refused() -> None:
    [d] = spec_errors(lambda: load_file("/dev/zero"))
    assert (d.code, d.message, d.location) == (
        "E001",
        "spec file is larger than 10 MiB",
        Location("/dev/zero", 1, 1),
    )
