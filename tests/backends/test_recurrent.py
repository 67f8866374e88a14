"""lstm, gru and simple_rnn against the frameworks' own layers.

References, none of them archc's: Keras' LSTM, GRU, SimpleRNN and Bidirectional layers built
here (not from archc's generated code), with random weights; and torch.nn.LSTM, nn.GRU and
nn.RNN with those weights mapped by the gate orders written out in this file (Keras' LSTM
i, f, c, o is PyTorch's i, f, g, o; Keras' GRU z, r, h is PyTorch's r, z, n; Keras' one LSTM
bias is PyTorch's input bias, its recurrent bias zero; the GRU's (2, 3u) bias is PyTorch's
input and recurrent biases). archc's PyTorch model, with the Keras weights moved in by its
bindings, must compute the Keras layer's numbers and hold nn's parameters.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import torch
from torch import nn

from archc.backends.proof.train_check import verify_training
from archc.backends.proof.transfer import keras_to_torch
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.load import loads
from tests.conftest import SPECS

STEPS, CHANNELS, UNITS, BATCH = 6, 4, 3, 2
# Keras block -> PyTorch block order, per layer (PyTorch's blocks as Keras' block numbers)
TORCH_GATES = {"lstm": [0, 1, 2, 3], "gru": [1, 0, 2], "simple_rnn": [0]}
KERAS_CLASS = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "simple_rnn": keras.layers.SimpleRNN,
}
NN_CLASS = {"lstm": nn.LSTM, "gru": nn.GRU, "simple_rnn": nn.RNN}

CONFIGS = [
    ("lstm", {}),
    ("lstm", {"return_sequences": True, "bidirectional": True}),
    ("lstm", {"bidirectional": True, "merge_mode": "sum", "use_bias": False}),
    ("gru", {}),
    ("gru", {"return_sequences": True, "bidirectional": True}),
    ("gru", {"bidirectional": True, "merge_mode": "ave"}),
    ("simple_rnn", {"return_sequences": True}),
    ("simple_rnn", {"bidirectional": True, "merge_mode": "mul", "activation": "relu"}),
]


def spec(op: str, attrs: dict[str, Any]) -> Compiled:
    items = ", ".join(
        f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in attrs.items()
    )
    text = f"""\
    archc: 1
    name: rnn_{op}
    inputs:
      - {{name: x, shape: [{STEPS}, {CHANNELS}]}}
    layers:
      - {{op: {op}, name: rnn, units: {UNITS}{", " if items else ""}{items}}}
    """
    return compile_spec(loads(textwrap.dedent(text), "rnn.yaml"))


def keras_model(op: str, attrs: dict[str, Any], seed: int) -> keras.Model:
    """The Keras layer itself (keras.layers, not archc's code) with random weights."""
    args = {k: v for k, v in attrs.items() if k not in ("bidirectional", "merge_mode")}
    layer = KERAS_CLASS[op](UNITS, **args)
    if attrs.get("bidirectional"):
        layer = keras.layers.Bidirectional(layer, merge_mode=attrs.get("merge_mode", "concat"))
    x = keras.Input((STEPS, CHANNELS))
    layer.name = "rnn"  # type: ignore[misc]
    model = keras.Model(x, layer(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.weights])
    return model


def nn_reference(op: str, attrs: dict[str, Any], weights: list[np.ndarray]) -> nn.Module:
    """nn.LSTM / nn.GRU / nn.RNN holding the Keras weights, mapped by the gate orders above."""
    bi, bias = bool(attrs.get("bidirectional")), attrs.get("use_bias", True)
    kwargs = {"nonlinearity": attrs.get("activation", "tanh")} if op == "simple_rnn" else {}
    ref = NN_CLASS[op](CHANNELS, UNITS, batch_first=True, bidirectional=bi, bias=bias, **kwargs)
    per_direction = 3 if bias else 2
    order = TORCH_GATES[op]

    def blocks(a: np.ndarray) -> np.ndarray:  # Keras' blocks (last axis) in PyTorch's order
        parts = np.split(a, len(order), axis=-1)
        return np.concatenate([parts[i] for i in order], axis=-1)

    state = {}
    for d, suffix in enumerate(["_l0", "_l0_reverse"][: 1 + bi]):
        kernel, recurrent, *b = weights[d * per_direction : (d + 1) * per_direction]
        state[f"weight_ih{suffix}"] = blocks(kernel).T
        state[f"weight_hh{suffix}"] = blocks(recurrent).T
        if b and op == "gru":
            state[f"bias_ih{suffix}"], state[f"bias_hh{suffix}"] = blocks(b[0][0]), blocks(b[0][1])
        elif b:
            state[f"bias_ih{suffix}"] = blocks(b[0])
            state[f"bias_hh{suffix}"] = np.zeros_like(b[0])
    ref.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    return ref


def nn_output(ref: nn.Module, attrs: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    y, h = ref(x)
    if isinstance(h, tuple):
        h = h[0]  # the LSTM's (h, c)
    if not attrs.get("return_sequences"):  # each direction's final state
        y = h.transpose(0, 1).flatten(1)
    mode = attrs.get("merge_mode", "concat")
    if not attrs.get("bidirectional") or mode == "concat":
        return y
    forward, backward = y.split(UNITS, dim=-1)
    return {"sum": forward + backward, "mul": forward * backward, "ave": (forward + backward) / 2}[
        mode
    ]


def close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize(("op", "attrs"), CONFIGS, ids=lambda v: str(v))
def test_keras_layer_nn_reference_and_generated_model_agree(op: str, attrs: dict[str, Any]) -> None:
    compiled = spec(op, attrs)
    km = keras_model(op, attrs, seed=len(str(attrs)))
    x = np.random.default_rng(1).normal(size=(BATCH, STEPS, CHANNELS)).astype("float32")
    want = np.asarray(km(x))

    ref = nn_reference(op, attrs, [np.asarray(w) for w in km.get_weights()])
    with torch.no_grad():
        reference = nn_output(ref, attrs, torch.from_numpy(x)).numpy()
    close(reference, want)  # the mapping written out here is right ...

    tm = torch_backend.build(compiled).eval()
    assert keras_to_torch(km, tm, compiled.graph) == len(km.get_weights())
    with torch.no_grad():
        got = tm(torch.from_numpy(x)).numpy()
    close(got, want)  # ... and archc's bindings move the weights as it does
    module = tm.get_submodule(tm.keras_layers["rnn"])
    params = dict(module.named_parameters())
    for name, value in ref.named_parameters():
        if name.startswith("bias_hh") and op != "gru":  # archc keeps the sum (hh is zero)
            continue
        if name.startswith("bias_") and op == "gru":  # archc's is (2, 3u): ih, then hh
            row = 0 if name.startswith("bias_ih") else 1
            held = params[name.replace("bias_ih", "bias").replace("bias_hh", "bias")][row]
        else:
            held = params[name.replace("bias_ih", "bias")]
        torch.testing.assert_close(held, value, rtol=0, atol=0)


@pytest.mark.parametrize("op", sorted(TORCH_GATES))
def test_counts_are_keras_formula_and_pytorch_holds_no_more(op: str) -> None:
    """gates * (in * u + u * u + biases * u) per direction, Keras' count: PyTorch's nn
    layers hold two bias vectors, archc's module one (the GRU's two, as Keras)."""
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[op]
    biases = 2 if op == "gru" else 1
    one = gates * (CHANNELS * UNITS + UNITS * UNITS + biases * UNITS)
    compiled = spec(op, {"bidirectional": True})
    assert compiled.graph.counts.total == 2 * one
    km = keras_model(op, {"bidirectional": True}, seed=0)
    assert km.count_params() == 2 * one
    tm = torch_backend.build(compiled)
    assert sum(p.numel() for p in tm.parameters()) == 2 * one
    assert not list(tm.buffers())


@pytest.mark.parametrize("op", sorted(TORCH_GATES))
def test_initial_values_follow_keras(op: str) -> None:
    """Glorot-uniform input kernels (Keras' fans: in and gates * u), orthogonal recurrent
    kernels (Keras' (u, gates * u) matrix has orthonormal rows), zero biases but the LSTM's
    forget gate (ones, Keras' unit_forget_bias): in Keras' own layer and in archc's module."""
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[op]
    units, cin = 8, 16
    layer = KERAS_CLASS[op](units)
    layer.build((None, 5, cin))
    kernel, recurrent, bias = (np.asarray(w) for w in layer.get_weights())
    torch.manual_seed(0)
    text = f"""\
    archc: 1
    name: init
    inputs:
      - {{name: x, shape: [5, {cin}]}}
    layers:
      - {{op: {op}, name: rnn, units: {units}}}
    """
    model = torch_backend.build(compile_spec(loads(textwrap.dedent(text), "init.yaml")))
    module = model.get_submodule(model.keras_layers["rnn"])
    limit = np.sqrt(6 / (cin + gates * units))
    pt = {k: v.detach().numpy() for k, v in module.named_parameters()}
    for k_kernel, k_recurrent in (
        (kernel, recurrent),
        (pt["weight_ih_l0"].T, pt["weight_hh_l0"].T),
    ):
        assert np.abs(k_kernel).max() <= limit and np.abs(k_kernel).max() > 0.8 * limit
        np.testing.assert_allclose(k_recurrent @ k_recurrent.T, np.eye(units), atol=1e-5)
    expected_bias = np.zeros(bias.shape, "float32")
    if op == "lstm":
        expected_bias[units : 2 * units] = 1
    np.testing.assert_array_equal(bias, expected_bias)  # Keras' own, then PyTorch's
    np.testing.assert_array_equal(pt["bias_l0"], expected_bias)


def test_bidirectional_false_written_out_is_refused_at_check(archc: Any, tmp_path: Path) -> None:
    """Keras' code wraps the layer in Bidirectional where the item writes the attribute: a
    false one is refused where it is written (E121), with the fix."""
    path = tmp_path / "one_way.yaml"
    path.write_text(
        "archc: 1\nname: one_way\ninputs:\n  - {name: x, shape: [5, 3]}\nlayers:\n"
        "  - {op: lstm, name: rnn, units: 2, bidirectional: false}\n",
        encoding="utf-8",
    )
    result = archc("check", path)
    assert result.exit_code == 1
    assert "one_way.yaml:6:5: error[E121]: keras backend: bidirectional is false" in result.stderr
    assert "leave `bidirectional` out" in result.stderr


def test_verify_trains_a_stacked_bidirectional_lstm_and_gru() -> None:
    """`verify --train`: SGD steps agree in both frameworks (gradients through every gate)."""
    text = f"""\
    archc: 1
    name: stacked
    inputs:
      - {{name: x, shape: [{STEPS}, {CHANNELS}]}}
    layers:
      - {{op: lstm, name: bi, units: 3, return_sequences: true, bidirectional: true}}
      - {{op: gru, name: gru, units: 2, bidirectional: true, merge_mode: sum}}
    """
    report = verify_training(compile_spec(loads(textwrap.dedent(text), "rnn.yaml")))
    assert report.arrays_checked > 0


@pytest.mark.parametrize("variant", ["small"])
def test_the_tagger_spec_trains_the_same_in_both_frameworks(variant: str) -> None:
    """specs/lstm.yaml reads token ids: its gradients reach the embedding (Keras gives them as
    IndexedSlices, made dense) and the ids stay integers when the training check runs in
    float64 (both failed before: `verify --train` stopped with an internal error)."""
    report = verify_training(compile_spec(SPECS / "lstm.yaml", variant=variant))
    # per step: the loss, then the gradient and the update of each of the 12 weights (the
    # embedding 1, the bidirectional LSTM 2 x 3, the LSTM 3, the dense 2)
    assert report.arrays_checked == 3 * (1 + 2 * 12)
