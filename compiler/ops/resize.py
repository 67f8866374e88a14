"""Ops that resize or rescale an image: upsample2d, cropping2d, rescaling."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Annotated, Literal

from pydantic import BeforeValidator

from ..ir import Shape
from . import (
    ATTRS_CONFIG,
    Float,
    NonNegPair,
    OpDef,
    Pair,
    ShapeError,
    image_shape,
    register,
    spatial,
    times,
)
from .pool import pads_value  # the same forms as zero_pad2d's padding


@dataclass(frozen=True, slots=True)
class UpsampleAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    size: Pair = (2, 2)
    interpolation: Literal["nearest", "bilinear"] = "nearest"


@dataclass(frozen=True, slots=True)
class CroppingAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    cropping: Annotated[tuple[NonNegPair, NonNegPair], BeforeValidator(pads_value)] = (
        (0, 0),
        (0, 0),
    )


@dataclass(frozen=True, slots=True)
class RescalingAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    scale: Float
    offset: Float = 0.0


def _upsample_infer(a: UpsampleAttrs, ins: list[Shape]) -> tuple[UpsampleAttrs, Shape]:
    h, w, c = spatial(ins[0], "upsample2d")
    return a, image_shape(times(h, a.size[0]), times(w, a.size[1]), c)


def _crop_infer(a: CroppingAttrs, ins: list[Shape]) -> tuple[CroppingAttrs, Shape]:
    h, w, c = spatial(ins[0], "cropping2d")
    (t, b), (left, r) = a.cropping
    if (h is not None and t + b >= h) or (w is not None and left + r >= w):
        raise ShapeError(
            f"cropping {a.cropping} leaves nothing of a {h or '?'}x{w or '?'} input",
            hint="crop less than the input's height and width",
        )
    # an unknown size is checked when the model runs (too small an input is an error there)
    return a, image_shape(times(h, 1, -t - b), times(w, 1, -left - r), c)


register(
    OpDef(
        "upsample2d",
        "UpSampling2D",
        UpsampleAttrs,
        _upsample_infer,
        unknown_sizes=True,
        flops=lambda a, i, o: prod(o) * (4 if a.interpolation == "bilinear" else 0),
        doc="repeat (nearest) or interpolate (bilinear, half-pixel centres) by `size`",
    )
)
register(
    OpDef(
        "cropping2d",
        "Cropping2D",
        CroppingAttrs,
        _crop_infer,
        unknown_sizes=True,
        doc="crop: n, [h, w] or [[top, bottom], [left, right]]",
    )
)
register(
    OpDef(
        "rescaling",
        "Rescaling",
        RescalingAttrs,
        lambda a, i: (a, i[0]),
        flops=lambda a, i, o: 2 * prod(o),
        unknown_sizes=True,
        doc="x * scale + offset",
    )
)
