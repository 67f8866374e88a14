"""Ops with several inputs, referenced by name: add, multiply, concat."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Annotated

from pydantic import Strict

from ..ir import Shape
from . import ATTRS_CONFIG, OpDef, ShapeError, register
from .core import NoAttrs


@dataclass(frozen=True, slots=True)
class ConcatAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    axis: Annotated[int, Strict()] = -1


def _elementwise_infer(a: NoAttrs, ins: list[Shape]) -> tuple[NoAttrs, Shape]:
    for i, s in enumerate(ins[1:], start=1):
        if s != ins[0]:
            raise ShapeError(
                f"inputs have different shapes: {ins[0]} and {s}",
                hint="element-wise ops need equal shapes; add a projection (1x1 conv) "
                "or pooling on one branch",
                inputs=(0, i),
            )
    return a, ins[0]


def _concat_infer(a: ConcatAttrs, ins: list[Shape]) -> tuple[ConcatAttrs, Shape]:
    rank = len(ins[0])
    if not -rank <= a.axis < rank:
        raise ShapeError(
            f"axis {a.axis} is out of range for rank-{rank} inputs",
            hint=f"use an axis in [{-rank}, {rank - 1}] (batch excluded; -1 is channels)",
        )
    axis = a.axis % rank
    for i, s in enumerate(ins[1:], start=1):
        mismatch = len(s) != rank or any(
            x != y for k, (x, y) in enumerate(zip(s, ins[0], strict=True)) if k != axis
        )
        if mismatch:
            raise ShapeError(
                f"cannot concatenate shapes {ins[0]} and {s} on axis {a.axis}",
                hint="all dimensions except the concatenation axis must match",
                inputs=(0, i),
            )
    out = list(ins[0])
    out[axis] = sum(s[axis] for s in ins)
    return ConcatAttrs(a.axis), tuple(out)


def _merge_flops(a: object, ins: list[Shape], out: Shape) -> int:
    return prod(out) * (len(ins) - 1)


for _name, _title in (("add", "Add"), ("multiply", "Multiply")):
    register(
        OpDef(
            _name,
            _title,
            NoAttrs,
            _elementwise_infer,
            flops=_merge_flops,
            min_inputs=2,
            max_inputs=None,
            doc="element-wise over inputs of equal shape",
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
        doc="concatenate on a logical axis (-1: channels)",
    )
)
