"""multi_head_attention's padding mask (`padding_mask: true`, BERT's attention_mask: 1 a token,
0 padding) and its attention-probability dropout (`dropout:`), in Keras' own layer and the
PyTorch helper that generated files carry, against the formula written out with numpy;
`verify` on specs that use them, and the mutants it must catch (the mask's polarity
inverted, the mask lost, the causal mask lost where both are set); the spec mistakes
`archc check` refuses.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.compile import VerificationError
from archc.backends.proof.train_check import verify_training
from archc.backends.proof.verify import padded, verify
from archc.backends.torch import ops as torch_ops
from archc.backends.torch.sequence_helpers import KerasMultiHeadAttention
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError

T, E, HEADS, D = 6, 8, 2, 4


def masks() -> np.ndarray:
    """Right-padded masks (1: a token): full, 4 tokens, 1 token; one left-padded row."""
    rows = [[1] * 6, [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1]]
    return np.array(rows, np.int32)


def weights(rng: np.random.Generator) -> list[np.ndarray]:
    """Random Keras-layout weights (biases too) of a (E, HEADS, D) self-attention layer."""
    shapes = [(E, HEADS, D), (HEADS, D)] * 3 + [(HEADS, D, E), (E,)]
    return [rng.normal(0, 0.5, s).astype(np.float32) for s in shapes]


def numpy_attention(
    x: np.ndarray, ws: list[np.ndarray], mask: np.ndarray, causal: bool
) -> np.ndarray:
    """softmax over the keys whose mask is 1 (and, causal, up to the query) of Q K^T /
    sqrt(D), times V, per head; float64. Written from the definition: masked keys get no
    probability at all."""
    wq, bq, wk, bk, wv, bv, wo, bo = (w.astype(np.float64) for w in ws)
    x = x.astype(np.float64)
    q = np.einsum("nte,ehd->nhtd", x, wq) + bq[None, :, None, :]
    k = np.einsum("nte,ehd->nhtd", x, wk) + bk[None, :, None, :]
    v = np.einsum("nte,ehd->nhtd", x, wv) + bv[None, :, None, :]
    scores = np.einsum("nhqd,nhkd->nhqk", q, k) / np.sqrt(D)
    keep = (mask != 0)[:, None, None, :]
    if causal:
        keep = keep & np.tril(np.ones((T, T), bool))
    scores = np.where(keep, scores, -np.inf)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    return np.einsum("nhqk,nhkd,hdo->nqo", probs, v, wo) + bo


def keras_attention(ws: list[np.ndarray], dropout: float = 0.0) -> Any:
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=D, dropout=dropout)
    x = np.zeros((1, T, E), np.float32)
    layer(x, x, value_mask=np.ones((1, T), np.int32))
    layer.set_weights(ws)
    return layer


def torch_attention(ws: list[np.ndarray], causal: bool, dropout: float = 0.0) -> Any:
    module = KerasMultiHeadAttention(E, HEADS, D, causal=causal, dropout=dropout)
    params = [f"{n}_{p}" for n in ("query", "key", "value", "output") for p in ("kernel", "bias")]
    with torch.no_grad():
        for p, w in zip(params, ws, strict=True):
            getattr(module, p).copy_(torch.from_numpy(w))
    return module.eval()


@pytest.mark.parametrize("causal", [False, True])
def test_a_padding_mask_removes_the_padded_keys_in_keras_and_torch(causal: bool) -> None:
    rng = np.random.default_rng(0)
    ws, mask = weights(rng), masks()
    if causal:  # a left-padded row has queries that see no key: not defined, left out
        mask = mask[:3]
    x = rng.standard_normal((len(mask), T, E)).astype(np.float32)
    want = numpy_attention(x, ws, mask, causal)
    layer = keras_attention(ws)
    keras_y = np.asarray(layer(x, x, value_mask=mask, use_causal_mask=causal))
    module = torch_attention(ws, causal)
    with torch.no_grad():
        torch_y = module(torch.from_numpy(x), mask=torch.from_numpy(mask)).numpy()
    bound = 1e-5 * float(np.max(np.abs(want)))
    assert np.max(np.abs(keras_y - want)) <= bound
    assert np.max(np.abs(torch_y - want)) <= bound
    # the mask matters: the padded rows differ from unmasked attention by far more
    unmasked = numpy_attention(x, ws, np.ones_like(mask), causal)
    assert np.max(np.abs(unmasked[1:] - want[1:])) > 100 * bound


def test_an_inverted_mask_is_not_the_formula() -> None:
    # the formula this file holds both frameworks to tells a mask from its inverse
    rng = np.random.default_rng(1)
    ws, mask = weights(rng), masks()[1:2]
    x = rng.standard_normal((1, T, E)).astype(np.float32)
    module = torch_attention(ws, False)
    with torch.no_grad():
        inverted = module(torch.from_numpy(x), mask=torch.from_numpy(1 - mask)).numpy()
    want = numpy_attention(x, ws, mask, False)
    assert np.max(np.abs(inverted - want)) > 0.1 * np.max(np.abs(want))


def test_padded_masks_keep_a_token_in_every_sequence() -> None:
    # verify's masks: right-padded, lengths 1..steps, the first row whole
    got = padded(np.random.default_rng(3), (200, 5))
    lengths = got.sum(axis=1)
    assert got.dtype == np.int32 and set(np.unique(got)) <= {0, 1}
    assert lengths.min() >= 1 and lengths[0] == 5 and set(lengths) == {1, 2, 3, 4, 5}
    assert (got == (np.arange(5) < lengths[:, None])).all()  # ones, then zeros


# -- dropout of the attention probabilities ------------------------------------------------
def probability_rig(dropout: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Weights under which the layer's output is its attention probabilities: zero query
    and key kernels (every score 0: uniform over the attended keys), one head whose values
    are the one-hot inputs and an identity output. Output row i is then query i's
    probabilities (after dropout)."""
    shapes = [(E, 1, E), (1, E)] * 3 + [(1, E, E), (E,)]
    ws = [np.zeros(s, np.float32) for s in shapes]
    ws[4] = np.eye(E, dtype=np.float32)[:, None, :]  # value kernel: identity
    ws[6] = np.eye(E, dtype=np.float32)[None]  # output kernel: identity
    x = np.broadcast_to(np.eye(E, dtype=np.float32), (400, E, E)).copy()
    return ws, x


def _probabilities(framework: str, dropout: float, training: bool, mask: np.ndarray) -> Any:
    ws, x = probability_rig(dropout)
    if framework == "keras":
        import keras

        layer = keras.layers.MultiHeadAttention(num_heads=1, key_dim=E, dropout=dropout, seed=0)
        layer(x[:1], x[:1], value_mask=mask[:1])
        layer.set_weights(ws)
        return np.asarray(layer(x, x, value_mask=mask, training=training))
    module = KerasMultiHeadAttention(E, 1, E, dropout=dropout)
    params = [f"{n}_{p}" for n in ("query", "key", "value", "output") for p in ("kernel", "bias")]
    with torch.no_grad():
        for p, w in zip(params, ws, strict=True):
            getattr(module, p).copy_(torch.from_numpy(w))
    module.train(training)
    torch.manual_seed(0)
    with torch.no_grad():
        return module(torch.from_numpy(x), mask=torch.from_numpy(mask)).numpy()


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_dropout_drops_probabilities_in_training_only(framework: str) -> None:
    rate, tokens = 0.3, 6
    mask = np.zeros((400, E), np.int32)
    mask[:, :tokens] = 1
    uniform = np.where(np.arange(E) < tokens, 1 / tokens, 0.0)
    # inference: exactly the probabilities, dropout or not
    y = _probabilities(framework, rate, False, mask)
    assert np.allclose(y, uniform, rtol=1e-6, atol=1e-7)
    # training: each attended probability is 0, or kept and divided by 1 - rate
    y = _probabilities(framework, rate, True, mask)
    attended = y[..., :tokens]
    assert np.allclose(y[..., tokens:], 0.0)  # padding gets nothing, dropped or not
    kept = attended != 0
    assert np.allclose(attended[kept], 1 / tokens / (1 - rate), rtol=1e-5)
    # 400 * 8 * 6 = 19,200 draws: the dropped fraction's standard error is 0.0033
    assert abs(1 - kept.mean() - rate) < 0.02


# -- specs, verify and mutants -------------------------------------------------------------------
SPEC = """\
archc: 1
name: masked
inputs:
  - {name: tokens, shape: [7], dtype: int}
  - {name: attention_mask, shape: [7], dtype: int}
layers:
  - {op: embedding, name: emb, input_dim: 13, output_dim: 8, inputs: [tokens]}
  - op: multi_head_attention
    name: attn
    num_heads: 2
    key_dim: 4
    padding_mask: true
    dropout: 0.2
    inputs: [prev, attention_mask]
  - op: multi_head_attention
    name: causal_attn
    num_heads: 2
    key_dim: 4
    padding_mask: true
    causal: true
    inputs: [prev, attention_mask]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_masked_spec_verifies_and_trains(tmp_path: Path) -> None:
    report = verify(str(write(tmp_path, SPEC)))
    assert report.ir.total == 13 * 8 + 2 * 4 * (8 * 8 + 8) and report.layers_checked == 3
    train = verify_training(str(write(tmp_path, SPEC)))
    assert train.dropout_off == ["attn"] and train.arrays_checked > 0


CROSS = """\
archc: 1
name: masked_cross
inputs:
  - {name: x, shape: [5, 8]}
  - {name: memory_mask, shape: [7], dtype: int}
  - {name: memory, shape: [7, 6]}
layers:
  - {op: dense, name: keys, units: 3, inputs: [memory]}
  - op: multi_head_attention
    name: cross
    inputs: [x, memory, keys, memory_mask]
    num_heads: 3
    key_dim: 2
    value_dim: 5
    output_dim: 4
    use_bias: false
    padding_mask: true
    causal: true
"""


def test_cross_attention_with_a_key_and_a_mask_verifies(tmp_path: Path) -> None:
    # the mask is of the value's (and key's) 7 steps, the query has 5; causal counts from the
    # first key as Keras does; the graph's inputs in any order
    report = verify(str(write(tmp_path, CROSS)))
    assert report.layers_checked == 2


def _mutant(forward: Any) -> Any:
    def apply(mp: pytest.MonkeyPatch) -> None:
        op = torch_ops.TORCH_OPS["multi_head_attention"]
        mp.setitem(torch_ops.TORCH_OPS, "multi_head_attention", replace(op, forward=forward))

    return apply


MASK_MUTANTS = {
    # 1 taken for padding: BERT's attention_mask read the other way round
    "polarity-inverted": lambda ctx, xs, mod: f"{mod}({xs[0]}, mask=1 - {xs[-1]})",
    "mask-lost": lambda ctx, xs, mod: f"{mod}({xs[0]})",
}


@pytest.mark.parametrize("name", sorted(MASK_MUTANTS))
def test_a_broken_mask_is_caught_by_verify(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SPEC)
    _mutant(MASK_MUTANTS[name])(monkeypatch)
    with pytest.raises(VerificationError) as info:
        verify(str(path))
    assert "'attn'" in info.value.diagnostics[0].message


def test_the_causal_mask_lost_beside_a_padding_mask_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SPEC)
    op = torch_ops.TORCH_OPS["multi_head_attention"]
    assert op.module is not None
    module = op.module
    monkeypatch.setitem(
        torch_ops.TORCH_OPS,
        "multi_head_attention",
        replace(op, module=lambda ctx: module(ctx).replace(", causal=True", "")),
    )
    with pytest.raises(VerificationError) as info:
        verify(str(path))
    assert "'causal_attn'" in info.value.diagnostics[0].message


BAD = {
    "mask-not-int": (
        "  - {name: m, shape: [4]}\n",
        "inputs: [x, m], padding_mask: true",
        "E074",
        "reads its padding mask from 'm', which is not an input of integers",
    ),
    "token-ids-as-query": (
        "  - {name: m, shape: [4, 6], dtype: int}\n  - {name: k, shape: [4], dtype: int}\n",
        "inputs: [x, m, k], padding_mask: true",
        "E074",
        "reads 'm', an input of integers, as a query, value or key",
    ),
    "mask-of-other-length": (
        "  - {name: m, shape: [5], dtype: int}\n",
        "inputs: [x, m], padding_mask: true",
        "E070",
        "the padding mask must have one entry per key step (4), got shape (5,)",
    ),
    "mask-alone": (
        "",
        "inputs: [x], padding_mask: true",
        "E070",
        "padding_mask: true needs the mask as the last input, after the query",
    ),
    "four-inputs-without-a-mask": (
        "",
        "inputs: [x, x, x, x]",
        "E070",
        "'multi_head_attention' takes at most 3 inputs (query, value, key) without a padding "
        "mask, got 4",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_mask_mistakes_are_located_errors(name: str, tmp_path: Path) -> None:
    extra, call, code, message = BAD[name]
    text = (
        "archc: 1\nname: bad\ninputs:\n  - {name: x, shape: [4, 6]}\n"
        f"{extra}layers:\n"
        f"  - {{op: multi_head_attention, name: attn, num_heads: 2, key_dim: 3, {call}}}\n"
    )
    with pytest.raises(SpecError) as info:
        compile_spec(write(tmp_path, text))
    diag = info.value.diagnostics[0]
    assert diag.code == code and message in diag.message, diag.message
    assert diag.location is not None and diag.hint


def test_a_lost_dropout_rate_is_caught_by_the_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # inference cannot see a training-only rate; the PyTorch module read back against the IR
    # can (E114 names the layer)
    path = write(tmp_path, SPEC)
    op = torch_ops.TORCH_OPS["multi_head_attention"]
    assert op.module is not None
    module = op.module
    monkeypatch.setitem(
        torch_ops.TORCH_OPS,
        "multi_head_attention",
        replace(op, module=lambda ctx: module(ctx).replace(", dropout=0.2", "")),
    )
    with pytest.raises((VerificationError, SpecError)) as info:
        verify(str(path))
    diag = info.value.diagnostics[0]
    assert diag.code == "E114" and "'attn'" in diag.message and "dropout" in diag.message
