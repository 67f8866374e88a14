"""What is at the output path decides what compile may do: a file from another spec (or
variant) is never silently replaced, and a FIFO or folder there is an error, not a hang."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from archc.backends.compile import compile_to_file
from archc.compiler.diagnostics import SpecError
from tests.compiler.test_errors import archc_command

SPEC = """archc: 1
name: net
params:
  width: {type: int, default: 4}
inputs:
  - {name: image, shape: [6, 5, 3]}
layers:
  - {op: conv2d, name: conv, filters: "${width}", kernel: 3}
  - {op: flatten, name: flat}
variants:
  a: {params: {width: 2}}
"""


def header(path: Path) -> dict[str, object]:
    text = path.read_text(encoding="utf-8")
    found = re.search(r"^SPEC = (\{.*?^\})", text, re.M | re.S)
    assert found
    value = ast.literal_eval(found[1])
    assert isinstance(value, dict)
    return value


def write_spec(path: Path) -> Path:
    path.write_text(SPEC, encoding="utf-8")
    return path


def one_error(caught: pytest.ExceptionInfo[SpecError]) -> str:
    (d,) = caught.value.diagnostics
    return d.format()


# -- two specs, one file name ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "first_variant", "second", "second_variant"),
    [
        ("a-b.yaml", None, "a_b.yaml", None),
        ("x.yaml", "a", "x_a.yaml", None),
        ("x_a.yaml", None, "x.yaml", "a"),
        ("sub/a_b.yaml", None, "a_b.yaml", None),  # same name, another folder
    ],
)
@pytest.mark.parametrize("check", [False, True])
def test_a_file_from_another_spec_is_not_replaced(
    tmp_path: Path,
    first: str,
    first_variant: str | None,
    second: str,
    second_variant: str | None,
    check: bool,
) -> None:
    out = tmp_path / "out"
    (tmp_path / "sub").mkdir()
    spec1, spec2 = write_spec(tmp_path / first), write_spec(tmp_path / second)
    path = compile_to_file(spec1, "torch", out, variant=first_variant, verify=False).path
    before = path.read_bytes()
    with pytest.raises(SpecError) as caught:
        compile_to_file(spec2, "torch", out, variant=second_variant, verify=False, check=check)
    (d,) = caught.value.diagnostics
    assert d.code == "E097"
    assert d.location is not None and d.location.file == str(path)
    line = path.read_text(encoding="utf-8").splitlines()[d.location.line - 1]
    assert line.strip().startswith('"path":')  # at the header's record of the other spec
    assert "-o DIR" in d.hint
    assert str(spec2) in d.message
    assert path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [path.name]


def test_the_same_spec_and_variant_may_replace_its_file(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "x.yaml")
    out = tmp_path / "out"
    first = compile_to_file(spec, "torch", out, variant="a", verify=False)
    again = compile_to_file(spec, "torch", out, {"width": 3}, variant="a", verify=False)
    assert again.path == first.path and again.changed
    assert header(again.path)["overrides"] == {"width": 3}
    spec.write_text(SPEC.replace("kernel: 3", "kernel: 2"), encoding="utf-8")  # edited
    assert compile_to_file(spec, "torch", out, variant="a", verify=False).changed


def test_a_file_archc_did_not_write_is_not_replaced(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "net.yaml")
    mine = tmp_path / "out" / "net_torch.py"
    mine.parent.mkdir()
    mine.write_text("# my own model\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        compile_to_file(spec, "torch", tmp_path / "out", verify=False)
    assert "not written by archc" in one_error(caught)
    assert mine.read_text(encoding="utf-8") == "# my own model\n"


def test_a_collision_from_the_command_line_is_exit_1(tmp_path: Path) -> None:
    write_spec(tmp_path / "a-b.yaml")
    write_spec(tmp_path / "a_b.yaml")
    command = [*archc_command(), "compile", "--backend", "torch", "--no-verify", "-o", "out"]
    subprocess.run([*command, "a-b.yaml"], cwd=tmp_path, check=True, capture_output=True)
    proc = subprocess.run([*command, "a_b.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert re.fullmatch(
        r"out/a_b_torch\.py:\d+:5: error\[E097\]: out/a_b_torch\.py was generated from "
        r"'\.\./a-b\.yaml', not from 'a_b\.yaml'",
        first,
    ), first
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr


# -- what is not a regular file ----------------------------------------------------------------
@pytest.mark.parametrize("check", [False, True])
def test_a_fifo_at_the_output_path_is_an_error_not_a_hang(tmp_path: Path, check: bool) -> None:
    write_spec(tmp_path / "net.yaml")
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "net_torch.py")
    command = [*archc_command(), "compile", "net.yaml", "--backend", "torch", "-o", "out"]
    proc = subprocess.run(
        [*command, *(["--check"] if check else [])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        "out/net_torch.py:1:1: error[E096]: out/net_torch.py is a FIFO, not a regular file"
    )
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "net_torch.py").is_fifo()


def test_a_folder_at_the_output_path_is_an_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "net.yaml")
    (tmp_path / "out" / "net_torch.py").mkdir(parents=True)
    with pytest.raises(SpecError) as caught:
        compile_to_file(spec, "torch", tmp_path / "out", verify=False)
    assert "is a folder, not a regular file" in one_error(caught)


def test_a_spec_read_from_a_pipe_records_its_path_as_given(tmp_path: Path) -> None:
    command = [*archc_command(), "compile", "/dev/stdin", "--backend", "torch", "-o", "out"]
    for extra in ([], ["--check"]):
        proc = subprocess.run(
            [*command, "--no-verify", *extra],
            cwd=tmp_path,
            input=SPEC,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    assert header(tmp_path / "out" / "stdin_torch.py")["path"] == "/dev/stdin"


def test_a_regular_spec_is_still_recorded_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    spec = write_spec(tmp_path / "specs" / "net.yaml")
    path = compile_to_file(spec, "torch", tmp_path / "out", verify=False).path
    assert header(path)["path"] == "../specs/net.yaml"
