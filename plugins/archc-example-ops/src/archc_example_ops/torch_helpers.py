"""The PyTorch classes the plugin's ops use, copied by source into the generated PyTorch files
that use them (a generated file imports only torch). Images are held channels first,
(N, C, H, W)."""

from __future__ import annotations

import torch
from torch import nn


class KerasPReLU(nn.PReLU):
    """nn.PReLU with one slope per channel (dim 1) that starts at Keras' value, 0 (PyTorch's
    is 0.25): the model's reset_parameters calls this one."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)


class GRN(nn.Module):
    """ConvNeXt V2's global response normalization: weight * (x * Nx) + bias + x, where Gx is
    each channel's L2 norm over height and width and Nx = Gx / (mean of Gx over the channels
    + epsilon); weight (Keras' gamma) and bias (beta) start at zero."""

    def __init__(self, channels: int, epsilon: float = 1e-6) -> None:
        super().__init__()
        self.epsilon = float(epsilon)
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + self.epsilon)
        gamma = self.weight.view(1, -1, 1, 1)
        return gamma * (x * nx) + self.bias.view(1, -1, 1, 1) + x
