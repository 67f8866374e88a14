"""The pieces of LLaMA-style language models: rms_norm and grouped_query_attention.

rms_norm is Keras' RMSNormalization over the last (channel) axis:
x * rsqrt(mean(x^2) + epsilon) * scale (the epsilon inside the square root, as LLaMA's
LlamaRMSNorm); one weight `scale` (C), initial value 1.

grouped_query_attention is Keras' GroupQueryAttention on one sequence (self-attention):
num_query_heads query heads of head_dim, num_key_value_heads key and value heads, each shared
by num_query_heads / num_key_value_heads consecutive query heads (query head h reads key and
value head h // groups). With `rope: true` the queries and keys are rotated by their
positions first (rotary position embedding, the rotate-half convention: the head's first and
second halves are the pairs, frequency i is rope_theta^(-2i / head_dim)). Weights, Keras'
(in this order; biases only with use_bias), for a (T, C) input:

    query/kernel (C, Hq, D)   query/bias (Hq, D)
    key/kernel (C, Hkv, D)    key/bias (Hkv, D)
    value/kernel (C, Hkv, D)  value/bias (Hkv, D)
    attention_output/kernel (Hq, D, C)   attention_output/bias (C)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Annotated

from pydantic import Field

from ..ir import Shape, Weight
from . import ATTRS_CONFIG, Bool, Float, OpDef, PosInt, ShapeError, register
from .attention import projection_weights

ROPE_THETA = 10000.0  # LLaMA's (transformers' LlamaConfig default)
ROPE = (
    "true: rotary position embedding of the queries and keys (LLaMA's rotate-half "
    "convention; Keras' layer with the rotation added); leave it out for none"
)


@dataclass(frozen=True, slots=True)
class RMSNormAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    epsilon: Annotated[Float, Field(gt=0)] = 1e-6  # Keras' default (and LlamaConfig's)


@dataclass(frozen=True, slots=True)
class GroupedAttentionAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    head_dim: PosInt  # each head's queries, keys and values
    num_query_heads: PosInt
    num_key_value_heads: PosInt  # divides num_query_heads
    use_bias: Bool = True
    causal: Bool = False  # query i attends to keys 0..i only
    rope: Bool | None = field(default=None, metadata={"doc": ROPE})
    rope_theta: Annotated[Float, Field(gt=0)] | None = field(
        default=None, metadata={"doc": "the rotary embedding's base (null: 10000; rope only)"}
    )


def _rms_infer(a: RMSNormAttrs, ins: list[Shape]) -> tuple[RMSNormAttrs, Shape]:
    return a, ins[0]


def _rms_weights(a: RMSNormAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    return [Weight("scale", (ins[0][-1],), True)]


def _gqa_infer(a: GroupedAttentionAttrs, ins: list[Shape]) -> tuple[GroupedAttentionAttrs, Shape]:
    if len(ins[0]) != 2:
        raise ShapeError(
            f"the input must be a sequence (steps, channels), got shape {ins[0]}",
            hint="attention runs over the steps of a (steps, channels) sequence; reshape an "
            "image to [-1, channels] first",
        )
    if a.num_query_heads % a.num_key_value_heads:
        raise ShapeError(
            f"num_query_heads {a.num_query_heads} is not a multiple of num_key_value_heads "
            f"{a.num_key_value_heads}",
            hint="each key and value head serves the same number of query heads: choose "
            "num_key_value_heads dividing num_query_heads",
        )
    if a.rope and a.head_dim % 2:
        raise ShapeError(
            f"rope rotates pairs of a head's values, but head_dim is {a.head_dim} (odd)",
            hint="use an even head_dim with rope",
        )
    if not a.rope and a.rope_theta is not None:
        raise ShapeError(
            "rope_theta is given but rope is false",
            hint="set rope: true for rotary position embedding, or leave rope_theta out",
        )
    return a, ins[0]


def _gqa_weights(a: GroupedAttentionAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    c, d, hq, hkv = ins[0][-1], a.head_dim, a.num_query_heads, a.num_key_value_heads
    parts = [
        ("query", (c, hq, d), (hq, d)),
        ("key", (c, hkv, d), (hkv, d)),
        ("value", (c, hkv, d), (hkv, d)),
        ("attention_output", (hq, d, c), (c,)),
    ]
    return projection_weights(parts, a.use_bias)


def gqa_macs(a: GroupedAttentionAttrs, ins: list[Shape], out: Shape) -> int:
    """The four projections and Q K^T, A V over every query head (the keys and values
    repeated to the query heads, the full score matrix, causal or not)."""
    t, c = ins[0]
    d, hq, hkv = a.head_dim, a.num_query_heads, a.num_key_value_heads
    projections = t * c * hq * d * 2 + t * c * hkv * d * 2
    return projections + hq * t * t * 2 * d


def gqa_flops(a: GroupedAttentionAttrs, ins: list[Shape], out: Shape) -> int:
    """2 per multiply-add (gqa_macs), the biases, the scaling of the queries, the softmax (3
    per score) and the rotation of queries and keys (3 per value: two products, one sum)."""
    t, c = ins[0]
    d, hq, hkv = a.head_dim, a.num_query_heads, a.num_key_value_heads
    bias = int(a.use_bias) * t * ((hq + 2 * hkv) * d + c)
    rope = 3 * t * (hq + hkv) * d if a.rope else 0
    return 2 * gqa_macs(a, ins, out) + bias + t * hq * d + 3 * hq * t * t + rope


register(
    OpDef(
        "rms_norm",
        "RMSNormalization",
        RMSNormAttrs,
        _rms_infer,
        _rms_weights,
        lambda a, i, o: 4 * prod(o),
        doc="RMS normalization over the channel (last) axis: x * rsqrt(mean(x^2) + epsilon) "
        "* scale (Keras' RMSNormalization, LLaMA's RMSNorm)",
    )
)
register(
    OpDef(
        "grouped_query_attention",
        "GroupedQueryAttention",
        GroupedAttentionAttrs,
        _gqa_infer,
        _gqa_weights,
        gqa_flops,
        macs=gqa_macs,
        titled=lambda a: "RotaryGroupedQueryAttention" if a.rope else "GroupedQueryAttention",
        doc="Keras' GroupQueryAttention, self-attention over a sequence; rope: rotary "
        "position embedding of queries and keys (LLaMA's rotate-half convention)",
    )
)
