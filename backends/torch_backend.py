"""PyTorch backend: the IR as an nn.Module, live or as generated source.

Submodules are attributes named after IR nodes, so state_dict keys read `<layer>.weight`,
`<layer>.bias`, `<layer>.running_mean`, `<layer>.running_var`, and weights transfer from
Keras by layer name. Models take NCHW input; every Keras<->PyTorch rule in DESIGN.md
(TF 'same' padding split, BN epsilon/momentum, channels-last flatten, avg-pool divisor,
-inf max-pool padding, Keras initialisers, L2 penalties) is applied in torch_lowering.
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from compiler.api import Compiled
from compiler.diagnostics import Diagnostic, SpecError
from compiler.ir import Counts, Graph

from .codegen import LINE_LENGTH, Code, call, environment, header_context, literal, python_names
from .torch_lowering import Lowered, fold_zero_pads, lower, render_steps, run_steps

NAME = "torch"
_OWN_METHODS = {"reset_parameters", "regularization_loss", "forward_all", "_plan"}


@dataclass(frozen=True)
class Plan:
    """A graph lowered to PyTorch: per node, its submodule and forward steps."""

    graph: Graph
    lowered: dict[str, Lowered]

    @property
    def kernels(self) -> list[tuple[str, Lowered]]:
        return [(n, low) for n, low in self.lowered.items() if low.kernel is not None]

    @property
    def frozen_batch_norms(self) -> list[str]:
        return [n.name for n in self.graph.nodes if n.op == "batch_norm" and not n.trainable]

    @property
    def penalties(self) -> list[tuple[str, float]]:
        return [
            (n, low.kernel[3])
            for n, low in self.kernels
            if low.kernel and low.kernel[3] is not None
        ]


def plan(graph: Graph) -> Plan:
    import torch

    shapes = {n.name: n.shape for n in graph.nodes}
    problems = []
    lowered: dict[str, Lowered] = {}
    taken = set(dir(torch.nn.Module)) | set(vars(torch.nn.Module())) | _OWN_METHODS
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.name in taken:
            problems.append(
                Diagnostic(
                    "E101",
                    f"torch backend: layer name '{node.name}' clashes with an nn.Module attribute",
                    node.origin.location,
                    node.origin.describe(),
                    hint=f"rename the layer (e.g. '{node.name}_layer')",
                )
            )
            continue
        lowered[node.name] = lower(node, [shapes[i] for i in node.inputs])  # type: ignore[misc]
    if problems:
        raise SpecError(problems)
    return Plan(graph, fold_zero_pads(graph, lowered))


def _make(spec: Any) -> Any:
    from torch import nn

    return getattr(nn, spec.cls)(*spec.args, **dict(spec.kwargs))


def reset_parameters(model: Any, kernels: list[tuple[str, Lowered]]) -> None:
    """Keras' initial values: Glorot-uniform kernels (Keras' fans), zero biases, BN 1/0."""
    from torch import nn

    from .torch_helpers import _glorot_uniform_

    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            module.reset_parameters()
        elif isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for name, low in kernels:
        assert low.kernel is not None
        _glorot_uniform_(getattr(model, name).weight, low.kernel[1], low.kernel[2])


@cache
def _live_class() -> type:
    import torch
    from torch import nn

    class ArchcModule(nn.Module):
        """An nn.Module that interprets a lowered archc graph (NCHW tensors)."""

        def __init__(self, p: Plan):
            super().__init__()
            self._plan = p
            for node in p.graph.nodes:
                low = p.lowered.get(node.name)
                if low is not None and low.module is not None:
                    self.add_module(node.name, _make(low.module))
                    if not node.trainable:
                        getattr(self, node.name).requires_grad_(False)
            self.reset_parameters()

        def reset_parameters(self) -> None:
            reset_parameters(self, self._plan.kernels)

        def forward_all(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
            graph = self._plan.graph
            values = dict(zip(graph.inputs, inputs, strict=True))
            for node in graph.nodes:
                if node.op != "input":
                    low = self._plan.lowered[node.name]
                    ins = [values[i] for i in (low.inputs or node.inputs)]
                    values[node.name] = run_steps(self, low.steps, ins)
            return values

        def forward(self, *inputs: torch.Tensor) -> Any:
            values = self.forward_all(*inputs)
            outs = [values[o] for o in self._plan.graph.outputs]
            return outs[0] if len(outs) == 1 else tuple(outs)

        def regularization_loss(self) -> torch.Tensor:
            loss = torch.zeros(())
            for name, factor in self._plan.penalties:
                weight = getattr(self, name).weight
                if weight.requires_grad:  # Keras counts trainable weights only
                    loss = loss + factor * weight.square().sum()
            return loss

        def train(self, mode: bool = True) -> ArchcModule:
            super().train(mode)
            for name in self._plan.frozen_batch_norms:  # Keras: frozen BN runs in inference
                getattr(self, name).eval()
            return self

    return ArchcModule


def build(graph: Graph) -> Any:
    """A live nn.Module for a checked graph (NCHW input), with Keras' initial values."""
    return _live_class()(plan(graph))


def output_shapes(model: Any, graph: Graph) -> list[tuple[int, ...]]:
    """Run the model once on zeros (batch 1); the channels-last shapes of its outputs."""
    import torch

    model.eval()
    xs = [torch.zeros(1, *input_shape(graph.node(n).shape or ())) for n in graph.inputs]
    with torch.no_grad():
        ys = model(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    return [(*y.shape[2:], y.shape[1]) if y.dim() > 2 else tuple(y.shape[1:]) for y in ys]


def counts(model: Any) -> Counts:
    """trainable = parameters with requires_grad; non-trainable = frozen parameters plus
    floating-point buffers (BN running statistics), never num_batches_tracked."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


def layer_counts(model: Any) -> dict[str, Counts]:
    return {name: counts(child) for name, child in model.named_children()}


def input_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Channels-last logical shape -> the NC... shape a PyTorch model takes."""
    return (shape[-1], *shape[:-1])


# -- generated source -------------------------------------------------------------------------
def _class_name(name: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    out = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    return out if out[0].isalpha() else "Model" + out


def render(compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str:
    graph = compiled.graph
    p = plan(graph)
    cls = _class_name(graph.name)
    module_names = {
        "FROZEN_BATCH_NORMS",
        "math",
        "torch",
        "F",
        "nn",
        "Tensor",
        "self",
        "build_model",
        "SPEC",
        "PARAMS",
        "INPUT_SHAPE",
        "L2_PENALTIES",
        "_glorot_uniform_",
        "_avg_pool_same",
    }
    while cls in module_names:  # a model named 'f' must not shadow torch.nn.functional
        cls += "Model"
    module_names.add(cls)
    names = python_names([n.name for n in graph.nodes], module_names)
    init_lines = []
    for node in graph.nodes:
        low = p.lowered.get(node.name)
        if low is None or low.module is None:
            continue
        init_lines.append(
            call(
                f"nn.{low.module.cls}",
                low.module.args,
                low.module.kwargs,
                indent=8,
                prefix=f"self.{node.name} = ",
            )
        )
        if not node.trainable:
            init_lines.append(f"self.{node.name}.requires_grad_(False)")
    glorot = [
        call(
            "_glorot_uniform_",
            (Code(f"self.{n}.weight"),),
            [("fan_in", low.kernel[1]), ("fan_out", low.kernel[2])],
            indent=8,
        )
        for n, low in p.kernels
        if low.kernel
    ]
    forward, out_vars = _forward_lines(p, {names[i] for i in graph.inputs} | module_names, names)
    helpers = []
    if p.kernels:
        helpers.append(_helper_source("_glorot_uniform_"))
    if any("_avg_pool_same(" in line for line in forward):
        helpers.append(_helper_source("_avg_pool_same"))
    uses_f = any("F." in line for line in forward) or "_avg_pool_same" in "".join(helpers)
    outs = out_vars
    return_type = "Tensor" if len(outs) == 1 else "tuple[Tensor, ...]"
    ctx = header_context(compiled, out_dir)
    ctx.update(
        cls=cls,
        init_lines=init_lines,
        glorot=glorot,
        forward=forward,
        helpers=helpers,
        uses_math=bool(p.kernels),
        uses_f=uses_f,
        forward_def=_exploded(
            "def forward(",
            ["self", *(f"{names[i]}: Tensor" for i in graph.inputs)],
            f") -> {return_type}:",
            indent=4,
        ),
        forward_return=_exploded("return ", outs, "", indent=8, bracket=True),
        penalties=p.penalties,
        penalties_source=_tuple_source("L2_PENALTIES", p.penalties),
        frozen_source=_tuple_source("FROZEN_BATCH_NORMS", p.frozen_batch_norms),
        frozen=p.frozen_batch_norms,
        torch_input_shape=input_shape(graph.node(graph.inputs[0]).shape or ()),
    )
    return environment().get_template("torch.py.jinja").render(ctx)


def _forward_lines(p: Plan, taken: set[str], names: dict[str, str]) -> tuple[list[str], list[str]]:
    """The body of `forward`, with a tensor's variable reused once its value is dead.

    Keeping every intermediate in its own local would hold all activations until `forward`
    returns (measured: 10-35% slower on CPU than a hand-written twin); like hand-written
    code, a chain flows through `x`, and skip values take `x1`, `x2`, ... while they live.
    Layers without a submodule get their node name as a comment.
    """
    graph = p.graph
    nodes = [n for n in graph.nodes if n.op == "input" or not p.lowered[n.name].folded_into]
    reads = {
        n.name: (() if n.op == "input" else p.lowered[n.name].inputs) or n.inputs for n in nodes
    }
    order = {n.name: k for k, n in enumerate(nodes)}
    last_use = {n.name: order[n.name] for n in nodes}
    for n in nodes:
        for i in reads[n.name]:
            last_use[i] = max(last_use[i], order[n.name])
    for o in graph.outputs:
        last_use[o] = len(nodes)
    pool = (f"x{k}" if k else "x" for k in itertools.count())
    free: list[str] = []
    var: dict[str, str] = {i: names[i] for i in graph.inputs}
    inputs = set(graph.inputs)
    lines: list[str] = []
    folded = {low.folded_into: n for n, low in p.lowered.items() if low.folded_into}
    for node in nodes:
        if node.op == "input":
            continue
        args = [var[i] for i in reads[node.name]]
        dead = [
            var[i]
            for i in dict.fromkeys(reads[node.name])
            if last_use[i] == order[node.name] and i not in inputs
        ]
        free = dead + [v for v in free if v not in dead]
        target = free.pop(0) if free else next(v for v in pool if v not in taken)
        var[node.name] = target
        steps = p.lowered[node.name].steps
        body = render_steps(target, steps, args, indent=8)
        if not any(s.prim == "module" for s in steps):
            comment = f"  # {node.name}"
            if 8 + len(body[-1]) + len(comment) <= LINE_LENGTH:
                body[-1] += comment
            elif 8 + len(comment) <= LINE_LENGTH:
                body.insert(0, comment.strip())
        if node.name in folded:
            note = f"# {folded[node.name]}: folded into {node.name}'s padding"
            if 8 + len(note) <= LINE_LENGTH:
                body.insert(0, note)
        lines += body
    return lines, [var[o] for o in graph.outputs]


def _exploded(head: str, items: list[str], tail: str, indent: int, bracket: bool = False) -> str:
    """`head a, b tail` on one line if it fits, else one item a line with a trailing comma,
    as ruff lays out a long signature or returned tuple."""
    one = f"{head}{', '.join(items)}{tail}"
    if indent + len(one) <= LINE_LENGTH or len(items) < 2:
        return one
    pad = " " * (indent + 4)
    body = "".join(f"{pad}{item},\n" for item in items)
    opening, closing = ("(", ")") if bracket else ("", "")
    return f"{head}{opening}\n{body}{' ' * indent}{closing}{tail}"


def _tuple_source(var: str, items: list[Any]) -> str:
    """`var = (...)` as ruff formats it: one line if one item fits, else one item a line with
    a (magic) trailing comma."""
    entries = [literal(item) for item in items]
    if not entries:
        return ""
    one = f"{var} = ({entries[0]},)" if len(entries) == 1 else ""
    if one and len(one) <= LINE_LENGTH:
        return one
    return f"{var} = (\n" + "".join(f"    {e},\n" for e in entries) + ")"


def _helper_source(name: str) -> str:
    from . import torch_helpers

    return inspect.getsource(getattr(torch_helpers, name)).rstrip() + "\n"


def from_spec(
    spec: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    variant: str | None = None,
) -> Any:
    """The Python API: a live, count-verified nn.Module from a spec path plus overrides.

    >>> model = from_spec("specs/resnet_preact.yaml", {"nb_classes": 10})
    """
    from .compile import live_model

    return live_model(NAME, spec, overrides, variant=variant)
