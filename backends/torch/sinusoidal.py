"""PyTorch emitter of sinusoidal_embedding (compiler/ops/sinusoidal.py): the module of
torch/sinusoidal_helpers.py, on the (N, T, C) sequence as it is held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archc.backends.torch.ops import TORCH_OPS, Ctx, TorchOp


def _module(ctx: Ctx) -> str:
    wavelength = ctx.attr("max_wavelength")
    args = [ctx.shape] + ([f"max_wavelength={wavelength}"] if wavelength else [])
    return f"{ctx.helper('SinusoidalEmbedding')}({', '.join(args)})"


def _read(m: Any) -> dict[str, Any]:
    return {"max_wavelength": m.max_wavelength}


TORCH_OPS["sinusoidal_embedding"] = TorchOp(
    lambda ctx, xs, mod: f"{mod}({xs[0]})",
    _module,
    reads=(("SinusoidalEmbedding",), _read),
    helpers=Path(__file__).with_name("sinusoidal_helpers.py"),
)
