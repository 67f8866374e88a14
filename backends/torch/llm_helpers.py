"""Language-model layers that generated PyTorch files carry (grouped_query_attention), copied
by source like torch_helpers' (a generated file imports only torch).

KerasGroupedQueryAttention holds Keras' GroupQueryAttention weights as they are: query, key
and value kernels (channels, heads, head_dim) with biases (heads, head_dim), the output
kernel (query heads, head_dim, channels) with its bias (channels). Its forward is
transformers' LLaMA attention: projections, the rotary position embedding of queries and
keys (rotate-half), each key and value head repeated for its query heads as `repeat_kv`
does (repeat_interleave: query head h reads key head h // groups), scaled dot-product
attention (1 / sqrt(head_dim), causal: query i sees keys 0..i), the output projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rotate_half_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """x (N, heads, T, head_dim) rotated by position: x * cos + rotate_half(x) * sin, where
    rotate_half(x) = (-x2, x1) for x's halves and position t's angles are
    t * theta^(-2i / head_dim), i = 0 .. head_dim / 2 - 1, each used for both halves."""
    dim = x.shape[-1]
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=x.device) / dim
    inv_freq = (1.0 / theta**exponents).to(x.dtype)
    positions = torch.arange(x.shape[-2], dtype=x.dtype, device=x.device)
    angles = positions[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)  # (T, head_dim)
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    return x * angles.cos() + torch.cat((-x2, x1), dim=-1) * angles.sin()


class KerasGroupedQueryAttention(nn.Module):
    """Keras' GroupQueryAttention (self-attention) on (N, T, C) sequences, Keras' weights
    and initial values (Glorot-uniform with the fans of the matrices the kernels are,
    (C, heads * head_dim) and (heads * head_dim, C); zero biases); `rope_theta`: rotary
    position embedding of queries and keys with that base (None: none)."""

    query_kernel: nn.Parameter
    key_kernel: nn.Parameter
    value_kernel: nn.Parameter
    output_kernel: nn.Parameter
    query_bias: nn.Parameter | None
    key_bias: nn.Parameter | None
    value_bias: nn.Parameter | None
    output_bias: nn.Parameter | None

    def __init__(
        self,
        channels: int,
        head_dim: int,
        num_query_heads: int,
        num_key_value_heads: int,
        use_bias: bool = True,
        causal: bool = False,
        rope_theta: float | None = None,
    ) -> None:
        super().__init__()
        self.head_dim, self.num_query_heads = head_dim, num_query_heads
        self.num_key_value_heads, self.causal = num_key_value_heads, causal
        self.groups = num_query_heads // num_key_value_heads
        self.rope_theta = rope_theta
        hq, hkv = num_query_heads, num_key_value_heads
        shapes = {
            "query": ((channels, hq, head_dim), (hq, head_dim)),
            "key": ((channels, hkv, head_dim), (hkv, head_dim)),
            "value": ((channels, hkv, head_dim), (hkv, head_dim)),
            "output": ((hq, head_dim, channels), (channels,)),
        }
        for name, (kernel, bias) in shapes.items():
            self.register_parameter(f"{name}_kernel", nn.Parameter(torch.empty(kernel)))
            bias_value = nn.Parameter(torch.empty(bias)) if use_bias else None
            self.register_parameter(f"{name}_bias", bias_value)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name in ("query", "key", "value", "output"):
            kernel, bias = getattr(self, f"{name}_kernel"), getattr(self, f"{name}_bias")
            rows = kernel.shape[0] * (kernel.shape[1] if name == "output" else 1)
            limit = math.sqrt(6.0 / (rows + kernel.numel() // rows))
            with torch.no_grad():
                kernel.uniform_(-limit, limit)
            if bias is not None:
                nn.init.zeros_(bias)

    def heads(
        self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """(N, T, C) -> (N, heads, T, head_dim): x times the (C, heads, head_dim) kernel."""
        y = x @ kernel.flatten(1)
        if bias is not None:
            y = y + bias.flatten()
        return y.unflatten(-1, (kernel.shape[1], kernel.shape[2])).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.heads(x, self.query_kernel, self.query_bias)
        k = self.heads(x, self.key_kernel, self.key_bias)
        v = self.heads(x, self.value_kernel, self.value_bias)
        if self.rope_theta is not None:
            q, k = rotate_half_rope(q, self.rope_theta), rotate_half_rope(k, self.rope_theta)
        k = k.repeat_interleave(self.groups, dim=1)
        v = v.repeat_interleave(self.groups, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        y = y.transpose(1, 2).flatten(2) @ self.output_kernel.flatten(0, 1)
        return y if self.output_bias is None else y + self.output_bias
