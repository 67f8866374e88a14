"""The archc command line: exit codes, --set parsing, schema, and no framework imports."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from archc.compiler.ops import load_all
from tests.conftest import ROOT, SEED


def test_schema_is_json_schema_with_every_op(archc) -> None:
    result = archc("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "archc spec"
    assert {"archc", "name", "inputs", "layers"} <= set(schema["required"])
    defs = schema["$defs"]
    for op in load_all():
        if op == "input":
            continue
        title = "".join(p.title() for p in op.split("_")) + "Item"
        assert defs[title]["properties"]["op"]["const"] == op
    filters = defs["Conv2DItem"]["properties"]["filters"]["anyOf"]
    positive = {"exclusiveMinimum": 0, "type": "integer", "description": "a positive integer"}
    assert positive in filters


def test_set_without_equals_is_a_usage_error(archc) -> None:
    result = archc("check", SEED, "--set", "nb_classes")
    assert result.exit_code == 2
    assert "--set expects KEY=VALUE" in result.output


def test_unknown_command_is_a_usage_error(archc) -> None:
    assert archc("chek", SEED).exit_code == 2


def test_missing_spec_file_is_a_spec_error(archc, tmp_path) -> None:
    result = archc("check", tmp_path / "nope.yaml")
    assert result.exit_code == 1
    assert "error[E001]: spec file not found" in result.stderr
    assert "Traceback" not in result.output


def test_internal_error_exits_3_and_says_it_is_a_bug(archc, monkeypatch) -> None:
    from archc.compiler import api as compiler_api

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(compiler_api, "compile_spec", boom)
    result = archc("check", SEED)
    assert result.exit_code == 3
    assert "internal error: RuntimeError: kaput" in result.stderr
    assert "This is a bug in archc" in result.stderr
    assert "Traceback" not in result.stderr


def test_expect_applies_only_without_overrides(archc) -> None:
    assert "expect: ok" in archc("check", SEED).stdout
    assert "expect:" not in archc("check", SEED, "--set", "nb_classes=7").stdout


@pytest.mark.parametrize("command", [["check"], ["check", "--json"]])
def test_check_imports_no_framework(command: list[str]) -> None:
    code = (
        "import sys\n"
        "from archc.cli import main\n"
        f"try:\n    main({[*command, str(SEED)]!r})\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'torch', 'jax', 'numpy'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


def test_interrupt_exits_130_without_a_traceback(archc, monkeypatch) -> None:
    from archc.compiler import api as compiler_api

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(compiler_api, "compile_spec", interrupt)
    result = archc("check", SEED)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "option",
    [
        ["--seed", "-1"],
        ["--seed", str(2**32)],
        ["--seed", "1.5"],
        ["--batch", "0"],
        ["--batch", "65"],
        ["--atol", "-1"],
        ["--atol", "nan"],
        ["--atol", "inf"],
    ],
    ids=lambda option: " ".join(option),
)
def test_out_of_range_numeric_options_are_usage_errors(archc, option: list[str]) -> None:
    result = archc("verify", SEED, *option)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option[0]}'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_input_is_a_located_spec_error(archc) -> None:
    result = archc("check", "/dev/zero")
    assert result.exit_code == 1
    assert result.stderr.startswith("/dev/zero:1:1: error[E001]: spec file is larger than 10 MiB\n")


def test_a_huge_value_in_a_message_is_cut(archc, tmp_path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "archc: 1\nname: net\ninputs:\n  - {name: image, shape: [16, 16, 3]}\n"
        'layers:\n  - {op: dense, units: "${[[0] * 9999] * 10}"}\n',
        encoding="utf-8",
    )
    result = archc("check", spec)
    assert result.exit_code == 1
    headline = result.stderr.splitlines()[0]
    assert headline.startswith(f"{spec}:6:24: error[E032]: invalid dense.units [[0, 0, 0, ")
    assert "…: input should be a valid integer" in headline  # the value is cut, not the reason
    assert len(headline) < len(str(spec)) + 200 and len(result.stderr) < 3000


def test_internal_error_text_is_terminal_safe(archc, monkeypatch) -> None:
    from archc.compiler import api as compiler_api

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaput \x1b[2J" + "x" * 5000)

    monkeypatch.setattr(compiler_api, "compile_spec", boom)
    result = archc("check", SEED)
    assert result.exit_code == 3
    assert "internal error: RuntimeError: kaput \\x1b[2J" in result.stderr
    assert "\x1b" not in result.stderr and len(result.stderr) < 2000


@pytest.mark.parametrize("as_json", [[], ["--json"]], ids=["table", "json"])
@pytest.mark.parametrize(
    "dims",
    [[2**32, 2**32, 4], [4 * 10**18] * 250],  # flattened: 2**66, and over 4300 digits
    ids=["past-64-bits", "past-printing"],
)
def test_sizes_too_large_for_a_model_are_a_located_error(
    archc, tmp_path, dims: list[int], as_json: list[str]
) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        f"archc: 1\nname: net\ninputs:\n  - {{name: image, shape: {dims}}}\n"
        "layers:\n  - {op: flatten, name: flat}\n  - {op: dense, units: 2}\n",
        encoding="utf-8",
    )
    result = archc("check", spec, *as_json)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[:2] == [
        f"{spec}:6:5: error[E081]: layer 'flat': output size too large (more than 64 bits)",
        "  hint: check the input shape and the sizes that feed this layer",
    ]
    assert "Model:" not in result.stdout


# -- output that cannot be written: a closed pipe, a full disk -----------------------------------
OUTPUT_COMMANDS = [
    ["ops"],
    ["ops", "--json"],
    ["check", str(SEED.relative_to(ROOT))],
    ["check", str(SEED.relative_to(ROOT)), "--json"],
    ["schema"],
    ["--help"],
    ["ops", "--help"],
]


def _archc_to(stdout: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archc", *args],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=" ".join)
def test_a_closed_pipe_is_a_quiet_exit_141(args: list[str]) -> None:
    """`archc ops | head -1`: the reader is gone; archc stops without a word and exits as a
    process that SIGPIPE stopped (128 + 13), as `yes | head -1`'s yes. The pipe's reading
    end is closed before archc starts, so that its very first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _archc_to(write_end, args)
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr
    assert proc.stderr == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=" ".join)
def test_a_full_disk_is_a_one_line_error_exit_1(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        proc = _archc_to(full.fileno(), args)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"error: cannot write the output: {os.strerror(errno.ENOSPC)}\n"
