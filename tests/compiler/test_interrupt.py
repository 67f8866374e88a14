"""Ctrl-C at any time after archc's code starts: exit 130 with one line, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.compiler.test_errors import archc_command
from tests.conftest import ROOT, SEED

# Python code run in a child process: a SIGINT is sent at one chosen point of `archc check`.
PRELUDE = f"""\
import atexit, builtins, os, signal, sys
sys.argv = ["archc", "check", {str(SEED)!r}]

def interrupt():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # the handler runs between bytecodes, before this loop ends
        pass
"""
RUN = "from archc.cli import main\nmain()\n"

WHEN = {
    # while archc.cli imports click (the first ~60 ms)
    "importing": """\
real_import = builtins.__import__
def hooked(name, *args, **kwargs):
    if name == "click":
        builtins.__import__ = real_import
        interrupt()
    return real_import(name, *args, **kwargs)
builtins.__import__ = hooked
""",
    # while click parses the command line, before the command's body runs
    "parsing": """\
import archc.cli
real_parse = archc.cli.parse_sets
def parse_sets(values):
    interrupt()
    return real_parse(values)
archc.cli.parse_sets = parse_sets
""",
    # while the command runs
    "running": """\
import archc.compiler.api
def compile_spec(*args, **kwargs):
    interrupt()
archc.compiler.api.compile_spec = compile_spec
""",
    # while the command runs, inside a callback, where an exception cannot propagate
    "in-a-callback": """\
import archc.compiler.api, time, weakref
class Thing:
    pass
def compile_spec(*args, **kwargs):
    thing = Thing()
    ref = weakref.ref(thing, lambda ref: interrupt())
    del thing
    time.sleep(10)  # the interrupt, delivered again, ends this
    raise SystemExit("the interrupt was lost")
archc.compiler.api.compile_spec = compile_spec
""",
    # after the command finished, in an exit handler registered while it ran (as frameworks do)
    "shutting-down": """\
import archc.compiler.api
real_compile = archc.compiler.api.compile_spec
def compile_spec(*args, **kwargs):
    atexit.register(interrupt)
    return real_compile(*args, **kwargs)
archc.compiler.api.compile_spec = compile_spec
""",
    # while a library turns the KeyboardInterrupt into an error of its own (pydantic-core
    # reports a SchemaError when Ctrl-C comes while it builds a validator: found in CI)
    "wrapped-by-a-library": """\
import archc.compiler.api
def compile_spec(*args, **kwargs):
    try:
        interrupt()
    except KeyboardInterrupt as exc:
        raise RuntimeError("Error building validator") from exc
archc.compiler.api.compile_spec = compile_spec
""",
    # at the very end of shutdown (an exit handler registered before archc started): ignored
    "last-moment": "atexit.register(interrupt)\n",
}


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("when", list(WHEN))
def test_ctrl_c_exits_130_with_one_line(when: str) -> None:
    proc = run_child(PRELUDE + WHEN[when] + RUN)
    assert "Traceback" not in proc.stderr, proc.stderr
    if when in ("shutting-down", "last-moment"):  # the summary was printed before
        assert proc.stdout.startswith('Model: "'), proc.stdout
    if when == "last-moment":
        assert (proc.returncode, proc.stderr) == (0, "")
        return
    assert proc.returncode == 130, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "interrupted" in proc.stderr, proc.stderr


@pytest.mark.parametrize("delay", [0.15, 0.25, 0.35, 0.5, 0.8])
def test_ctrl_c_at_a_random_moment(delay: float) -> None:
    """The real console script, interrupted after `delay` seconds (after the interpreter's
    own start-up): it exits 130 in one line, or 0 if it had already finished."""
    child = subprocess.Popen(
        [*archc_command(), "check", str(SEED)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert child.returncode in (0, 130), (child.returncode, stderr)
    if child.returncode == 130:
        assert len(stderr.splitlines()) == 1 and "interrupted" in stderr, stderr
