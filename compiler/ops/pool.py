"""Pooling and padding: max_pool2d, avg_pool2d, global_avg_pool2d, zero_pad2d."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

from ..ir import Shape
from . import (
    ATTRS_CONFIG,
    NO_PADS,
    Bool,
    NonNegPair,
    OpDef,
    Padding,
    Pads,
    Pair,
    ShapeError,
    image_shape,
    register,
    spatial,
    times,
    window_size,
)


@dataclass(frozen=True, slots=True)
class Pool2DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    pool: Pair
    strides: Pair | None = None
    padding: Padding = "valid"
    pads: Pads = NO_PADS


@dataclass(frozen=True, slots=True)
class GlobalPoolAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    keepdims: Bool = False


def pads_value(v: Any) -> Any:
    """1 -> ((1,1),(1,1)); [1, 2] -> ((1,1),(2,2)); [[t,b],[l,r]] stays."""
    if isinstance(v, int) and not isinstance(v, bool):
        return ((v, v), (v, v))
    if isinstance(v, list | tuple) and len(v) == 2:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return ((v[0], v[0]), (v[1], v[1]))
        return tuple(tuple(x) if isinstance(x, list) else x for x in v)
    return v


@dataclass(frozen=True, slots=True)
class ZeroPad2DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    padding: Annotated[tuple[NonNegPair, NonNegPair], BeforeValidator(pads_value)] = (
        (1, 1),
        (1, 1),
    )


def _pool_infer(a: Pool2DAttrs, ins: list[Shape]) -> tuple[Pool2DAttrs, Shape]:
    h, w, c = spatial(ins[0], "pooling")
    strides = a.strides or a.pool
    ho, ph = window_size(h, a.pool[0], strides[0], 1, a.padding, "height", "pool size")
    wo, pw = window_size(w, a.pool[1], strides[1], 1, a.padding, "width", "pool size")
    pads = (ph, pw)  # None where they depend on an unknown size
    return dataclasses.replace(a, strides=strides, pads=pads), image_shape(ho, wo, c)


def _pool_flops(a: Pool2DAttrs, ins: list[Shape], out: Shape) -> int:
    return out[0] * out[1] * out[2] * a.pool[0] * a.pool[1]


def _gap_infer(a: GlobalPoolAttrs, ins: list[Shape]) -> tuple[GlobalPoolAttrs, Shape]:
    _, _, c = spatial(ins[0], "global pooling")
    return a, ((1, 1, c) if a.keepdims else (c,))


def _zpad_infer(a: ZeroPad2DAttrs, ins: list[Shape]) -> tuple[ZeroPad2DAttrs, Shape]:
    h, w, c = spatial(ins[0], "zero_pad2d")
    (t, b), (left, r) = a.padding
    return a, image_shape(times(h, 1, t + b), times(w, 1, left + r), c)


def _gap_flops(a: GlobalPoolAttrs, ins: list[Shape], out: Shape) -> int:
    return ins[0][0] * ins[0][1] * ins[0][2]


for _name, _title in (("max_pool2d", "MaxPooling2D"), ("avg_pool2d", "AveragePooling2D")):
    register(
        OpDef(
            _name,
            _title,
            Pool2DAttrs,
            _pool_infer,
            flops=_pool_flops,
            computed=("pads",),
            unknown_sizes=True,
            doc="2-D pooling; strides default to the pool size",
        )
    )
register(
    OpDef(
        "global_avg_pool2d",
        "GlobalAveragePooling2D",
        GlobalPoolAttrs,
        _gap_infer,
        flops=_gap_flops,
        unknown_sizes=True,
        doc="mean over height and width",
    )
)
register(
    OpDef(
        "global_max_pool2d",
        "GlobalMaxPooling2D",
        GlobalPoolAttrs,
        _gap_infer,
        flops=_gap_flops,
        unknown_sizes=True,
        doc="maximum over height and width",
    )
)
register(
    OpDef(
        "zero_pad2d",
        "ZeroPadding2D",
        ZeroPad2DAttrs,
        _zpad_infer,
        unknown_sizes=True,
        doc="zero padding: n, [h, w] or [[top, bottom], [left, right]]",
    )
)

__all__ = ["ShapeError"]
