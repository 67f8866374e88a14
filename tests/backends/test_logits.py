"""PyTorch users get logits: a generated model whose output ends in a softmax takes
`build_model(logits=True)` and returns the values before it (what nn.CrossEntropyLoss wants),
without editing generated code; the default is Keras' model, softmax included."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from archc.backends.codegen import import_source
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from archc.compiler.load import loads
from tests.conftest import SEED

HEAD_AS_LAYER = """
archc: 1
name: act_head
inputs:
  - {name: x, shape: [6]}
layers:
  - {op: dense, name: fc, units: 4}
  - {op: activation, name: probs, fn: softmax}
"""
NO_SOFTMAX = """
archc: 1
name: regression
inputs:
  - {name: x, shape: [6]}
layers:
  - {op: dense, name: fc, units: 4, activation: sigmoid}
"""


def module_of(text: str | Path, name: str) -> Any:
    compiled = compile_spec(text) if isinstance(text, Path) else compile_spec(loads(text, name))
    return import_source(torch_backend.render(compiled), name)


@pytest.mark.parametrize(("spec", "shape"), [(SEED, (2, 3, 32, 32)), (HEAD_AS_LAYER, (2, 6))])
def test_logits_are_the_values_before_the_softmax(spec: Any, shape: tuple[int, ...]) -> None:
    module = module_of(spec, "logits_" + str(len(shape)))
    torch.manual_seed(0)
    probs_model = module.build_model().eval()
    logits_model = module.build_model(logits=True).eval()
    logits_model.load_state_dict(probs_model.state_dict())
    x = torch.randn(*shape)
    with torch.no_grad():
        probs, logits = probs_model(x), logits_model(x)
    assert torch.allclose(probs.sum(1), torch.ones(2))  # the default: Keras' softmax output
    assert not torch.allclose(logits.sum(1), torch.ones(2), atol=1e-3)
    assert torch.allclose(torch.softmax(logits, 1), probs, atol=1e-7)
    # what a training loop does with them: the same loss as Keras' crossentropy on probs
    y = torch.tensor([1, 0])
    loss = torch.nn.functional.cross_entropy(logits, y)
    assert loss.item() == pytest.approx(-torch.log(probs[[0, 1], y]).mean().item(), rel=1e-5)


def test_logits_scripts() -> None:
    module = importlib.import_module("generated.resnet_preact_torch")  # torch.jit reads files
    model = module.build_model(logits=True).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(scripted(x), model(x))


def test_a_layer_called_logits_does_not_hide_the_flag() -> None:
    # MobileNetV3's classifier conv is called 'logits' (keras.applications' name)
    spec = HEAD_AS_LAYER.replace("name: fc,", "name: logits,")
    module = module_of(spec, "named_logits")
    model = module.build_model(logits=True).eval()
    x = torch.randn(2, 6)
    with torch.no_grad():
        assert not torch.allclose(model(x).sum(1), torch.ones(2), atol=1e-3)
        assert torch.allclose(module.build_model().eval()(x).sum(1), torch.ones(2))


def test_a_model_without_a_softmax_output_has_no_logits_argument() -> None:
    module = module_of(NO_SOFTMAX, "no_logits")
    with pytest.raises(TypeError, match="logits"):
        module.build_model(logits=True)


NO_ACTIVATION = NO_SOFTMAX.replace(", activation: sigmoid", "")


@pytest.mark.parametrize(
    ("spec", "want"),
    [(HEAD_AS_LAYER, "softmax"), (NO_SOFTMAX, "sigmoid"), (NO_ACTIVATION, "linear")],
)
def test_both_files_say_what_the_output_is(spec: str, want: str) -> None:
    """OUTPUT_ACTIVATION: the output layer's activation as the spec gives it ('linear': none),
    the same in both files, so that a training loop picks its loss (from_logits) from it."""
    from archc.backends.keras import backend as keras_backend

    compiled = compile_spec(loads(spec, "out.yaml"))
    for backend in (torch_backend, keras_backend):
        module = import_source(backend.render(compiled), f"out_{backend.NAME}_{want}")
        said = module.OUTPUT_ACTIVATION
        assert said == want
