"""Sequence ops (shapes (steps, channels), channels last) and the tensor plumbing that
transformers need: conv1d, 1-D pooling, embedding, positional_embedding, class_token, take,
slice, permute.

Axes are the IR's: batch excluded, 0-based, negative from the end (-1 is the channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Annotated

from pydantic import BeforeValidator, Field, Strict

from ..ir import Shape, Weight
from . import (
    ATTRS_CONFIG,
    L2,
    Activation,
    Bool,
    Int,
    OpDef,
    Padding,
    PosInt,
    ShapeError,
    register,
    window_out,
)
from .initializers import BIAS_DOC, KERNEL_DOC, Initializer


def sequence(shape: Shape, op: str) -> tuple[int, int]:
    """(steps, channels) of a sequence input, or a ShapeError."""
    if len(shape) != 2:
        raise ShapeError(
            f"{op} needs a 2-D input (steps, channels), got shape {shape}",
            hint="reshape an image to a sequence first, e.g. reshape with target_shape "
            "[-1, channels]",
        )
    return shape[0], shape[1]


def axis_of(axis: int, rank: int, what: str = "axis") -> int:
    """A logical axis (batch excluded, negative from the end) as 0..rank-1."""
    if not -rank <= axis < rank:
        raise ShapeError(
            f"{what} {axis} is out of range for a rank-{rank} input",
            hint=f"use an axis in [{-rank}, {rank - 1}] (batch excluded; -1 is channels)",
        )
    return axis % rank


@dataclass(frozen=True, slots=True)
class Conv1DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    filters: PosInt
    kernel: PosInt
    strides: PosInt = 1
    padding: Padding = "valid"
    dilation: PosInt = 1
    groups: PosInt = 1
    use_bias: Bool = True
    activation: Activation = "linear"
    kernel_l2: L2 = None
    kernel_initializer: Initializer = field(default="glorot_uniform", metadata={"doc": KERNEL_DOC})
    bias_initializer: Initializer = field(default="zeros", metadata={"doc": BIAS_DOC})


@dataclass(frozen=True, slots=True)
class Pool1DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    pool: PosInt
    strides: PosInt | None = None
    padding: Padding = "valid"


@dataclass(frozen=True, slots=True)
class GlobalPool1DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    keepdims: Bool = False


@dataclass(frozen=True, slots=True)
class EmbeddingAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    input_dim: PosInt  # the vocabulary size: token ids are 0..input_dim-1
    output_dim: PosInt
    # computed by an `apply: ... reverse: true` item (a tied output head): `reverse` on the
    # node that calls the embedding again (x @ embeddings^T), `reversible` on both (Keras'
    # ReversibleEmbedding, which takes that call)
    reverse: bool = False
    reversible: bool = False


@dataclass(frozen=True, slots=True)
class LearnedAttrs:
    __pydantic_config__ = ATTRS_CONFIG


@dataclass(frozen=True, slots=True)
class TakeAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    index: Int
    axis: Int = 0


@dataclass(frozen=True, slots=True)
class SliceAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    start: Int = 0
    stop: Int | None = None  # null: to the end
    axis: Int = 0


@dataclass(frozen=True, slots=True)
class PermuteAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    dims: Annotated[
        tuple[Annotated[int, Strict()], ...],
        BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v),
        Field(min_length=1, description="a list of axes (0-based, batch excluded)"),
    ]


def _conv1d_infer(a: Conv1DAttrs, ins: list[Shape]) -> tuple[Conv1DAttrs, Shape]:
    steps, c = sequence(ins[0], "conv1d")
    if a.strides > 1 and a.dilation > 1:
        raise ShapeError(
            f"strides {a.strides} with dilation {a.dilation} is not supported",
            hint="Keras rejects strides > 1 together with dilation > 1; use one of them",
        )
    if c % a.groups or a.filters % a.groups:
        raise ShapeError(
            f"groups={a.groups} must divide both input channels ({c}) and filters ({a.filters})"
        )
    out, _ = window_out(steps, a.kernel, a.strides, a.dilation, a.padding, "steps", "kernel")
    return a, (out, a.filters)


def _conv1d_weights(a: Conv1DAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    ws = [Weight("kernel", (a.kernel, ins[0][1] // a.groups, a.filters), True)]
    return [*ws, Weight("bias", (a.filters,), True)] if a.use_bias else ws


def _conv1d_macs(a: Conv1DAttrs, ins: list[Shape], out: Shape) -> int:
    return out[0] * a.filters * a.kernel * (ins[0][1] // a.groups)  # every output: k x in


def _conv1d_flops(a: Conv1DAttrs, ins: list[Shape], out: Shape) -> int:
    macs = out[0] * a.filters * a.kernel * (ins[0][1] // a.groups)
    return 2 * macs + (out[0] * a.filters if a.use_bias else 0)


def _pool1d_infer(a: Pool1DAttrs, ins: list[Shape]) -> tuple[Pool1DAttrs, Shape]:
    steps, c = sequence(ins[0], "pooling")
    strides = a.strides or a.pool
    out, _ = window_out(steps, a.pool, strides, 1, a.padding, "steps", "pool size")
    return Pool1DAttrs(a.pool, strides, a.padding), (out, c)


def _global1d_infer(a: GlobalPool1DAttrs, ins: list[Shape]) -> tuple[GlobalPool1DAttrs, Shape]:
    _, c = sequence(ins[0], "global pooling")
    return a, ((1, c) if a.keepdims else (c,))


def _embedding_infer(a: EmbeddingAttrs, ins: list[Shape]) -> tuple[EmbeddingAttrs, Shape]:
    if not a.reverse:
        return a, (*ins[0], a.output_dim)
    if not ins[0] or ins[0][-1] != a.output_dim:
        raise ShapeError(
            f"the embedding called in reverse needs vectors of its output_dim {a.output_dim} "
            f"on the last axis, got shape {ins[0]}",
            hint="a tied head reads the model's width: apply it after a layer of that width",
        )
    return a, (*ins[0][:-1], a.input_dim)


def _embedding_macs(a: EmbeddingAttrs, ins: list[Shape], out: Shape) -> int:
    """A reverse call multiplies by the (output_dim, input_dim) matrix; a lookup, nothing."""
    return prod(out) * a.output_dim if a.reverse else 0


def _positional_weights(a: LearnedAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    return [Weight("embeddings", ins[0], True)]


def _token_infer(a: LearnedAttrs, ins: list[Shape]) -> tuple[LearnedAttrs, Shape]:
    shape = ins[0]
    if len(shape) < 2:
        raise ShapeError(
            f"class_token needs an input of at least 2 axes (steps, channels), got {shape}",
            hint="the token is prepended along the first axis (the steps of a sequence)",
        )
    return a, (shape[0] + 1, *shape[1:])


def _token_weights(a: LearnedAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    return [Weight("token", (1, *ins[0][1:]), True)]


def _take_infer(a: TakeAttrs, ins: list[Shape]) -> tuple[TakeAttrs, Shape]:
    shape = ins[0]
    if len(shape) < 2:
        raise ShapeError(
            f"take needs an input of at least 2 axes, got {shape}",
            hint="taking one entry of a vector would leave nothing but the batch axis",
        )
    axis = axis_of(a.axis, len(shape))
    if not -shape[axis] <= a.index < shape[axis]:
        raise ShapeError(
            f"index {a.index} is out of range for axis {a.axis} of size {shape[axis]}",
            hint=f"use an index in [{-shape[axis]}, {shape[axis] - 1}] (negative from the end)",
        )
    return a, shape[:axis] + shape[axis + 1 :]


def _slice_infer(a: SliceAttrs, ins: list[Shape]) -> tuple[SliceAttrs, Shape]:
    shape = ins[0]
    axis = axis_of(a.axis, len(shape))
    size = len(range(shape[axis])[a.start : a.stop])
    if size == 0:
        stop = "the end" if a.stop is None else str(a.stop)
        raise ShapeError(
            f"slice from {a.start} to {stop} of axis {a.axis} (size {shape[axis]}) is empty",
            hint="start and stop follow Python's rules (negative from the end, stop excluded)",
        )
    return a, (*shape[:axis], size, *shape[axis + 1 :])


def _permute_infer(a: PermuteAttrs, ins: list[Shape]) -> tuple[PermuteAttrs, Shape]:
    shape = ins[0]
    if sorted(a.dims) != list(range(len(shape))):
        raise ShapeError(
            f"dims {list(a.dims)} is not a permutation of the input's axes "
            f"{list(range(len(shape)))} (shape {shape})",
            hint="list every axis once, 0-based with the batch excluded (Keras' Permute "
            "counts from 1): [1, 0] swaps the steps and the channels of a sequence",
        )
    return a, tuple(shape[d] for d in a.dims)


register(
    OpDef(
        "conv1d",
        "Conv1D",
        Conv1DAttrs,
        _conv1d_infer,
        _conv1d_weights,
        _conv1d_flops,
        macs=_conv1d_macs,
        doc="1-D convolution over the steps of a (steps, channels) sequence; kernel "
        "(k, in/groups, filters)",
    )
)
for _name, _title in (("max_pool1d", "MaxPooling1D"), ("avg_pool1d", "AveragePooling1D")):
    register(
        OpDef(
            _name,
            _title,
            Pool1DAttrs,
            _pool1d_infer,
            flops=lambda a, i, o: prod(o) * a.pool,
            doc="1-D pooling over the steps; strides default to the pool size",
        )
    )
for _name, _title, _what in (
    ("global_avg_pool1d", "GlobalAveragePooling1D", "mean"),
    ("global_max_pool1d", "GlobalMaxPooling1D", "maximum"),
):
    register(
        OpDef(
            _name,
            _title,
            GlobalPool1DAttrs,
            _global1d_infer,
            flops=lambda a, i, o: prod(i[0]),
            doc=f"{_what} over the steps of a (steps, channels) sequence",
        )
    )
register(
    OpDef(
        "embedding",
        "Embedding",
        EmbeddingAttrs,
        _embedding_infer,
        lambda a, i, o: [Weight("embeddings", (a.input_dim, a.output_dim), True)],
        lambda a, i, o: 2 * _embedding_macs(a, i, o),
        macs=_embedding_macs,
        computed=("reverse", "reversible"),
        doc="integer token ids (an input with dtype: int) -> vectors; embeddings "
        "(input_dim, output_dim)",
        titled=lambda a: "ReversibleEmbedding" if a.reversible else "Embedding",
    )
)
register(
    OpDef(
        "positional_embedding",
        "PositionalEmbedding",
        LearnedAttrs,
        lambda a, i: (a, i[0]),
        _positional_weights,
        lambda a, i, o: prod(o),
        doc="adds a learned tensor of the input's shape (one vector per position)",
    )
)
register(
    OpDef(
        "class_token",
        "ClassToken",
        LearnedAttrs,
        _token_infer,
        _token_weights,
        doc="prepends a learned entry along the first axis: (T, C) -> (T + 1, C)",
    )
)
register(
    OpDef(
        "take",
        "Take",
        TakeAttrs,
        _take_infer,
        doc="one index of an axis, the axis removed (x[:, 0] with axis 0, index 0)",
    )
)
register(
    OpDef(
        "slice",
        "Slice",
        SliceAttrs,
        _slice_infer,
        doc="the entries start..stop (Python's rules) of one axis",
    )
)
register(
    OpDef(
        "permute",
        "Permute",
        PermuteAttrs,
        _permute_infer,
        doc="reorders the axes (0-based, batch excluded; Keras' Permute counts from 1)",
    )
)
