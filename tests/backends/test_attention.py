"""multi_head_attention: Keras' MultiHeadAttention and the PyTorch helper that generated files
carry (KerasMultiHeadAttention), each against Keras' own layer and against softmax(QK^T /
sqrt(key_dim)) V written out with numpy; parameter counts against Keras' count_params; FLOPs
against a formula; the packed layout of nn.MultiheadAttention; mistakes rejected at check.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from archc.backends.keras import backend as keras_backend
from archc.backends.proof import transfer
from archc.backends.proof.verify import randomize_keras, verify
from archc.backends.torch import backend as torch_backend
from archc.backends.torch.sequence_helpers import KerasMultiHeadAttention
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads
from tests.compiler.sequence_cases import attention_params


class Case(NamedTuple):
    tq: int  # query steps
    e: int  # query channels
    tv: int | None  # value (and key) steps; None: self-attention
    ev: int | None  # value channels
    ek: int | None  # key channels; None: the key is the value
    heads: int
    d: int  # key_dim
    dv: int | None  # value_dim
    out: int | None  # output_dim
    bias: bool
    causal: bool


CASES = {
    "self": Case(5, 8, None, None, None, 2, 4, None, None, True, False),
    "self-causal": Case(6, 8, None, None, None, 2, 3, None, None, True, True),
    "heads-times-size-not-width": Case(5, 12, None, None, None, 3, 5, None, None, True, False),
    "cross-causal-fewer-queries": Case(4, 8, 7, 6, None, 2, 3, None, None, True, True),
    "cross-causal-more-queries": Case(7, 8, 4, 6, None, 2, 3, None, None, True, True),
    "key-value-sizes-output-no-bias": Case(5, 8, 7, 6, 3, 3, 2, 5, 4, False, False),
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def keras_layer(case: Case) -> tuple[Any, list[np.ndarray]]:
    """Keras' own layer, built on the case's inputs, with random weights (biases too)."""
    import keras

    c = case
    layer = keras.layers.MultiHeadAttention(
        num_heads=c.heads, key_dim=c.d, value_dim=c.dv, output_shape=c.out, use_bias=c.bias
    )
    xs = inputs(case)
    layer(*call_args(xs), use_causal_mask=c.causal)
    g = rng(1)
    weights = [g.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    return layer, weights


def inputs(case: Case) -> list[np.ndarray]:
    c, g = case, rng(2)
    xs = [g.standard_normal((2, c.tq, c.e)).astype(np.float32)]
    if c.tv is not None:
        xs.append(g.standard_normal((2, c.tv, c.ev)).astype(np.float32))
    if c.ek is not None:
        xs.append(g.standard_normal((2, c.tv, c.ek)).astype(np.float32))
    return xs


def call_args(xs: list[Any]) -> list[Any]:
    """Keras' call: (query, value[, key]); self-attention is (x, x)."""
    return [xs[0], xs[1] if len(xs) > 1 else xs[0], *xs[2:]]


def torch_module(case: Case, weights: list[np.ndarray]) -> KerasMultiHeadAttention:
    c = case
    module = KerasMultiHeadAttention(
        c.e,
        c.heads,
        c.d,
        value_dim=c.dv,
        output_dim=c.out,
        use_bias=c.bias,
        causal=c.causal,
        value_channels=c.ev,
        key_channels=c.ek,
    )
    names = ["query", "key", "value", "output"]
    params = [f"{n}_{p}" for n in names for p in (("kernel", "bias") if c.bias else ("kernel",))]
    assert [tuple(getattr(module, p).shape) for p in params] == [w.shape for w in weights]
    with torch.no_grad():
        for p, w in zip(params, weights, strict=True):
            getattr(module, p).copy_(torch.from_numpy(w))  # Keras' layout, as it is
    return module.eval()


def numpy_attention(case: Case, weights: list[np.ndarray]) -> np.ndarray:
    """softmax(Q K^T / sqrt(key_dim)) V per head, causal: query i sees keys 0..i; in float64."""
    c = case
    ws = [w.astype(np.float64) for w in weights]
    if not c.bias:  # zero biases in Keras' order
        shapes = [(c.heads, c.d), (c.heads, c.d), (c.heads, c.dv or c.d), (c.out or c.e,)]
        ws = [x for k, b in zip(ws, shapes, strict=True) for x in (k, np.zeros(b))]
    wq, bq, wk, bk, wv, bv, wo, bo = ws
    xs = [x.astype(np.float64) for x in inputs(case)]
    query = xs[0]
    value = xs[1] if len(xs) > 1 else query
    key = xs[2] if len(xs) > 2 else value
    q = np.einsum("nte,ehd->nhtd", query, wq) + bq[None, :, None, :]
    k = np.einsum("nte,ehd->nhtd", key, wk) + bk[None, :, None, :]
    v = np.einsum("nte,ehd->nhtd", value, wv) + bv[None, :, None, :]
    scores = np.einsum("nhqd,nhkd->nhqk", q, k) / np.sqrt(c.d)
    if c.causal:
        mask = np.tril(np.ones((q.shape[2], k.shape[2]), bool))
        scores = np.where(mask, scores, -np.inf)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    heads_out = np.einsum("nhqk,nhkd->nqhd", probs, v)
    return np.einsum("nqhd,hdo->nqo", heads_out, wo) + bo


@pytest.mark.parametrize("name", sorted(CASES))
def test_attention_equals_keras_layer_and_the_formula(name: str) -> None:
    """Keras' layer and the PyTorch helper (weights in Keras' layout, copied as they are)
    both compute softmax(Q K^T / sqrt(key_dim)) V, causal or not, to 1e-5."""
    case = CASES[name]
    layer, weights = keras_layer(case)
    xs = inputs(case)
    keras_out = np.asarray(layer(*call_args(xs), use_causal_mask=case.causal))
    module = torch_module(case, weights)
    with torch.no_grad():
        torch_out = module(*(torch.from_numpy(x) for x in xs)).numpy()
    want = numpy_attention(case, weights)
    np.testing.assert_allclose(keras_out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(torch_out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(torch_out, keras_out, rtol=1e-5, atol=1e-5)


def test_the_causal_mask_and_the_scaling_matter() -> None:
    """The formula above with the mask left out differs: the causal rule the test checks is
    not vacuous for these inputs (the scaling's is the attention-unscaled mutant's)."""
    case = CASES["self-causal"]
    _, weights = keras_layer(case)
    want = numpy_attention(case, weights)
    assert np.abs(numpy_attention(case._replace(causal=False), weights) - want).max() > 1e-2


# -- counts, FLOPs ---------------------------------------------------------------------------
def spec_text(case: Case) -> str:
    c = case
    ins = [f"  - {{name: q, shape: [{c.tq}, {c.e}]}}"]
    refs = ["q"]
    if c.tv is not None:
        ins.append(f"  - {{name: v, shape: [{c.tv}, {c.ev}]}}")
        refs.append("v")
    if c.ek is not None:
        ins.append(f"  - {{name: k, shape: [{c.tv}, {c.ek}]}}")
        refs.append("k")
    attrs = f"num_heads: {c.heads}, key_dim: {c.d}, use_bias: {str(c.bias).lower()}"
    attrs += f", causal: {str(c.causal).lower()}"
    attrs += f", value_dim: {c.dv}" if c.dv else ""
    attrs += f", output_dim: {c.out}" if c.out else ""
    return (
        "archc: 1\nname: attn\ninputs:\n"
        + "\n".join(ins)
        + f"\nlayers:\n  - {{op: multi_head_attention, name: attn, inputs: {refs}, {attrs}}}\n"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameter_count_equals_keras_count_params(name: str) -> None:
    case = CASES[name]
    layer, _ = keras_layer(case)
    node = compile_spec(loads(spec_text(case), "attn.yaml")).graph.node("attn")
    c = case
    ev, ek = c.ev or c.e, c.ek or c.ev or c.e
    formula = attention_params(c.e, ek, ev, c.heads, c.d, c.dv or c.d, c.out or c.e, c.bias)
    assert node.counts.total == layer.count_params() == formula
    assert [w.shape for w in node.weights] == [tuple(w.shape) for w in layer.weights]


def test_flops_count_the_projections_scores_softmax_and_weighted_sum() -> None:
    """Written out: projections 2*in*out per position (+ bias), the query scaling, QK^T and
    AV as 2 FLOPs per multiply-add per head, softmax 3 per score."""
    tq, e, tv, ev, ek, heads, d, dv, out = 4, 8, 7, 6, 3, 3, 2, 5, 4
    case = Case(tq, e, tv, ev, ek, heads, d, dv, out, True, False)
    node = compile_spec(loads(spec_text(case), "attn.yaml")).graph.node("attn")
    projections = (
        tq * (2 * e * heads * d + heads * d)
        + tv * (2 * ek * heads * d + heads * d)
        + tv * (2 * ev * heads * dv + heads * dv)
        + tq * (2 * heads * dv * out + out)
    )
    qk = 2 * heads * tq * tv * d
    av = 2 * heads * tq * tv * dv
    assert node.flops == projections + tq * heads * d + qk + 3 * heads * tq * tv + av


# -- the packed layout of nn.MultiheadAttention ---------------------------------------------
def test_keras_kernels_are_torchs_packed_in_proj_rows() -> None:
    """The weight-layout rule (docs/ARCHITECTURE.md): nn.MultiheadAttention's in_proj_weight
    (3E, E) stacks the query, key and value rows; row h*D + j of a block is Keras' kernel
    [:, h, j] (E, H, D), so W_q = kernel.reshape(E, H*D).T; in_proj_bias is the biases
    flattened; out_proj.weight (E, H*D) is the output kernel (H, D, E) reshaped and
    transposed. With them, PyTorch's own module computes what Keras' layer does."""
    e, heads, d, t = 12, 3, 4, 6
    case = Case(t, e, None, None, None, heads, d, None, None, True, False)
    layer, weights = keras_layer(case)
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    mha = torch.nn.MultiheadAttention(e, heads, batch_first=True).eval()
    with torch.no_grad():
        packed = np.concatenate([w.reshape(e, heads * d).T for w in (wq, wk, wv)])
        mha.in_proj_weight.copy_(torch.from_numpy(packed))
        mha.in_proj_bias.copy_(
            torch.from_numpy(np.concatenate([bq.ravel(), bk.ravel(), bv.ravel()]))
        )
        mha.out_proj.weight.copy_(torch.from_numpy(wo.reshape(heads * d, e).T.copy()))
        mha.out_proj.bias.copy_(torch.from_numpy(bo))
        x = torch.from_numpy(inputs(case)[0])
        got = mha(x, x, x, need_weights=False)[0].numpy()
    want = np.asarray(layer(*call_args(inputs(case))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# -- through archc: transfer, verify, check-time errors ---------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "attn.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_weights_move_both_ways_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, spec_text(CASES["cross-causal-fewer-queries"]))
    compiled = compile_spec(path)
    km, tm = keras_backend.build(compiled), torch_backend.build(compiled)
    randomize_keras(km, compiled.graph, seed=3)
    assert transfer.keras_to_torch(km, tm, compiled.graph) == 8
    back = keras_backend.build(compiled)
    assert transfer.torch_to_keras(tm, back, compiled.graph) == 8
    before, after = km.get_layer("attn").get_weights(), back.get_layer("attn").get_weights()
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    verify(compiled)


@pytest.mark.parametrize(
    ("layers", "message", "line"),
    [
        (
            "- {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 3}",
            "multi_head_attention 'attn': the query must be a sequence (steps, channels), got "
            "shape (4, 5, 6)",
            6,
        ),
        (
            "- {op: reshape, name: seq, target_shape: [20, 6]}\n"
            "- {op: reshape, name: other, target_shape: [12, 10], inputs: x}\n"
            "- {op: dense, name: keys, units: 6, inputs: seq}\n"
            "- {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 3,\n"
            "   inputs: [seq, other, keys]}",
            "multi_head_attention 'attn': the value has 12 steps and the key 20",
            9,
        ),
    ],
    ids=["image-query", "key-value-steps"],
)
def test_attention_settings_that_cannot_run_are_rejected_at_check(
    tmp_path: Path, layers: str, message: str, line: int
) -> None:
    body = textwrap.indent(layers, "  ")
    text = f"archc: 1\nname: bad\ninputs:\n  - {{name: x, shape: [4, 5, 6]}}\nlayers:\n{body}\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        compile_spec(path)
    (diag,) = info.value.diagnostics
    assert diag.code == "E070"
    assert diag.message.startswith(message), diag.message
    assert diag.location is not None and diag.location.line == line
    assert diag.hint


def test_four_inputs_are_an_arity_error(tmp_path: Path) -> None:
    text = """\
    archc: 1
    name: bad
    inputs:
      - {name: x, shape: [4, 6]}
    layers:
      - {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 3, inputs: [x, x, x, x]}
    """
    with pytest.raises(SpecError) as info:
        compile_spec(write(tmp_path, text))
    (diag,) = info.value.diagnostics
    assert "'multi_head_attention' takes" in diag.message
    assert diag.location is not None and diag.location.line == 6


FROZEN = """
archc: 1
name: frozen_attention
inputs:
  - {name: x, shape: [4, 2]}
layers:
  - {op: multi_head_attention, name: att, num_heads: 1, key_dim: 2, trainable: false}
"""


def test_a_frozen_attention_layer_freezes_its_projections_in_keras() -> None:
    # found by the long fuzzing profile: `trainable=False` given to Keras' MultiHeadAttention
    # when it is made reaches none of the projections it builds at its first call.
    # Parameters: q, k, v kernels (2, 1, 2) and biases (1, 2), output kernel (1, 2, 2) and bias
    frozen = 3 * (2 * 1 * 2 + 1 * 2) + (1 * 2 * 2 + 2)
    compiled = compile_spec(loads(FROZEN, "frozen.yaml"))
    model = keras_backend.build(compiled)
    assert keras_backend.counts(model).as_dict() == {
        "total": frozen,
        "trainable": 0,
        "non_trainable": frozen,
    }
    assert torch_backend.counts(torch_backend.build(compiled)).non_trainable == frozen
    verify(compiled)


# -- a Keras (TensorFlow) bug archc check refuses: E121 -----------------------------------------
def _formula(layer: Any, x: np.ndarray) -> np.ndarray:
    """Multi-head self-attention of x by the layer's own weights, written out in numpy."""
    w = {v.path.split("/", 1)[1]: np.asarray(v) for v in layer.weights}
    q, k, v = (
        np.einsum("btc,chd->bthd", x, w[f"{p}/kernel"]) + w[f"{p}/bias"]
        for p in ("query", "key", "value")
    )
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    heads = np.einsum("bhqk,bkhd->bqhd", a, v)
    return (
        np.einsum("bqhd,hdo->bqo", heads, w["attention_output/kernel"]) + w["attention_output/bias"]
    )


@pytest.mark.parametrize(("steps", "wrong"), [(3, True), (4, False)])
def test_keras_misplaces_a_head_size_1_bias_when_steps_equal_heads(steps: int, wrong: bool) -> None:
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=3, key_dim=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, steps, 2)).astype("float32")
    layer(x, x)
    for v in layer.weights:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    diff = np.abs(np.asarray(layer(x, x)) - _formula(layer, x)).max()
    assert (diff > 1e-2) == wrong, diff


def _mha_spec(steps: int, bias: bool = True) -> str:
    return textwrap.dedent(
        f"""\
        archc: 1
        name: head_size_one
        inputs:
          - {{name: x, shape: [{steps}, 2]}}
        layers:
          - {{op: dense, name: d, units: 2}}
          - op: multi_head_attention
            name: attn
            num_heads: 3
            key_dim: 1
            use_bias: {str(bias).lower()}
        """
    )


def test_check_refuses_what_keras_would_compute_wrongly(archc: Any, tmp_path: Path) -> None:
    spec = tmp_path / "head_size_one.yaml"
    spec.write_text(_mha_spec(3), encoding="utf-8")
    result = archc("check", spec)
    assert result.exit_code == 1
    assert "head_size_one.yaml:7:5: error[E121]: keras backend:" in result.stderr
    assert "query projection's bias along the wrong axis" in result.stderr
    assert "key_dim" in result.stderr  # the hint


@pytest.mark.parametrize(("steps", "bias"), [(4, True), (3, False)])
def test_head_size_1_elsewhere_is_accepted_and_agrees(steps: int, bias: bool) -> None:
    verify(compile_spec(loads(_mha_spec(steps, bias), "head_size_one.yaml")))


def test_mutant_without_the_refusal_fails_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from archc.backends.compile import VerificationError
    from archc.backends.keras.ops import KERAS_LAYERS

    layer = dataclasses.replace(KERAS_LAYERS["multi_head_attention"], wrong=None)
    monkeypatch.setitem(KERAS_LAYERS, "multi_head_attention", layer)
    with pytest.raises(VerificationError) as info:
        verify(compile_spec(loads(_mha_spec(3), "head_size_one.yaml")))
    (diag,) = info.value.diagnostics
    assert diag.code == "E110" and "'attn'" in diag.message
