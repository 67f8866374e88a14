"""Initializer attributes as source, for both backends: a Keras name stays a string (or the
expression that computes it); a mapping becomes a call of the class it names with the
arguments it gives (`keras.initializers.VarianceScaling(scale=2.0, mode="fan_out")` in
Keras, the class of the same name that generated PyTorch files carry)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticCustomError

from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.ops.initializers import CLASSES, Config, check_config

from .pysrc import literal
from .structure import OpStep, Structure

# the attributes that are initializers: Keras' keywords, in the order they are passed
KEYWORDS = (
    "kernel_initializer",
    "depthwise_initializer",
    "pointwise_initializer",
    "bias_initializer",
)


def given(step: OpStep) -> list[str]:
    """The initializer attributes an op item (or its op's `defaults:`) sets."""
    return [k for k in KEYWORDS if k in step.attrs]


def config(s: Structure, step: OpStep, key: str) -> Config | None:
    """The mapping an initializer attribute gives, checked (an item the compiled parameters
    left out was never checked), or None for a name or an expression."""
    value = step.attrs[key]
    if not isinstance(value, dict):
        return None
    try:
        return check_config(value)
    except PydanticCustomError as exc:
        loc = s.compiled.loaded.doc.loc((*step.path, key))  # or the item's, from defaults:
        raise SpecError([Diagnostic("E032", f"invalid {step.op}.{key}: {exc}", loc)]) from None


def source(s: Structure, step: OpStep, key: str, src: Callable[[Any], str], prefix: str) -> str:
    """An initializer attribute as source: `prefix` + the class for a mapping (its arguments
    as the spec gives them), the value's own source for a name or an expression."""
    checked = config(s, step, key)
    if checked is None:
        return src(step.attrs[key])
    name = type(checked).__name__
    assert name in CLASSES  # a validated identifier reaches code
    value = step.attrs[key]
    args = [
        f"{f.name}={literal(getattr(checked, f.name))}"
        for f in dataclasses.fields(checked)
        if f.name in value
    ]
    return f"{prefix}{name}({', '.join(args)})"
