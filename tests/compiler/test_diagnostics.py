"""Diagnostics: short value descriptions, and bounded, terminal-safe rendering."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from archc.compiler.diagnostics import MAX_TEXT, Diagnostic, Location, short_repr

# -- short_repr ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, -3, 1.5, True, None, "abc", "it's", [1, [2, "x"]], (1,), (), {"a": [1, 2]}, 2**256 - 1],
    ids=repr,
)
def test_short_repr_of_a_small_value_is_its_repr(value: Any) -> None:
    assert short_repr(value) == repr(value)


@pytest.mark.parametrize(
    ("value", "limit"),
    [([0] * 100, 80), ("x" * 100, 10), ({i: i for i in range(50)}, 40), ((7,) * 40, 20)],
    ids=["list", "str", "dict", "tuple"],
)
def test_short_repr_cuts_a_long_value_with_an_ellipsis(value: Any, limit: int) -> None:
    assert short_repr(value, limit) == repr(value)[: limit - 1] + "…"


def test_short_repr_never_builds_a_huge_repr() -> None:
    bomb = [[[0] * 9999] * 9999] * 9999  # its repr would take 300 GB
    start = time.perf_counter()
    text = short_repr(bomb)
    assert time.perf_counter() - start < 0.5
    assert text == "[[[" + ("0, " * 30)[:76] + "…"


def test_short_repr_of_an_integer_too_long_to_print() -> None:
    # int -> str refuses more than 4300 digits; 10**5000 has floor(5000 * log2(10)) + 1 bits
    assert short_repr(10**5000) == "<integer of 16610 bits>"
    assert short_repr([2**256]) == "[<integer of 257 bits>]"


# -- rendering -----------------------------------------------------------------------------------

AT = Location("spec.yaml", 3, 7)


def test_overlong_fields_are_cut_when_the_diagnostic_is_made() -> None:
    d = Diagnostic(
        "E032",
        "m" * 10**6,
        AT,
        path="p" * 5000,
        hint="h" * 5000,
        related=(("first defined at", AT),),
        detail="short line\n" + "d" * 5000,
    )
    cut = "…"
    assert d.message == "m" * (MAX_TEXT - 1) + cut
    assert d.path == "p" * (MAX_TEXT - 1) + cut
    assert d.hint == "h" * (MAX_TEXT - 1) + cut
    assert d.detail == "short line\n" + "d" * (MAX_TEXT - 1) + cut
    assert d.format().splitlines() == [
        "spec.yaml:3:7: error[E032]: " + d.message,
        "  in: " + d.path,
        "  first defined at: spec.yaml:3:7",
        "  hint: " + d.hint,
        "short line",
        "d" * (MAX_TEXT - 1) + cut,
    ]
    assert json.loads(json.dumps(d.to_json()))["message"] == d.message


def test_text_at_the_limit_is_kept_whole() -> None:
    d = Diagnostic("E032", "m" * MAX_TEXT, AT)
    assert d.message == "m" * MAX_TEXT


# -- terminal safety -----------------------------------------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J"  # sets the terminal's title, then clears the screen


def test_control_and_bidi_characters_are_shown_escaped() -> None:
    d = Diagnostic(
        "E012",
        f"unknown key '{ESCAPES}'",
        Location("spec\x1b.yaml", 3, 7),
        path="layers.0.\u202eevil",
        hint="did you mean 'abc\u2066'?",
        related=(("first\x00 given at", AT),),
        detail="  line one\t\x9b\n  line two \U000e0041",
    )
    assert d.format().splitlines() == [
        "spec\\x1b.yaml:3:7: error[E012]: unknown key '\\x1b]0;owned\\x07\\x1b[2J'",
        "  in: layers.0.\\u202eevil",
        "  first\\x00 given at: spec.yaml:3:7",
        "  hint: did you mean 'abc\\u2066'?",
        "  line one\\t\\x9b",
        "  line two \\U000e0041",
    ]


def test_a_newline_in_a_message_cannot_forge_another_line() -> None:
    d = Diagnostic("E012", "unknown key 'a\nspec.yaml:1:1: error[E000]: fake'", AT)
    assert (
        d.format()
        == "spec.yaml:3:7: error[E012]: unknown key 'a\\nspec.yaml:1:1: error[E000]: fake'"
    )


def test_printable_text_is_unchanged() -> None:
    text = "unknown op 'conv2d' — did you mean 'café' or '卷积'? (a\\x1b stays as typed)"
    d = Diagnostic("E013", text, AT)
    assert d.format() == f"spec.yaml:3:7: error[E013]: {text}"


def test_json_keeps_the_text_and_escapes_it_as_json() -> None:
    d = Diagnostic("E012", f"unknown key '{ESCAPES}\u202e'", AT)
    out = json.dumps(d.to_json())
    assert "\x1b" not in out and "\u202e" not in out
    assert json.loads(out)["message"] == f"unknown key '{ESCAPES}\u202e'"
