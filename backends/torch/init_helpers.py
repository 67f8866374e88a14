"""Helpers that generated PyTorch files carry when a spec gives initializers, copied by source
(like torch_helpers; a generated file imports only torch).

Keras' initializers as small classes of the same names and arguments, each drawing into a
tensor given Keras' fans (`__call__(tensor, fan_in, fan_out)`); `keras_init_` finds a layer's
kernels and Keras' fans of each (the rule: docs/ARCHITECTURE.md, "Initial values").
"""

from __future__ import annotations

import math

import torch
from torch import nn


class VarianceScaling:
    """Keras' VarianceScaling: variance scale / n, n the kernel's fan_in, fan_out or their
    mean (at least 1); truncated_normal as Keras draws it, cut at two standard deviations with
    the deviation divided by 0.87962566103423978 (the standard deviation of a unit normal cut
    there) so that the values keep the variance; uniform within +-sqrt(3 * variance)."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal") -> None:
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
        n = (fan_in + fan_out) / 2.0  # fan_avg
        if self.mode == "fan_in":
            n = float(fan_in)
        elif self.mode == "fan_out":
            n = float(fan_out)
        variance = self.scale / max(1.0, n)
        if self.distribution == "truncated_normal":
            std = math.sqrt(variance) / 0.87962566103423978
            nn.init.trunc_normal_(tensor, 0.0, std, -2.0 * std, 2.0 * std)
        elif self.distribution == "untruncated_normal":
            nn.init.normal_(tensor, 0.0, math.sqrt(variance))
        else:
            limit = math.sqrt(3.0 * variance)
            nn.init.uniform_(tensor, -limit, limit)


class RandomNormal:
    """Keras' RandomNormal: N(mean, stddev)."""

    def __init__(self, mean=0.0, stddev=0.05) -> None:
        self.mean, self.stddev = mean, stddev

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
        nn.init.normal_(tensor, self.mean, self.stddev)


class TruncatedNormal:
    """Keras' TruncatedNormal: N(mean, stddev), values beyond two stddev drawn again (stddev
    is the normal's, before the cut, unlike VarianceScaling's)."""

    def __init__(self, mean=0.0, stddev=0.05) -> None:
        self.mean, self.stddev = mean, stddev

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
        low, high = self.mean - 2.0 * self.stddev, self.mean + 2.0 * self.stddev
        nn.init.trunc_normal_(tensor, self.mean, self.stddev, low, high)


class RandomUniform:
    """Keras' RandomUniform: U(minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05) -> None:
        self.minval, self.maxval = minval, maxval

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
        nn.init.uniform_(tensor, self.minval, self.maxval)


class Constant:
    """Keras' Constant (zeros and ones are Constant(0.0) and Constant(1.0))."""

    def __init__(self, value=0.0) -> None:
        self.value = value

    def __call__(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
        nn.init.constant_(tensor, self.value)


def keras_initializer(initializer):
    """An initializer given by Keras' name ("he_normal") as the object the name stands for."""
    families = {"glorot": (1.0, "fan_avg"), "he": (2.0, "fan_in"), "lecun": (1.0, "fan_in")}
    family, _, kind = initializer.rpartition("_")  # glorot_uniform, he_normal, ...
    if family in families:
        scale, mode = families[family]
        return VarianceScaling(scale, mode, "uniform" if kind == "uniform" else "truncated_normal")
    if initializer in ("zeros", "ones"):
        return Constant(1.0 if initializer == "ones" else 0.0)
    if initializer == "random_normal":
        return RandomNormal()
    if initializer == "truncated_normal":
        return TruncatedNormal()
    if initializer == "random_uniform":
        return RandomUniform()
    raise ValueError(f"unknown Keras initializer {initializer!r}")


class Initializers(dict):
    """A layer's initializers (objects of the classes above) by Keras' keywords
    (kernel_initializer, bias_initializer, depthwise_initializer, pointwise_initializer);
    `draw(layer)` draws its weights with them (`keras_init_`)."""

    def draw(self, layer) -> None:
        keras_init_(layer)


def with_initializers(module, **initializers):
    """Give a module its Keras layer's initializers, which its reset_parameters draws with
    (each module its own, as FSDP materialises a model); a separable convolution's parts
    each hold theirs: the depthwise its kernel's, the pointwise its kernel's and the bias'."""
    if hasattr(module, "pointwise"):
        depthwise = {k: v for k, v in initializers.items() if k == "depthwise_initializer"}
        pointwise = {k: v for k, v in initializers.items() if k != "depthwise_initializer"}
        with_initializers(module.depthwise, **depthwise)
        with_initializers(module.pointwise, **pointwise)
    else:
        module.initializers = Initializers(initializers)
    return module


def keras_init_(layer) -> None:
    """Draw the weights of a layer `with_initializers` as Keras draws them: the fans are Keras'
    of its kernel layout. PyTorch's (out, in, *window) weights have them as they are (and a
    transposed convolution's (in, out, *window) those of Keras' (*window, out, in)); Keras'
    depthwise kernel (kh, kw, C, M) is held (C * M, 1, kh, kw)."""
    depthwise = conv = layer  # a separable convolution's two parts: each its own
    with torch.no_grad():
        for keyword, draw in layer.initializers.items():
            if keyword == "bias_initializer":
                if conv.bias is not None:
                    draw(conv.bias, conv.bias.numel(), conv.bias.numel())
            elif keyword == "depthwise_initializer":
                window = math.prod(depthwise.kernel_size)
                channels = depthwise.in_channels
                multiplier = depthwise.out_channels // channels
                draw(depthwise.weight, window * channels, window * multiplier)
            else:  # kernel_initializer, pointwise_initializer
                weight = conv.weight
                window = math.prod(weight.shape[2:])
                draw(weight, window * weight.shape[1], window * weight.shape[0])
