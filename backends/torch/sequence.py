"""PyTorch emitters of the sequence and attention ops (compiler/ops/sequence.py, attention.py).

Layout (docs/ARCHITECTURE.md): sequences are held (N, T, C), as nn.Linear, nn.LayerNorm and
attention take them; images (N, C, H, W). `torch_dims` maps the IR's channels-last axes to
the dims of the tensor as it is held, so ops on axes (take, slice, permute) are one indexing
or one permute where the ranks are known, and a helper where an attribute is an expression.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # bindings run on arrays; rendering source (archc check) needs no numpy
    import numpy as np

from archc.backends.torch.ops import TORCH_OPS, UNSET, Binding, Ctx, TorchOp, activation, torch_dims

from . import reads


def to_held(array: np.ndarray) -> np.ndarray:
    """A channels-last array (no batch axis) as a tensor of its rank is held."""
    if array.ndim <= 2:
        return array
    return array.transpose(array.ndim - 1, *range(array.ndim - 1))  # channels first


def to_logical(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if array.ndim <= 2:
        return array
    return array.transpose(*range(1, array.ndim), 0)  # channels last


def _kw(ctx: Ctx, *pairs: tuple[str, str]) -> list[str]:
    return [f"{kw}={src}" for key, kw in pairs if (src := ctx.attr(key)) is not None]


# -- conv1d and pooling -----------------------------------------------------------------------
def _conv1d_module(ctx: Ctx) -> str:
    args = [f"{ctx.shape}[-1]", ctx.attr("filters") or "", ctx.attr("kernel") or ""]
    args += _kw(ctx, ("strides", "stride"), ("padding", "padding"), ("dilation", "dilation"))
    args += _kw(ctx, ("groups", "groups"), ("use_bias", "bias"))
    return f"{ctx.helper('KerasConv1d')}({', '.join(args)})"


def _steps(ctx: Ctx, kernel: str) -> str:
    """The output steps of a window op: the input's, where the window keeps the length."""
    stride = ctx.const("strides", None)
    if stride is None:  # a pool's strides default to its size, a convolution's to 1
        stride = ctx.const("pool", None) if kernel == "pool" else 1
    if stride == 1 and (ctx.const("padding", "valid") == "same" or ctx.const(kernel) == 1):
        return f"{ctx.shape}[0]"
    args = [f"{ctx.shape}[0]", ctx.attr(kernel) or ""]
    args.append(ctx.attr("strides") or (ctx.attr(kernel) if kernel == "pool" else "1") or "1")
    args.append(ctx.attr("padding") or '"valid"')
    if ctx.attr("dilation"):
        args.append(ctx.attr("dilation") or "1")
    return f"{ctx.helper('steps_out')}({', '.join(args)})"


def _pool1d_shape(ctx: Ctx) -> str | None:
    steps = _steps(ctx, "pool")
    return None if steps == f"{ctx.shape}[0]" else f"({steps}, {ctx.shape}[-1])"


def _pool1d_module(mode: str) -> Callable[[Ctx], str]:
    def module(ctx: Ctx) -> str:
        args = [repr(mode), ctx.attr("pool") or ""]
        args += _kw(ctx, ("strides", "stride"), ("padding", "padding"))
        return f"{ctx.helper('KerasPool1d')}({', '.join(args)})"

    return module


def _global1d(reduce: str) -> Callable[[Ctx, list[str], str], str]:
    def forward(ctx: Ctx, xs: list[str], mod: str) -> str:
        keep = ctx.const("keepdims", False)
        if keep is UNSET:
            return f"{xs[0]}.{reduce}(1, keepdim={ctx.hoisted('keepdims', 'False')})"
        return f"{xs[0]}.{reduce}(1, keepdim=True)" if keep else f"{xs[0]}.{reduce}(1)"

    return forward


def _global1d_shape(ctx: Ctx) -> str:
    keep = ctx.const("keepdims", False)
    if keep is UNSET:
        return f"(1, {ctx.shape}[-1]) if {ctx.attr('keepdims')} else {ctx.shape}[-1:]"
    return f"(1, {ctx.shape}[-1])" if keep else f"{ctx.shape}[-1:]"


def _conv1d_kernel(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 1, 0)  # (k, in, out) <-> (out, in, k)


# -- axes: take, slice, permute ---------------------------------------------------------------
def _index(rank: int, axis: int, item: str) -> str:
    """`[:, ..., item]` selecting `item` on one channels-last axis of a held tensor."""
    dim = torch_dims(rank)[axis]
    return "[" + ", ".join([":"] * dim + [item]) + "]"


def _by_axis(ctx: Ctx, x: str, item: Callable[[], str], out_rank: int | None, generic: str) -> str:
    """x indexed on the op's axis: one indexing when the axis and ranks are known; on an
    image whose result changes layout, through the channels-last order."""
    axis, rank = ctx.const("axis", 0), ctx.rank
    if axis is UNSET or rank is None or out_rank is None:
        return generic
    axis %= rank
    if rank <= 2:
        return f"{x}{_index(rank, axis, item())}"
    if out_rank >= 3 and axis != rank - 1:  # the channels stay in dim 1
        return f"{x}{_index(rank, axis, item())}"
    y = f"{x}.movedim(1, -1)[{', '.join([':'] * (axis + 1) + [item()])}]"
    return f"{y}.movedim(-1, 1)" if out_rank >= 3 else y


def _take_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    index, axis = ctx.hoisted("index", "0"), ctx.hoisted("axis", "0")
    generic = f"{ctx.helper('take_axis')}({xs[0]}, {index}, {axis})"
    return _by_axis(ctx, xs[0], lambda: index, ctx.out_rank, generic)


def _take_shape(ctx: Ctx) -> str:
    axis = ctx.const("axis", 0)
    if axis is not UNSET and ctx.rank is not None:
        axis %= ctx.rank
        return f"{ctx.shape}[:{axis}] + {ctx.shape}[{axis + 1}:]" if axis else f"{ctx.shape}[1:]"
    a = f"({ctx.attr('axis')}) % len({ctx.shape})"
    return f"{ctx.shape}[:{a}] + {ctx.shape}[{a} + 1 :]"


def _slice_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    start, stop = ctx.hoisted("start", "0"), ctx.hoisted("stop", "None")
    axis = ctx.hoisted("axis", "0")
    generic = f"{ctx.helper('slice_axis')}({xs[0]}, {start}, {stop}, {axis})"

    def item() -> str:
        first = "" if ctx.const("start", 0) == 0 else start
        last = "" if ctx.const("stop", None) is None else stop
        return f"{first}:{last}"

    return _by_axis(ctx, xs[0], item, ctx.out_rank, generic)


def _slice_shape(ctx: Ctx) -> str:
    start, stop = ctx.attr("start") or "0", ctx.attr("stop") or "None"
    axis = ctx.const("axis", 0)
    if axis is not UNSET and ctx.rank is not None:
        axis %= ctx.rank
        size = f"len(range({ctx.shape}[{axis}])[{start}:{stop}])"
        return f"(*{ctx.shape}[:{axis}], {size}, *{ctx.shape}[{axis + 1}:])"
    a = f"({ctx.attr('axis')}) % len({ctx.shape})"
    size = f"len(range({ctx.shape}[{a}])[{start}:{stop}])"
    return f"(*{ctx.shape}[:{a}], {size}, *{ctx.shape}[{a} + 1 :])"


def permutation(rank: int, dims: tuple[int, ...]) -> list[int]:
    """The one torch permute that is Keras' Permute(dims) of a held tensor of this rank: the
    output's dim for output axis b is the input's dim for axis dims[b]."""
    held_in, held_out = torch_dims(rank), torch_dims(rank)
    order = [0] * (rank + 1)
    for b, d in enumerate(dims):
        order[held_out[b]] = held_in[d]
    return order


def _permute_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    dims = ctx.const("dims")
    if dims is UNSET or ctx.rank is None:
        return f"{ctx.helper('permute_axes')}({xs[0]}, {ctx.hoisted('dims', '()')})"
    order = permutation(ctx.rank, tuple(dims))
    return f"{xs[0]}.permute({', '.join(map(str, order))})"


def _permute_shape(ctx: Ctx) -> str:
    dims = ctx.const("dims")
    if dims is UNSET:
        return f"tuple({ctx.shape}[d] for d in {ctx.attr('dims')})"
    return "(" + "".join(f"{ctx.shape}[{d}], " for d in dims) + ")"


# -- learned embeddings and attention ---------------------------------------------------------
def _masked(ctx: Ctx) -> bool:
    """Whether the last input is a padding mask (an expression is taken as true, as the Keras
    emitter takes it: the compiler saw its value with the inputs it was given)."""
    return ctx.const("padding_mask", False) is not False


def _attention_module(ctx: Ctx) -> str:
    args = [f"{ctx.shapes[0]}[-1]", ctx.attr("num_heads") or "", ctx.attr("key_dim") or ""]
    args += _kw(
        ctx,
        ("value_dim", "value_dim"),
        ("output_dim", "output_dim"),
        ("use_bias", "use_bias"),
        ("causal", "causal"),
        ("dropout", "dropout"),
    )
    shapes = ctx.shapes[:-1] if _masked(ctx) else ctx.shapes
    if len(shapes) > 1:
        args.append(f"value_channels={shapes[1]}[-1]")
    if len(shapes) > 2:
        args.append(f"key_channels={shapes[2]}[-1]")
    return f"{ctx.helper('KerasMultiHeadAttention')}({', '.join(args)})"


def _attention_shape(ctx: Ctx) -> str | None:
    if ctx.attr("output_dim") is None:  # the query's shape
        return None
    return f"({ctx.shapes[0]}[0], {ctx.module}.output_dim)"


def _attention_weights() -> dict[str, Binding]:
    """Keras' weights are the module's parameters, layout and all."""
    names = {"query": "query", "key": "key", "value": "value", "attention_output": "output"}
    out = {}
    for keras_name, torch_name in names.items():
        for part in ("kernel", "bias"):
            out[f"{keras_name}/{part}"] = Binding(f"{torch_name}_{part}")
    return out


def _module_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    return f"{mod}({', '.join(xs)})"


def _attention_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    if not _masked(ctx):
        return _module_forward(ctx, xs, mod)
    return f"{mod}({', '.join(xs[:-1])}, mask={xs[-1]})"


SEQUENCE_OPS: dict[str, TorchOp] = {
    "conv1d": TorchOp(
        lambda c, xs, m: activation(c, "activation", f"{m}({xs[0]})"),
        _conv1d_module,
        lambda c: f"({_steps(c, 'kernel')}, {c.module}.out_channels)",
        {
            "kernel": Binding("weight", _conv1d_kernel, lambda a, shape: _conv1d_kernel(a)),
            "bias": Binding("bias"),
        },
        reads=(("KerasConv1d",), reads.conv1d),
    ),
    "max_pool1d": TorchOp(
        _module_forward,
        _pool1d_module("max"),
        _pool1d_shape,
        reads=(("KerasPool1d",), reads.pool1d),
    ),
    "avg_pool1d": TorchOp(
        _module_forward,
        _pool1d_module("avg"),
        _pool1d_shape,
        reads=(("KerasPool1d",), reads.pool1d),
    ),
    "global_avg_pool1d": TorchOp(_global1d("mean"), shape=_global1d_shape),
    "global_max_pool1d": TorchOp(_global1d("amax"), shape=_global1d_shape),
    "embedding": TorchOp(
        _module_forward,
        lambda c: f"{c.helper('KerasEmbedding')}({c.attr('input_dim')}, {c.attr('output_dim')})",
        lambda c: f"(*{c.shape}, {c.module}.embedding_dim)",
        {"embeddings": Binding("weight")},
        reads=(("KerasEmbedding",), reads.embedding),
    ),
    "positional_embedding": TorchOp(
        _module_forward,
        lambda c: f"{c.helper('PositionalEmbedding')}({c.shape})",
        weights={"embeddings": Binding("weight", to_held, to_logical)},
        reads=(("PositionalEmbedding",), reads.nothing),
    ),
    "class_token": TorchOp(
        _module_forward,
        lambda c: f"{c.helper('ClassToken')}({c.shape})",
        lambda c: f"({c.shape}[0] + 1, *{c.shape}[1:])",
        {"token": Binding("token", to_held, to_logical)},
        reads=(("ClassToken",), reads.nothing),
    ),
    "take": TorchOp(_take_forward, shape=_take_shape),
    "slice": TorchOp(_slice_forward, shape=_slice_shape),
    "permute": TorchOp(_permute_forward, shape=_permute_shape),
    "multi_head_attention": TorchOp(
        _attention_forward,
        _attention_module,
        _attention_shape,
        _attention_weights(),
        reads=(("KerasMultiHeadAttention",), reads.attention),
    ),
}
TORCH_OPS.update(SEQUENCE_OPS)
