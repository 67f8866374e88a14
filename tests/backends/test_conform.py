"""`compile` holds each built model against the IR itself (E114), not only against the other
backend: renderer mutants that leave counts and output shapes alone (a constant, an activation,
a dropped `when`, an extra layer) are caught by `compile_to_file`'s own check, in each backend.

The mutants change what the renderers write; the check reads the built model back (Keras'
`get_config()`, PyTorch's module attributes), so none of them is seen through the code that
made the mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from archc.backends.compile import compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.keras.ops import KerasLayer
from archc.backends.proof import conform
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import ops as torch_ops
from archc.backends.torch import render as torch_render
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError

# every mutant below changes something no count and no output shape sees: a weightless,
# shape-keeping layer, or a hyper-parameter of a layer with weights
SPEC = """\
archc: 1
name: conform_case
params:
  deep: {type: bool, default: false}
inputs:
  - {name: image, shape: [12, 10, 3]}
layers:
  - {op: conv2d, name: c1, filters: 4, kernel: 3, strides: 2, activation: relu}
  - {op: dropout, name: drop_deep, rate: 0.1, when: "${deep}"}
  - {op: activation, name: act_deep, fn: tanh, when: "${deep}"}
  - {op: batch_norm, name: bn, momentum: 0.9, epsilon: 0.01}
  - {op: activation, name: act, fn: relu}
  - {op: global_avg_pool2d, name: gap}
  - {op: dropout, name: drop, rate: 0.25}
  - {op: dense, name: out, units: 3, activation: softmax}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "conform_case.yaml"
    path.write_text(SPEC)
    return path


def compile_error(spec_file: Path, backend: str) -> list[str]:
    """The E114 messages `compile` gives (it must refuse: nothing is written)."""
    with pytest.raises(SpecError) as info:
        compile_to_file(spec_file, backend, spec_file.parent / "out")
    assert not (spec_file.parent / "out").exists() or not any((spec_file.parent / "out").iterdir())
    codes = {d.code for d in info.value.diagnostics}
    assert codes == {"E114"}, [d.format() for d in info.value.diagnostics]
    return [d.message for d in info.value.diagnostics]


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_the_unmutated_renderers_pass(spec_file: Path, backend: str) -> None:
    result = compile_to_file(spec_file, backend, spec_file.parent / "out")
    assert result.counts is not None and result.path.exists()


# -- Keras mutants: the renderer's layer arguments (keras_backend's own keras_layer) ------------
def _keras_mutant(
    monkeypatch: pytest.MonkeyPatch, op: str, change: Callable[[list[Any]], list[Any]]
) -> None:
    real = keras_backend.keras_layer

    def mutated(name: str, attrs: Any) -> KerasLayer:
        layer = real(name, attrs)
        if name != op:
            return layer
        args = layer.args
        return KerasLayer(layer.cls, lambda a: change(args(a)), layer.regularizes)

    monkeypatch.setattr(keras_backend, "keras_layer", mutated)


def _replace(keyword: str | None, value: str) -> Callable[[list[Any]], list[Any]]:
    return lambda pairs: [(kw, value if kw == keyword else src) for kw, src in pairs]


@pytest.mark.parametrize(
    ("op", "change", "expected"),
    [
        (
            "batch_norm",
            _replace("momentum", "0.99"),
            "layer 'bn' has momentum=0.99, the IR says 0.9",
        ),
        ("dropout", lambda pairs: [(None, "0.5")], "layer 'drop' has rate=0.5, the IR says 0.25"),
        (
            "conv2d",
            _replace("activation", "'linear'"),
            "layer 'c1' has activation='linear', the IR says 'relu'",
        ),
        ("activation", lambda pairs: [(None, "'gelu'")], "layer 'act' has activation='gelu'"),
    ],
    ids=["constant", "rate", "fused activation", "activation"],
)
def test_keras_renderer_mutants_are_caught_by_compile(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch, op: str, change: Any, expected: str
) -> None:
    _keras_mutant(monkeypatch, op, change)
    messages = compile_error(spec_file, "keras")
    assert any(m.startswith(expected) for m in messages), messages


def _always(real: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A renderer that loses every `when`: each step runs unconditionally."""
    return lambda steps: [(None, [step]) for _, run in real(steps) for step in run]


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_dropped_when_is_caught_by_compile(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    renderer = keras_backend if backend == "keras" else torch_render
    monkeypatch.setattr(renderer, "runs", _always(renderer.runs))
    messages = compile_error(spec_file, backend)
    assert any("'drop_deep'" in m and "the IR does not" in m for m in messages), messages


def test_an_extra_keras_layer_is_caught_by_compile(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = keras_backend._Function.op

    def op(self: Any, step: Any) -> None:
        real(self, step)
        if step.name == "act":
            self.out('x = layers.Activation("linear", name="extra")(x)')

    monkeypatch.setattr(keras_backend._Function, "op", op)
    messages = compile_error(spec_file, "keras")
    assert messages == ["the Keras model has a layer the IR does not: 'extra' (Activation)"]


# -- PyTorch mutants: the op emitters' module source (TORCH_OPS) ------------------------------
def _torch_mutant(monkeypatch: pytest.MonkeyPatch, op: str, module: Callable[[Any], str]) -> None:
    monkeypatch.setitem(torch_ops.TORCH_OPS, op, replace(torch_ops.TORCH_OPS[op], module=module))


@pytest.mark.parametrize(
    ("op", "module", "expected"),
    [
        (
            "batch_norm",
            lambda c: f"{c.helper('KerasBatchNorm')}({c.shape}[-1], eps=0.01, momentum=0.01)",
            "module 'bn' has momentum=0.99, the IR says 0.9",
        ),
        (
            "batch_norm",
            lambda c: f"{c.helper('KerasBatchNorm')}({c.shape}[-1], eps=0.001, momentum=0.1)",
            "module 'bn' has epsilon=0.001, the IR says 0.01",
        ),
        ("dropout", lambda c: "nn.Dropout(0.5)", "module 'drop' has rate=0.5, the IR says 0.25"),
        ("dense", lambda c: f"nn.Linear({c.shape}[-1], 3, bias=False)", None),
        ("activation", lambda c: "nn.ReLU()", "module 'act' is a ReLU, but the IR's activation"),
    ],
    ids=["momentum", "epsilon", "rate", "bias", "module for a function"],
)
def test_torch_renderer_mutants_are_caught_by_compile(
    spec_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    op: str,
    module: Callable[[Any], str],
    expected: str | None,
) -> None:
    _torch_mutant(monkeypatch, op, module)
    if expected is None:  # fewer weights: the counts see it first (E091)
        with pytest.raises(SpecError) as info:
            compile_to_file(spec_file, "torch", spec_file.parent / "out")
        assert {d.code for d in info.value.diagnostics} == {"E091"}
        return
    messages = compile_error(spec_file, "torch")
    assert any(m.startswith(expected) for m in messages), messages


def test_an_untagged_torch_module_is_caught(spec_file: Path) -> None:
    """A module that is no Keras layer (here an nn.ReLU added after the build) is an error."""
    import torch.nn as nn

    compiled = compile_spec(str(spec_file))
    model = torch_backend.build(compiled)
    conform.check("torch", compiled, model)
    model.extra = nn.ReLU()
    with pytest.raises(conform.ConformanceError) as info:
        conform.check("torch", compiled, model)
    assert [d.message for d in info.value.diagnostics] == [
        "the PyTorch model has a module the IR does not: 'extra' (ReLU)"
    ]


def test_a_frozen_module_the_ir_trains_is_caught(spec_file: Path) -> None:
    compiled = compile_spec(str(spec_file))
    model = torch_backend.build(compiled)
    model.get_submodule(model.keras_layers["c1"]).requires_grad_(False)
    with pytest.raises(conform.ConformanceError) as info:
        conform.check("torch", compiled, model)
    assert [d.message for d in info.value.diagnostics] == [
        "module 'c1' is frozen, the IR says trainable"
    ]


def test_same_compares_values_not_representations() -> None:
    assert conform.same((3, 3), [3, 3])
    assert conform.same(0.9, 0.8999999761581421)  # float32's 0.9
    assert not conform.same(0.9, 0.99)
    assert not conform.same(True, 1)
    assert not conform.same((1, 2), (1, 2, 3))


# -- PyTorch: what forward computes without a module -------------------------------------------
FORWARD_SPEC = """\
archc: 1
name: forward_case
params:
  deep: {type: bool, default: false}
inputs:
  - {name: image, shape: [9, 7, 3]}
layers:
  - {op: conv2d, name: c1, filters: 4, kernel: 3, activation: relu}
  - {op: activation, name: act_deep, fn: tanh, when: "${deep}"}
  - {op: batch_norm, name: bn}
  - {op: activation, name: act, fn: gelu}
  - {op: rescaling, name: scale, scale: 0.5, offset: 0.25}
  - {op: conv2d, name: c2, filters: 2, kernel: 1}
  - {op: global_avg_pool2d, name: gap}
  - {op: dense, name: out, units: 3, activation: softmax}
"""


@pytest.fixture
def forward_file(tmp_path: Path) -> Path:
    path = tmp_path / "forward_case.yaml"
    path.write_text(FORWARD_SPEC)
    return path


def test_the_forward_read_back_passes_the_real_renderer(forward_file: Path) -> None:
    compile_to_file(forward_file, "torch", forward_file.parent / "out")


def _activation_mutant(monkeypatch: pytest.MonkeyPatch, fn: str, rule: str) -> None:
    monkeypatch.setitem(torch_ops.ACTIVATIONS, fn, rule)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda mp: _activation_mutant(mp, "relu", "F.gelu({x})"),
            "the input of module 'bn' is not 'c1' (relu) applied to the output of module 'c1'",
        ),
        (
            lambda mp: _activation_mutant(mp, "gelu", 'F.gelu({x}, approximate="tanh")'),
            "the input of module 'c2' is not 'act' (gelu) then 'scale' (x * 0.5 + 0.25) applied",
        ),
        (
            lambda mp: _activation_mutant(mp, "softmax", "F.softmax({x}, dim=0)"),
            "the model's output 'out' is not 'out' (softmax) applied to the output of module 'out'",
        ),
        (
            lambda mp: _torch_mutant_forward(mp, "rescaling", lambda c, xs, m: f"{xs[0]} * 0.5"),
            "the input of module 'c2' is not 'act' (gelu) then 'scale' (x * 0.5 + 0.25) applied",
        ),
        (
            lambda mp: mp.setattr(torch_render, "runs", _always(torch_render.runs)),
            "the input of module 'bn' is not 'c1' (relu) applied to the output of module 'c1'",
        ),
    ],
    ids=["fused activation", "gelu approximated", "softmax axis", "rescaling offset", "when"],
)
def test_torch_forward_mutants_are_caught_by_compile(
    forward_file: Path, monkeypatch: pytest.MonkeyPatch, mutate: Any, expected: str
) -> None:
    """An activation, a constant or a dropped `when` in PyTorch's forward, where no module
    is: counts, shapes and module attributes are unchanged; compile reads the values back."""
    mutate(monkeypatch)
    messages = compile_error(forward_file, "torch")
    assert any(m.startswith(expected) for m in messages), messages


def _torch_mutant_forward(
    monkeypatch: pytest.MonkeyPatch, op: str, forward: Callable[[Any, list[str], str], str]
) -> None:
    monkeypatch.setitem(torch_ops.TORCH_OPS, op, replace(torch_ops.TORCH_OPS[op], forward=forward))


@pytest.mark.parametrize(
    ("fn", "x", "want"),
    [  # Keras' definitions, evaluated by hand at a few points
        ("relu6", [-1.0, 3.0, 7.0], [0.0, 3.0, 6.0]),
        ("hard_sigmoid", [-4.0, 0.0, 4.0], [0.0, 0.5, 1.0]),
        ("hard_swish", [-4.0, 0.0, 1.0], [0.0, 0.0, 4.0 / 6.0]),
        ("leaky_relu", [-1.0, 2.0], [-0.2, 2.0]),
        ("gelu", [0.0, 1.0], [0.0, 0.8413447460685429]),  # x * Phi(x)
        ("elu", [-1.0, 1.0], [math.expm1(-1.0), 1.0]),
    ],
)
def test_the_numpy_activations_are_keras_formulas(fn: str, x: list[float], want: list[float]):
    import numpy as np

    got = conform.activate(fn, np.array(x))
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_every_op_that_makes_a_module_says_how_it_reads_back() -> None:
    """A module of an op without `reads` would be refused as 'makes no module' by every
    compile; ops without modules must not declare one (nothing would read it)."""
    from archc.backends.torch.ops import TORCH_OPS

    for name, op in TORCH_OPS.items():
        assert (op.module is None) == (op.reads is None), name
