"""Helpers that generated PyTorch files carry for sequences and attention, copied by source
(like torch_helpers; a generated file imports only torch).

The layout rule (docs/ARCHITECTURE.md): a tensor of logical rank 3 or more (an image, channels
last in the IR) is held channels first, (N, C, H, W); vectors (N, C) and sequences (N, T, C)
are held as they are, channels last, which is what nn.Linear, nn.LayerNorm and attention
take. `to_channels_last` / `from_channels_last` convert where an op needs the logical order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archc.backends.torch.helpers import keras_reset_  # a file carries it beside these


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A tensor held in this file's layout, in the logical channels-last order."""
    return x.movedim(1, -1) if x.dim() > 3 else x


def from_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A channels-last tensor in this file's layout (images channels first)."""
    return x.movedim(-1, 1) if x.dim() > 3 else x


def steps_out(steps: int, kernel: int, stride: int = 1, padding: str = "valid", dilation: int = 1):
    """The length of a sequence after a 1-D convolution or pooling window, Keras' rule."""
    if padding == "same":
        return -(-steps // stride)
    return (steps - (kernel - 1) * dilation - 1) // stride + 1


def same_pads_1d(steps: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's 'same' padding of one axis, (before, after): the extra step goes after."""
    total = max(0, (-(-steps // stride) - 1) * stride + (kernel - 1) * dilation + 1 - steps)
    return total // 2, total - total // 2


def glorot_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Glorot-uniform with the given fans: U(-limit, limit), limit = sqrt(6 / (in + out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-limit, limit)


class KerasConv1d(nn.Conv1d):
    """Keras' Conv1D on a (N, T, C) sequence: 'same' pads as TF does at any stride (the extra
    step at the end); Keras' initial values (Glorot-uniform kernel, zero bias)."""

    def __init__(self, *args, padding="valid", **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)
        self.same = padding == "same"

    def reset_parameters(self) -> None:
        keras_reset_(self)  # Keras' fans of (k, in, out): PyTorch's too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self.same:
            steps, kernel, stride = x.shape[-1], self.kernel_size[0], self.stride[0]
            x = F.pad(x, same_pads_1d(steps, kernel, stride, self.dilation[0]))
        y = F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return y.transpose(1, 2)


class KerasPool1d(nn.Module):
    """Keras' MaxPooling1D ("max") or AveragePooling1D ("avg") on a (N, T, C) sequence: 'same'
    pads as TF does, with -inf for the maximum and not counted in the average."""

    def __init__(self, mode: str, pool: int, stride=None, padding="valid") -> None:
        super().__init__()
        self.mode, self.pool, self.stride = mode, pool, stride or pool
        self.same = padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        pads = (0, 0)
        if self.same:
            pads = same_pads_1d(x.shape[-1], self.pool, self.stride)
        if self.mode == "max":
            y = F.max_pool1d(F.pad(x, pads, value=float("-inf")), self.pool, self.stride)
        else:
            y = F.avg_pool1d(F.pad(x, pads), self.pool, self.stride)
            if self.same:
                ones = F.pad(torch.ones_like(x[:1, :1]), pads)
                y = y / F.avg_pool1d(ones, self.pool, self.stride)
        return y.transpose(1, 2)


class KerasEmbedding(nn.Embedding):
    """Keras' Embedding: token ids -> rows of `weight` (input_dim, output_dim), Keras' layout;
    Keras' initial values, uniform in [-0.05, 0.05]."""

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.weight, -0.05, 0.05)


class PositionalEmbedding(nn.Module):
    """A learned tensor of the input's shape, added (one vector per position: ViT, GPT). Its
    `weight` (Keras' embeddings) is held in this file's layout (channels first for images);
    initial values N(0, 0.02)."""

    def __init__(self, shape) -> None:
        super().__init__()
        layout = tuple(shape) if len(shape) <= 2 else (shape[-1], *shape[:-1])
        self.weight = nn.Parameter(torch.empty(layout))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


class ClassToken(nn.Module):
    """A learned entry prepended along the first axis, (T, C) -> (T + 1, C) (ViT's class
    token). For an input of channels-last shape `shape`, the token is (1, *shape[1:]), held in
    this file's layout; initial values zero."""

    def __init__(self, shape) -> None:
        super().__init__()
        token = (1, *shape[1:])
        layout = token if len(token) <= 2 else (token[-1], *token[:-1])
        self.token = nn.Parameter(torch.zeros(layout))
        self.dim = 1 if len(shape) <= 2 else 2  # the first axis, in this file's layout

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.token)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        token = self.token.unsqueeze(0).expand_as(x.narrow(self.dim, 0, 1))
        return torch.cat([token, x], dim=self.dim)


class KerasMultiHeadAttention(nn.Module):
    """Keras' MultiHeadAttention on (N, T, C) sequences, in Keras' weight layout: query, key
    and value kernels (channels, heads, head size) with biases (heads, head size), the output
    kernel (heads, value size, output) with its bias (output). Per head,
    softmax(Q K^T / sqrt(key_dim)) V (F.scaled_dot_product_attention); with `causal`, query i
    attends to keys 0..i. Keras' initial values: Glorot-uniform with the fans of the matrices
    the kernels are ((channels, heads * size) and (heads * size, output)), zero biases.
    Called as (query), (query, value) or (query, value, key); `mask` (N, S) is Keras'
    `value_mask`: the keys whose mask is 0 are not attended (as Keras, a large negative score
    where any mask, the padding's or the causal one, is false). `dropout` drops attention
    probabilities in training, as Keras' `dropout=`."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        output_dim: int | None = None,
        use_bias: bool = True,
        causal: bool = False,
        value_channels: int | None = None,
        key_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        value_dim = value_dim or key_dim
        value_channels = value_channels or channels
        key_channels = key_channels or value_channels
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        self.output_dim = output_dim or channels
        self.causal, self.dropout = causal, dropout
        shapes = {
            "query": ((channels, num_heads, key_dim), (num_heads, key_dim)),
            "key": ((key_channels, num_heads, key_dim), (num_heads, key_dim)),
            "value": ((value_channels, num_heads, value_dim), (num_heads, value_dim)),
            "output": ((num_heads, value_dim, self.output_dim), (self.output_dim,)),
        }
        for name, (kernel, bias) in shapes.items():
            self.register_parameter(f"{name}_kernel", nn.Parameter(torch.empty(kernel)))
            bias_value = nn.Parameter(torch.empty(bias)) if use_bias else None
            self.register_parameter(f"{name}_bias", bias_value)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for kernel, bias in (
            (self.query_kernel, self.query_bias),
            (self.key_kernel, self.key_bias),
            (self.value_kernel, self.value_bias),
        ):
            glorot_(kernel, kernel.shape[0], kernel.shape[1] * kernel.shape[2])
            if bias is not None:
                nn.init.zeros_(bias)
        out = self.output_kernel
        glorot_(out, out.shape[0] * out.shape[1], out.shape[2])
        if self.output_bias is not None:
            nn.init.zeros_(self.output_bias)

    @staticmethod
    def project(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x (..., C) times a (C, units) kernel, plus the bias: one fused product (addmm) over
        the flattened leading axes."""
        y = x.flatten(0, -2)
        y = y @ kernel if bias is None else torch.addmm(bias, y, kernel)
        return y.unflatten(0, x.shape[:-1])

    def heads(
        self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """(N, T, C) -> (N, heads, T, head size): x times the (C, heads, head size) kernel."""
        flat = None if bias is None else bias.flatten()
        return self.split_heads(self.project(x, kernel.flatten(1), flat), kernel.shape[1])

    @staticmethod
    def split_heads(y: torch.Tensor, heads: int) -> torch.Tensor:
        """(N, T, heads * size) -> (N, heads, T, size)."""
        return y.unflatten(-1, (heads, -1)).transpose(1, 2)

    def packed_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention's q, k and v from one matrix product: x times the three kernels
        side by side (C, q + k + v), nn.MultiheadAttention's in-projection. The parameters
        stay Keras' three kernels; joining them costs a copy of the kernels per call, small
        beside the product for more than a few tokens."""
        wq, wk, wv = self.query_kernel, self.key_kernel, self.value_kernel
        kernel = torch.cat([wq.flatten(1), wk.flatten(1), wv.flatten(1)], dim=1)
        bias: torch.Tensor | None = None
        bq, bk, bv = self.query_bias, self.key_bias, self.value_bias
        if bq is not None and bk is not None and bv is not None:
            bias = torch.cat([bq.flatten(), bk.flatten(), bv.flatten()])
        keys = wq.shape[1] * wq.shape[2]
        q, k, v = self.project(x, kernel, bias).split([keys, keys, kernel.shape[1] - 2 * keys], -1)
        heads = self.num_heads
        return self.split_heads(q, heads), self.split_heads(k, heads), self.split_heads(v, heads)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor | None = None,
        key: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if value is None and key is None:  # self-attention: one in-projection
            q, k, v = self.packed_heads(query)
        else:
            value = query if value is None else value
            key = value if key is None else key
            q = self.heads(query, self.query_kernel, self.query_bias)
            k = self.heads(key, self.key_kernel, self.key_bias)
            v = self.heads(value, self.value_kernel, self.value_bias)
        p = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, self.scores_mask(mask, q), p)
        return self.project(
            y.transpose(1, 2).flatten(2), self.output_kernel.flatten(0, 1), self.output_bias
        )

    def scores_mask(self, mask: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """The (N, 1, T, S) number added to the scores: 0 where attended, Keras' large
        negative (-0.7 times float32's largest; float16's) where the key's mask is 0 or,
        causal, after the query (a row with no key then averages all values, as Keras')."""
        keep = (mask != 0)[:, None, None, :]
        if self.causal:
            steps = torch.ones(q.shape[2], mask.shape[1], dtype=torch.bool, device=q.device)
            keep = keep & steps.tril()
        largest = 65500.0 if q.dtype == torch.float16 else 3.38953e38
        zero = torch.zeros((), dtype=q.dtype, device=q.device)
        return torch.where(keep, zero, zero - 0.7 * largest)


def take_axis(x: torch.Tensor, index: int, axis: int) -> torch.Tensor:
    """x at one index of a channels-last axis (batch excluded), the axis removed."""
    y = to_channels_last(x)
    return from_channels_last(y.select(axis % (y.dim() - 1) + 1, index))


def slice_axis(x: torch.Tensor, start: int, stop: int | None, axis: int) -> torch.Tensor:
    """x[start:stop] along a channels-last axis (batch excluded), Python's rules."""
    y = to_channels_last(x)
    dim = axis % (y.dim() - 1) + 1
    y = y.movedim(dim, 0)[start:stop].movedim(0, dim)
    return from_channels_last(y)


def permute_axes(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Keras' Permute of channels-last axes (0-based here, batch excluded)."""
    y = to_channels_last(x)
    return from_channels_last(y.permute([0] + [d + 1 for d in dims]))
