"""Shape and count cases of the sequence and attention ops for tests/compiler/test_ops.py
(`CASES`), from textbook formulas written out here (Keras semantics, channels last).

`Tokens` marks an input of integer token ids (`dtype: int`), which embedding reads.
"""

from __future__ import annotations

import math
from typing import Any


class Tokens(tuple[int, ...]):
    """The shape of an input of integer token ids."""

    __slots__ = ()


def conv1d_params(k: int, cin: int, filters: int, groups: int = 1, bias: bool = True) -> int:
    return k * cin // groups * filters + (filters if bias else 0)


def valid_steps(n: int, k: int, s: int = 1, d: int = 1) -> int:
    return (n - (k - 1) * d - 1) // s + 1


def same_steps(n: int, s: int) -> int:
    return math.ceil(n / s)


def attention_params(
    e: int, ek: int, ev: int, heads: int, d: int, dv: int, out: int, bias: bool = True
) -> int:
    """Keras' MultiHeadAttention: query, key and value kernels (in, heads, size) with biases
    (heads, size); the output kernel (heads, dv, out) with its bias (out)."""
    b = int(bias)
    return (
        heads * d * (e + b) + heads * d * (ek + b) + heads * dv * (ev + b) + out * (heads * dv + b)
    )


def attention_weights(
    e: int, ek: int, ev: int, heads: int, d: int, dv: int, out: int, bias: bool = True
) -> tuple[tuple[str, tuple[int, ...], bool], ...]:
    ws = []
    for name, kernel, b in (
        ("query", (e, heads, d), (heads, d)),
        ("key", (ek, heads, d), (heads, d)),
        ("value", (ev, heads, dv), (heads, dv)),
        ("attention_output", (heads, dv, out), (out,)),
    ):
        ws.append((f"{name}/kernel", kernel, True))
        if bias:
            ws.append((f"{name}/bias", b, True))
    return tuple(ws)


def recurrent_params(gates: int, cin: int, units: int, biases: int = 1) -> int:
    """One direction of a Keras recurrent layer: `gates` blocks of an input kernel (in, u), a
    recurrent kernel (u, u) and `biases` bias vectors (u) (the GRU with reset_after: 2)."""
    return gates * (cin * units + units * units + biases * units)


def recurrent_weights(
    gates: int, cin: int, units: int, bias: tuple[int, ...] | None, prefix: str = ""
) -> tuple[tuple[str, tuple[int, ...], bool], ...]:
    ws = [
        (f"{prefix}kernel", (cin, gates * units), True),
        (f"{prefix}recurrent_kernel", (units, gates * units), True),
    ]
    return tuple(ws + ([(f"{prefix}bias", bias, True)] if bias else []))


def recurrent_cases(case: Any) -> dict[str, list[Any]]:
    """lstm, gru and simple_rnn: Keras' LSTM 4 gates, GRU 3 (bias (2, 3u)), SimpleRNN 1."""
    Case = case
    both = recurrent_weights(4, 5, 3, (12,), "forward/")
    both += recurrent_weights(4, 5, 3, (12,), "backward/")
    return {
        "lstm": [
            Case(
                "last-step",
                "op: lstm, units: 3",
                ((7, 5),),
                (3,),
                recurrent_params(4, 5, 3),
                weights=recurrent_weights(4, 5, 3, (12,)),
            ),
            Case(
                "bidirectional-sequences",
                "op: lstm, units: 3, return_sequences: true, bidirectional: true",
                ((7, 5),),
                (7, 6),
                2 * recurrent_params(4, 5, 3),
                weights=both,
            ),
            Case(
                "sum-no-bias",
                "op: lstm, units: 3, bidirectional: true, merge_mode: sum, use_bias: false",
                ((7, 5),),
                (3,),
                2 * recurrent_params(4, 5, 3, biases=0),
                weights=recurrent_weights(4, 5, 3, None, "forward/")
                + recurrent_weights(4, 5, 3, None, "backward/"),
            ),
        ],
        "gru": [
            Case(
                "sequences",
                "op: gru, units: 4, return_sequences: true",
                ((6, 2),),
                (6, 4),
                recurrent_params(3, 2, 4, biases=2),
                weights=recurrent_weights(3, 2, 4, (2, 12)),
            ),
            Case(
                "bidirectional-ave",
                "op: gru, units: 4, bidirectional: true, merge_mode: ave",
                ((6, 2),),
                (4,),
                2 * recurrent_params(3, 2, 4, biases=2),
                weights=recurrent_weights(3, 2, 4, (2, 12), "forward/")
                + recurrent_weights(3, 2, 4, (2, 12), "backward/"),
            ),
        ],
        "simple_rnn": [
            Case(
                "relu",
                "op: simple_rnn, units: 5, activation: relu",
                ((4, 3),),
                (5,),
                recurrent_params(1, 3, 5),
                weights=recurrent_weights(1, 3, 5, (5,)),
            ),
            Case(
                "bidirectional-concat",
                "op: simple_rnn, units: 5, bidirectional: true, return_sequences: true",
                ((4, 3),),
                (4, 10),
                2 * recurrent_params(1, 3, 5),
                weights=recurrent_weights(1, 3, 5, (5,), "forward/")
                + recurrent_weights(1, 3, 5, (5,), "backward/"),
            ),
        ],
    }


def sequence_cases(case: Any) -> dict[str, list[Any]]:
    """op -> cases, built with test_ops' Case class."""
    Case = case
    return {
        "conv1d": [
            Case(
                "valid",
                "op: conv1d, filters: 6, kernel: 3",
                ((9, 4),),
                (valid_steps(9, 3), 6),
                conv1d_params(3, 4, 6),
                weights=(("kernel", (3, 4, 6), True), ("bias", (6,), True)),
            ),
            Case(
                "same-strided-no-bias",
                "op: conv1d, filters: 6, kernel: 3, strides: 3, padding: same, use_bias: false",
                ((10, 4),),
                (same_steps(10, 3), 6),
                conv1d_params(3, 4, 6, bias=False),
                weights=(("kernel", (3, 4, 6), True),),
            ),
            Case(
                "dilated-grouped",
                "op: conv1d, filters: 6, kernel: 3, dilation: 2, groups: 2",
                ((11, 4),),
                (valid_steps(11, 3, d=2), 6),
                conv1d_params(3, 4, 6, groups=2),
                weights=(("kernel", (3, 2, 6), True), ("bias", (6,), True)),
            ),
        ],
        "max_pool1d": [
            Case("valid", "op: max_pool1d, pool: 2", ((9, 3),), (4, 3), attrs={"strides": 2}),
            Case("same", "op: max_pool1d, pool: 2, padding: same", ((9, 3),), (5, 3)),
            Case("strides-1", "op: max_pool1d, pool: 3, strides: 1", ((9, 3),), (7, 3)),
        ],
        "avg_pool1d": [
            Case("valid", "op: avg_pool1d, pool: 3", ((10, 2),), (3, 2), attrs={"strides": 3}),
            Case("same", "op: avg_pool1d, pool: 3, strides: 2, padding: same", ((10, 2),), (5, 2)),
        ],
        "global_avg_pool1d": [
            Case("flat", "op: global_avg_pool1d", ((7, 5),), (5,)),
            Case("keepdims", "op: global_avg_pool1d, keepdims: true", ((7, 5),), (1, 5)),
        ],
        "global_max_pool1d": [
            Case("flat", "op: global_max_pool1d", ((7, 5),), (5,)),
            Case("keepdims", "op: global_max_pool1d, keepdims: true", ((7, 5),), (1, 5)),
        ],
        "embedding": [
            Case(
                "sequence",
                "op: embedding, input_dim: 10, output_dim: 4",
                (Tokens((6,)),),
                (6, 4),
                10 * 4,
                weights=(("embeddings", (10, 4), True),),
            ),
            Case(
                "grid",
                "op: embedding, input_dim: 7, output_dim: 3",
                (Tokens((2, 5)),),
                (2, 5, 3),
                7 * 3,
                weights=(("embeddings", (7, 3), True),),
            ),
        ],
        "positional_embedding": [
            Case(
                "sequence",
                "op: positional_embedding",
                ((7, 4),),
                (7, 4),
                7 * 4,
                weights=(("embeddings", (7, 4), True),),
            ),
            Case(
                "image",
                "op: positional_embedding",
                ((3, 5, 2),),
                (3, 5, 2),
                3 * 5 * 2,
                weights=(("embeddings", (3, 5, 2), True),),
            ),
        ],
        "sinusoidal_embedding": [
            Case("sequence", "op: sinusoidal_embedding", ((7, 4),), (7, 4)),
            Case(
                "wavelength",
                "op: sinusoidal_embedding, max_wavelength: 50.0",
                ((3, 5),),
                (3, 5),
                attrs={"max_wavelength": 50.0},
            ),
        ],
        "class_token": [
            Case(
                "sequence",
                "op: class_token",
                ((7, 4),),
                (8, 4),
                4,
                weights=(("token", (1, 4), True),),
            ),
            Case(
                "image-rows",
                "op: class_token",
                ((3, 5, 2),),
                (4, 5, 2),
                5 * 2,
                weights=(("token", (1, 5, 2), True),),
            ),
        ],
        "take": [
            Case("first-step", "op: take, index: 0", ((7, 4),), (4,)),
            Case("last-channel", "op: take, index: -1, axis: -1", ((7, 4),), (7,)),
            Case("image-column", "op: take, index: 2, axis: 1", ((3, 5, 2),), (3, 2)),
        ],
        "slice": [
            Case("from-1", "op: slice, start: 1", ((7, 4),), (6, 4)),
            Case("to-minus-2", "op: slice, stop: -2", ((7, 4),), (5, 4)),
            Case("channels", "op: slice, start: 1, stop: 3, axis: -1", ((7, 4),), (7, 2)),
        ],
        "permute": [
            Case("swap", "op: permute, dims: [1, 0]", ((7, 4),), (4, 7)),
            Case("image", "op: permute, dims: [2, 0, 1]", ((3, 5, 2),), (2, 3, 5)),
        ],
        "multi_head_attention": [
            Case(
                "self",
                "op: multi_head_attention, num_heads: 2, key_dim: 3",
                ((5, 8),),
                (5, 8),
                attention_params(8, 8, 8, 2, 3, 3, 8),
                weights=attention_weights(8, 8, 8, 2, 3, 3, 8),
            ),
            Case(
                "cross-sizes-no-bias",
                "op: multi_head_attention, inputs: [in0, in1], num_heads: 2, key_dim: 3, "
                "value_dim: 4, output_dim: 5, use_bias: false",
                ((5, 8), (7, 6)),
                (5, 5),
                attention_params(8, 6, 6, 2, 3, 4, 5, bias=False),
                weights=attention_weights(8, 6, 6, 2, 3, 4, 5, bias=False),
            ),
            Case(
                "query-value-key",
                "op: multi_head_attention, inputs: [in0, in1, in2], num_heads: 3, key_dim: 2, "
                "causal: true",
                ((5, 8), (7, 6), (7, 3)),
                (5, 8),
                attention_params(8, 3, 6, 3, 2, 2, 8),
                weights=attention_weights(8, 3, 6, 3, 2, 2, 8),
            ),
        ],
    }


# inputs for ops that need a sequence, where a test compiles every op on one default input
SEQUENCE_INPUT = (6, 4)
NEEDS_SEQUENCE = ("global_avg_pool1d", "global_max_pool1d", "sinusoidal_embedding")
