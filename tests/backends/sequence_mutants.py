"""Mutants of the sequence and attention rules for tests/backends/test_verify.py (`MUTANTS`):
each breaks one Keras<->PyTorch rule in an op's PyTorch emitter, and `verify` must catch it at
(or right after) the layer named.

Entries: name -> (input shape, layers, the layer verify must name, how to break the emitter).
The test writes the input shape into `{name: x, shape: ...}`, so `tokens(n)` (an input of n
integer token ids) adds `dtype: int` there. Sequences are square (T == C) where the mistake
is a wrong axis, so that it computes wrong numbers instead of failing on a shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from archc.backends.torch import ops as torch_ops

Apply = Callable[[pytest.MonkeyPatch], None]


def tokens(n: int) -> str:
    return f"[{n}], dtype: int"


def emitter(op: str, **changes: Any) -> Apply:
    """Replace parts of one op's PyTorch emitter (module, forward or weight bindings)."""

    def apply(mp: pytest.MonkeyPatch) -> None:
        mp.setitem(torch_ops.TORCH_OPS, op, replace(torch_ops.TORCH_OPS[op], **changes))

    return apply


def changed_module(op: str, edit: Callable[[str], str]) -> Apply:
    original = torch_ops.TORCH_OPS[op].module
    assert original is not None
    return emitter(op, module=lambda ctx: edit(original(ctx)))


def changed_binding(op: str, weight: str, to_torch: Callable[[np.ndarray], np.ndarray]) -> Apply:
    def apply(mp: pytest.MonkeyPatch) -> None:
        bindings = dict(torch_ops.TORCH_OPS[op].weights)
        bindings[weight] = replace(bindings[weight], to_torch=to_torch)
        mp.setitem(torch_ops.TORCH_OPS, op, replace(torch_ops.TORCH_OPS[op], weights=bindings))

    return apply


def _unscaled_attention(ctx: Any, xs: list[str], mod: str) -> str:
    """The helper's computation without the 1/sqrt(key_dim) scaling of the scores."""
    x = xs[0]
    heads = ", ".join(
        f"{mod}.heads({x}, {mod}.{p}_kernel, {mod}.{p}_bias)" for p in ("query", "key", "value")
    )
    y = f"F.scaled_dot_product_attention({heads}, scale=1.0)"
    return f"{y}.transpose(1, 2).flatten(2) @ {mod}.output_kernel.flatten(0, 1) + {mod}.output_bias"


def _heads_and_dims_mixed(a: np.ndarray) -> np.ndarray:
    """A (C, heads, size) kernel with the heads and the sizes mixed up: (C, size, heads)
    read back as (C, heads, size), as unpacking a packed (3E, E) projection head-major
    instead of size-major would do."""
    c, h, d = a.shape
    return a.transpose(0, 2, 1).reshape(c, h, d)


def _image_layout_as_is(a: np.ndarray) -> np.ndarray:
    """A channels-last (H, W, C) tensor poured into the (C, H, W) parameter unmoved."""
    return a.reshape(a.shape[-1], *a.shape[:-1])


def gates_as(order: tuple[int, ...], transpose: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras recurrent weight with its gate blocks (last axis) put in `order` (Keras block
    numbers), then transposed as the (gates * units, rows) matrices: the bindings' rule with
    another gate order, as a converter that mixes up the frameworks' orders does."""

    def to_torch(a: np.ndarray) -> np.ndarray:
        blocks = np.split(a, len(order), axis=-1)
        out = np.concatenate([blocks[i] for i in order], axis=-1)
        return out.T if transpose else out

    return to_torch


def _bidirectional_last_output(ctx: Any, xs: list[str], mod: str) -> str:
    """Both directions' outputs at the last step: the backward one has seen only that step
    (Keras and PyTorch take its final state, at step 0)."""
    h0 = f"{xs[0]}.new_zeros(2, {xs[0]}.shape[0], {mod}.units)"
    return f"{mod}.run({xs[0]}, {h0})[0][:, -1]"


# one gate of each recurrent layer moved (two swapped) in turn: Keras' LSTM gates i, f, c, o
# are PyTorch's i, f, g, o in that order; Keras' GRU z, r, h are PyTorch's r, z, n (1, 0, 2)
_LSTM = "- {op: lstm, name: rnn, units: 3, return_sequences: true}"
_GRU = "- {op: gru, name: rnn, units: 3, return_sequences: true}"
RECURRENT_MUTANTS: dict[str, tuple[Any, str, str, Apply]] = {
    "lstm-input-gate-and-forget-gate-swapped": (
        [5, 4],
        _LSTM,
        "rnn",
        changed_binding("lstm", "kernel", gates_as((1, 0, 2, 3))),
    ),
    "lstm-forget-gate-and-cell-gate-swapped": (
        [5, 4],
        _LSTM,
        "rnn",
        changed_binding("lstm", "recurrent_kernel", gates_as((0, 2, 1, 3))),
    ),
    "lstm-cell-gate-and-output-gate-swapped": (
        [5, 4],
        _LSTM,
        "rnn",
        changed_binding("lstm", "kernel", gates_as((0, 1, 3, 2))),
    ),
    "lstm-bias-input-and-output-gates-swapped": (
        [5, 4],
        _LSTM,
        "rnn",
        changed_binding("lstm", "bias", gates_as((3, 1, 2, 0), transpose=False)),
    ),
    "gru-keras-gate-order-kept": (  # z and r swapped
        [5, 4],
        _GRU,
        "rnn",
        changed_binding("gru", "kernel", gates_as((0, 1, 2))),
    ),
    "gru-update-gate-and-new-gate-swapped": (
        [5, 4],
        _GRU,
        "rnn",
        changed_binding("gru", "recurrent_kernel", gates_as((1, 2, 0))),
    ),
    "gru-reset-gate-and-new-gate-swapped": (
        [5, 4],
        _GRU,
        "rnn",
        changed_binding("gru", "kernel", gates_as((2, 0, 1))),
    ),
    "gru-bias-keras-gate-order-kept": (
        [5, 4],
        _GRU,
        "rnn",
        changed_binding("gru", "bias", gates_as((0, 1, 2), transpose=False)),
    ),
    "gru-input-and-recurrent-bias-swapped": (  # only the new gate tells them apart
        [5, 4],
        _GRU,
        "rnn",
        changed_binding("gru", "bias", lambda a: gates_as((1, 0, 2), transpose=False)(a[::-1])),
    ),
    "simple-rnn-recurrent-kernel-untransposed": (
        [5, 3],
        "- {op: simple_rnn, name: rnn, units: 3, return_sequences: true}",
        "rnn",
        changed_binding("simple_rnn", "recurrent_kernel", lambda a: a),
    ),
    "bidirectional-backward-output-at-the-last-step": (
        [5, 4],
        "- {op: lstm, name: rnn, units: 3, bidirectional: true}",
        "rnn",
        emitter("lstm", forward=_bidirectional_last_output),
    ),
    "bidirectional-concat-backward-first": (
        [5, 4],
        "- {op: gru, name: rnn, units: 3, return_sequences: true, bidirectional: true}",
        "rnn",
        emitter(
            "gru",
            forward=lambda c, xs, m: f"{m}({xs[0]}).unflatten(-1, (2, 3)).flip(-2).flatten(-2)",
        ),
    ),
}


SEQUENCE_MUTANTS: dict[str, tuple[Any, str, str, Apply]] = {
    "sequence-dense-image-rule": (
        [6, 6],  # (N, T, C) treated as (N, C, T): the kernel applied across the steps
        "- {op: dense, name: fc, units: 6}",
        "fc",
        emitter("dense", forward=lambda c, xs, m: f"{m}({xs[0]}.movedim(1, -1)).movedim(-1, 1)"),
    ),
    "sequence-layer-norm-over-steps": (
        [6, 6],
        "- {op: dense, name: fc, units: 6}\n- {op: layer_norm, name: ln}",
        "ln",
        emitter("layer_norm", forward=lambda c, xs, m: f"{m}({xs[0]}.transpose(1, 2))"),
    ),
    "sequence-softmax-over-steps": (
        [6, 6],
        "- {op: dense, name: fc, units: 6}\n- {op: activation, name: soft, fn: softmax}",
        "soft",
        emitter("activation", forward=lambda c, xs, m: f"F.softmax({xs[0]}, dim=1)"),
    ),
    "sequence-reshape-channels-moved": (
        [4, 6, 6],  # an image to a (12, 12) sequence, left in (N, C, T) order as an image's
        "- {op: reshape, name: seq, target_shape: [12, 12]}\n- {op: dense, name: fc, units: 2}",
        "seq",
        emitter(
            "reshape",
            forward=lambda c, xs, m: (
                f"{xs[0]}.movedim(1, -1).reshape({xs[0]}.shape[0], 12, 12).movedim(-1, 1)"
            ),
        ),
    ),
    "gelu-tanh-approximation": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n"
        "- {op: activation, name: act, fn: gelu}",
        "act",
        emitter("activation", forward=lambda c, xs, m: f'F.gelu({xs[0]}, approximate="tanh")'),
    ),
    "attention-unscaled": (
        [5, 8],
        "- {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 4}",
        "attn",
        emitter("multi_head_attention", forward=_unscaled_attention),
    ),
    "attention-not-causal": (
        [5, 8],
        "- {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 4, causal: true}",
        "attn",
        changed_module("multi_head_attention", lambda src: src.replace(", causal=True", "")),
    ),
    "attention-heads-and-sizes-mixed": (
        [5, 8],
        "- {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 3, output_dim: 4}",
        "attn",
        changed_binding("multi_head_attention", "query/kernel", _heads_and_dims_mixed),
    ),
    "attention-output-kernel-transposed": (
        [5, 8],  # (heads, value size, out) read as (value size, heads, out): heads == size
        "- {op: multi_head_attention, name: attn, num_heads: 2, key_dim: 2}",
        "attn",
        changed_binding(
            "multi_head_attention", "attention_output/kernel", lambda a: a.transpose(1, 0, 2)
        ),
    ),
    "embedding-transposed": (
        tokens(5),  # a vocabulary of 6 and 6 dims: the (out, in) layout of a dense kernel
        "- {op: embedding, name: embed, input_dim: 6, output_dim: 6}",
        "embed",
        changed_binding("embedding", "embeddings", lambda a: a.T),
    ),
    "positional-embedding-image-unmoved": (
        [3, 4, 2],
        "- {op: positional_embedding, name: pos}",
        "pos",
        changed_binding("positional_embedding", "embeddings", _image_layout_as_is),
    ),
    "class-token-appended": (
        [5, 4],
        "- {op: class_token, name: cls}\n- {op: dense, name: fc, units: 3}",
        "cls",
        emitter(
            "class_token",
            forward=lambda c, xs, m: (
                f"torch.cat([{xs[0]}, {m}.token.expand({xs[0]}.shape[0], 1, -1)], dim=1)"
            ),
        ),
    ),
    "take-on-channels": (
        [5, 5],
        "- {op: dense, name: fc, units: 5}\n- {op: take, name: first, index: 0}",
        "first",
        emitter("take", forward=lambda c, xs, m: f"{xs[0]}[:, :, 0]"),
    ),
    "permute-forgotten-on-square": (
        [5, 5],
        "- {op: permute, name: swapped, dims: [1, 0]}\n- {op: dense, name: fc, units: 3}",
        "swapped",
        emitter("permute", forward=lambda c, xs, m: xs[0]),
    ),
    "conv1d-symmetric-same": (
        [8, 3],  # even length, stride 2: TF pads (0, 1)
        "- {op: conv1d, name: conv, filters: 3, kernel: 3, strides: 2, padding: same}",
        "conv",
        emitter(
            "conv1d",
            forward=lambda c, xs, m: (
                f"F.conv1d(F.pad({xs[0]}.transpose(1, 2), (1, 1)), {m}.weight, {m}.bias, 2)"
                ".transpose(1, 2)"
            ),
        ),
    ),
    "max-pool1d-zeros": (
        [7, 4],  # odd length, pool 2 stride 2: TF pads one step at the end with -inf
        "- {op: max_pool1d, name: pool, pool: 2, padding: same}",
        "pool",
        emitter(
            "max_pool1d",
            forward=lambda c, xs, m: (
                f"F.max_pool1d(F.pad({xs[0]}.transpose(1, 2), (0, 1)), 2, 2).transpose(1, 2)"
            ),
        ),
    ),
    "sequence-broadcast-vector-image-rule": (
        [5, 5],  # a (C,) vector's new axis put after dim 1, as for an image
        "- {op: global_avg_pool1d, name: mean}\n- {op: subtract, name: centred, inputs: [x, mean]}",
        "centred",
        emitter("subtract", forward=lambda c, xs, m: f"{xs[0]} - {xs[1]}[:, :, None]"),
    ),
}
SEQUENCE_MUTANTS.update(RECURRENT_MUTANTS)
