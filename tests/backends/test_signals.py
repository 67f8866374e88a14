"""SIGTERM is handled like Ctrl-C (clean up, exit 143); temp files that a killed compile left
behind are removed by the next compile; and the message says whether the file was replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archc.backends.compile import compile_to_file
from tests.conftest import ROOT

SPEC = """archc: 1
name: net
params:
  width: {type: int, default: 4}
inputs:
  - {name: image, shape: [6, 5, 3]}
layers:
  - {op: conv2d, name: conv, filters: "${width}", kernel: 3}
  - {op: flatten, name: flat}
"""

# A child process runs `archc compile` with a signal sent at one point of the write.
CHILD = """\
import os, signal, sys
from archc.cli import main

def send():
    os.kill(os.getpid(), signal.{signal})
    for _ in range(100000):  # the handler runs between bytecodes, before this loop ends
        pass

real_fsync, real_replace = os.fsync, os.replace
def fsync(fd):
    real_fsync(fd)
    if {at!r} == "fsync" and os.readlink(f"/proc/self/fd/{{fd}}").endswith(".tmp"):
        send()
def replace(src, dst):
    real_replace(src, dst)
    if {at!r} == "replace" and str(dst).endswith("_torch.py"):
        send()
os.fsync, os.replace = fsync, replace
main(["compile", {spec!r}, "--backend", "torch", "--no-verify", "-o", {out!r}, "--set", "width=3"])
"""


def prepared(tmp_path: Path) -> tuple[Path, Path, bytes]:
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    target = compile_to_file(spec, "torch", tmp_path / "out", verify=False).path
    return spec, target, target.read_bytes()


def run_child(spec: Path, out: Path, sig: str, at: str) -> subprocess.CompletedProcess[str]:
    code = CHILD.format(signal=sig, at=at, spec=str(spec), out=str(out))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("sig", "code", "word"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_a_signal_before_the_replace_leaves_the_old_file_and_no_temp(
    tmp_path: Path, sig: str, code: int, word: str
) -> None:
    spec, target, before = prepared(tmp_path)
    proc = run_child(spec, target.parent, sig, "fsync")
    assert (proc.returncode, proc.stderr) == (code, f"{word} (nothing was written)\n")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.parametrize(
    ("sig", "code", "word"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_a_signal_as_the_replace_returns_says_the_file_was_written(
    tmp_path: Path, sig: str, code: int, word: str
) -> None:
    spec, target, before = prepared(tmp_path)
    proc = run_child(spec, target.parent, sig, "replace")
    assert (proc.returncode, proc.stderr) == (code, f"{word} ({target} was written)\n")
    assert target.read_bytes() != before
    assert b'"overrides": {"width": 3}' in target.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_a_killed_compile_leaves_a_temp_that_the_next_compile_removes(tmp_path: Path) -> None:
    spec, target, before = prepared(tmp_path)
    proc = run_child(spec, target.parent, "SIGKILL", "fsync")
    assert proc.returncode == -signal.SIGKILL
    (temp,) = (p for p in target.parent.iterdir() if p != target)
    assert temp.name.startswith(f".{target.name}.") and temp.name.endswith(".tmp")
    assert target.read_bytes() == before
    compile_to_file(spec, "torch", target.parent, verify=False)  # unchanged: nothing to write
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_stale_temps_of_the_same_output_are_removed(tmp_path: Path) -> None:
    spec, target, _ = prepared(tmp_path)
    out = target.parent
    dead, alive = _dead_pid(), os.getppid()
    names = {
        f".{target.name}.{dead}.abc123.tmp": False,  # its writer is gone
        f".{target.name}.{alive}.abc123.tmp": True,  # another process is writing it
        f".{target.name}.abc123.tmp": True,  # no PID (older archc), recent
        f".{target.name}.old123.tmp": False,  # no PID, over an hour old
        f".{target.name}.{alive}.old456.tmp": False,  # over an hour old
        f".other_torch.py.{dead}.abc123.tmp": True,  # another output's
        f"{target.name}.{dead}.abc123.tmp": True,  # not archc's pattern
    }
    hour_ago = time.time() - 3700
    for name in names:
        (out / name).write_text("partial", encoding="utf-8")
        if "old" in name:
            os.utime(out / name, (hour_ago, hour_ago))
    compile_to_file(spec, "torch", out, verify=False)
    kept = {p.name for p in out.iterdir()} - {target.name}
    assert kept == {name for name, keep in names.items() if keep}


def test_check_removes_nothing(tmp_path: Path) -> None:
    spec, target, _ = prepared(tmp_path)
    temp = target.parent / f".{target.name}.{_dead_pid()}.abc123.tmp"
    temp.write_text("partial", encoding="utf-8")
    compile_to_file(spec, "torch", target.parent, check=True)
    assert temp.exists()


def test_sigterm_while_running_is_exit_143(archc, monkeypatch: pytest.MonkeyPatch) -> None:
    from archc.compiler import api as compiler_api

    def terminate(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100000):
            pass

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(compiler_api, "compile_spec", terminate)
    result = archc("check", ROOT / "specs" / "resnet_preact.yaml")
    assert result.exit_code == 143
    assert result.stderr == "terminated (nothing was written)\n"
    assert signal.getsignal(signal.SIGTERM) is previous  # put back after the command
