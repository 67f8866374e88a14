"""Core ops: input, batch_norm, layer_norm, activation, dense, flatten, reshape, dropout."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, Strict

from ..ir import Shape, Weight
from . import (
    ATTRS_CONFIG,
    L2,
    Activation,
    Bool,
    Float,
    OpDef,
    PosInt,
    ShapeError,
    ShapeT,
    register,
)
from .initializers import BIAS_DOC, KERNEL_DOC, Initializer


@dataclass(frozen=True, slots=True)
class InputAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    shape: ShapeT
    dtype: Literal["float", "int"] = "float"  # int: token ids, which only embedding reads


@dataclass(frozen=True, slots=True)
class BatchNormAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    epsilon: Annotated[Float, Field(gt=0)] = 1e-3
    momentum: Annotated[Float, Field(ge=0, le=1)] = 0.99
    center: Bool = True
    scale: Bool = True


@dataclass(frozen=True, slots=True)
class LayerNormAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    epsilon: Annotated[Float, Field(gt=0)] = 1e-3  # Keras' default (PyTorch's is 1e-5)
    center: Bool = True
    scale: Bool = True


@dataclass(frozen=True, slots=True)
class ActivationAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    fn: Activation
    alpha: Float | None = field(
        default=None,
        metadata={
            "doc": "leaky_relu's slope below zero (Keras' LeakyReLU negative_slope; "
            "null: Keras' leaky_relu with 0.2)"
        },
    )
    approximate: Bool | None = field(
        default=None, metadata={"doc": "gelu by its tanh approximation (true) or exact"}
    )

    def __post_init__(self) -> None:
        if self.alpha is not None and self.fn != "leaky_relu":
            raise ValueError("alpha is leaky_relu's slope: it needs fn: leaky_relu")
        if self.approximate is not None and self.fn != "gelu":
            raise ValueError("approximate is gelu's: it needs fn: gelu")


@dataclass(frozen=True, slots=True)
class DenseAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    units: PosInt
    use_bias: Bool = True
    activation: Activation = "linear"
    kernel_l2: L2 = None
    kernel_initializer: Initializer = field(default="glorot_uniform", metadata={"doc": KERNEL_DOC})
    bias_initializer: Initializer = field(default="zeros", metadata={"doc": BIAS_DOC})


@dataclass(frozen=True, slots=True)
class NoAttrs:
    __pydantic_config__ = ATTRS_CONFIG


@dataclass(frozen=True, slots=True)
class ReshapeAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    target_shape: Annotated[
        tuple[Annotated[int, Strict()], ...],
        BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v),
        Field(min_length=1),
    ]


NoiseShape = Annotated[
    tuple[PosInt | None, ...],
    BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v),
    Field(min_length=1, description="a list of 1, the axis' size or null, one per axis"),
]


@dataclass(frozen=True, slots=True)
class DropoutAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    rate: Annotated[Float, Field(ge=0, lt=1)]
    # Keras' noise_shape without the batch axis: 1 shares one mask value along the axis,
    # the axis' size or null draws one per element (e.g. [1, 1, 1]: whole samples)
    noise_shape: NoiseShape | None = None


def _same(a: object, ins: list[Shape]) -> tuple[object, Shape]:
    return a, ins[0]


def _elementwise_flops(a: object, ins: list[Shape], out: Shape) -> int:
    return prod(out)


@dataclass(frozen=True, slots=True)
class StochasticDepthAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    rate: Annotated[Float, Field(ge=0, lt=1)]  # the probability of dropping a whole sample


def _dropout_infer(a: DropoutAttrs, ins: list[Shape]) -> tuple[DropoutAttrs, Shape]:
    shape = ins[0]
    if a.noise_shape is None:
        return a, shape
    given = "[" + ", ".join("null" if d is None else str(d) for d in a.noise_shape) + "]"
    if len(a.noise_shape) != len(shape):
        raise ShapeError(
            f"noise_shape {given} has {len(a.noise_shape)} entries, the input {shape} has "
            f"{len(shape)} axes (batch excluded)",
            hint="give one entry per input axis, the batch left out: 1 (one mask value shared "
            "along the axis), the axis' size or null (one per element)",
        )
    for axis, (d, size) in enumerate(zip(a.noise_shape, shape, strict=True)):
        if d is not None and d != 1 and size is None:
            raise ShapeError(
                f"noise_shape {given}: entry {axis} is {d}, but that input axis' size is unknown",
                hint="use 1 (one mask value shared along the axis) or null (one per element)",
            )
        if d is not None and d not in (1, size):
            raise ShapeError(
                f"noise_shape {given}: entry {axis} is {d}, but that input axis has size {size}",
                hint=f"use 1 (one mask value shared along the axis), {size} or null "
                "(one per element)",
            )
    return a, shape


def _input_infer(a: InputAttrs, ins: list[Shape]) -> tuple[InputAttrs, Shape]:
    return a, a.shape


def _bn_weights(a: BatchNormAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    c = (ins[0][-1],)
    ws = []
    if a.scale:
        ws.append(Weight("gamma", c, True))
    if a.center:
        ws.append(Weight("beta", c, True))
    return [*ws, Weight("moving_mean", c, False), Weight("moving_variance", c, False)]


def _ln_weights(a: LayerNormAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    c = (ins[0][-1],)
    return [Weight("gamma", c, True)] * a.scale + [Weight("beta", c, True)] * a.center


def _dense_infer(a: DenseAttrs, ins: list[Shape]) -> tuple[DenseAttrs, Shape]:
    return a, (*ins[0][:-1], a.units)


def _dense_weights(a: DenseAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    ws = [Weight("kernel", (ins[0][-1], a.units), True)]
    return [*ws, Weight("bias", (a.units,), True)] if a.use_bias else ws


def _dense_macs(a: DenseAttrs, ins: list[Shape], out: Shape) -> int:
    return prod(ins[0][:-1]) * ins[0][-1] * a.units  # every row, in x units


def _dense_flops(a: DenseAttrs, ins: list[Shape], out: Shape) -> int:
    rows = prod(ins[0][:-1])
    return rows * (2 * ins[0][-1] * a.units + (a.units if a.use_bias else 0))


def _flatten_infer(a: NoAttrs, ins: list[Shape]) -> tuple[NoAttrs, Shape]:
    return a, (prod(ins[0]),)


def _reshape_infer(a: ReshapeAttrs, ins: list[Shape]) -> tuple[ReshapeAttrs, Shape]:
    size = prod(ins[0])
    target = a.target_shape
    unknown = [i for i, d in enumerate(target) if d == -1]
    if len(unknown) > 1 or any(d == 0 or d < -1 for d in target):
        raise ShapeError(
            f"target_shape {target} is invalid",
            hint="use positive sizes and at most one -1 (inferred)",
        )
    known = prod(d for d in target if d != -1)
    if unknown:
        if size % known:
            raise ShapeError(f"cannot reshape {ins[0]} ({size} values) into {target}")
        target = tuple(size // known if d == -1 else d for d in target)
    elif known != size:
        raise ShapeError(
            f"cannot reshape {ins[0]} ({size} values) into {target} ({known} values)",
            hint="the number of values must stay the same (batch excluded)",
        )
    return ReshapeAttrs(target), target


register(OpDef("input", "InputLayer", InputAttrs, _input_infer, min_inputs=0, max_inputs=0))
register(
    OpDef(
        "batch_norm",
        "BatchNormalization",
        BatchNormAttrs,
        _same,
        _bn_weights,
        lambda a, i, o: 2 * prod(o),
        unknown_sizes=True,
        doc="batch normalization over the channel (last) axis; Keras epsilon/momentum",
    )
)
register(
    OpDef(
        "layer_norm",
        "LayerNormalization",
        LayerNormAttrs,
        _same,
        _ln_weights,
        lambda a, i, o: 5 * prod(o),
        unknown_sizes=True,
        doc="layer normalization over the channel (last) axis; Keras epsilon (1e-3)",
    )
)
register(
    OpDef(
        "activation",
        "Activation",
        ActivationAttrs,
        _same,
        titled=lambda a: (
            "LeakyReLU"
            if a.alpha is not None
            else ("GELU" if a.approximate is not None else "Activation")
        ),
        flops=_elementwise_flops,
        unknown_sizes=True,
    )
)
register(  # on an image, per pixel: any height and width
    OpDef(
        "dense",
        "Dense",
        DenseAttrs,
        _dense_infer,
        _dense_weights,
        _dense_flops,
        macs=_dense_macs,
        unknown_sizes=True,
    )
)
register(OpDef("flatten", "Flatten", NoAttrs, _flatten_infer, doc="row-major over (H, W, C)"))
register(OpDef("reshape", "Reshape", ReshapeAttrs, _reshape_infer))
register(
    OpDef(
        "dropout",
        "Dropout",
        DropoutAttrs,
        _dropout_infer,
        unknown_sizes=True,
        doc="identity at inference; in training one mask of noise_shape's shape (1: shared)",
    )
)
register(
    OpDef(
        "stochastic_depth",
        "Dropout",  # Keras' Dropout with noise_shape (None, 1, ..., 1) drops whole samples
        StochasticDepthAttrs,
        _same,
        unknown_sizes=True,
        doc="identity at inference; in training each sample kept (scaled by 1 / (1 - rate)) "
        "or dropped whole",
    )
)
