"""`verify --train`: the same SGD steps in both frameworks give the same loss, gradients,
updated weights and moving statistics; a broken training rule is caught and named.

The mutants are the training rules converters get wrong: BatchNorm momentum passed through
unconverted (Keras' 0.99 is PyTorch's 0.01), PyTorch's unbiased moving variance, an L2 penalty
left out of the PyTorch loss. Inference `verify` passes on each of them (it runs in eval mode),
which the tests show first.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from archc.backends.compile import VerificationError
from archc.backends.proof.train_check import verify_training
from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import ops as torch_ops
from archc.backends.torch import render as torch_render
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.load import loads
from tests.conftest import SEED

SMALL = """
archc: 1
name: small
inputs:
  - {name: image, shape: [6, 5, 3]}
layers:
  - {op: conv2d, name: conv, filters: 4, kernel: 3, padding: same, kernel_l2: 0.01}
  - {op: batch_norm, name: bn}
  - {op: activation, name: relu, fn: relu}
  - {op: batch_norm, name: frozen, trainable: false}
  - {op: dropout, name: drop, rate: 0.5}
  - {op: flatten, name: flat}
  - {op: dense, name: fc, units: 3, kernel_l2: 0.001}
"""


@pytest.fixture(scope="module")
def small() -> Compiled:
    return compile_spec(loads(SMALL, str(Path("small.yaml").resolve())))


def test_the_seed_trains_the_same_in_both_frameworks() -> None:
    # L2 on: the seed's `reg` puts a kernel_l2 on every conv (0 by default)
    penalised = compile_spec(SEED, {"reg": 5e-4}).graph.nodes
    assert sum(getattr(n.attrs, "kernel_l2", None) == 5e-4 for n in penalised) == 16
    report = verify_training(str(SEED), {"reg": 5e-4}, steps=3)
    # per step: the loss, 15 conv kernels + 8 BN gamma/beta pairs + ... every trainable
    # weight's gradient, then every weight and moving statistic after the update
    assert len(report.losses) == 3
    assert report.arrays_checked > 3 * 2 * 16
    assert report.max_rel_diff < 1.0
    keras_losses = [k for k, _ in report.losses]
    assert keras_losses[2] < keras_losses[0]  # SGD on a fixed batch lowers the loss


def test_dropout_is_turned_off_in_both(small: Compiled) -> None:
    report = verify_training(small, steps=2)
    assert report.dropout_off == ["drop"]


def _momentum_unconverted(mp: pytest.MonkeyPatch) -> None:
    bn = torch_ops.TORCH_OPS["batch_norm"]
    assert bn.module is not None
    original = bn.module

    def module(ctx: Any) -> str:
        return original(ctx).replace("momentum=0.01", "momentum=0.99")

    mp.setitem(torch_ops.TORCH_OPS, "batch_norm", replace(bn, module=module))


def _unbiased_variance(mp: pytest.MonkeyPatch) -> None:
    """KerasBatchNorm without its correction: PyTorch's unbiased running variance."""
    original = torch_render.helper_source

    def helper_source(name: str) -> str:
        source = original(name)
        if name == "KerasBatchNorm":
            fixed = "n = x.numel() // x.shape[1]"
            assert fixed in source
            source = source.replace(fixed, "n = 2**40  # (n - 1) / n = 1: no correction")
        return source

    mp.setattr(torch_render, "helper_source", helper_source)


def _no_penalty(mp: pytest.MonkeyPatch) -> None:
    build = torch_backend.build

    def without_l2(compiled: Compiled) -> Any:
        import torch

        model = build(compiled)
        model.regularization_loss = lambda: torch.zeros((), dtype=torch.float64)
        return model

    mp.setattr(torch_backend, "build", without_l2)


MUTANTS = {
    "bn-momentum-unconverted": (_momentum_unconverted, "moving_mean after the update", "bn"),
    "bn-unbiased-variance": (_unbiased_variance, "moving_variance after the update", "bn"),
    "l2-left-out": (_no_penalty, "the loss", None),
}


# mutants of a module's attributes, which `compile` and `verify` read back against the IR
# (backends/proof/conform.py) before any number is computed
READ_BACK = {"bn-momentum-unconverted"}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_a_broken_training_rule_is_caught_and_named(
    mutant: str, small: Compiled, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply, what, layer = MUTANTS[mutant]
    verify_training(small, steps=1)  # the real rules pass ...
    apply(monkeypatch)
    if mutant in READ_BACK:  # a module's own attribute: the read-back sees it before any run
        with pytest.raises(VerificationError) as info:
            verify(small)
        assert {d.code for d in info.value.diagnostics} == {"E114"}
        assert info.value.diagnostics[0].message.startswith(f"module '{layer}' has momentum=")
        return
    verify(small)  # ... inference cannot see the mutant ...
    with pytest.raises(VerificationError) as info:  # ... training does, at its layer
        verify_training(small, steps=1)
    (diag,) = info.value.diagnostics
    assert diag.code == "E111"
    where = f" of layer '{layer}'" if layer else ":"
    assert f"disagree first at {what}{where}" in diag.message


def test_cli_verify_train(archc: Any) -> None:
    result = archc(
        "verify", SEED, "--train", "--steps", "2", "--no-odd-input", "--set", "reg=0.0005"
    )
    assert result.exit_code == 0, result.output
    assert "training: 2 SGD steps" in result.output
