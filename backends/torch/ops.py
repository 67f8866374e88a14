"""One emitter per op for PyTorch: module, forward expression, shape rule and weight bindings.

Generated models hold images channels first, (N, C, H, W), and vectors and sequences as they
are, (N, C) and (N, T, C) (`torch_dims`, the layout rule); the IR's logical layout is
channels-last, and the shapes generated constructors track are channels-last tuples, batch
excluded, as the IR's. An emitter gets a `Ctx` that gives the item's attributes
as source and knows what the compiled graph saw (the input's rank).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, get_args

from archc.backends.pysrc import literal
from archc.compiler.ops import Activation, RegistrationError
from archc.compiler.plugins import attach

from . import reads

if TYPE_CHECKING:  # bindings run on arrays; rendering source (archc check) needs no numpy
    import numpy as np

UNSET = object()


class Ctx(Protocol):
    shape: str  # the first input's shape (source)
    shapes: list[str]  # every input's shape
    rank: int | None  # the first input's rank, when the compiled graph knows it
    module: str  # the module's attribute (self.<name>), for ops that have one
    in_ranks: list[int | None]  # every input's rank, when the compiled graph knows it
    out_rank: int | None
    broadcasts: bool  # the compiled graph saw inputs of different shapes
    fold: tuple[int, int] | None  # a symmetric zero pad before a 'valid' conv, done by it
    unknown: bool  # the compiled graph saw an unknown height or width (None) in an input

    def attr(self, key: str) -> str | None: ...  # None when the spec leaves the default
    def const(self, key: str, default: Any = UNSET) -> Any: ...  # UNSET unless a constant
    def hoisted(self, key: str, default: str) -> str: ...  # a value forward can read
    def helper(self, name: str) -> str: ...  # use a helper of torch_helpers; its name


@dataclass(frozen=True)
class Binding:
    """An IR (Keras) weight as a PyTorch parameter or buffer, with the layout change."""

    key: str
    to_torch: Callable[[np.ndarray], np.ndarray] = lambda a: a
    to_keras: Callable[[np.ndarray, tuple[int, ...]], np.ndarray] = lambda a, shape: a


@dataclass(frozen=True)
class TorchOp:
    """An op's PyTorch side. The helpers its emitters use (`Ctx.helper`) come from archc's
    helper modules or from `helpers`, a module of the op's own; what a file carries with them,
    in which order, and which of their classes reset their own parameters is read from the
    helpers' source (backends/helper_library.py). An op whose attributes include `kernel_l2`
    tags its module with the factor (its `weight` is the kernel `regularization_loss` reads)."""

    forward: Callable[[Ctx, list[str], str], str]  # (ctx, input sources, module) -> expression
    module: Callable[[Ctx], str] | None = None  # constructor source; None: no module
    shape: Callable[[Ctx], str | None] | None = None  # output shape; None: the first input's
    weights: dict[str, Binding] = field(default_factory=dict)
    helpers: Path | None = None  # a helper module of the op's own (its file)
    # the classes its module may be and the IR attributes read back from one (conform.py,
    # E114); None: conform's own table of archc's ops
    reads: tuple[tuple[str, ...], Callable[[Any], dict[str, Any]]] | None = None


# Keras' activation functions (archc.compiler.ops.Activation) in PyTorch, declared once: name ->
# the expression of {x}. Ops inline them; the `activate` helper, which picks one by name when
# the spec computes it, carries the same table (activate_source).
ACTIVATIONS = {
    "linear": "{x}",
    "relu": "F.relu({x})",
    "relu6": "F.relu6({x})",
    "sigmoid": "torch.sigmoid({x})",
    "tanh": "torch.tanh({x})",
    "softmax": "F.softmax({x}, dim=1)",  # over the channels, where they are held (activation)
    "silu": "F.silu({x})",
    "swish": "F.silu({x})",
    "gelu": "F.gelu({x})",  # Keras' "gelu" is the exact one (approximate=False)
    "hard_sigmoid": "F.hardsigmoid({x})",  # Keras 3: relu6(x + 3) / 6 (Keras 2: 0.2x + 0.5)
    "hard_swish": "F.hardswish({x})",
    "elu": "F.elu({x})",
    "selu": "F.selu({x})",
    "mish": "F.mish({x})",
    "leaky_relu": "F.leaky_relu({x}, 0.2)",  # Keras' slope 0.2 (PyTorch's default is 0.01)
}


def check_activations(declared: tuple[str, ...], rules: dict[str, str]) -> None:
    """Every activation the spec language declares has a PyTorch rule, and no rule is for
    one it does not: raised when the backend is loaded, not at the first spec that uses it."""
    what = [
        f"'{a}' of archc.compiler.ops.Activation has no PyTorch rule"
        for a in declared
        if a not in rules
    ]
    what += [
        f"'{a}' has a rule but is not in archc.compiler.ops.Activation"
        for a in rules
        if a not in declared
    ]
    if what:
        raise RegistrationError(
            f"activations: {'; '.join(what)} (declare each in both: the name in the literal, "
            "its PyTorch expression of {x} in backends/torch_ops.ACTIVATIONS)"
        )


check_activations(get_args(Activation), ACTIVATIONS)


def activate_source(source: str) -> str:
    """The `activate` helper's source (torch_helpers.py) with its table written out from
    ACTIVATIONS: a function as itself where the rule is one call of x (F.relu), a lambda
    otherwise. Softmax is the helper's own case (its dim depends on the tensor)."""
    entries = []
    for name, rule in ACTIVATIONS.items():
        if name == "softmax":
            continue
        call = ast.parse(rule.format(x="t"), mode="eval").body
        fn = f"lambda t: {rule.format(x='t')}"
        if isinstance(call, ast.Call) and not call.keywords and len(call.args) == 1:
            arg = call.args[0]
            if isinstance(arg, ast.Name) and arg.id == "t":
                fn = ast.unparse(call.func)
        entries.append(f'"{name}": {fn}')
    table = "table = {" + ", ".join(entries) + "}"
    lines = source.splitlines(keepends=True)
    (slot,) = [k for k, line in enumerate(lines) if line.strip().startswith("table")]
    indent = lines[slot][: len(lines[slot]) - len(lines[slot].lstrip())]
    return "".join([*lines[:slot], f"{indent}{table}\n", *lines[slot + 1 :]])


def activation(ctx: Ctx, key: str, x: str) -> str:
    fn = ctx.const(key, "linear")
    if fn is UNSET:
        return f"{ctx.helper('activate')}({x}, {ctx.hoisted(key, repr('linear'))})"
    if fn == "softmax" and ctx.out_rank != 1:  # over the channels, where they are held
        if ctx.out_rank is None:
            return f"F.softmax({x}, dim=1 if {x}.dim() > 3 else -1)"
        return f"F.softmax({x}, dim={1 if ctx.out_rank >= 3 else -1})"
    return ACTIVATIONS[fn].format(x=x)


def _activation_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    """The activation op: its function, or leaky_relu with its slope (`alpha`) and gelu exact
    or by tanh (`approximate`), the arguments only this op has."""
    if ctx.attr("alpha") is None and ctx.attr("approximate") is None:
        return activation(ctx, "fn", xs[0])
    return _tuned(ctx, xs[0])


def _tuned(ctx: Ctx, x: str) -> str:
    """leaky_relu with `alpha`, gelu with `approximate` (the compiler allows each only with
    its function)."""
    # an expression is computed in the constructor (forward sees no parameters)
    if ctx.attr("alpha") is not None:
        return f"F.leaky_relu({x}, {ctx.hoisted('alpha', '0.2')})"
    if ctx.const("approximate") is True:
        return f'F.gelu({x}, approximate="tanh")'
    if ctx.const("approximate") is False:
        return f"F.gelu({x})"
    return f'F.gelu({x}, approximate="tanh" if {ctx.hoisted("approximate", "False")} else "none")'


def torch_dims(rank: int) -> list[int]:
    """The layout rule: the dim of each channels-last axis (batch excluded) in the tensor as
    PyTorch holds it. Images (rank >= 3) hold their channels in dim 1, (N, C, H, W); vectors
    and sequences keep the logical order, (N, C) and (N, T, C)."""
    if rank <= 2:
        return [axis + 1 for axis in range(rank)]
    return [axis + 2 for axis in range(rank - 1)] + [1]


def _is_one(value: Any) -> bool:
    return value in (1, (1, 1)) or value is None


def _kw(ctx: Ctx, *pairs: tuple[str, str]) -> list[str]:
    return [f"{kw}={src}" for key, kw in pairs if (src := ctx.attr(key)) is not None]


def _pos(ctx: Ctx, *keys: str) -> list[str]:
    return [src for key in keys if (src := ctx.attr(key)) is not None]


def _padding(ctx: Ctx, plain: str, keras: str) -> tuple[str, list[str]]:
    """The class and padding argument: PyTorch's own for 'valid', and for 'same' at stride 1
    (it splits as TF does); the Keras helper where the stride may be larger."""
    padding = ctx.const("padding", "valid")
    strides = ctx.const("strides", None)
    kernel = ctx.const("kernel")
    odd = kernel is not UNSET and all(
        k % 2 for k in (kernel if isinstance(kernel, tuple) else (kernel,))
    )
    if padding == "valid":
        return plain, [f"padding={ctx.fold}"] if ctx.fold else []
    if padding == "same" and _is_one(strides) and odd:  # even kernels: PyTorch copies the input
        return plain, ['padding="same"']
    return ctx.helper(keras), [f"padding={ctx.attr('padding')}"]


def _conv_module(ctx: Ctx) -> str:
    cls, padding = _padding(ctx, ctx.helper("GlorotConv2d"), "KerasConv2d")
    args = [f"{ctx.shape}[-1]", ctx.attr("filters") or "", ctx.attr("kernel") or ""]
    args += _kw(ctx, ("strides", "stride")) + padding
    args += _kw(ctx, ("dilation", "dilation"), ("groups", "groups"), ("use_bias", "bias"))
    return f"{cls}({', '.join(args)})"


def _depthwise_module(ctx: Ctx) -> str:
    cls = ctx.helper("KerasDepthwiseConv2d")
    cin = f"{ctx.shape}[-1]"
    mult = ctx.attr("depth_multiplier")
    args = [cin, f"{cin} * {mult}" if mult else cin, ctx.attr("kernel") or ""]
    args += _kw(ctx, ("strides", "stride"))
    if ctx.fold:
        args.append(f"padding={ctx.fold}")
    elif ctx.attr("padding") is not None:
        args.append(f"padding={ctx.attr('padding')}")
    args += _kw(ctx, ("dilation", "dilation"))
    args += [f"groups={cin}", *_kw(ctx, ("use_bias", "bias"))]
    return f"{cls}({', '.join(args)})"


def _separable_module(ctx: Ctx) -> str:
    cls = ctx.helper("KerasSeparableConv2d")
    args = [f"{ctx.shape}[-1]", ctx.attr("filters") or "", ctx.attr("kernel") or ""]
    args += _kw(
        ctx,
        ("strides", "stride"),
        ("padding", "padding"),
        ("depth_multiplier", "depth_multiplier"),
        ("dilation", "dilation"),
        ("use_bias", "bias"),
    )
    return f"{cls}({', '.join(args)})"


def _window_shape(ctx: Ctx, channels: str, kernel: str, strides: str) -> str:
    """The output shape of a window op: channels only, where the window keeps the size."""
    padding = ctx.const("padding", "valid")
    stride = ctx.const(strides, None)
    if stride is None and kernel == "pool":  # a pool's strides default to its size
        stride = ctx.const("pool", None)
    same_size = _is_one(stride) and (padding == "same" or _is_one(ctx.const(kernel, None)))
    if same_size:
        return f"(*{ctx.shape}[:-1], {channels})"
    args = [ctx.shape, channels, ctx.attr(kernel) or ""]
    args.append(ctx.attr(strides) or (ctx.attr(kernel) if kernel == "pool" else "1") or "1")
    args.append(ctx.attr("padding") or '"valid"')
    if ctx.attr("dilation"):
        args.append(ctx.attr("dilation") or "1")
    return f"{ctx.helper('window_shape')}({', '.join(args)})"


def _conv_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    return activation(ctx, "activation", f"{mod}({xs[0]})")


def _conv_kernel_to_keras(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.transpose(2, 3, 1, 0)


def _dw_to_torch(a: np.ndarray) -> np.ndarray:
    kh, kw, c, m = a.shape
    return a.reshape(kh, kw, c * m, 1).transpose(2, 3, 0, 1)


def _dw_to_keras(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.transpose(2, 3, 0, 1).reshape(shape)


_BIAS = {"bias": Binding("bias")}


def _bn_module(ctx: Ctx) -> str:
    momentum = ctx.const("momentum", 0.99)
    torch_momentum = (
        repr(round(1.0 - momentum, 12))
        if momentum is not UNSET
        else f"1.0 - {ctx.attr('momentum')}"
    )
    args = [f"{ctx.shape}[-1]", f"eps={ctx.attr('epsilon') or '0.001'}"]
    args.append(f"momentum={torch_momentum}")
    args += _kw(ctx, ("scale", "scale"), ("center", "center"))
    return f"{ctx.helper('KerasBatchNorm')}({', '.join(args)})"


def _ln_module(ctx: Ctx) -> str:
    args = [f"{ctx.shape}[-1]", f"eps={ctx.attr('epsilon') or '0.001'}"]
    args += _kw(ctx, ("scale", "scale"), ("center", "center"))
    return f"{ctx.helper('KerasLayerNorm')}({', '.join(args)})"


def _dense_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    if ctx.rank is not None and ctx.rank <= 2:  # vectors and sequences: channels last
        return activation(ctx, "activation", f"{mod}({xs[0]})")
    # Keras' Dense works on the last (channel) axis at any rank
    moved = f"{mod}({xs[0]}.movedim(1, -1)).movedim(-1, 1)"
    if ctx.rank is None:
        last, first = ctx.helper("to_channels_last"), ctx.helper("from_channels_last")
        moved = f"{first}({mod}({last}({xs[0]})))"
    return activation(ctx, "activation", moved)


def _dense_module(ctx: Ctx) -> str:
    args = [f"{ctx.shape}[-1]", ctx.attr("units") or "", *_kw(ctx, ("use_bias", "bias"))]
    return f"{ctx.helper('KerasLinear')}({', '.join(args)})"


def _broadcast_inputs(ctx: Ctx, xs: list[str]) -> list[str]:
    """Broadcasting as Keras does: an input of lower rank first gets size-1 axes where its
    channels-last shape lacks them: after the channels (dim 1) of an image, before the
    channels of a sequence; a sequence broadcast over an image gets its channels first."""
    items = []
    for x, rank in zip(xs, ctx.in_ranks, strict=True):
        missing = ctx.out_rank - rank if ctx.out_rank and rank else 0
        if missing <= 0:
            items.append(x)
        elif ctx.out_rank is not None and ctx.out_rank <= 2:
            items.append(f"{x}[:{', None' * missing}]")
        elif rank == 2:  # (N, W, C) -> (N, C, 1, W)
            items.append(f"{x}.movedim(-1, 1)[:, :{', None' * missing}]")
        else:
            items.append(f"{x}[:, :{', None' * missing}]")
    return items


def _elementwise(symbol: str) -> Callable[[Ctx, list[str], str], str]:
    """`a + b`, the inputs broadcast (`_broadcast_inputs`)."""

    def forward(ctx: Ctx, xs: list[str], mod: str) -> str:
        return f" {symbol} ".join(_broadcast_inputs(ctx, xs))

    return forward


def _scales(ctx: Ctx, n: int) -> list[str | None] | None:
    """Each input's coefficient as source, None where it is 1 (not multiplied, as Keras'
    ScaledAdd): constants inline, a computed one read from the list kept by the constructor;
    None where the whole list is computed (it may come out None: a plain sum)."""
    const = ctx.const("scales", None)
    if const is None:
        return [None] * n
    if const is not UNSET:
        return [None if s == 1 else literal(float(s)) for s in const]
    tree = ast.parse(ctx.attr("scales") or "()", mode="eval").body
    if not isinstance(tree, ast.Tuple) or len(tree.elts) != n:
        return None
    out: list[str | None] = []
    for i, item in enumerate(tree.elts):
        value = item.value if isinstance(item, ast.Constant) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(None if value == 1 else literal(float(value)))
        else:
            out.append(f"{ctx.hoisted('scales', '()')}[{i}]")
    return out


def _add_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    """`x0 + x1 * 0.17`: the inputs broadcast, each times its coefficient, summed left to
    right (Keras' order: the same float32 operations)."""
    items = _broadcast_inputs(ctx, xs)
    scales = _scales(ctx, len(xs))
    if scales is None:  # a computed list, or None: chosen when the model runs
        kept = ctx.hoisted("scales", "None")
        scaled = " + ".join(f"{x} * {kept}[{i}]" for i, x in enumerate(items))
        return f"({' + '.join(items)} if {kept} is None else {scaled})"
    terms = [x if s is None else f"{x} * {s}" for x, s in zip(items, scales, strict=True)]
    return " + ".join(terms)


def _broadcast_shape(ctx: Ctx) -> str | None:
    if not ctx.broadcasts:
        return None  # equal shapes: the first input's
    return f"{ctx.helper('broadcast_shape')}({', '.join(ctx.shapes)})"


def _concat_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    axis = ctx.const("axis", -1)
    items = "[" + ", ".join(xs) + "]"
    if axis is not UNSET and ctx.rank is not None:
        dim = torch_dims(ctx.rank)[axis % ctx.rank]
        return f"torch.cat({items}, dim={-1 if ctx.rank == 2 and dim == 2 else dim})"
    dim = f"{ctx.helper('torch_dim')}({ctx.hoisted('axis', '-1')}, {xs[0]}.dim() - 1)"
    return f"torch.cat({items}, dim={dim})"


def _concat_shape(ctx: Ctx) -> str:
    if ctx.const("axis", -1) == -1 and not ctx.unknown:
        total = " + ".join(f"{s}[-1]" for s in ctx.shapes)
        return f"(*{ctx.shape}[:-1], {total})"
    if ctx.unknown:  # the helper takes a size any input knows (None: unknown in all)
        shapes = ", ".join(ctx.shapes)
        return f"{ctx.helper('concat_shape')}(({shapes}), {ctx.attr('axis') or '-1'})"
    shapes = "(" + ", ".join(ctx.shapes) + ",)"
    return f"{ctx.helper('concat_shape')}({shapes}, {ctx.attr('axis')})"


def _pool_module(plain: str, keras: str) -> Callable[[Ctx], str]:
    def module(ctx: Ctx) -> str:
        padding = ctx.const("padding", "valid")
        args = ", ".join([ctx.attr("pool") or "", *_kw(ctx, ("strides", "stride"))])
        if padding == "valid":
            return f"{plain}({args})"
        if padding == "same":
            return f"{ctx.helper(keras)}({args})"
        test = f"{ctx.attr('padding')} == 'same'"
        return f"{ctx.helper(keras)}({args}) if {test} else {plain}({args})"

    return module


def _global_pool(reduce: str) -> Callable[[Ctx, list[str], str], str]:
    def forward(ctx: Ctx, xs: list[str], mod: str) -> str:
        keep = ctx.const("keepdims", False)
        if keep is UNSET:
            return f"{xs[0]}.{reduce}((2, 3), keepdim={ctx.hoisted('keepdims', 'False')})"
        return f"{xs[0]}.{reduce}((2, 3), keepdim=True)" if keep else f"{xs[0]}.{reduce}((2, 3))"

    return forward


def _gap_shape(ctx: Ctx) -> str:
    keep = ctx.const("keepdims", False)
    if keep is UNSET:
        return f"(1, 1, {ctx.shape}[-1]) if {ctx.attr('keepdims')} else {ctx.shape}[-1:]"
    return f"(1, 1, {ctx.shape}[-1])" if keep else f"{ctx.shape}[-1:]"


def torch_pads(value: Any) -> tuple[int, int, int, int]:
    """A constant zero_pad2d padding as F.pad's (left, right, top, bottom)."""
    return _torch_pads(value)


def _torch_pads(value: Any) -> tuple[int, int, int, int]:
    if isinstance(value, int):
        return (value,) * 4
    (t, b), (left, r) = ((p, p) if isinstance(p, int) else tuple(p) for p in value)
    return (left, r, t, b)


def _zpad_module(ctx: Ctx) -> str:
    padding = ctx.const("padding", 1)
    if padding is UNSET:
        return f"nn.ZeroPad2d({ctx.helper('torch_pads')}({ctx.attr('padding')}))"
    return f"nn.ZeroPad2d({_torch_pads(padding)})"


def _zpad_shape(ctx: Ctx) -> str:
    padding = ctx.const("padding", 1)
    if padding is UNSET or ctx.unknown:  # the helper keeps an unknown size (None) unknown
        return f"{ctx.helper('zero_pad_shape')}({ctx.shape}, {ctx.attr('padding') or '1'})"
    left, r, t, b = _torch_pads(padding)
    return f"({ctx.shape}[0] + {t + b}, {ctx.shape}[1] + {left + r}, {ctx.shape}[2])"


def _pair(value: Any) -> tuple[Any, Any]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _upsample_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    size = ctx.const("size", 2)
    factor = repr(_pair(size)) if size is not UNSET else ctx.hoisted("size", "2")
    mode = ctx.const("interpolation", "nearest")
    if mode == "nearest":
        return f"F.interpolate({xs[0]}, scale_factor={factor})"
    if mode == "bilinear":  # TF's half-pixel centres are align_corners=False
        return f'F.interpolate({xs[0]}, scale_factor={factor}, mode="bilinear")'
    chosen = ctx.hoisted("interpolation", "'nearest'")
    return f"F.interpolate({xs[0]}, scale_factor={factor}, mode={chosen})"


def _upsample_shape(ctx: Ctx) -> str:
    size = ctx.const("size", 2)
    if ctx.unknown:  # the helper keeps an unknown size (None) unknown
        return f"{ctx.helper('upsample_shape')}({ctx.shape}, {ctx.attr('size') or '2'})"
    if size is UNSET:
        factor = f"{ctx.helper('pair')}({ctx.attr('size')})"
        return f"({ctx.shape}[0] * {factor}[0], {ctx.shape}[1] * {factor}[1], {ctx.shape}[2])"
    sh, sw = _pair(size)
    return f"({ctx.shape}[0] * {sh}, {ctx.shape}[1] * {sw}, {ctx.shape}[2])"


def _crop_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    crop = ctx.const("cropping", 0)
    if crop is UNSET:
        return f"{ctx.helper('crop')}({xs[0]}, {ctx.hoisted('cropping', '0')})"
    left, right, top, bottom = _torch_pads(crop)
    rows = f"{top}:{-bottom if bottom else ''}"
    cols = f"{left}:{-right if right else ''}"
    return f"{xs[0]}[:, :, {rows}, {cols}]"


def _crop_shape(ctx: Ctx) -> str:
    crop = ctx.const("cropping", 0)
    if crop is UNSET or ctx.unknown:  # the helper keeps an unknown size (None) unknown
        ctx.helper("torch_pads")
        return f"{ctx.helper('zero_pad_shape')}({ctx.shape}, {ctx.attr('cropping') or '0'}, -1)"
    left, right, top, bottom = _torch_pads(crop)
    s = ctx.shape
    return f"({s}[0] - {top + bottom}, {s}[1] - {left + right}, {s}[2])"


def _rescale_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    scale = ctx.hoisted("scale", "1.0")
    offset = ctx.const("offset", 0.0)
    if offset == 0.0:
        return f"{xs[0]} * {scale}"
    return f"{xs[0]} * {scale} + {ctx.hoisted('offset', '0.0')}"


def _channels_last(ctx: Ctx, x: str) -> str:
    """x in the logical channels-last order (Keras flattens and reshapes in that order)."""
    if ctx.rank is None:
        return f"{ctx.helper('to_channels_last')}({x})"
    return x if ctx.rank <= 2 else f"{x}.movedim(1, -1)"


def _flatten_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    if ctx.rank == 1:
        return xs[0]
    return f"{_channels_last(ctx, xs[0])}.flatten(1)"


def _reshape_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    target = ctx.hoisted("target_shape", "()")
    out = f"{_channels_last(ctx, xs[0])}.reshape({xs[0]}.shape[0], *{target})"
    const = ctx.const("target_shape")
    if (const is not UNSET and len(const) == 1) or ctx.out_rank == 2:
        return out  # a vector or a sequence: channels last as it is
    if ctx.out_rank is None:
        return f"{ctx.helper('from_channels_last')}({out})"
    return f"{out}.movedim(-1, 1)"


def _dropout_module(ctx: Ctx) -> str:
    noise = ctx.attr("noise_shape")
    if noise is None or noise == "None":  # null: over `defaults:` giving one
        return f"nn.Dropout({ctx.attr('rate')})"
    # the mask's axes follow the tensor's (channels in dim 1): KerasDropout reorders them
    keras = f"{ctx.helper('KerasDropout')}({ctx.attr('rate')}, {noise})"
    if ctx.const("noise_shape") is not UNSET:
        return keras
    return f"nn.Dropout({ctx.attr('rate')}) if ({noise}) is None else {keras}"


def _transpose_module(ctx: Ctx) -> str:
    cls = ctx.helper("KerasConvTranspose2d")
    args = [f"{ctx.shape}[-1]", ctx.attr("filters") or "", ctx.attr("kernel") or ""]
    args += _kw(ctx, ("strides", "stride"), ("padding", "padding"), ("use_bias", "bias"))
    return f"{cls}({', '.join(args)})"


def _transpose_shape(ctx: Ctx) -> str:
    args = [ctx.shape, f"{ctx.module}.out_channels", ctx.attr("kernel") or ""]
    args += [ctx.attr("strides") or "1", ctx.attr("padding") or '"valid"']
    return f"{ctx.helper('transposed_shape')}({', '.join(args)})"


def _stochastic_depth_module(ctx: Ctx) -> str:
    """A noise shape of ones: one mask value per sample (KerasDropout, as Keras' Dropout)."""
    ones = repr((1,) * ctx.rank) if ctx.rank is not None else f"(1,) * len({ctx.shape})"
    return f"{ctx.helper('KerasDropout')}({ctx.attr('rate')}, {ones})"


def _layer_scale_module(ctx: Ctx) -> str:
    args = [f"{ctx.shape}[-1]", *_pos(ctx, "init_value")]
    return f"{ctx.helper('LayerScale')}({', '.join(args)})"


def _normalization_module(ctx: Ctx) -> str:
    args = [f"{ctx.shape}[-1]", *_kw(ctx, ("mean", "mean"), ("variance", "variance"))]
    return f"{ctx.helper('KerasNormalization')}({', '.join(args)})"


def _count_to_torch(a: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.asarray(a, np.float32)  # a float buffer: PyTorch counts floating-point buffers


def _count_to_keras(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    return np.asarray(np.rint(a), np.int64)  # Keras' count is an integer


TORCH_OPS: dict[str, TorchOp] = {
    "conv2d": TorchOp(
        _conv_forward,
        _conv_module,
        lambda c: _window_shape(c, f"{c.module}.out_channels", "kernel", "strides"),
        {
            "kernel": Binding("weight", lambda a: a.transpose(3, 2, 0, 1), _conv_kernel_to_keras),
            **_BIAS,
        },
        reads=(("GlorotConv2d", "KerasConv2d", "Conv2d"), reads.conv),
    ),
    "depthwise_conv2d": TorchOp(
        _conv_forward,
        _depthwise_module,
        lambda c: _window_shape(c, f"{c.module}.out_channels", "kernel", "strides"),
        {"depthwise_kernel": Binding("weight", _dw_to_torch, _dw_to_keras), **_BIAS},
        reads=(("KerasDepthwiseConv2d",), reads.depthwise),
    ),
    "conv2d_transpose": TorchOp(
        _conv_forward,
        _transpose_module,
        _transpose_shape,
        {  # Keras' (kh, kw, out, in) is ConvTranspose2d's (in, out, kh, kw)
            "kernel": Binding("weight", lambda a: a.transpose(3, 2, 0, 1), _conv_kernel_to_keras),
            **_BIAS,
        },
        reads=(("KerasConvTranspose2d",), reads.transpose),
    ),
    "separable_conv2d": TorchOp(
        _conv_forward,
        _separable_module,
        lambda c: _window_shape(c, f"{c.module}.out_channels", "kernel", "strides"),
        {
            "depthwise_kernel": Binding("depthwise.weight", _dw_to_torch, _dw_to_keras),
            "pointwise_kernel": Binding(
                "pointwise.weight", lambda a: a.transpose(3, 2, 0, 1), _conv_kernel_to_keras
            ),
            "bias": Binding("pointwise.bias"),
        },
        reads=(("KerasSeparableConv2d",), reads.separable),
    ),
    "batch_norm": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _bn_module,
        weights={
            "gamma": Binding("weight"),
            "beta": Binding("bias"),
            "moving_mean": Binding("running_mean"),
            "moving_variance": Binding("running_var"),
        },
        reads=(("KerasBatchNorm",), reads.batch_norm),
    ),
    "layer_norm": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _ln_module,
        weights={"gamma": Binding("weight"), "beta": Binding("bias")},
        reads=(("KerasLayerNorm",), reads.norm),
    ),
    "activation": TorchOp(_activation_forward),
    "add": TorchOp(_add_forward, shape=_broadcast_shape),
    "multiply": TorchOp(_elementwise("*"), shape=_broadcast_shape),
    "subtract": TorchOp(_elementwise("-"), shape=_broadcast_shape),
    "concat": TorchOp(_concat_forward, shape=_concat_shape),
    "max_pool2d": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _pool_module("nn.MaxPool2d", "KerasMaxPool2d"),
        lambda c: _window_shape(c, f"{c.shape}[-1]", "pool", "strides"),
        reads=(("MaxPool2d", "KerasMaxPool2d"), reads.pool2d),
    ),
    "avg_pool2d": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _pool_module("nn.AvgPool2d", "KerasAvgPool2d"),
        lambda c: _window_shape(c, f"{c.shape}[-1]", "pool", "strides"),
        reads=(("AvgPool2d", "KerasAvgPool2d"), reads.pool2d),
    ),
    "global_avg_pool2d": TorchOp(_global_pool("mean"), shape=_gap_shape),
    "global_max_pool2d": TorchOp(_global_pool("amax"), shape=_gap_shape),
    "zero_pad2d": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _zpad_module,
        _zpad_shape,
        reads=(("ZeroPad2d",), reads.nothing),
    ),
    "flatten": TorchOp(_flatten_forward, shape=lambda c: f"(math.prod({c.shape}),)"),
    "reshape": TorchOp(
        _reshape_forward,
        shape=lambda c: f"{c.helper('reshape_shape')}({c.shape}, {c.attr('target_shape')})",
    ),
    "upsample2d": TorchOp(_upsample_forward, shape=_upsample_shape),
    "cropping2d": TorchOp(_crop_forward, shape=_crop_shape),
    "rescaling": TorchOp(_rescale_forward),
    "dense": TorchOp(
        _dense_forward,
        _dense_module,
        lambda c: f"(*{c.shape}[:-1], {c.module}.out_features)",
        {"kernel": Binding("weight", lambda a: a.T, lambda a, shape: a.T), **_BIAS},
        reads=(("KerasLinear", "Linear"), reads.dense),
    ),
    "dropout": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _dropout_module,
        reads=(("Dropout", "KerasDropout"), reads.dropout),
    ),
    "stochastic_depth": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _stochastic_depth_module,
        reads=(("KerasDropout",), reads.dropout),
    ),
    "layer_scale": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _layer_scale_module,
        weights={"gamma": Binding("weight")},
        reads=(("LayerScale",), reads.layer_scale),
    ),
    "normalization": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _normalization_module,
        weights={
            "mean": Binding("mean"),
            "variance": Binding("variance"),
            "count": Binding("count", _count_to_torch, _count_to_keras),
        },
        reads=(("KerasNormalization",), reads.nothing),
    ),
}

# the sequence and attention ops: backends/torch/sequence.py adds them to TORCH_OPS
# and the recurrent ops (lstm, gru, simple_rnn): backends/torch/recurrent.py
# and the language-model ops (rms_norm, grouped_query_attention): backends/torch/llm.py
# and sinusoidal_embedding: backends/torch/sinusoidal.py
from . import llm as torch_llm  # noqa: E402, F401
from . import recurrent as torch_recurrent  # noqa: E402, F401
from . import sequence as torch_sequence  # noqa: E402, F401
from . import sinusoidal as torch_sinusoidal  # noqa: E402, F401


def check_plugin_op(op: str, emitter: TorchOp) -> None:
    """A plugin's PyTorch emitter: its rules callable, its weights bound, a module's classes
    told to `conform` (`reads`), and its helper module readable beside archc's own."""
    from archc.backends.helper_library import library, torch_modules

    for rule in ("forward", "module", "shape"):
        value = getattr(emitter, rule)
        if value is not None and not callable(value):
            raise RegistrationError(f"TorchOp's {rule} is not callable")
    for name, binding in emitter.weights.items():
        if not isinstance(binding, Binding):
            raise RegistrationError(f"TorchOp's weight '{name}' is not bound by a Binding")
    if emitter.module is not None and emitter.reads is None:
        raise RegistrationError(
            "TorchOp makes a module but says nothing of it to conform (reads=(classes, read))"
        )
    if emitter.helpers is not None:
        try:
            library(tuple(dict.fromkeys((*torch_modules(), emitter.helpers))))
        except (OSError, SyntaxError, ValueError) as exc:
            raise RegistrationError(f"its PyTorch helpers {emitter.helpers}: {exc}") from exc


attach("torch", TORCH_OPS, TorchOp, check_plugin_op)
