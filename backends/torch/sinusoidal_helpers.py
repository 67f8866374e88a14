"""The PyTorch module of sinusoidal_embedding (compiler/ops/sinusoidal.py), copied by source
into the generated files that use it (a generated file imports only torch)."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """The original Transformer's fixed position encodings added to a (N, T, C) sequence:
    channel j of position p is sin (j even) or cos (j odd) of
    p / max_wavelength ** (2 * (j // 2) / C). The table is computed once, in float64 with
    Python's math (Keras' layer computes the very same numbers), and held as a plain tensor,
    neither a parameter nor a buffer: it is no weight, and is not counted or saved."""

    def __init__(self, shape: tuple[int, ...], max_wavelength: float = 10000.0) -> None:
        super().__init__()
        self.max_wavelength = max_wavelength
        steps, channels = shape
        rows = []
        for p in range(steps):
            angles = [p / max_wavelength ** (2 * (j // 2) / channels) for j in range(channels)]
            rows.append([math.cos(a) if j % 2 else math.sin(a) for j, a in enumerate(angles)])
        self.table = torch.tensor(rows, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table.to(device=x.device, dtype=x.dtype)
