"""An example archc plugin (docs/PLUGINS.md): two ops, each declared once as an `OpUnit`.

- `prelu`: a per-channel trainable slope for negative inputs, Keras' `PReLU(shared_axes=[1, 2])`
  and PyTorch's `nn.PReLU(C)` (which starts at Keras' slope, 0, here);
- `grn`: ConvNeXt V2's global response normalization, which neither framework has: a Keras
  layer (keras_layers.py) and a PyTorch module (torch_helpers.py) of the plugin's own, which
  generated files carry by source.

Nothing here imports a framework: archc reads the helper modules' source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archc.backends.keras.ops import Args, Attr, KerasLayer
from archc.backends.torch.ops import Binding, Ctx, TorchOp
from archc.compiler.ir import Shape, Weight
from archc.compiler.ops import ATTRS_CONFIG, Float, OpDef, ShapeError
from archc.compiler.plugins import OpUnit

HERE = Path(__file__).parent


def _image(op: str, ins: list[Shape]) -> Shape:
    """The input, which must be an image (height, width, channels)."""
    if len(ins[0]) != 3:
        raise ShapeError(
            f"{op} needs an image (height, width, channels), got shape {ins[0]}",
            hint=f"use {op} on a 3-D tensor, before flatten or pooling",
        )
    return ins[0]


# -- prelu ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PReLUAttrs:
    __pydantic_config__ = ATTRS_CONFIG


def _prelu_infer(a: PReLUAttrs, ins: list[Shape]) -> tuple[PReLUAttrs, Shape]:
    return a, _image("prelu", ins)


def _prelu_weights(a: PReLUAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    return [Weight("alpha", (1, 1, ins[0][-1]), True)]  # Keras' shape, shared over H and W


PRELU = OpUnit(
    OpDef(
        "prelu",
        "PReLU",
        PReLUAttrs,
        _prelu_infer,
        _prelu_weights,
        flops=lambda a, i, o: 2 * (o[0] or 0) * (o[1] or 0) * o[2],
        doc="x where x > 0, else alpha * x: one trainable slope alpha per channel, "
        "starting at 0 (an image's channels; Keras' PReLU(shared_axes=[1, 2])).",
        unknown_sizes=True,
    ),
    keras=KerasLayer("PReLU", lambda a: [("shared_axes", "[1, 2]")]),
    torch=TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        lambda c: f"{c.helper('KerasPReLU')}({c.shape}[-1])",
        weights={  # Keras' (1, 1, C) is nn.PReLU's (C,)
            "alpha": Binding("weight", lambda a: a.reshape(-1), lambda a, s: a.reshape(s))
        },
        helpers=HERE / "torch_helpers.py",
        reads=(("KerasPReLU",), lambda m: {}),
    ),
)


# -- grn --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GRNAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    epsilon: Float = 1e-6  # added to the channels' mean norm (ConvNeXt V2's)


def _grn_infer(a: GRNAttrs, ins: list[Shape]) -> tuple[GRNAttrs, Shape]:
    if a.epsilon <= 0:
        raise ShapeError(f"epsilon must be positive, got {a.epsilon}", hint="use 1.0e-6")
    return a, _image("grn", ins)


def _grn_weights(a: GRNAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    channels = ins[0][-1]
    return [Weight("gamma", (channels,), True), Weight("beta", (channels,), True)]


def _grn_keras(attr: Attr) -> Args:
    epsilon = attr("epsilon")
    return [] if epsilon is None else [("epsilon", epsilon)]


def _grn_module(ctx: Ctx) -> str:
    epsilon = ctx.attr("epsilon")
    args = [f"{ctx.shape}[-1]", *([] if epsilon is None else [f"epsilon={epsilon}"])]
    return f"{ctx.helper('GRN')}({', '.join(args)})"


GRN = OpUnit(
    OpDef(
        "grn",
        "GRN",
        GRNAttrs,
        _grn_infer,
        _grn_weights,
        flops=lambda a, i, o: 6 * (o[0] or 0) * (o[1] or 0) * o[2],
        doc="ConvNeXt V2's global response normalization: gamma * (x * Nx) + beta + x, "
        "Nx = Gx / (mean of Gx over the channels + epsilon), Gx each channel's L2 norm over "
        "height and width; gamma and beta start at 0.",
        unknown_sizes=True,
    ),
    keras=KerasLayer("GRN", _grn_keras, custom=True, helpers=HERE / "keras_layers.py"),
    torch=TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _grn_module,
        weights={"gamma": Binding("weight"), "beta": Binding("bias")},
        helpers=HERE / "torch_helpers.py",
        reads=(("GRN",), lambda m: {"epsilon": m.epsilon}),
    ),
)

OPS = (PRELU, GRN)  # the entry point (pyproject.toml: [project.entry-points."archc.ops"])
