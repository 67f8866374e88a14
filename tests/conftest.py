from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).parent / "ruff"  # the one ruff tests use: the environment's
SPECS = ROOT / "specs"
SEED = SPECS / "resnet_preact.yaml"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as backends/keras/backend.py says why


def without_spec_path(text: bytes) -> bytes:
    """Generated source with its SPEC["path"] blanked: that path is relative to the output
    folder, so files written elsewhere differ from the committed ones only there."""
    return re.sub(rb'"path": "[^"\n]*"', b'"path": "<spec>"', text)


def ruff_problems(path: Path) -> str:
    """What `ruff check` and `ruff format --check` say about a file ('' when it is clean)."""
    out = []
    for command in (["check"], ["format", "--check"]):
        proc = subprocess.run(
            [RUFF, *command, "--no-cache", path],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            out.append(proc.stdout + proc.stderr)
    return "".join(out)


@pytest.fixture
def archc():
    """Run the archc CLI in-process; returns the click Result."""
    from archc.cli import cli

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run
