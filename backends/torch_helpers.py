"""Helper functions shared by live PyTorch models and generated PyTorch source.

The generator copies these functions' source text into a generated module that needs them
(`inspect.getsource`), so the live model and the generated file run the very same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Keras' glorot_uniform with Keras' fans: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-limit, limit)


def _avg_pool_same(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> torch.Tensor:
    """TF 'same' average pooling: the padding is not counted in the divisor."""
    ones = torch.ones_like(x[:1, :1])
    total = F.avg_pool2d(F.pad(x, pads), kernel, stride)
    return total / F.avg_pool2d(F.pad(ones, pads), kernel, stride)
