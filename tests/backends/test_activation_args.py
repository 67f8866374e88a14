"""The activation op's arguments: leaky_relu's slope (`alpha`, Keras' LeakyReLU
negative_slope) and gelu's tanh approximation (`approximate`), held against their formulas
in both generated models, refused with other functions, and mutants caught by verify."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.codegen import import_source
from archc.backends.compile import VerificationError
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import ops as torch_ops
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads


def _spec(fn: str, extra: str) -> str:
    return textwrap.dedent(
        f"""\
        archc: 1
        name: act_args
        inputs:
          - {{name: x, shape: [4, 5, 3]}}
        layers:
          - {{op: conv2d, name: c, filters: 3, kernel: 1}}
          - {{op: activation, name: a, fn: {fn}{extra}}}
          - {{op: conv2d, name: out, filters: 2, kernel: 1}}
        """
    )


def _leaky(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, alpha * x)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


CASES = [
    ("leaky_relu", ", alpha: 0.1", lambda x: _leaky(x, 0.1)),
    ("leaky_relu", ", alpha: 0", lambda x: _leaky(x, 0.0)),
    ("gelu", ", approximate: true", _gelu_tanh),
    ("gelu", ", approximate: false", _gelu),
]


@pytest.mark.parametrize(("fn", "extra", "formula"), CASES)
def test_both_models_compute_the_formula(fn: str, extra: str, formula: Any) -> None:
    text = _spec(fn, extra).replace("  - {op: conv2d, name: out, filters: 2, kernel: 1}\n", "")
    compiled = compile_spec(loads(text, "act_args.yaml"))
    x = np.linspace(-4, 4, 60, dtype=np.float32).reshape(1, 4, 5, 3)
    keras_mod = import_source(keras_backend.render(compiled), "act_args_keras")
    torch_mod = import_source(torch_backend.render(compiled), "act_args_torch")
    keras_model, torch_model = keras_mod.build_model(), torch_mod.build_model().eval()
    torch_model.c.weight.data = torch.eye(3).reshape(3, 3, 1, 1)  # the conv passes x through
    torch_model.c.bias.data.zero_()
    keras_model.get_layer("c").set_weights([np.eye(3).reshape(1, 1, 3, 3), np.zeros(3)])
    want = formula(x.astype(np.float64))
    got_keras = np.asarray(keras_model(x))
    got_torch = torch_model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(got_keras, want, atol=2e-6)
    np.testing.assert_allclose(got_torch.detach().numpy(), want, atol=2e-6)


@pytest.mark.parametrize(("fn", "extra"), [(f, e) for f, e, _ in CASES])
def test_verify_passes(fn: str, extra: str) -> None:
    verify(compile_spec(loads(_spec(fn, extra), "act_args.yaml")))


@pytest.mark.parametrize(
    ("fn", "extra", "message"),
    [
        ("relu", ", alpha: 0.3", "alpha is leaky_relu's slope: it needs fn: leaky_relu"),
        ("leaky_relu", ", approximate: true", "approximate is gelu's: it needs fn: gelu"),
    ],
)
def test_an_argument_of_another_function_is_a_located_error(
    fn: str, extra: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(loads(_spec(fn, extra), "act_args.yaml"))
    (diag,) = info.value.diagnostics
    assert diag.code == "E032" and message in diag.message
    assert diag.location is not None and diag.location.line == 7  # the activation item


# -- mutants: PyTorch ignoring an argument ----------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "mutant"),
    [
        (", alpha: 0.1", lambda ctx, x: f"F.leaky_relu({x}, 0.2)"),  # Keras' default slope
        (", approximate: true", lambda ctx, x: f"F.gelu({x})"),  # the exact one
    ],
)
def test_mutant_ignoring_the_argument_is_caught(
    extra: str, mutant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch_ops, "_tuned", mutant)
    fn = "leaky_relu" if "alpha" in extra else "gelu"
    with pytest.raises(VerificationError) as info:
        verify(compile_spec(loads(_spec(fn, extra), "act_args.yaml")))
    # PyTorch's forward read back against the IR's formula (compile's check, E114)
    diag = info.value.diagnostics[0]
    assert diag.code == "E114" and f"({fn}) applied to the output" in diag.message, diag.message
