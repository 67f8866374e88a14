"""PyTorch emitters of the recurrent ops (compiler/ops/recurrent.py): modules of
torch/recurrent_helpers.py, which run PyTorch's own LSTM, GRU and RNN kernels.

The weight bindings carry the layout rule (docs/ARCHITECTURE.md): Keras packs the gates'
blocks along the last axis of (in, gates * units) and (units, gates * units) matrices;
PyTorch along the first axis of (gates * units, in) and (gates * units, units). The blocks'
order differs for the GRU: Keras z, r, h; PyTorch r, z, n (the LSTM's i, f, c, o is
PyTorch's i, f, g, o; a SimpleRNN has one block). So a matrix is transposed with its blocks
reordered, and a bias has its blocks reordered (the GRU's (2, 3 * units) bias row by row).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # bindings run on arrays; rendering source (archc check) needs no numpy
    import numpy as np

from archc.backends.torch.ops import TORCH_OPS, UNSET, Binding, Ctx, TorchOp

HELPERS = Path(__file__).with_name("recurrent_helpers.py")

# PyTorch's gate blocks as Keras' block numbers: nn.GRU's r, z, n are Keras' blocks 1, 0, 2
GATE_ORDER = {"lstm": (0, 1, 2, 3), "gru": (1, 0, 2), "simple_rnn": (0,)}
CLASSES = {"lstm": "KerasLSTM", "gru": "KerasGRU", "simple_rnn": "KerasSimpleRNN"}


def regate(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """The gates' blocks of the last axis taken in `order` (block numbers)."""
    import numpy as np

    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    back = [0] * len(order)
    for position, block in enumerate(order):
        back[block] = position
    return tuple(back)


def matrix(order: tuple[int, ...]) -> Binding:
    """Keras' (rows, gates * units) matrix as PyTorch's (gates * units, rows), and back."""
    return Binding(
        "",
        lambda a: regate(a, order).T,
        lambda a, shape: regate(a.T, inverse(order)),
    )


def vector(order: tuple[int, ...]) -> Binding:
    """A bias, (gates * units) or the GRU's (2, gates * units): its blocks reordered."""
    return Binding("", lambda a: regate(a, order), lambda a, shape: regate(a, inverse(order)))


def bindings(op: str, order: tuple[int, ...] | None = None) -> dict[str, Binding]:
    """IR weight -> parameter, both directions (`forward/...` and `backward/...` when
    bidirectional: one op declares both sets)."""
    order = order or GATE_ORDER[op]
    one = {"kernel": ("weight_ih", matrix(order)), "recurrent_kernel": ("weight_hh", matrix(order))}
    one["bias"] = ("bias", vector(order))
    out = {}
    for prefix, suffix in (("", "_l0"), ("forward/", "_l0"), ("backward/", "_l0_reverse")):
        for name, (key, binding) in one.items():
            out[prefix + name] = Binding(key + suffix, binding.to_torch, binding.to_keras)
    return out


def _kw(ctx: Ctx, *keys: str) -> list[str]:
    return [f"{key}={src}" for key in keys if (src := ctx.attr(key)) is not None]


def _module(op: str) -> Callable[[Ctx], str]:
    def module(ctx: Ctx) -> str:
        args = [f"{ctx.shape}[-1]", ctx.attr("units") or ""]
        args += _kw(ctx, "use_bias", "return_sequences", "bidirectional", "merge_mode")
        if op == "simple_rnn":
            args += _kw(ctx, "activation")
        return f"{ctx.helper(CLASSES[op])}({', '.join(args)})"

    return module


def _shape(ctx: Ctx) -> str:
    every = ctx.const("return_sequences", False)
    if every is UNSET:
        steps = f"(({ctx.shape}[0],) if {ctx.module}.return_sequences else ())"
        return f"{steps} + ({ctx.module}.output_size,)"
    size = f"{ctx.module}.output_size"
    return f"({ctx.shape}[0], {size})" if every else f"({size},)"


def _reads(m: Any) -> dict[str, Any]:
    read = {
        "units": m.units,
        "use_bias": m.use_bias,
        "return_sequences": m.return_sequences,
        "bidirectional": m.bidirectional,
    }
    if m.bidirectional:
        read["merge_mode"] = m.merge_mode
    if hasattr(m, "activation"):
        read["activation"] = m.activation
    return read


RECURRENT_OPS: dict[str, TorchOp] = {
    op: TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _module(op),
        _shape,
        bindings(op),
        helpers=HELPERS,
        reads=((CLASSES[op],), _reads),
    )
    for op in GATE_ORDER
}
TORCH_OPS.update(RECURRENT_OPS)
