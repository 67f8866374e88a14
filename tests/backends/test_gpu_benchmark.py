"""benchmarks/gpu.py: without a CUDA device it says so and exits 0; its hand-written GPT is the
generated GPT's architecture (the same parameter count, and the same shapes per tensor kind)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

torch = pytest.importorskip("torch")


def test_without_a_gpu_it_says_so_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA device" in proc.stdout


def test_hand_written_gpt_has_the_generated_gpt_s_parameters() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu import hand_gpt

    from generated.gpt_torch import build_model

    small = {"vocab_size": 100, "context": 16, "width": 32, "depth": 2, "heads": 4}
    gen, hand = build_model(**small), hand_gpt(**small)
    assert sum(p.numel() for p in gen.parameters()) == sum(p.numel() for p in hand.parameters())
    tokens = torch.randint(0, 100, (2, 16))
    assert gen(tokens).shape == hand(tokens).shape == (2, 16, 100)
