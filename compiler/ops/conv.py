"""Convolutions: conv2d, depthwise, separable and transposed (channels-last, TF 'same' split)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..ir import Shape, Weight
from . import (
    ATTRS_CONFIG,
    L2,
    NO_PADS,
    Activation,
    Bool,
    OpDef,
    Padding,
    Pads,
    Pair,
    PosInt,
    ShapeError,
    Size,
    image_shape,
    register,
    spatial,
    window_size,
)
from .initializers import (
    BIAS_DOC,
    DEPTHWISE_DOC,
    KERNEL_DOC,
    POINTWISE_DOC,
    Initializer,
)


@dataclass(frozen=True, slots=True)
class Conv2DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    filters: PosInt
    kernel: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    dilation: Pair = (1, 1)
    groups: PosInt = 1
    use_bias: Bool = True
    activation: Activation = "linear"
    kernel_l2: L2 = None
    kernel_initializer: Initializer = field(default="glorot_uniform", metadata={"doc": KERNEL_DOC})
    bias_initializer: Initializer = field(default="zeros", metadata={"doc": BIAS_DOC})
    pads: Pads = NO_PADS


@dataclass(frozen=True, slots=True)
class DepthwiseConv2DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    kernel: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    depth_multiplier: PosInt = 1
    dilation: Pair = (1, 1)
    use_bias: Bool = True
    activation: Activation = "linear"
    kernel_l2: L2 = None
    depthwise_initializer: Initializer = field(
        default="glorot_uniform", metadata={"doc": DEPTHWISE_DOC}
    )
    bias_initializer: Initializer = field(default="zeros", metadata={"doc": BIAS_DOC})
    pads: Pads = NO_PADS


@dataclass(frozen=True, slots=True)
class SeparableConv2DAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    filters: PosInt
    kernel: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    depth_multiplier: PosInt = 1
    dilation: Pair = (1, 1)
    use_bias: Bool = True
    activation: Activation = "linear"
    depthwise_initializer: Initializer = field(
        default="glorot_uniform", metadata={"doc": DEPTHWISE_DOC}
    )
    pointwise_initializer: Initializer = field(
        default="glorot_uniform", metadata={"doc": POINTWISE_DOC}
    )
    bias_initializer: Initializer = field(default="zeros", metadata={"doc": BIAS_DOC})
    pads: Pads = NO_PADS


@dataclass(frozen=True, slots=True)
class Conv2DTransposeAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    filters: PosInt
    kernel: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"
    use_bias: Bool = True
    activation: Activation = "linear"
    kernel_initializer: Initializer = field(default="glorot_uniform", metadata={"doc": KERNEL_DOC})
    bias_initializer: Initializer = field(default="zeros", metadata={"doc": BIAS_DOC})


def _window(a: Any, shape: Shape, op: str) -> tuple[Size, Size, Pads]:
    """Output height and width (None where unknown) and TF's pads (None where they depend on
    an unknown size: 'same' at a stride above 1)."""
    h, w, _ = spatial(shape, op)
    if max(a.strides) > 1 and max(a.dilation) > 1:
        raise ShapeError(
            f"strides {a.strides} with dilation {a.dilation} is not supported",
            hint="Keras rejects strides > 1 together with dilation > 1; use one of them",
        )
    ho, ph = window_size(h, a.kernel[0], a.strides[0], a.dilation[0], a.padding, "height", "kernel")
    wo, pw = window_size(w, a.kernel[1], a.strides[1], a.dilation[1], a.padding, "width", "kernel")
    return ho, wo, (ph, pw)


def _conv_infer(a: Conv2DAttrs, ins: list[Shape]) -> tuple[Conv2DAttrs, Shape]:
    ho, wo, pads = _window(a, ins[0], "conv2d")
    c = ins[0][2]
    if c % a.groups or a.filters % a.groups:
        raise ShapeError(
            f"groups={a.groups} must divide both input channels ({c}) and filters ({a.filters})"
        )
    return dataclasses.replace(a, pads=pads), image_shape(ho, wo, a.filters)


def _conv_weights(a: Conv2DAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    ws = [Weight("kernel", (*a.kernel, ins[0][2] // a.groups, a.filters), True)]
    if a.use_bias:
        ws.append(Weight("bias", (a.filters,), True))
    return ws


def _conv_macs(a: Conv2DAttrs, ins: list[Shape], out: Shape) -> int:
    return out[0] * out[1] * a.filters * a.kernel[0] * a.kernel[1] * (ins[0][2] // a.groups)


def _conv_flops(a: Conv2DAttrs, ins: list[Shape], out: Shape) -> int:
    return 2 * _conv_macs(a, ins, out) + (out[0] * out[1] * a.filters if a.use_bias else 0)


def _dw_infer(a: DepthwiseConv2DAttrs, ins: list[Shape]) -> tuple[DepthwiseConv2DAttrs, Shape]:
    ho, wo, pads = _window(a, ins[0], "depthwise_conv2d")
    if a.strides[0] != a.strides[1]:
        raise ShapeError(
            f"depthwise strides {a.strides} differ between height and width",
            hint="TensorFlow's depthwise convolution supports only equal strides; "
            "use one stride for both axes",
        )
    return dataclasses.replace(a, pads=pads), image_shape(ho, wo, ins[0][2] * a.depth_multiplier)


def _dw_weights(a: DepthwiseConv2DAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    ws = [Weight("depthwise_kernel", (*a.kernel, ins[0][2], a.depth_multiplier), True)]
    if a.use_bias:
        ws.append(Weight("bias", (out[2],), True))
    return ws


def _dw_macs(a: DepthwiseConv2DAttrs, ins: list[Shape], out: Shape) -> int:
    return out[0] * out[1] * out[2] * a.kernel[0] * a.kernel[1]  # one input channel each


def _dw_flops(a: DepthwiseConv2DAttrs, ins: list[Shape], out: Shape) -> int:
    return 2 * _dw_macs(a, ins, out) + (out[0] * out[1] * out[2] if a.use_bias else 0)


def _sep_infer(a: SeparableConv2DAttrs, ins: list[Shape]) -> tuple[SeparableConv2DAttrs, Shape]:
    ho, wo, pads = _window(a, ins[0], "separable_conv2d")
    if a.strides[0] != a.strides[1]:
        raise ShapeError(
            f"separable strides {a.strides} differ between height and width",
            hint="TensorFlow's depthwise convolution supports only equal strides; "
            "use one stride for both axes",
        )
    return dataclasses.replace(a, pads=pads), image_shape(ho, wo, a.filters)


def _sep_weights(a: SeparableConv2DAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    c, m = ins[0][2], a.depth_multiplier
    ws = [
        Weight("depthwise_kernel", (*a.kernel, c, m), True),
        Weight("pointwise_kernel", (1, 1, c * m, a.filters), True),
    ]
    return [*ws, Weight("bias", (a.filters,), True)] if a.use_bias else ws


def _sep_macs(a: SeparableConv2DAttrs, ins: list[Shape], out: Shape) -> int:
    mid = ins[0][2] * a.depth_multiplier
    depthwise = out[0] * out[1] * mid * a.kernel[0] * a.kernel[1]
    pointwise = out[0] * out[1] * mid * a.filters
    return depthwise + pointwise


def _sep_flops(a: SeparableConv2DAttrs, ins: list[Shape], out: Shape) -> int:
    return 2 * _sep_macs(a, ins, out) + (out[0] * out[1] * a.filters if a.use_bias else 0)


def transposed_out(n: Size, k: int, s: int, padding: str) -> Size:
    """Keras' Conv2DTranspose output size on one axis: n * s ('same'), or the full transposed
    convolution, (n - 1) * s + k, and at least n * s ('valid'); None where n is unknown."""
    if n is None:
        return None
    return n * s if padding == "same" else (n - 1) * s + max(k, s)


def _transpose_infer(
    a: Conv2DTransposeAttrs, ins: list[Shape]
) -> tuple[Conv2DTransposeAttrs, Shape]:
    h, w, _ = spatial(ins[0], "conv2d_transpose")
    ho = transposed_out(h, a.kernel[0], a.strides[0], a.padding)
    wo = transposed_out(w, a.kernel[1], a.strides[1], a.padding)
    return a, image_shape(ho, wo, a.filters)


def _transpose_weights(a: Conv2DTransposeAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    ws = [Weight("kernel", (*a.kernel, a.filters, ins[0][2]), True)]  # Keras' (kh, kw, out, in)
    return [*ws, Weight("bias", (a.filters,), True)] if a.use_bias else ws


def _transpose_macs(a: Conv2DTransposeAttrs, ins: list[Shape], out: Shape) -> int:
    h, w, c = ins[0]
    return h * w * c * a.kernel[0] * a.kernel[1] * a.filters  # every input pixel, scattered


def _transpose_flops(a: Conv2DTransposeAttrs, ins: list[Shape], out: Shape) -> int:
    return 2 * _transpose_macs(a, ins, out) + (out[0] * out[1] * a.filters if a.use_bias else 0)


register(
    OpDef(
        "conv2d",
        "Conv2D",
        Conv2DAttrs,
        _conv_infer,
        _conv_weights,
        _conv_flops,
        macs=_conv_macs,
        computed=("pads",),
        unknown_sizes=True,
        doc="2-D convolution; kernel (kh, kw, in/groups, filters)",
    )
)
register(
    OpDef(
        "depthwise_conv2d",
        "DepthwiseConv2D",
        DepthwiseConv2DAttrs,
        _dw_infer,
        _dw_weights,
        _dw_flops,
        macs=_dw_macs,
        computed=("pads",),
        unknown_sizes=True,
        doc="depthwise 2-D convolution; kernel (kh, kw, channels, depth_multiplier)",
    )
)
register(
    OpDef(
        "separable_conv2d",
        "SeparableConv2D",
        SeparableConv2DAttrs,
        _sep_infer,
        _sep_weights,
        _sep_flops,
        macs=_sep_macs,
        computed=("pads",),
        unknown_sizes=True,
        doc="one layer: depthwise (kh, kw, C, M), then pointwise (1, 1, C*M, filters) and bias",
    )
)
register(
    OpDef(
        "conv2d_transpose",
        "Conv2DTranspose",
        Conv2DTransposeAttrs,
        _transpose_infer,
        _transpose_weights,
        _transpose_flops,
        macs=_transpose_macs,
        unknown_sizes=True,
        doc="transposed 2-D convolution; kernel (kh, kw, filters, in); output n * s ('same') "
        "or (n - 1) * s + max(k, s) ('valid')",
    )
)
