"""`add` with `scales`: one layer computing inputs[0] * s0 + inputs[1] * s1 + ..., left to right.

keras.applications' InceptionResNetV2 adds each residual branch with one layer,
`CustomScaleLayer(scale)([x, up])`, which computes `inputs[0] + inputs[1] * scale`. archc's
`add` with `scales: [1, scale]` must compute exactly that in both backends: the Keras model
(the generated file's ScaledAdd) and the PyTorch model (`x + up * scale`) are compared here
with Keras' own CustomScaleLayer bit for bit, and with numpy's float32 arithmetic where the
inputs broadcast. Mutants that break the rule (the coefficient on the wrong input, x * (1 + s),
the coefficient left out, another float order) must fail these comparisons or `verify`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from archc.backends import codegen
from archc.backends.compile import VerificationError
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.verify import channels_first, channels_last, verify
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import ops as torch_ops
from archc.compiler.api import Compiled, compile_spec
from tests.backends.test_verify import randn, tiny

Spec = Callable[..., Compiled]
RESIDUAL = "- {op: add, name: residual, inputs: [x, y], scales: [1, 0.17]}"


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    """Write a tiny spec (input x, and y when given) to a file and compile it."""

    def make(shape: list[int], layers: str, y: list[int] | None = None) -> Compiled:
        path = tmp_path / "tiny.yaml"
        path.write_text(tiny(shape, layers, y=y), encoding="utf-8")
        return compile_spec(path)

    return make


def outputs(compiled: Compiled, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The model output (channels-last) of the generated Keras and PyTorch models."""
    import keras

    km, tm = keras_backend.build(compiled), torch_backend.build(compiled)
    k_out = keras.ops.convert_to_numpy(km(xs if len(xs) > 1 else xs[0], training=False))
    tm.eval()
    with torch.no_grad():
        t_out = tm(*(torch.from_numpy(channels_first(x).copy()) for x in xs)).numpy()
    return k_out, channels_last(t_out)


def custom_scale_layer(x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    """keras.applications' own layer (keras.src.applications.inception_resnet_v2)."""
    import keras
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    return keras.ops.convert_to_numpy(CustomScaleLayer(scale)([x, y]))


# -- against keras.applications' CustomScaleLayer, bit for bit ------------------------------------
@pytest.mark.parametrize("scale", [0.17, 0.1, 0.2, 1.0])  # InceptionResNetV2's (1.0: the last)
def test_scales_one_and_s_is_keras_applications_custom_scale_layer(
    spec: Spec, scale: float
) -> None:
    compiled = spec(
        [5, 7, 4],
        f"- {{op: add, name: residual, inputs: [x, y], scales: [1, {scale}]}}",
        y=[5, 7, 4],
    )
    x, y = randn(3, 5, 7, 4), randn(3, 5, 7, 4, seed=2) * 10.0
    want = custom_scale_layer(x, y, scale)
    k_out, t_out = outputs(compiled, [x, y])
    np.testing.assert_array_equal(k_out, want)  # the same float32 operations: no tolerance
    np.testing.assert_array_equal(t_out, want)
    if scale != 1.0:  # the comparison can tell: a plain sum is far off
        assert np.max(np.abs(want - (x + y))) > 1.0


def test_the_layer_is_one_keras_layer_named_as_the_spec_names_it(spec: Spec) -> None:
    compiled = spec([5, 7, 4], RESIDUAL, y=[5, 7, 4])
    model = keras_backend.build(compiled)
    names = [layer.name for layer in model.layers]
    assert names == ["x", "y", "residual"]
    assert type(model.get_layer("residual")).__name__ == "ScaledAdd"
    assert model.get_layer("residual").get_config()["scales"] == [1.0, 0.17]
    assert compiled.graph.node("residual").weights == ()


def test_generated_source_reads_like_the_formula(spec: Spec) -> None:
    compiled = spec([5, 7, 4], RESIDUAL, y=[5, 7, 4])
    keras_src, torch_src = keras_backend.render(compiled), torch_backend.render(compiled)
    assert 'ScaledAdd(scales=(1, 0.17), name="residual")([x_, y])' in keras_src
    assert "class ScaledAdd(keras.layers.Layer):" in keras_src
    assert "x_ + y * 0.17" in torch_src


def test_plain_add_is_keras_add(spec: Spec) -> None:
    compiled = spec([5, 7, 4], "- {op: add, name: plain, inputs: [x, y]}", y=[5, 7, 4])
    source = keras_backend.render(compiled)
    assert 'layers.Add(name="plain")([x_, y])' in source and "ScaledAdd" not in source
    assert "x_ + y\n" in torch_backend.render(compiled)


# -- broadcasting and more inputs, against numpy's float32 arithmetic ------------------------------
BROADCASTS = {  # second input's shape against a (5, 7, 4) image
    "gate": [1, 1, 4],
    "vector": [4],
    "column": [7, 4],
}


@pytest.mark.parametrize("case", sorted(BROADCASTS))
def test_scaled_add_broadcasts_as_keras_add(spec: Spec, case: str) -> None:
    shape = BROADCASTS[case]
    layers = "- {op: add, name: mix, inputs: [y, x], scales: [-2.5, 0.5]}"
    compiled = spec([5, 7, 4], layers, y=shape)
    assert compiled.graph.node("mix").shape == (5, 7, 4)
    x, y = randn(2, 5, 7, 4), randn(2, *shape, seed=3)
    aligned = y.reshape(2, *[1] * (3 - len(shape)), *shape)  # on the right, batch first
    want = aligned * np.float32(-2.5) + x * np.float32(0.5)
    k_out, t_out = outputs(compiled, [x, y])
    np.testing.assert_array_equal(k_out, want)
    np.testing.assert_array_equal(t_out, want)
    verify(compiled)


def test_three_inputs_sum_left_to_right_and_verify(spec: Spec) -> None:
    layers = """
    - {op: conv2d, name: a, filters: 4, kernel: 1, inputs: x}
    - {op: conv2d, name: b, filters: 4, kernel: 3, padding: same, inputs: x}
    - {op: add, name: three, inputs: [a, x, b], scales: [0.3, 1, -1.7]}
    """
    compiled = spec([5, 7, 4], layers)
    assert compiled.graph.node("three").flops == 5 * 7 * 4 * (2 + 2)
    report = verify(compiled)
    assert report.layers_checked >= 3


def test_computed_scales_in_a_block(spec: Spec, tmp_path: Path) -> None:
    """A coefficient from a block argument: Keras passes it to ScaledAdd, the PyTorch
    constructor keeps the list and forward reads the computed entry (1 is not multiplied)."""
    text = """\
archc: 1
name: blocky
params:
  s: {type: float, default: 0.3}
inputs:
  - {name: x, shape: [5, 7, 4]}
blocks:
  res:
    args:
      scale: {type: float}
    body:
      - {op: conv2d, name: "up${int(scale * 10)}", filters: 4, kernel: 1}
      - {op: add, name: "sum${int(scale * 10)}", inputs: [input, prev], scales: [1, "${scale}"]}
layers:
  - {block: res, args: {scale: "${s}"}}
  - {block: res, args: {scale: 0.5}}
"""
    path = tmp_path / "blocky.yaml"
    path.write_text(text, encoding="utf-8")
    compiled = compile_spec(path)
    assert [n.attrs.scales for n in compiled.graph.nodes if n.op == "add"] == [
        (1.0, 0.3),
        (1.0, 0.5),
    ]
    keras_src, torch_src = keras_backend.render(compiled), torch_backend.render(compiled)
    assert "ScaledAdd(scales=(1, scale)" in keras_src
    assert "inputs + x * self." in torch_src and "_scales[1]" in torch_src
    verify(compiled)


@pytest.mark.parametrize("plain", [True, False])
def test_a_computed_list_of_scales_may_come_out_none(tmp_path: Path, plain: bool) -> None:
    """`scales: ${...}` as a whole: a list, or None (a plain sum), decided when built."""
    text = tiny(
        [5, 7, 4],
        '- {op: add, name: s, inputs: [x, y], scales: "${None if plain else [2, 0.5]}"}',
        y=[5, 7, 4],
    )
    text = text.replace("inputs:", "params:\n  plain: {type: bool, default: true}\ninputs:", 1)
    path = tmp_path / "computed.yaml"
    path.write_text(text, encoding="utf-8")
    compiled = compile_spec(path, {"plain": plain})
    assert compiled.graph.node("s").attrs.scales == (None if plain else (2.0, 0.5))
    x, y = randn(2, 5, 7, 4), randn(2, 5, 7, 4, seed=2)
    want = x + y if plain else x * np.float32(2) + y * np.float32(0.5)
    k_out, t_out = outputs(compiled, [x, y])
    np.testing.assert_array_equal(k_out, want)
    np.testing.assert_array_equal(t_out, want)


def test_saved_keras_model_reloads_with_its_scales(spec: Spec, tmp_path: Path) -> None:
    import keras

    compiled = spec([5, 7, 4], RESIDUAL, y=[5, 7, 4])
    model = keras_backend.build(compiled)
    path = tmp_path / "scaled.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert type(again.get_layer("residual")).__name__ == "ScaledAdd"
    x, y = randn(2, 5, 7, 4), randn(2, 5, 7, 4, seed=2)
    np.testing.assert_array_equal(np.asarray(again([x, y])), np.asarray(model([x, y])))


# -- mutants: each breaks the rule in one backend and must be caught -------------------------------
def _torch_forward(terms: Callable[[list[str]], str]) -> Callable[[pytest.MonkeyPatch], None]:
    def apply(mp: pytest.MonkeyPatch) -> None:
        add = torch_ops.TORCH_OPS["add"]
        mp.setitem(torch_ops.TORCH_OPS, "add", replace(add, forward=lambda c, xs, m: terms(xs)))

    return apply


TORCH_MUTANTS = {  # the spec's scales are [1, 0.17]
    "scale-on-the-first-input": _torch_forward(lambda xs: f"{xs[0]} * 0.17 + {xs[1]}"),
    "one-plus-scale": _torch_forward(lambda xs: f"{xs[0]} + {xs[1]} * (1 + 0.17)"),
    "scales-ignored": _torch_forward(lambda xs: f"{xs[0]} + {xs[1]}"),
}


@pytest.mark.parametrize("mutant", sorted(TORCH_MUTANTS))
def test_a_broken_pytorch_lowering_is_caught_by_verify_and_the_reference(
    spec: Spec, mutant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    layers = "- {op: conv2d, name: up, filters: 4, kernel: 1}\n" + RESIDUAL.replace("y]", "up]")
    compiled = spec([5, 7, 4], layers)
    verify(compiled)  # the real lowering passes ...
    TORCH_MUTANTS[mutant](monkeypatch)
    with pytest.raises(VerificationError) as info:  # ... the mutant does not
        verify(compiled)
    (diag,) = info.value.diagnostics
    assert diag.code == "E110" and "'residual'" in diag.message + diag.hint


@pytest.fixture
def keras_mutant(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Replace a line of the ScaledAdd source that generated Keras files carry."""
    original = codegen.helper_source

    def apply(old: str, new: str) -> None:
        def mutated(name: str, modules: tuple[str, ...] = codegen.HELPER_MODULES) -> str:
            source = original(name, modules)
            if name == "ScaledAdd":
                assert old in source
                source = source.replace(old, new)
            return source

        monkeypatch.setattr(keras_backend, "helper_source", mutated)

    yield apply


KERAS_MUTANTS = {
    "scale-on-the-first-input": (
        "for x, scale in zip(inputs, scales, strict=True):",
        "for x, scale in zip(inputs, scales[::-1], strict=True):",
    ),
    "one-plus-scale": ("x * scale", "x * (1.0 + scale)"),
    # the same value in exact arithmetic, another float order: only a bitwise check sees it
    "another-float-order": (
        "total = term if total is None else total + term",
        "total = term if total is None else (total / scale + x) * scale",
    ),
}


@pytest.mark.parametrize("mutant", sorted(KERAS_MUTANTS))
def test_a_broken_keras_layer_is_caught_by_the_reference(
    spec: Spec, mutant: str, keras_mutant: Callable[[str, str], None]
) -> None:
    import keras

    compiled = spec([5, 7, 4], RESIDUAL, y=[5, 7, 4])
    x, y = randn(3, 5, 7, 4), randn(3, 5, 7, 4, seed=2) * 10.0
    want = custom_scale_layer(x, y, 0.17)
    keras_mutant(*KERAS_MUTANTS[mutant])
    model = keras_backend.build(compiled)
    got = keras.ops.convert_to_numpy(model([x, y], training=False))
    assert not np.array_equal(got, want)
    if mutant != "another-float-order":  # a rule broken, not just rounding: verify sees it
        with pytest.raises(VerificationError):
            verify(compiled)
