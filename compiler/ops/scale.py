"""Per-channel affine ops: normalization (fixed or stored statistics), layer_scale."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..ir import Shape, Weight
from . import ATTRS_CONFIG, Float, OpDef, ShapeError, register


def _what(minimum: float | None) -> str:
    what = "a number" if minimum is None else "a non-negative number"
    return f"{what}, or a list of them (one per channel)"


def _per_channel(minimum: float | None) -> Callable[[Any], float | tuple[float, ...]]:
    """A validator: a number, or a non-empty list of numbers (one per channel), each >=
    minimum; one error for any mistake (a union of the two forms would report one per form)."""

    def check(value: Any) -> float | tuple[float, ...]:
        items = list(value) if isinstance(value, list | tuple) else [value]
        ok = bool(items) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in items
        )
        if not ok or (minimum is not None and min(items) < minimum):
            raise PydanticCustomError("per_channel", f"input should be {_what(minimum)}")
        floats = tuple(float(v) for v in items)
        return floats if isinstance(value, list | tuple) else floats[0]

    return check


def _schema(minimum: float | None) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        number["minimum"] = minimum
    many = {"type": "array", "items": number, "minItems": 1}
    return WithJsonSchema({"anyOf": [number, many], "description": _what(minimum)})


PerChannel = Annotated[
    float | tuple[float, ...],
    PlainValidator(_per_channel(None)),
    _schema(None),
    Field(description=_what(None)),
]
PerChannelNonNeg = Annotated[
    float | tuple[float, ...],
    PlainValidator(_per_channel(0.0)),
    _schema(0.0),
    Field(description=_what(0.0)),
]


@dataclass(frozen=True, slots=True)
class NormalizationAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    # both or neither: fixed values (no weights), or Keras' non-trainable weights mean,
    # variance (C,) and count () that adapt() or a weights file set (0, 1 and 0 at first)
    mean: PerChannel | None = None
    variance: PerChannelNonNeg | None = None


@dataclass(frozen=True, slots=True)
class LayerScaleAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    init_value: Float = 1e-6  # gamma's initial value (ConvNeXt's)


def _normalization_infer(
    a: NormalizationAttrs, ins: list[Shape]
) -> tuple[NormalizationAttrs, Shape]:
    shape = ins[0]
    if (a.mean is None) != (a.variance is None):
        given, missing = ("mean", "variance") if a.variance is None else ("variance", "mean")
        raise ShapeError(
            f"{given} is given without {missing}",
            hint="give both mean and variance (fixed values, no weights), or neither (weights "
            "mean, variance and count, set by Keras' adapt() or a weights file)",
        )
    if a.mean is None or a.variance is None:
        return a, shape
    if isinstance(a.mean, tuple) != isinstance(a.variance, tuple):
        raise ShapeError(
            "one of mean and variance is a number, the other a list",
            hint="give both as numbers (one for every channel) or both as lists (one value "
            "per channel)",
        )
    for key, value in (("mean", a.mean), ("variance", a.variance)):
        if isinstance(value, tuple) and len(value) != shape[-1]:
            raise ShapeError(
                f"{key} has {len(value)} values, the input {shape} has {shape[-1]} channels",
                hint="give one value per channel (the last axis), or one number for all",
            )
    return a, shape


def _normalization_weights(a: NormalizationAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    if a.mean is not None:
        return []  # fixed values are constants
    c = (ins[0][-1],)
    return [Weight("mean", c, False), Weight("variance", c, False), Weight("count", (), False)]


register(
    OpDef(
        "normalization",
        "Normalization",
        NormalizationAttrs,
        _normalization_infer,
        _normalization_weights,
        lambda a, i, o: 2 * prod(o),
        unknown_sizes=True,
        doc="(x - mean) / max(sqrt(variance), 1e-7) per channel (last axis), Keras' rule",
    )
)
register(
    OpDef(
        "layer_scale",
        "LayerScale",
        LayerScaleAttrs,
        lambda a, i: (a, i[0]),
        lambda a, i, o: [Weight("gamma", (i[0][-1],), True)],
        lambda a, i, o: prod(o),
        unknown_sizes=True,
        doc="x * gamma per channel (last axis), gamma trainable from init_value (ConvNeXt)",
    )
)
