"""Helpers that generated PyTorch modules carry, copied by source (`inspect.getsource`).

Each one owns one Keras<->PyTorch rule that `torch.nn` does not have: TF's 'same' padding
(extra pixel bottom/right) at any stride, Keras' Glorot fans for depthwise kernels, -inf
padding for max pooling, average pooling that does not count padding, Keras' moving variance
(the biased batch variance), and the bookkeeping that ties a module to its Keras layer.
A generated file copies only what it uses; it imports nothing from archc.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def channels_last(name: str, shape, default: tuple) -> tuple:
    """A shape argument as the spec writes it: channels last, (height, width, channels) or
    (steps, channels). One whose first number is the default's channel count and whose last
    is not was given channels-first (PyTorch's layout, INPUT_SHAPE's for images): an error
    that says which layout is expected, here rather than at the first forward pass."""
    shape = tuple(shape)
    channels = default[-1]
    if channels is not None and len(shape) == len(default) and shape[0] == channels != shape[-1]:
        axes = "(steps, channels)" if len(default) == 2 else "(height, width, channels)"
        raise ValueError(
            f"{name}={shape} has the channels first; {name} is channels-last, {axes}, as "
            f"the spec writes it (default {default}), even where the tensors the model "
            f"takes are channels-first: pass {name}={(*shape[1:], shape[0])}"
        )
    return shape


def keras_layer(module: nn.Module, name: str, l2: float | None = None, trainable: bool = True):
    """Tag a module with its Keras layer's name, L2 kernel factor and trainable flag."""
    module.keras_name, module.l2, module.keras_trainable = name, l2, trainable
    return module.requires_grad_(trainable)


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def window_shape(shape, channels, kernel, strides=1, padding="valid", dilation=1):
    """(height, width, channels) after a convolution or pooling window, Keras' rule; an
    unknown size (None: known only when the model runs) stays unknown."""
    out = []
    for size, k, s, d in zip(shape[:2], pair(kernel), pair(strides), pair(dilation), strict=True):
        if size is None:
            out.append(None)
        else:
            out.append(-(-size // s) if padding == "same" else (size - (k - 1) * d - 1) // s + 1)
    return (*out, channels)


def same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's 'same' padding on one axis, (before, after): the extra pixel goes after."""
    total = max(0, (-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return total // 2, total - total // 2


def same_pads(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int, int, int]:
    """TF's 'same' padding of x's last two dims, as F.pad's (left, right, top, bottom)."""
    top, bottom = same_pad(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_pad(x.shape[-1], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def spec_initializers_(module: nn.Module) -> None:
    """Draw a layer's weights with the initializers the spec gives it (`with_initializers`),
    if it gives any: the last step of its reset_parameters."""
    initializers = getattr(module, "initializers", None)
    if initializers is not None:
        initializers.draw(module)


def keras_reset_(module: nn.Module) -> None:
    """Keras' initial values of a dense layer or convolution: a Glorot-uniform kernel (Keras'
    fans, which PyTorch's equal for these), a zero bias; then the spec's initializers."""
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    spec_initializers_(module)


class KerasLinear(nn.Linear):
    """nn.Linear with Keras' initial values as its own reset_parameters (FSDP materialises a
    model module by module, calling each one's)."""

    def reset_parameters(self) -> None:
        keras_reset_(self)


class GlorotConv2d(nn.Conv2d):
    """nn.Conv2d with Keras' initial values as its own reset_parameters."""

    def reset_parameters(self) -> None:
        keras_reset_(self)


class KerasConv2d(GlorotConv2d):
    """GlorotConv2d with Keras' padding: 'same' as TF pads it at any stride."""

    def __init__(self, *args, padding="valid", **kwargs) -> None:
        super().__init__(*args, padding=0 if isinstance(padding, str) else padding, **kwargs)
        self.same = padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if self.same:
            left, right, top, bottom = same_pads(x, self.kernel_size, self.stride, self.dilation)
            padding = (top, left)
            if (left, top) != (right, bottom):
                x, padding = F.pad(x, (left, right, top, bottom)), (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class KerasDepthwiseConv2d(KerasConv2d):
    """Keras' DepthwiseConv2D: groups = channels; Glorot fans of Keras' (kh, kw, C, M) kernel."""

    def reset_parameters(self) -> None:
        kh, kw = self.kernel_size
        fan_in, fan_out = kh * kw * self.in_channels, kh * kw * self.out_channels // self.groups
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            self.weight.uniform_(-limit, limit)
            if self.bias is not None:
                self.bias.zero_()
        spec_initializers_(self)


class KerasSeparableConv2d(nn.Module):
    """Keras' SeparableConv2D as one module: a depthwise convolution (Keras' padding and
    fans), then a 1x1 pointwise convolution that carries the bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding="valid",
        depth_multiplier: int = 1,
        dilation=1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        mid = in_channels * depth_multiplier
        self.out_channels = out_channels
        self.depthwise = KerasDepthwiseConv2d(
            in_channels,
            mid,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = GlorotConv2d(mid, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class KerasConvTranspose2d(nn.ConvTranspose2d):
    """Keras' Conv2DTranspose: the full transposed convolution, (n - 1) * s + k, then cut to
    Keras' size: 'same' crops k - s as TF splits it (the extra pixel bottom/right, which
    PyTorch's symmetric padding cannot do); where s > k both paddings are s - k short, which
    output_padding adds (bias only, as in Keras). Keras' Glorot fans (PyTorch's equal them)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=1, padding="valid", bias=True
    ) -> None:
        kernel, strides = pair(kernel_size), pair(stride)
        extra = (max(strides[0] - kernel[0], 0), max(strides[1] - kernel[1], 0))
        super().__init__(in_channels, out_channels, kernel, strides, 0, extra, bias=bias)
        same = padding == "same"
        h, w = (max(k - s, 0) if same else 0 for k, s in zip(kernel, strides, strict=True))
        self.crops = ((h // 2, h - h // 2), (w // 2, w - w // 2))  # TF's split

    def reset_parameters(self) -> None:
        keras_reset_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, 0, self.output_padding, self.groups
        )
        (top, bottom), (left, right) = self.crops
        return y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]


def transposed_shape(shape, channels, kernel, strides=1, padding="valid"):
    """(height, width, channels) after Keras' Conv2DTranspose (None: unknown stays so)."""
    out = []
    for size, k, s in zip(shape[:2], pair(kernel), pair(strides), strict=True):
        if size is None:
            out.append(None)
        else:
            out.append(size * s if padding == "same" else (size - 1) * s + max(k, s))
    return (*out, channels)


class KerasMaxPool2d(nn.MaxPool2d):
    """Keras' MaxPooling2D with 'same' padding: -inf (TF's split), never zeros."""

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__(pair(kernel_size), pair(stride or kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_pads(x, self.kernel_size, self.stride), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class KerasAvgPool2d(nn.AvgPool2d):
    """Keras' AveragePooling2D with 'same' padding (TF's split), not counted in the divisor."""

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__(pair(kernel_size), pair(stride or kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(x, self.kernel_size, self.stride)
        total = F.avg_pool2d(F.pad(x, pads), self.kernel_size, self.stride)
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        return total / F.avg_pool2d(ones, self.kernel_size, self.stride)


def torch_pads(padding) -> tuple[int, int, int, int]:
    """Keras' ZeroPadding2D argument (n, (h, w) or ((top, bottom), (left, right))) as F.pad's
    (left, right, top, bottom)."""
    if isinstance(padding, int):
        return (padding,) * 4
    (top, bottom), (left, right) = (pair(p) for p in padding)
    return (left, right, top, bottom)


def zero_pad_shape(shape, padding, sign=1):
    """The shape after padding (sign 1) or cropping (sign -1) by a Keras padding value (None:
    an unknown size stays unknown)."""
    left, right, top, bottom = torch_pads(padding)
    h, w = shape[0], shape[1]
    h = None if h is None else h + sign * (top + bottom)
    return (h, None if w is None else w + sign * (left + right), shape[2])


def upsample_shape(shape, size):
    """The shape after Keras' UpSampling2D by size (n or (h, w)); None stays unknown."""
    h, w = (None if n is None else n * f for n, f in zip(shape[:2], pair(size), strict=True))
    return (h, w, shape[2])


def crop(x: torch.Tensor, cropping) -> torch.Tensor:
    """Keras' Cropping2D (n, (h, w) or ((top, bottom), (left, right))) of an NCHW tensor."""
    left, right, top, bottom = torch_pads(cropping)
    return x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]


def reshape_shape(shape, target):
    """Keras' Reshape target with its one -1 resolved."""
    size = math.prod(shape)
    known = math.prod(d for d in target if d != -1)
    return tuple(size // known if d == -1 else d for d in target)


class KerasBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the channels (dim 1 of an image, the last dim of a (N, T, C) sequence),
    as Keras': gamma (scale) and beta (center) apart, and in training the moving variance
    follows the biased batch variance."""

    def __init__(self, channels: int, eps: float, momentum: float, scale=True, center=True):
        super().__init__(channels, eps, momentum)
        if not scale:
            self.weight = None
        if not center:
            self.bias = None

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # a sequence (N, T, C): its channels are last
            return self.normalize(x.transpose(1, 2)).transpose(1, 2)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.running_mean, self.running_var
        momentum = self.momentum if self.momentum is not None else 0.0
        if not self.training or mean is None or var is None:
            return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        # PyTorch moves its statistics towards the unbiased variance, Keras towards the biased
        # one: let it update a copy scaled by n / (n - 1), then scale back (no in-place change
        # of a tensor autograd saved)
        n = x.numel() // x.shape[1]
        scaled = var * (n / max(n - 1, 1))
        y = F.batch_norm(x, mean, scaled, self.weight, self.bias, True, momentum, self.eps)
        with torch.no_grad():
            var.copy_(scaled * (max(n - 1, 1) / n))
        return y


class KerasLayerNorm(nn.LayerNorm):
    """Keras' LayerNormalization over the channel axis (dim 1 of an image, the last dim of a
    vector or a (N, T, C) sequence): Keras' epsilon, gamma (scale) and beta (center) apart."""

    def __init__(self, channels: int, eps: float, scale=True, center=True) -> None:
        super().__init__(channels, eps)
        if not scale:
            self.weight = None
        if not center:
            self.bias = None

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() <= 3:  # a vector or a sequence: channels last, as F.layer_norm takes them
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        y = F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


def per_channel(value, channels: int) -> list[float]:
    """A number or one value per channel, as one float per channel."""
    if isinstance(value, tuple | list):
        return [float(v) for v in value]
    return [float(value)] * channels


class KerasNormalization(nn.Module):
    """Keras' Normalization over the channel axis (dim 1 of an image, the last dim otherwise):
    (x - mean) / max(sqrt(variance), 1e-7), 1e-7 being keras.config.epsilon()'s default.
    Without fixed values, mean, variance and count are buffers: Keras' non-trainable weights,
    which Keras' adapt() or a weights file set (mean 0, variance 1 and count 0 at first; count,
    an integer in Keras, is a float buffer here, as only those count as weights). Fixed values
    are constants (no weights, as in Keras)."""

    def __init__(self, channels: int, mean=None, variance=None) -> None:
        super().__init__()
        self.fixed: tuple[list[float], list[float]] = ([], [])
        if mean is None or variance is None:
            self.register_buffer("mean", torch.zeros(channels))
            self.register_buffer("variance", torch.ones(channels))
            self.register_buffer("count", torch.zeros(()))
        else:  # one value per channel
            self.fixed = (per_channel(mean, channels), per_channel(variance, channels))

    def reset_parameters(self) -> None:
        if hasattr(self, "mean"):
            nn.init.zeros_(self.mean)
            nn.init.ones_(self.variance)
            nn.init.zeros_(self.count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "mean"):
            mean, variance = self.mean, self.variance
        else:
            mean = torch.tensor(self.fixed[0], dtype=x.dtype, device=x.device)
            variance = torch.tensor(self.fixed[1], dtype=x.dtype, device=x.device)
        shape = [-1] + [1] * (x.dim() - 2) if x.dim() > 3 else [-1]  # per channel
        return (x - mean.view(shape)) / torch.clamp(variance.view(shape).sqrt(), min=1e-7)


class LayerScale(nn.Module):
    """ConvNeXt's LayerScale: x * gamma, one trainable value per channel (dim 1 of an image,
    the last dim otherwise), starting at init_value; the parameter is `weight` (Keras' gamma),
    as in LayerNorm."""

    def __init__(self, channels: int, init_value: float = 1e-6) -> None:
        super().__init__()
        self.init_value = float(init_value)
        self.weight = nn.Parameter(torch.full((channels,), self.init_value))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view([-1] + [1] * (x.dim() - 2) if x.dim() > 3 else [-1])


class KerasDropout(nn.Module):
    """Keras' Dropout with a noise_shape (Keras' order, channels last, batch excluded: 1 shares
    one mask value along that axis, the axis' size or None draws one per element): identity
    in eval; in training one mask of the broadcast shape, its axes put in this tensor's order
    (an image's channels to dim 1), kept values scaled by 1 / (1 - rate)."""

    def __init__(self, rate: float, noise_shape) -> None:
        super().__init__()
        self.rate = rate
        shared = [d == 1 for d in noise_shape]
        if len(shared) >= 3:  # an image: channels-last -> NC... order
            shared = shared[-1:] + shared[:-1]
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = [x.shape[0]]
        for dim, shared in enumerate(self.shared):
            shape.append(1 if shared else x.shape[dim + 1])
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


def broadcast_shape(*shapes):
    """The shape of an element-wise op over shapes that broadcast (aligned on the right); an
    unknown size (None) gives way to a known one above 1."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for sizes in zip(*padded, strict=True):
        known = max((n for n in sizes if n is not None), default=None)
        out.append(None if None in sizes and known in (None, 1) else known)
    return tuple(out)


def torch_dim(axis: int, rank: int) -> int:
    """A channels-last axis of a rank-`rank` value (batch excluded) as a dim of the tensor:
    an image's channel axis is dim 1; vectors and sequences keep their order."""
    axis %= rank
    if rank <= 2:
        return axis + 1
    return 1 if axis == rank - 1 else axis + 2


def concat_shape(shapes, axis: int):
    """The shape after concatenating on a channels-last axis; off that axis, the size an input
    knows (None: unknown in all of them), on it the sum (None if one is unknown)."""
    axis %= len(shapes[0])
    out = []
    for i, sizes in enumerate(zip(*shapes, strict=True)):
        if i == axis:
            out.append(None if None in sizes else sum(sizes))
        else:
            out.append(next((n for n in sizes if n is not None), None))
    return tuple(out)


def activate(x: torch.Tensor, fn: str) -> torch.Tensor:
    """A Keras activation chosen by name at build time (channels on dim 1)."""
    if fn == "softmax":  # over the channels: dim 1 of an image, the last dim otherwise
        return F.softmax(x, dim=1 if x.dim() > 3 else -1)
    table: dict = {}  # written out from backends/torch_ops.ACTIVATIONS into generated files
    return table[fn](x)
