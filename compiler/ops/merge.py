"""Ops with several inputs, referenced by name: add, multiply, subtract, concat."""

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
    """Broadcasting as Keras (and numpy) does it, batch excluded: shapes align on the right
    (channels); on each axis the sizes are equal or one of them is 1."""
    out = list(ins[0])
    for i, s in enumerate(ins[1:], start=1):
        rank = max(len(out), len(s))
        left = [1] * (rank - len(out)) + out
        right = [1] * (rank - len(s)) + list(s)
        if any(x != y and 1 not in (x, y) for x, y in zip(left, right, strict=True)):
            raise ShapeError(
                f"inputs of shapes {ins[0]} and {s} cannot be broadcast together",
                hint="element-wise ops need equal sizes on each axis, or 1 on one side (a "
                "(1, 1, C) gate scales every pixel); add a projection (1x1 conv) or pooling "
                "on one branch",
                inputs=(0, i),
            )
        out = [max(x, y) for x, y in zip(left, right, strict=True)]
    return a, tuple(out)


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


for _name, _title in (("add", "Add"), ("multiply", "Multiply"), ("subtract", "Subtract")):
    register(
        OpDef(
            _name,
            _title,
            NoAttrs,
            _elementwise_infer,
            flops=_merge_flops,
            min_inputs=2,
            max_inputs=2 if _name == "subtract" else None,
            doc="element-wise, broadcasting as Keras does (sizes equal or 1 on each axis)",
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
