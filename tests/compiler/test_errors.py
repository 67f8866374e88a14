"""Broken specs, one per file under broken/, each stating the exact diagnostics it must give.

A file starts with comment lines; these directives are read from them:

    # expect: broken/NAME.yaml:LINE:COL: error[EXXX]: message   one per error, in report order
    # hint: text          a line '  hint: text' appears ('...' at the end: the line starts so)
    # also: text          a detail line ('in: ...', 'first defined at: ...') appears
    # args: --variant x   extra command-line arguments

Other comment lines describe the mistake. Files are checked from this folder, so paths are
relative, as a user running `archc check broken/NAME.yaml` here would see them. Specs that
archc gets wrong today are listed in KNOWN_BAD (strict xfail): fixing one fails its test
until its entry is removed; the spec file itself never needs to change.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEED

HERE = Path(__file__).parent
BROKEN = sorted((HERE / "broken").glob("*.yaml"))
SUBPROCESS_SAMPLES = ("python_tag.yaml", "add_shape_mismatch.yaml", "several_errors.yaml")

KNOWN_BAD: dict[str, str] = {}


@dataclass(frozen=True)
class Expected:
    """What `archc check` must print to stderr for one broken spec."""

    errors: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


def read_expected(path: Path) -> Expected:
    found: dict[str, list[str]] = {key: [] for key in ("expect", "hint", "also", "args")}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line.lstrip("# ").partition(": ")
        if sep and key in found:
            found[key].extend(shlex.split(value) if key == "args" else [value])
    return Expected(
        errors=found["expect"],
        hints=found["hint"],
        also=found["also"],
        args=found["args"],
    )


def broken_params(paths: list[Path]) -> list[Any]:
    out = []
    for path in paths:
        reason = KNOWN_BAD.get(path.stem)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


def error_count(n: int) -> str:
    return f"{n} error{'s' if n != 1 else ''}"


def assert_reported(exit_code: int, stderr: str, expected: Expected) -> None:
    """Exit 1; exactly the expected headlines, in order; every hint and detail; the count."""
    assert exit_code == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    lines = stderr.splitlines()
    headlines = [line for line in lines if "error[E" in line and not line.startswith(" ")]
    assert headlines == expected.errors, stderr
    assert lines[-1] == error_count(len(expected.errors)), stderr
    details = [line.strip() for line in lines if line.startswith("  ")]
    for hint in expected.hints:
        if hint.endswith("..."):
            assert any(d.startswith(f"hint: {hint[:-3]}") for d in details), (hint, stderr)
        else:
            assert f"hint: {hint}" in details, (hint, stderr)
    for line in expected.also:
        assert line in details, (line, stderr)


def archc_command() -> list[str]:
    script = Path(sys.executable).with_name("archc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "archc"]


# -- the corpus itself ---------------------------------------------------------------------------


def test_corpus_is_large_and_every_file_states_its_errors() -> None:
    assert len(BROKEN) >= 25
    assert set(KNOWN_BAD) <= {path.stem for path in BROKEN}
    for path in BROKEN:
        expected = read_expected(path)
        assert expected.errors, f"{path.name} has no '# expect:' line"
        for headline in expected.errors:
            assert headline.startswith(f"broken/{path.name}:"), (path.name, headline)


# -- every broken spec, in-process ----------------------------------------------------------------


@pytest.mark.parametrize("path", broken_params(BROKEN))
def test_broken_spec(
    path: Path, archc: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = read_expected(path)
    monkeypatch.chdir(HERE)
    result = archc("check", f"broken/{path.name}", *expected.args)
    assert_reported(result.exit_code, result.stderr, expected)
    assert result.stdout == ""


# -- a few through the installed console script ---------------------------------------------------


@pytest.mark.parametrize("path", broken_params([HERE / "broken" / n for n in SUBPROCESS_SAMPLES]))
def test_broken_spec_in_a_subprocess(path: Path) -> None:
    expected = read_expected(path)
    proc = subprocess.run(
        [*archc_command(), "check", f"broken/{path.name}", *expected.args],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert_reported(proc.returncode, proc.stderr, expected)


# -- command-line overrides of the seed spec ------------------------------------------------------

SET_CASES: dict[str, tuple[list[str], Expected]] = {
    "mistyped": (
        ["num_stages=abc"],
        Expected(
            errors=["error[E023]: --set num_stages=abc: expected int, got 'abc'"],
            hints=["parameter 'num_stages' is declared as int, min: 1"],
        ),
    ),
    "unknown": (
        ["num_stage=3"],
        Expected(
            errors=["error[E020]: --set num_stage=3: unknown parameter 'num_stage'"],
            hints=["did you mean 'num_stages'?"],
        ),
    ),
    "below-minimum": (
        ["nb_classes=0"],
        Expected(
            errors=["error[E023]: --set nb_classes=0: 0 is below the minimum 1"],
            hints=["parameter 'nb_classes' is declared as int, min: 1"],
        ),
    ),
    "list-without-brackets": (
        ["input_shape=32,32,3"],
        Expected(
            errors=["error[E023]: --set input_shape=32,32,3: expected list[int], got '32,32,3'"],
            hints=[
                "parameter 'input_shape' is declared as list[int]; a list is written in "
                "brackets: --set input_shape=[32,32,3]"
            ],
        ),
    ),
    "list-without-brackets-of-words": (
        ["input_shape=wide"],
        Expected(  # not a list of ints in brackets either: the default shows the syntax
            errors=["error[E023]: --set input_shape=wide: expected list[int], got 'wide'"],
            hints=[
                "parameter 'input_shape' is declared as list[int]; a list is written in "
                "brackets, e.g. --set input_shape=[32,32,3]"
            ],
        ),
    ),
    "not-a-bool": (
        ["use_final_conv=maybe"],
        Expected(
            errors=["error[E023]: --set use_final_conv=maybe: expected true or false, got 'maybe'"],
            hints=["parameter 'use_final_conv' is declared as bool"],
        ),
    ),
    "int-past-64-bits": (
        ["nb_classes=18446744073709551616"],  # 2 ** 64
        Expected(
            errors=[
                "error[E023]: --set nb_classes=18446744073709551616: "
                "integer too large (more than 64 bits)"
            ],
            hints=["parameter 'nb_classes' is declared as int, min: 1"],
        ),
    ),
    "int-past-python-digit-limit": (
        ["nb_classes=" + "9" * 5000],
        Expected(  # the value is cut to 40 characters
            errors=[
                f"error[E023]: --set nb_classes={'9' * 39}…: integer too large (more than 64 bits)"
            ],
        ),
    ),
    "list-element-past-64-bits": (
        ["input_shape=[" + "9" * 38 + ",7,3]"],
        Expected(
            errors=[
                f"error[E023]: --set input_shape=[{'9' * 38}…: "
                "integer too large (more than 64 bits)"
            ],
            hints=["parameter 'input_shape' is declared as list[int]"],
        ),
    ),
    "list-element-past-python-digit-limit": (
        ["input_shape=[" + "9" * 5000 + ",7,3]"],
        Expected(
            errors=[
                f"error[E023]: --set input_shape=[{'9' * 38}…: "
                "integer too large (more than 64 bits)"
            ],
        ),
    ),
    "control-characters": (
        ["nb_classes=\x1b[2J"],
        Expected(
            errors=[
                "error[E023]: --set nb_classes=\\x1b[2J: expected int, got '\\x1b[2J'",
            ],
        ),
    ),
    "both-at-once": (
        ["num_stage=3", "num_stages=abc"],
        Expected(
            errors=[
                "error[E020]: --set num_stage=3: unknown parameter 'num_stage'",
                "error[E023]: --set num_stages=abc: expected int, got 'abc'",
            ],
        ),
    ),
}


@pytest.mark.parametrize(("sets", "expected"), SET_CASES.values(), ids=list(SET_CASES))
def test_set_errors_on_the_seed(
    sets: list[str], expected: Expected, archc: Callable[..., Any]
) -> None:
    args = [arg for s in sets for arg in ("--set", s)]
    result = archc("check", SEED, *args)
    assert_reported(result.exit_code, result.stderr, expected)


def test_set_error_in_a_subprocess() -> None:
    proc = subprocess.run(
        [*archc_command(), "check", str(SEED), "--set", "num_stages=abc"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert_reported(proc.returncode, proc.stderr, SET_CASES["mistyped"][1])


def test_set_without_equals_is_a_usage_error(archc: Callable[..., Any]) -> None:
    result = archc("check", SEED, "--set", "num_stages")
    assert result.exit_code == 2
    assert "--set expects KEY=VALUE, got 'num_stages'" in result.stderr


def test_missing_file(archc: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)
    result = archc("check", "broken/no_such_spec.yaml")
    assert_reported(
        result.exit_code,
        result.stderr,
        Expected(errors=["error[E001]: spec file not found: broken/no_such_spec.yaml"]),
    )
