"""compile's output-shape check (E094): Keras reads the shapes its symbolic build knows,
without running the model on values (an eager forward pass at full resolution cost Keras
more time and memory than the build); PyTorch runs the model once at batch 1 (where the
sizes are known, the read-back's run in backends/proof/conform.py gives them). The expected shapes
come from the frameworks' own layers (a Dense or Linear of 3 units outputs 3 features,
whatever the spec says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import pytest
import tensorflow as tf
from torch import nn

from archc.backends import compile as compile_mod
from archc.backends.compile import VerificationError, compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from archc.compiler.ir import Graph

SPEC = """archc: 1
name: four_to_five
inputs: [{name: x, shape: [6, 6, 4]}]
layers:
  - {op: conv2d, filters: 2, kernel: 3, name: c}
  - {op: flatten}
  - {op: dense, units: 5, name: d}
"""
IMAGE_SPEC = """archc: 1
name: image_to_image
inputs: [{name: x, shape: [null, null, 4]}]
layers:
  - {op: conv2d, filters: 2, kernel: 3, name: c}
"""


def graph_of(text: str, tmp_path: Path) -> Graph:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    return compile_spec(str(spec)).graph


class Spy(keras.layers.Layer):
    """Records whether each call ran on values (eagerly) or symbolically."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eager: list[bool] = []

    def call(self, x: Any) -> Any:
        self.eager.append(tf.executing_eagerly())
        return x


def test_keras_output_shapes_are_the_symbolic_build_s(tmp_path: Path) -> None:
    graph = graph_of(SPEC, tmp_path)
    spy = Spy()
    x = keras.Input((6, 6, 4))
    y = keras.layers.Dense(3)(keras.layers.Flatten()(spy(x)))
    model = keras.Model(x, y)
    spy.eager.clear()
    assert keras_backend.output_shapes(model, graph) == [(3,)]  # Dense(3), not the IR's 5
    assert True not in spy.eager


def test_keras_output_shapes_at_the_probe_size_when_sizes_are_unknown(tmp_path: Path) -> None:
    # a model built for any size: its outputs are measured at the size compile probes
    (probe,) = compile_mod.sizes.runs(compile_spec(_write(tmp_path, IMAGE_SPEC)), count=1)
    h, w, _ = probe.graph.node(probe.graph.inputs[0]).shape or ()
    spy = Spy()
    x = keras.Input((None, None, 4))
    model = keras.Model(x, keras.layers.Conv2D(7, 3)(spy(x)))
    spy.eager.clear()
    shapes = keras_backend.output_shapes(model, probe.graph)
    assert shapes == [(h - 2, w - 2, 7)]  # a valid 3x3 convolution of 7 filters
    assert True not in spy.eager


def test_torch_output_shapes_are_the_model_s(tmp_path: Path) -> None:
    # PyTorch runs the model once at batch 1 (eagerly: its meta device costs a second and
    # more of imports on first use, more than the forward pass of the specs in specs/)
    graph = graph_of(SPEC, tmp_path)
    model = nn.Sequential(nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(32, 3))
    assert torch_backend.output_shapes(model, graph) == [(3,)]  # Linear(32, 3), not 5


def test_torch_output_shapes_are_channels_last(tmp_path: Path) -> None:
    graph = graph_of(SPEC, tmp_path)
    model = nn.Conv2d(4, 9, 3, padding=1)
    assert torch_backend.output_shapes(model, graph) == [(6, 6, 9)]


def _one_more(real: Any) -> Any:
    def one_more(model: Any, graph: Graph) -> list[tuple[int, ...]] | None:
        shapes = real(model, graph)
        return None if shapes is None else [(*s[:-1], s[-1] + 1) for s in shapes]

    return one_more


@pytest.mark.parametrize(
    ("backend", "text"), [("keras", SPEC), ("torch", SPEC), ("torch", IMAGE_SPEC)]
)
def test_compile_refuses_outputs_of_another_shape(
    backend: str, text: str, tmp_path: Path, monkeypatch: Any
) -> None:
    # the generated model is right today; a model with the IR's counts but another output
    # shape is simulated by the shapes the backend reads (PyTorch: those of the read-back's
    # run where the sizes are known, else of its own run at the probe's size)
    mod = compile_mod.backend(backend)
    real = mod.module.output_shapes  # type: ignore[attr-defined]
    monkeypatch.setattr(mod.module, "output_shapes", _one_more(real))  # type: ignore[attr-defined]
    ran = compile_mod.conform.forward_output_shapes
    monkeypatch.setattr(compile_mod.conform, "forward_output_shapes", _one_more(ran))
    spec = Path(_write(tmp_path, text))
    with pytest.raises(VerificationError) as info:
        compile_to_file(spec, backend, tmp_path / "out")
    assert info.value.diagnostics[0].code == "E094"
    if text == SPEC:
        assert "[(6,)]" in info.value.diagnostics[0].message  # what the model computes, 5 + 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_compile_runs_a_torch_model_once(tmp_path: Path, monkeypatch: Any) -> None:
    # the read-back (conform) runs the model on the IR's input shapes; its outputs' shapes
    # are the ones compile checks, not those of a second forward pass
    calls: list[tuple[int, ...]] = []
    real = compile_mod.build_within_memory

    def counted(*args: Any, **kwargs: Any) -> Any:
        model, short = real(*args, **kwargs)
        model.register_forward_hook(lambda m, ins, out: calls.append(tuple(out.shape)))
        return model, short

    monkeypatch.setattr(compile_mod, "build_within_memory", counted)
    compile_to_file(Path(_write(tmp_path, SPEC)), "torch", tmp_path / "out")
    assert calls == [(1, 5)]  # batch 1, the dense layer's 5 units


def _write(tmp_path: Path, text: str) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    return str(spec)


def test_the_read_back_runs_on_one_thread_and_restores_the_count(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # at batch 1 PyTorch's worker threads cost more CPU than the pass itself where the cores
    # are busy: the read-back runs on one, and gives the caller's setting back
    import torch

    seen: list[int] = []
    real = compile_mod.build_within_memory

    def spied(*args: Any, **kwargs: Any) -> Any:
        model, short = real(*args, **kwargs)
        model.register_forward_hook(lambda m, ins, out: seen.append(torch.get_num_threads()))
        return model, short

    monkeypatch.setattr(compile_mod, "build_within_memory", spied)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        compile_to_file(Path(_write(tmp_path, SPEC)), "torch", tmp_path / "out")
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _Recorded(np.ndarray):
    """An array that records the numpy functions (ufuncs) applied to it."""

    applied: ClassVar[list[str]] = []

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _Recorded.applied.append(ufunc.__name__)
        plain = [x.view(np.ndarray) if isinstance(x, _Recorded) else x for x in inputs]
        return getattr(ufunc, method)(*plain, **kwargs)


@pytest.mark.parametrize(("fn", "ufuncs"), [("relu", {"maximum"}), ("tanh", {"tanh"})])
def test_the_read_back_computes_only_the_activation_it_checks(fn: str, ufuncs: set[str]) -> None:
    # the read-back applies an activation to every module output it compares: the formulas
    # of the others (a softplus, a clip over the whole tensor) are not computed too
    x = np.linspace(-3.0, 3.0, 7).view(_Recorded)
    _Recorded.applied = []
    got = compile_mod.conform.activate(fn, x)
    assert set(_Recorded.applied) == ufuncs
    want = {
        "relu": np.maximum(np.linspace(-3.0, 3.0, 7), 0.0),
        "tanh": np.tanh(np.linspace(-3.0, 3.0, 7)),
    }
    np.testing.assert_array_equal(np.asarray(got), want[fn])
