"""multi_head_attention: Keras' MultiHeadAttention on sequences (steps, channels).

Inputs: [query] (self-attention), [query, value] or [query, value, key] (the key defaults to
the value). With H heads of key size D and value size Dv, for query (Tq, E), value (Tv, Ev)
and key (Tv, Ek), the weights are Keras' (per layer, in this order):

    query/kernel (E, H, D)   query/bias (H, D)
    key/kernel (Ek, H, D)    key/bias (H, D)
    value/kernel (Ev, H, Dv) value/bias (H, Dv)
    attention_output/kernel (H, Dv, O)   attention_output/bias (O)

(biases only with use_bias; O is output_dim, by default E). The output is (Tq, O):
softmax(Q K^T / sqrt(D)) V per head, projected; with causal, query i attends to keys 0..i.

With `padding_mask`, one more input comes last: a (Tv,) mask of the keys read from an input
of integers (BERT's attention_mask: 1 a token, 0 padding), as Keras' `value_mask`; query i
then attends to the keys whose mask is not 0 (and, with causal too, to those up to i).
`dropout` drops attention probabilities in training only (Keras' `dropout=`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from ..ir import Graph, Shape, Weight
from . import ATTRS_CONFIG, Bool, Float, OpDef, PosInt, ShapeError, register


@dataclass(frozen=True, slots=True)
class AttentionAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    key_dim: PosInt  # the size of each head's queries and keys
    num_heads: PosInt
    value_dim: PosInt | None = None  # each head's values; null: key_dim
    use_bias: Bool = True
    output_dim: PosInt | None = None  # null: the query's channels
    causal: Bool = False  # query i attends to keys 0..i only
    # the last input is a (steps,) padding mask of the keys (1: a token, 0: padding)
    padding_mask: Bool = False
    # the rate of attention probabilities dropped in training (none at inference)
    dropout: Annotated[Float, Field(ge=0, lt=1)] = 0.0


def attended(a: AttentionAttrs, ins: list[Shape]) -> list[Shape]:
    """The query, value and key shapes among the inputs (the padding mask left out)."""
    return ins[:-1] if a.padding_mask else ins


def dims(a: AttentionAttrs, ins: list[Shape]) -> tuple[int, int, int, int, int, int]:
    """(E, Ek, Ev, D, Dv, O): the query, key and value channels, the head sizes and the
    output channels."""
    ins = attended(a, ins)
    query = ins[0]
    value = ins[1] if len(ins) > 1 else query
    key = ins[2] if len(ins) > 2 else value
    d = a.key_dim
    dv = a.value_dim or d
    return query[-1], key[-1], value[-1], d, dv, a.output_dim or query[-1]


def _infer(a: AttentionAttrs, ins: list[Shape]) -> tuple[AttentionAttrs, Shape]:
    if a.padding_mask:
        _check_mask(ins)
    elif len(ins) > 3:
        raise ShapeError(
            f"'multi_head_attention' takes at most 3 inputs (query, value, key) without a "
            f"padding mask, got {len(ins)}",
            hint="a fourth input is a padding mask: set padding_mask: true",
        )
    names = ("query", "value", "key")
    for i, shape in enumerate(attended(a, ins)):
        if len(shape) != 2:
            raise ShapeError(
                f"the {names[i]} must be a sequence (steps, channels), got shape {shape}",
                hint="attention here runs over the steps of (steps, channels) sequences; "
                "reshape an image to [-1, channels] first",
                inputs=(i,),
            )
    if len(attended(a, ins)) == 3 and ins[1][0] != ins[2][0]:
        raise ShapeError(
            f"the value has {ins[1][0]} steps and the key {ins[2][0]}",
            hint="each value step needs its key: give the key and the value the same number "
            "of steps",
            inputs=(1, 2),
        )
    return a, (ins[0][0], dims(a, ins)[5])


def _check_mask(ins: list[Shape]) -> None:
    if len(ins) < 2:
        raise ShapeError(
            "padding_mask: true needs the mask as the last input, after the query",
            hint="list it last: inputs: [prev, attention_mask] (an input of integers, "
            "shape [steps])",
        )
    mask, keys = ins[-1], ins[1] if len(ins) > 2 else ins[0]
    if len(mask) != 1 or len(keys) != 2 or mask[0] != keys[0]:
        raise ShapeError(
            f"the padding mask must have one entry per key step ({keys[0] if keys else '?'}), "
            f"got shape {mask}",
            hint="give the mask the shape [steps] of the keys (the value's steps)",
            inputs=(len(ins) - 1,),
        )


def _weights(a: AttentionAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    e, ek, ev, d, dv, o = dims(a, ins)
    h = a.num_heads
    parts = [
        ("query", (e, h, d), (h, d)),
        ("key", (ek, h, d), (h, d)),
        ("value", (ev, h, dv), (h, dv)),
        ("attention_output", (h, dv, o), (o,)),
    ]
    return projection_weights(parts, a.use_bias)


def projection_weights(parts: Sequence[tuple[str, Shape, Shape]], use_bias: bool) -> list[Weight]:
    """Keras' attention weights: each projection's (name, kernel shape, bias shape) as
    `name/kernel`, then `name/bias` where the layer has biases (MultiHeadAttention's and
    GroupQueryAttention's order)."""
    ws = []
    for name, kernel, bias in parts:
        ws.append(Weight(f"{name}/kernel", kernel, True))
        if use_bias:
            ws.append(Weight(f"{name}/bias", bias, True))
    return ws


def flops(a: AttentionAttrs, ins: list[Shape], out: Shape) -> int:
    """Multiply-adds as 2 FLOPs each: the four projections (plus their biases), the scaling
    of the queries, Q K^T, the softmax (exp, sum and divide: 3 per score) and the weighted sum
    A V. The causal mask does not change the count: both frameworks compute every score."""
    e, ek, ev, d, dv, o = dims(a, ins)
    ins = attended(a, ins)
    h, tq = a.num_heads, ins[0][0]
    tv = ins[1][0] if len(ins) > 1 else tq
    bias = int(a.use_bias)
    projections = (
        tq * h * d * (2 * e + bias)
        + tv * h * d * (2 * ek + bias)
        + tv * h * dv * (2 * ev + bias)
        + tq * o * (2 * h * dv + bias)
    )
    scores = tq * h * d + 2 * h * tq * tv * d  # scaling the queries, then Q K^T
    softmax = 3 * h * tq * tv
    weighted = 2 * h * tq * tv * dv  # A V
    return projections + scores + softmax + weighted


def macs(a: AttentionAttrs, ins: list[Shape], out: Shape) -> int:
    """The four projections' and the two attention matmuls' multiply-accumulates: Q K^T and
    A V over every head (the full score matrix, causal or not, as frameworks compute it)."""
    e, ek, ev, d, dv, o = dims(a, ins)
    ins = attended(a, ins)
    h, tq = a.num_heads, ins[0][0]
    tv = ins[1][0] if len(ins) > 1 else tq
    projections = tq * e * h * d + tv * ek * h * d + tv * ev * h * dv + tq * h * dv * o
    return projections + h * tq * tv * (d + dv)


register(
    OpDef(
        "multi_head_attention",
        "MultiHeadAttention",
        AttentionAttrs,
        _infer,
        _weights,
        flops,
        macs=macs,
        min_inputs=1,
        max_inputs=4,
        doc="Keras' MultiHeadAttention over sequences: inputs [query], [query, value] or "
        "[query, value, key], then the keys' padding mask with padding_mask: true",
    )
)


def padding_masks(graph: Graph) -> set[str]:
    """The names of the tensors attention layers read as padding masks (their last input)."""
    return {
        n.inputs[-1]
        for n in graph.nodes
        if n.op == "multi_head_attention" and getattr(n.attrs, "padding_mask", False)
    }
