"""Ops with several inputs, referenced by name: add (optionally scaled), multiply, subtract,
concat."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import prod
from typing import Annotated, Any, TypeVar

from pydantic import Field, PlainValidator, Strict, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..ir import Shape
from . import ATTRS_CONFIG, OpDef, ShapeError, register
from .core import NoAttrs

_SCALES = "a list of numbers, one per input"


def _scales(value: Any) -> tuple[float, ...]:
    """A validator: a list of finite numbers (one error for any mistake, in a user's words)."""
    items = list(value) if isinstance(value, list | tuple) else None
    if not items or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in items
    ):
        raise PydanticCustomError("scales", f"input should be {_SCALES}")
    return tuple(float(v) for v in items)


Scales = Annotated[
    tuple[float, ...],
    PlainValidator(_scales),
    WithJsonSchema(
        {"type": "array", "items": {"type": "number"}, "minItems": 1, "description": _SCALES}
    ),
    Field(description=_SCALES),
]


@dataclass(frozen=True, slots=True)
class AddAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    # keras.applications' InceptionResNetV2 residual (CustomScaleLayer: x + branch * scale)
    # is scales [1, scale]
    scales: Scales | None = field(
        default=None,
        metadata={
            "doc": "one coefficient per input: inputs[0] * scales[0] + inputs[1] * scales[1] "
            "+ ..., summed left to right, a coefficient of 1 not multiplied (left out: all 1)"
        },
    )


@dataclass(frozen=True, slots=True)
class ConcatAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    axis: Annotated[int, Strict()] = -1


def _broadcast(x: int | None, y: int | None) -> int | None:
    """One axis' size after broadcasting; an unknown size (None) against 1 or another unknown
    stays unknown, against a known size n it can only be n (or 1) when the model runs."""
    if x is None or y is None:
        known = x if y is None else y
        return None if known in (None, 1) else known
    return max(x, y)


A = TypeVar("A")


def _elementwise_infer(a: A, ins: list[Shape]) -> tuple[A, Shape]:
    """Broadcasting as Keras (and numpy) does it, batch excluded: shapes align on the right
    (channels); on each axis the sizes are equal or one of them is 1. Only known sizes are
    checked: an unknown one (None) is checked when the model runs."""
    out: list[int | None] = list(ins[0])
    for i, s in enumerate(ins[1:], start=1):
        rank = max(len(out), len(s))
        left: list[int | None] = [*[1] * (rank - len(out)), *out]
        right: list[int | None] = [*[1] * (rank - len(s)), *s]
        pairs = zip(left, right, strict=True)
        if any(x != y and 1 not in (x, y) and None not in (x, y) for x, y in pairs):
            raise ShapeError(
                f"inputs of shapes {ins[0]} and {s} cannot be broadcast together",
                hint="element-wise ops need equal sizes on each axis, or 1 on one side (a "
                "(1, 1, C) gate scales every pixel); add a projection (1x1 conv) or pooling "
                "on one branch",
                inputs=(0, i),
            )
        out = [_broadcast(x, y) for x, y in zip(left, right, strict=True)]
    return a, tuple(out)  # type: ignore[arg-type]


def _concat_infer(a: ConcatAttrs, ins: list[Shape]) -> tuple[ConcatAttrs, Shape]:
    rank = len(ins[0])
    if not -rank <= a.axis < rank:
        raise ShapeError(
            f"axis {a.axis} is out of range for rank-{rank} inputs",
            hint=f"use an axis in [{-rank}, {rank - 1}] (batch excluded; -1 is channels)",
        )
    axis = a.axis % rank
    out: list[int | None] = list(ins[0])  # where one input knows a size, the others have it
    known_from = [0] * rank  # the input each known size comes from
    for i, s in enumerate(ins[1:], start=1):  # unknown sizes (None) are checked when run
        if len(s) != rank:
            raise ShapeError(
                f"cannot concatenate shapes {ins[0]} and {s} on axis {a.axis}",
                hint="all dimensions except the concatenation axis must match",
                inputs=(0, i),
            )
        for k, (x, y) in enumerate(zip(out, s, strict=True)):
            if k == axis:
                continue
            if x is not None and y is not None and x != y:
                j = known_from[k]
                raise ShapeError(
                    f"cannot concatenate shapes {ins[j]} and {s} on axis {a.axis}",
                    hint="all dimensions except the concatenation axis must match",
                    inputs=(j, i),
                )
            if x is None and y is not None:
                out[k], known_from[k] = y, i
    sizes = [s[axis] for s in ins]
    out[axis] = None if None in sizes else sum(sizes)
    return ConcatAttrs(a.axis), tuple(out)  # type: ignore[arg-type]


def _add_infer(a: AddAttrs, ins: list[Shape]) -> tuple[AddAttrs, Shape]:
    if a.scales is not None and len(a.scales) != len(ins):
        raise ShapeError(
            f"scales has {len(a.scales)} values for {len(ins)} inputs",
            hint="give one number per input, in the order of inputs (1 leaves an input as "
            "it is), or leave scales out for a plain sum",
        )
    return _elementwise_infer(a, ins)


def _merge_flops(a: object, ins: list[Shape], out: Shape) -> int:
    return prod(out) * (len(ins) - 1)


def _add_flops(a: AddAttrs, ins: list[Shape], out: Shape) -> int:
    """The sums, and one multiplication per element for each coefficient other than 1."""
    scaled = sum(s != 1.0 for s in a.scales or ())
    return prod(out) * (len(ins) - 1 + scaled)


_ELEMENTWISE = "element-wise, broadcasting as Keras does (sizes equal or 1 on each axis)"
register(
    OpDef(
        "add",
        "Add",
        AddAttrs,
        _add_infer,
        flops=_add_flops,
        min_inputs=2,
        max_inputs=None,
        unknown_sizes=True,
        doc=f"{_ELEMENTWISE}; with scales, each input times its coefficient (one layer, ScaledAdd)",
        titled=lambda a: "Add" if a.scales is None else "ScaledAdd",
    )
)
for _name, _title in (("multiply", "Multiply"), ("subtract", "Subtract")):
    register(
        OpDef(
            _name,
            _title,
            NoAttrs,
            _elementwise_infer,
            flops=_merge_flops,
            min_inputs=2,
            max_inputs=2 if _name == "subtract" else None,
            unknown_sizes=True,
            doc=_ELEMENTWISE,
        )
    )
register(
    OpDef(
        "concat",
        "Concatenate",
        ConcatAttrs,
        _concat_infer,
        min_inputs=2,
        max_inputs=None,
        unknown_sizes=True,
        doc="concatenate on a logical axis (-1: channels)",
    )
)
