"""IR node -> PyTorch: a submodule to construct and the steps of its forward computation.

Steps are drawn from one table of primitives, each with its source text and its live
function side by side, so generated code and live models compute the same thing.
Layouts: the IR is channels-last (H, W, C); PyTorch tensors are (N, C, H, W), so the
logical channel axis is always dim 1.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

from compiler.diagnostics import Diagnostic, SpecError
from compiler.ir import Graph, Node, Shape

from .codegen import LINE_LENGTH, literal


@dataclass(frozen=True)
class ModSpec:
    cls: str  # attribute of torch.nn, e.g. "Conv2d"
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Step:
    prim: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Lowered:
    module: ModSpec | None
    steps: tuple[Step, ...]
    kernel: tuple[str, int, int, float | None] | None = None  # (param, fan_in, fan_out, l2)
    inputs: tuple[str, ...] | None = None  # what the steps read, when not the node's inputs
    folded_into: str | None = None  # a zero pad done by this consumer's own padding


def _torch() -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    return torch, F


_ACT_SRC = {
    "linear": "{x}",
    "relu": "F.relu({x})",
    "relu6": "F.relu6({x})",
    "sigmoid": "torch.sigmoid({x})",
    "tanh": "torch.tanh({x})",
    "softmax": "F.softmax({x}, dim={dim})",
    "silu": "F.silu({x})",
    "swish": "F.silu({x})",
    "gelu": "F.gelu({x})",
}


def _act_live(x: Any, fn: str, dim: int) -> Any:
    torch, F = _torch()
    table: dict[str, Callable[[Any], Any]] = {
        "linear": lambda t: t,
        "relu": F.relu,
        "relu6": F.relu6,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: F.softmax(t, dim=dim),
        "silu": F.silu,
        "swish": F.silu,
        "gelu": F.gelu,
    }
    return table[fn](x)


def _perm_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def _perm_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


# name -> (source(x, *args), live(model, x, *args)); x is a list for multi-input prims.
PRIMS: dict[str, tuple[Callable[..., str], Callable[..., Any]]] = {
    "module": (lambda x, attr: f"self.{attr}({x})", lambda m, x, attr: getattr(m, attr)(x)),
    "pad": (
        lambda x, pads, neg_inf: (
            f"F.pad({x}, {literal(pads)}" + (', value=float("-inf"))' if neg_inf else ")")
        ),
        lambda m, x, pads, neg_inf: _torch()[1].pad(x, pads, value=-math.inf if neg_inf else 0.0),
    ),
    "act": (
        lambda x, fn, dim: _ACT_SRC[fn].format(x=x, dim=dim),
        lambda m, x, fn, dim: _act_live(x, fn, dim),
    ),
    "add": (lambda xs: " + ".join(xs), lambda m, xs: reduce(operator.add, xs)),
    "mul": (lambda xs: " * ".join(xs), lambda m, xs: reduce(operator.mul, xs)),
    "cat": (
        lambda xs, dim: f"torch.cat([{', '.join(xs)}], dim={dim})",
        lambda m, xs, dim: _torch()[0].cat(xs, dim=dim),
    ),
    "max_pool": (
        lambda x, k, s, p: (
            f"F.max_pool2d({x}, {literal(k)}, {literal(s)}"
            + (f", {literal(p)})" if p != (0, 0) else ")")
        ),
        lambda m, x, k, s, p: _torch()[1].max_pool2d(x, k, s, p),
    ),
    "avg_pool": (
        lambda x, k, s: f"F.avg_pool2d({x}, {literal(k)}, {literal(s)})",
        lambda m, x, k, s: _torch()[1].avg_pool2d(x, k, s),
    ),
    "avg_pool_same": (
        lambda x, k, s, p: f"_avg_pool_same({x}, {literal(k)}, {literal(s)}, {literal(p)})",
        lambda m, x, k, s, p: _helpers()._avg_pool_same(x, k, s, p),
    ),
    "mean": (
        lambda x, dims, keep: f"{_paren(x)}.mean(dim={literal(dims)}, keepdim={keep})",
        lambda m, x, dims, keep: x.mean(dim=dims, keepdim=keep),
    ),
    "permute": (
        lambda x, dims: f"{_paren(x)}.permute{literal(dims)}",
        lambda m, x, dims: x.permute(*dims),
    ),
    "flatten": (lambda x: f"{_paren(x)}.flatten(1)", lambda m, x: x.flatten(1)),
    "reshape": (
        lambda x, shape: f"{_paren(x)}.reshape{literal((-1, *shape))}",
        lambda m, x, shape: x.reshape(-1, *shape),
    ),
}


def _helpers() -> Any:
    from . import torch_helpers

    return torch_helpers


def _paren(x: str) -> str:
    return x if x.replace("_", "").isalnum() or x.endswith(")") else f"({x})"


def _channel_dim(axis: int, rank: int) -> int:
    """Logical axis of a rank-`rank` channels-last shape -> dim of the NC... tensor."""
    axis %= rank
    return 1 if axis == rank - 1 else axis + 2


def _unsupported(node: Node, why: str) -> SpecError:
    return SpecError(
        [
            Diagnostic(
                "E100",
                f"torch backend: {node.op} '{node.name}': {why}",
                node.origin.location,
                node.origin.describe(),
            )
        ]
    )


def _pad4(pads: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
    (t, b), (left, r) = pads
    return (left, r, t, b)


def _symmetric(pads: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int] | None:
    (t, b), (left, r) = pads
    return (t, left) if t == b and left == r else None


def _conv(node: Node, ins: list[Shape]) -> Lowered:
    a, cin = node.attrs, ins[0][-1]
    sym = _symmetric(a.pads)
    steps = [] if sym is not None else [Step("pad", (_pad4(a.pads), False))]
    groups = cin if node.op == "depthwise_conv2d" else a.groups
    cout = node.shape[-1] if node.shape else 0
    mod = ModSpec(
        "Conv2d",
        (cin, cout),
        (
            ("kernel_size", a.kernel),
            ("stride", a.strides),
            ("padding", sym or (0, 0)),
            *((("dilation", a.dilation),) if a.dilation != (1, 1) else ()),
            *((("groups", groups),) if groups != 1 else ()),
            ("bias", a.use_bias),
        ),
    )
    kh, kw = a.kernel
    if node.op == "depthwise_conv2d":
        fans = (kh * kw * cin, kh * kw * a.depth_multiplier)
    else:
        fans = (kh * kw * cin // a.groups, kh * kw * a.filters)
    steps += [Step("module", (node.name,)), Step("act", (a.activation, 1))]
    return Lowered(mod, tuple(steps), ("weight", *fans, a.kernel_l2))


def _batch_norm(node: Node, ins: list[Shape]) -> Lowered:
    a, rank = node.attrs, len(ins[0])
    if a.center != a.scale:
        raise _unsupported(node, "center and scale must both be true or both false")
    cls = {1: "BatchNorm1d", 2: "BatchNorm1d", 3: "BatchNorm2d", 4: "BatchNorm3d"}.get(rank)
    if cls is None:
        raise _unsupported(node, f"batch_norm on rank-{rank} inputs")
    momentum = round(1.0 - a.momentum, 12)
    mod = ModSpec(
        cls, (ins[0][-1],), (("eps", a.epsilon), ("momentum", momentum), ("affine", a.scale))
    )
    return Lowered(mod, (Step("module", (node.name,)),))


def _dense(node: Node, ins: list[Shape]) -> Lowered:
    a, rank = node.attrs, len(ins[0])
    mod = ModSpec("Linear", (ins[0][-1], a.units), (("bias", a.use_bias),))
    kernel = ("weight", ins[0][-1], a.units, a.kernel_l2)
    core = [Step("module", (node.name,)), Step("act", (a.activation, -1 if rank > 1 else 1))]
    if rank == 1:
        return Lowered(mod, tuple(core), kernel)
    steps = [
        Step("permute", (_perm_last(rank + 1),)),
        *core,
        Step("permute", (_perm_first(rank + 1),)),
    ]
    return Lowered(mod, tuple(steps), kernel)


def _pool(node: Node, ins: list[Shape]) -> Lowered:
    a = node.attrs
    sym = _symmetric(a.pads)
    if node.op == "max_pool2d":
        if sym is not None and sym[0] <= a.pool[0] // 2 and sym[1] <= a.pool[1] // 2:
            return Lowered(None, (Step("max_pool", (a.pool, a.strides, sym)),))
        return Lowered(
            None,
            (Step("pad", (_pad4(a.pads), True)), Step("max_pool", (a.pool, a.strides, (0, 0)))),
        )
    if a.pads == ((0, 0), (0, 0)):
        return Lowered(None, (Step("avg_pool", (a.pool, a.strides)),))
    return Lowered(None, (Step("avg_pool_same", (a.pool, a.strides, _pad4(a.pads))),))


def _flatten(node: Node, ins: list[Shape]) -> Lowered:
    rank = len(ins[0]) + 1
    steps = [Step("permute", (_perm_last(rank),))] if rank > 2 else []
    return Lowered(None, (*steps, Step("flatten")))


def _reshape(node: Node, ins: list[Shape]) -> Lowered:
    rank_in, rank_out = len(ins[0]) + 1, len(node.attrs.target_shape) + 1
    steps = [Step("permute", (_perm_last(rank_in),))] if rank_in > 2 else []
    steps.append(Step("reshape", (node.attrs.target_shape,)))
    if rank_out > 2:
        steps.append(Step("permute", (_perm_first(rank_out),)))
    return Lowered(None, tuple(steps))


def _concat(node: Node, ins: list[Shape]) -> Lowered:
    return Lowered(None, (Step("cat", (_channel_dim(node.attrs.axis, len(ins[0])),)),))


LOWER: dict[str, Callable[[Node, list[Shape]], Lowered]] = {
    "conv2d": _conv,
    "depthwise_conv2d": _conv,
    "batch_norm": _batch_norm,
    "activation": lambda n, i: Lowered(None, (Step("act", (n.attrs.fn, 1)),)),
    "add": lambda n, i: Lowered(None, (Step("add"),)),
    "multiply": lambda n, i: Lowered(None, (Step("mul"),)),
    "concat": _concat,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "global_avg_pool2d": lambda n, i: Lowered(None, (Step("mean", ((2, 3), n.attrs.keepdims)),)),
    "zero_pad2d": lambda n, i: Lowered(None, (Step("pad", (_pad4(n.attrs.padding), False)),)),
    "flatten": _flatten,
    "reshape": _reshape,
    "dense": _dense,
    "dropout": lambda n, i: Lowered(
        ModSpec("Dropout", (n.attrs.rate,)), (Step("module", (n.name,)),)
    ),
}


def lower(node: Node, ins: list[Shape]) -> Lowered:
    low = LOWER[node.op](node, ins)
    # drop no-op activations so generated code stays clean
    steps = tuple(s for s in low.steps if not (s.prim == "act" and s.args[0] == "linear"))
    return Lowered(low.module, steps, low.kernel)


def fold_zero_pads(graph: Graph, lowered: dict[str, Lowered]) -> dict[str, Lowered]:
    """A symmetric zero_pad2d whose only consumer is a 'valid' convolution becomes that
    convolution's own padding (one kernel instead of a copy of the whole activation, as a
    hand-written PyTorch model would do it). The pad's value is still computed for the
    layer-by-layer proof; generated code skips it."""
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node)
    out = dict(lowered)
    for node in graph.nodes:
        users = consumers.get(node.name, [])
        if node.op != "zero_pad2d" or node.name in graph.outputs or len(users) != 1:
            continue
        user = users[0]
        (t, b), (left, r) = node.attrs.padding
        low = out.get(user.name)
        if (
            user.op not in ("conv2d", "depthwise_conv2d")
            or user.attrs.pads != ((0, 0), (0, 0))
            or t != b
            or left != r
            or low is None
            or low.module is None
            or any(s.prim == "pad" for s in low.steps)
        ):
            continue
        kwargs = tuple((k, (t, left) if k == "padding" else v) for k, v in low.module.kwargs)
        out[user.name] = dataclasses.replace(
            low, module=dataclasses.replace(low.module, kwargs=kwargs), inputs=node.inputs
        )
        out[node.name] = dataclasses.replace(out[node.name], folded_into=user.name)
    return out


def render_steps(var: str, steps: Sequence[Step], inputs: list[str], indent: int) -> list[str]:
    """Source lines computing `var`: one nested expression, or one line per step if long."""
    x: Any = inputs if len(inputs) > 1 else inputs[0]
    for step in steps:
        x = PRIMS[step.prim][0](x, *step.args)
    fits = indent + len(var) + 3 + len(x) <= LINE_LENGTH
    if not fits and len(steps) == 1 and steps[0].prim in ("add", "mul", "cat"):
        return [_long_merge(var, steps[0], inputs, indent)]
    if fits or len(steps) == 1:
        return [f"{var} = {x}"]
    lines = []
    x = inputs if len(inputs) > 1 else inputs[0]
    for step in steps:
        lines.append(f"{var} = {PRIMS[step.prim][0](x, *step.args)}")
        x = var
    return lines


def _long_merge(var: str, step: Step, inputs: list[str], indent: int) -> str:
    """A merge of many inputs, laid out as ruff lays it out."""
    pad, end = " " * (indent + 4), " " * indent
    if step.prim == "cat":
        items = "".join(f"{pad}    {name},\n" for name in inputs)
        return f"{var} = torch.cat(\n{pad}[\n{items}{pad}],\n{pad}dim={step.args[0]},\n{end})"
    op = "+" if step.prim == "add" else "*"
    rest = "".join(f"{pad}{op} {name}\n" for name in inputs[1:])
    return f"{var} = (\n{pad}{inputs[0]}\n{rest}{end})"


def run_steps(model: Any, steps: Sequence[Step], inputs: list[Any]) -> Any:
    x: Any = inputs if len(inputs) > 1 else inputs[0]
    for step in steps:
        _, live = PRIMS[step.prim]
        x = live(model, x, *step.args)
    return x
