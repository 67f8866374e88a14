"""The op registry: each op declares its attributes, shape rule, weights and FLOPs once.

Backends add one emitter per op; nothing else needs to know an op exists. Installed plugins
add theirs (compiler/plugins.py) when `load_all()` first runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, WithJsonSchema

from ..ir import Shape, Weight


class RegistrationError(Exception):
    """An op (or a table an op's backends keep) declared inconsistently: a mistake in archc's
    source or a plugin's, raised when the declarations are loaded."""


class ShapeError(Exception):
    """A user error found by a shape rule. `inputs` names which inputs are involved."""

    def __init__(self, message: str, hint: str = "", inputs: Sequence[int] = ()):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.inputs = tuple(inputs)


def _as_pair(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, list):
        return tuple(v)
    return v


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


PosInt = Annotated[int, Strict(), Field(gt=0, description="a positive integer")]
NonNegInt = Annotated[int, Strict(), Field(ge=0, description="a non-negative integer")]
Int = Annotated[int, Strict(), Field(description="an integer")]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False, description="a number")]
Bool = Annotated[bool, Strict(), Field(description="true or false")]


def _pair_schema(minimum: int) -> WithJsonSchema:
    one = {"type": "integer", "minimum": minimum}
    two = {"type": "array", "items": one, "minItems": 2, "maxItems": 2}
    what = "a positive integer" if minimum else "a non-negative integer"
    return WithJsonSchema({"anyOf": [one, two], "description": f"{what}, or [height, width]"})


Pair = Annotated[tuple[PosInt, PosInt], BeforeValidator(_as_pair), _pair_schema(1)]
NonNegPair = Annotated[tuple[NonNegInt, NonNegInt], BeforeValidator(_as_pair), _pair_schema(0)]
ShapeT = Annotated[
    tuple[PosInt, ...],
    BeforeValidator(_as_tuple),
    Field(min_length=1, description="a list of positive integers"),
]
Padding = Literal["valid", "same"]
Activation = Literal[
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "silu",
    "swish",
    "gelu",
    "hard_sigmoid",
    "hard_swish",
    "elu",
    "selu",
    "mish",
    "leaky_relu",
]
L2 = (
    Annotated[
        float, Strict(), Field(ge=0, allow_inf_nan=False, description="a non-negative number")
    ]
    | None
)
# TF's (before, after) pads on height and width; None where they depend on an unknown size
Pads = tuple[tuple[int | None, int | None], tuple[int | None, int | None]]
NO_PADS: Pads = ((0, 0), (0, 0))

ATTRS_CONFIG = ConfigDict(extra="forbid")

ShapeRule = Callable[[Any, list[Shape]], tuple[Any, Shape]]
WeightRule = Callable[[Any, list[Shape], Shape], list[Weight]]
FlopRule = Callable[[Any, list[Shape], Shape], int]


@dataclass(frozen=True, slots=True)
class OpDef:
    """Everything the compiler knows about one op.

    `infer(attrs, in_shapes)` returns the attrs with computed fields filled in (for example the
    explicit pads of a `same` convolution) and the output shape (batch excluded).

    An image's height and width may be None (unknown until the model runs). Only an op with
    `unknown_sizes=True` sees such shapes (its rule gives None where the size depends on
    them, and its weights never do); any other op is refused there with a located error
    (`archc.compiler.infer`), and no op's FLOPs are counted there (they depend on the size).
    """

    name: str
    title: str
    attrs: type
    infer: ShapeRule
    weights: WeightRule = lambda a, i, o: []
    flops: FlopRule = lambda a, i, o: 0  # a rough total: element-wise work counted too
    # multiply-accumulates of convolutions, dense layers and attention matmuls (the work of
    # matrix units; 2 x MACs is the FLOP count torch.utils.flop_counter and papers report);
    # every other op has none
    macs: FlopRule = lambda a, i, o: 0
    min_inputs: int = 1
    max_inputs: int | None = 1
    computed: tuple[str, ...] = ()
    doc: str = ""
    unknown_sizes: bool = False  # the rule handles None (unknown) heights and widths
    # the Keras layer type where it depends on the attributes (an add with scales is a
    # ScaledAdd); None: always `title`
    titled: Callable[[Any], str] | None = None

    @property
    def user_fields(self) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(self.attrs) if f.name not in self.computed]

    @property
    def required(self) -> set[str]:
        return {
            f.name
            for f in self.user_fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }

    def layer_type(self, attrs: Any) -> str:
        """The Keras layer type of a node with these (resolved) attributes."""
        return self.title if self.titled is None else self.titled(attrs)

    def adapter(self) -> TypeAdapter[Any]:
        return _adapter(self.attrs)


@cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise RuntimeError(f"op '{op.name}' registered twice")
    REGISTRY[op.name] = op
    return op


def describe(tp: Any) -> str:
    """A type annotation in a user's words ('a positive integer, or [height, width]')."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *meta = typing.get_args(tp)
        for m in meta:
            text = getattr(m, "description", None)
            if text is None and isinstance(getattr(m, "json_schema", None), dict):
                text = m.json_schema.get("description")
            if text:
                return str(text)
        return describe(inner)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        text = " or ".join(describe(a) for a in args if a is not type(None))
        return text + (" (or null)" if type(None) in args else "")
    if origin is Literal:
        values = [repr(a) for a in typing.get_args(tp)]
        return " or ".join(values) if len(values) <= 2 else "one of " + ", ".join(values)
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in simple:
        return simple[tp]
    return "a list" if origin is tuple else getattr(tp, "__name__", str(tp))


def field_types(attrs: type) -> dict[str, Any]:
    return typing.get_type_hints(attrs, include_extras=True)


def load_all() -> dict[str, OpDef]:
    from ..plugins import load_plugins
    from . import (  # noqa: F401  (registration side effects)
        attention,
        conv,
        core,
        llm,
        merge,
        pool,
        recurrent,
        resize,
        scale,
        sequence,
        sinusoidal,
    )

    load_plugins()  # the installed plugins' ops (compiler/plugins.py), once a process
    return REGISTRY


def spatial(shape: Shape, op: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(
            f"{op} needs a 3-D input (height, width, channels), got shape {shape}",
            hint="flatten/reshape produced a non-image tensor before this layer?",
        )
    return shape  # type: ignore[return-value]


Size = int | None  # a size on one axis; None: an image's height or width, unknown until run


def image_shape(h: Size, w: Size, c: int) -> Shape:
    """(height, width, channels) where height or width may be None (unknown). `Shape` stays
    typed `tuple[int, ...]` so that rules on known sizes are checked as before; the rules
    that may see None test for it, and build their shapes here."""
    return (h, w, c)  # type: ignore[return-value]


def times(n: Size, factor: int, extra: int = 0) -> Size:
    """n * factor + extra, or None where n is unknown."""
    return None if n is None else n * factor + extra


def window_size(
    n: Size, k: int, s: int, d: int, padding: str, axis: str, what: str
) -> tuple[Size, tuple[Size, Size]]:
    """`window_out` where the size may be unknown: then the output size is unknown too, and
    so are TF's 'same' pads, except at stride 1 (k - 1 in total, whatever the size)."""
    if n is not None:
        return window_out(n, k, s, d, padding, axis, what)
    if padding == "valid":
        return None, (0, 0)
    if s == 1:
        pad = (k - 1) * d
        return None, (pad // 2, pad - pad // 2)
    return None, (None, None)


def window_out(
    n: int, k: int, s: int, d: int, padding: str, axis: str, what: str
) -> tuple[int, tuple[int, int]]:
    """Output size and (before, after) pads of a sliding window on one axis, TF's rule."""
    span = (k - 1) * d + 1
    if padding == "valid":
        if span > n:
            dilated = f" (effective {span})" if d > 1 else ""
            raise ShapeError(
                f"{what} {k}{dilated} is larger than the input {axis} {n} with padding 'valid'",
                hint=f"use padding: same, a smaller {what}, or a larger input",
            )
        return (n - span) // s + 1, (0, 0)
    out = -(-n // s)
    pad = max(0, (out - 1) * s + span - n)
    return out, (pad // 2, pad - pad // 2)
