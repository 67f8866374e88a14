"""`archc check` as the console script leaves without tearing the interpreter down (its
output flushed and the exit handlers run, as at any exit); a caller that passes argv to
main() gets the SystemExit as before."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, SEED

CHILD = """\
import atexit, sys
sys.argv = ["archc", "check", {spec!r}]


class Late:
    def __del__(self):
        print("torn down", flush=True)


late = Late()  # freed only when the interpreter tears its modules down
atexit.register(print, "exit handler ran")
from archc.cli import main
{call}
"""


def child(spec: str, call: str = "main()") -> subprocess.CompletedProcess[str]:
    code = CHILD.format(spec=spec, call=call)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_check_leaves_without_teardown_its_output_and_exit_handlers_kept() -> None:
    proc = child(str(SEED))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('Model: "') and "expect: ok" in proc.stdout
    assert proc.stdout.rstrip().endswith("exit handler ran")
    assert "torn down" not in proc.stdout


def test_a_refused_spec_leaves_quickly_with_its_code_and_diagnostics(tmp_path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("archc: 1\nname: bad\ninputs: [{name: x, shape: [4]}]\nlayers: [{op: nope}]\n")
    proc = child(str(spec))
    assert proc.returncode == 1
    assert "bad.yaml:4:" in proc.stderr and proc.stderr.rstrip().endswith("1 error")
    assert "torn down" not in proc.stdout and "exit handler ran" in proc.stdout


@pytest.mark.parametrize("argv", ["['check', SPEC]", "None"])
def test_main_with_argv_raises_system_exit(argv: str) -> None:
    # with argv (a library's call) the interpreter ends as usual; so does any other command
    call = textwrap.dedent(
        f"""
        SPEC = sys.argv[2]
        sys.argv = ["archc", "ops", "conv2d"] if {argv} is None else sys.argv
        try:
            main({argv})
        except SystemExit as exc:
            print("SystemExit", exc.code)
        """
    )
    proc = child(str(SEED), call)
    assert proc.returncode == 0, proc.stderr
    assert "SystemExit 0" in proc.stdout and "torn down" in proc.stdout
