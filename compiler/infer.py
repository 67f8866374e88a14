"""Inference: shapes, computed attributes, weights and FLOPs for every node of a Graph."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .diagnostics import Collector, Diagnostic, SpecError
from .ir import Graph, Node, Shape
from .ops import ShapeError, load_all


def shape_diagnostic(
    node: Node, exc: ShapeError, in_shapes: list[Shape], by_name: Mapping[str, Node]
) -> Diagnostic:
    """A shape rule's error, naming the inputs involved and where they were defined."""
    related = tuple(
        (f"input '{node.inputs[i]}' {in_shapes[i]} from", loc)
        for i in exc.inputs
        if (loc := by_name[node.inputs[i]].origin.location) is not None
    )
    msg = f"{node.op} '{node.name}': {exc.message}"
    if exc.inputs:
        msg += " (inputs " + " and ".join(f"'{node.inputs[i]}'" for i in exc.inputs) + ")"
    return Diagnostic("E070", msg, node.origin.location, node.origin.describe(), exc.hint, related)


AXES = ("height", "width")  # the axes of an image whose size may be unknown (None)


def unknown_axes(shape: Shape) -> str:
    """'height', 'width' or 'height and width': the unknown (None) sizes of a shape."""
    return " and ".join(a for a, d in zip(AXES, shape, strict=False) if d is None) or "size"


def needs_sizes(node: Node, in_shapes: list[Shape], by_name: Mapping[str, Node]) -> Diagnostic:
    """E075: an op whose rule needs concrete sizes (flatten, reshape, ...) met unknown ones."""
    i = next(k for k, s in enumerate(in_shapes) if None in s)
    source = by_name[node.inputs[i]].origin.location
    related = ((f"input '{node.inputs[i]}' {in_shapes[i]} from", source),) if source else ()
    return Diagnostic(
        "E075",
        f"{node.op} '{node.name}' needs a known {unknown_axes(in_shapes[i])}; the input is "
        f"{in_shapes[i]}",
        node.origin.location,
        node.origin.describe(),
        "give the input a size (inputs: shape: [224, 224, 3]), or use global pooling "
        "(global_avg_pool2d) before this layer: it works at any size",
        related,
    )


def infer_node(node: Node, in_shapes: list[Shape], by_name: Mapping[str, Node]) -> Node:
    """The node with its computed attributes, output shape, weights and FLOPs: every op rule
    runs here, once per node. Raises SpecError (E070, E071, E075) on a user mistake.

    Unknown sizes (None) reach only the rules of ops declared `unknown_sizes`; FLOPs of a
    layer that sees one are unknown (None): they grow with the size."""
    opdef = load_all()[node.op]
    unknown = any(None in s for s in in_shapes)
    if unknown and not opdef.unknown_sizes:
        raise SpecError([needs_sizes(node, in_shapes, by_name)])
    try:
        attrs, shape = opdef.infer(node.attrs, in_shapes)
        weights = tuple(opdef.weights(attrs, in_shapes, shape))
        sized = not unknown and None not in shape
        flops = opdef.flops(attrs, in_shapes, shape) if sized else None
        macs = opdef.macs(attrs, in_shapes, shape) if sized else None
    except ShapeError as exc:
        raise SpecError([shape_diagnostic(node, exc, in_shapes, by_name)]) from None
    if any(d is not None and d <= 0 for d in shape):
        raise SpecError(
            [
                Diagnostic(
                    "E071",
                    f"{node.op} '{node.name}' has an empty output shape {shape}",
                    node.origin.location,
                    node.origin.describe(),
                    "the input is too small for this layer",
                )
            ]
        )
    return dataclasses.replace(
        node, attrs=attrs, shape=shape, weights=weights, flops=flops, macs=macs
    )


def infer(graph: Graph) -> Graph:
    """A Graph whose nodes all carry shape, weights and FLOPs, checked as a whole (an output,
    nothing unused); raise on any mistake. Nodes that expansion already inferred (it infers
    each node as it adds it) are kept as they are."""
    errors = Collector()
    shapes: dict[str, Shape] = {}
    nodes: list[Node] = []
    by_name = {n.name: n for n in graph.nodes}
    for node in graph.nodes:
        if any(i not in shapes for i in node.inputs):
            continue  # fed by a node that already failed: reported once, there
        if node.shape is None:
            try:
                node = infer_node(node, [shapes[i] for i in node.inputs], by_name)
            except SpecError as exc:
                for diag in exc.diagnostics:
                    errors.add(diag)
                continue
        shapes[node.name] = node.shape  # type: ignore[assignment]
        nodes.append(node)
    errors.raise_if_any()
    if not graph.outputs:
        raise SpecError([Diagnostic("E072", "the network has no output")])
    unused = _unused(graph)
    if unused:
        raise SpecError(
            [
                Diagnostic(
                    "E073",
                    f"{n.op} '{n.name}' does not feed any output",
                    n.origin.location,
                    n.origin.describe(),
                    hint="remove it, use it as an input, or list it under 'outputs:' "
                    "(frameworks drop unused layers, so counts would disagree)",
                )
                for n in unused
            ]
        )
    _check_token_ids(graph)
    return dataclasses.replace(graph, nodes=tuple(nodes))


def _check_token_ids(graph: Graph) -> None:
    """Integer token ids (an input with `dtype: int`) are read by embedding layers only, and
    an embedding reads nothing else: frameworks do not agree on anything else (Keras casts
    floats to indices, PyTorch refuses them)."""
    by_name = {n.name: n for n in graph.nodes}
    ints = {n.name for n in graph.nodes if n.op == "input" and n.attrs.dtype == "int"}
    problems = []
    for node in graph.nodes:
        if node.op == "embedding" and not node.attrs.reverse:  # reverse: vectors -> logits
            floats = [i for i in node.inputs if i not in ints]
            if floats:
                loc = by_name[floats[0]].origin.location
                related = ((f"'{floats[0]}' defined at", loc),) if loc is not None else ()
                problems.append(
                    Diagnostic(
                        "E074",
                        f"embedding '{node.name}' reads '{floats[0]}', which is not an input of "
                        "integer token ids",
                        node.origin.location,
                        node.origin.describe(),
                        "an embedding looks up token ids: read a graph input declared with "
                        "`dtype: int`",
                        related,
                    )
                )
        elif _reads_mask(node):
            problems += _mask_problems(node, ints, by_name)
        else:
            for name in node.inputs:
                if name in ints:
                    problems.append(
                        Diagnostic(
                            "E074",
                            f"{node.op} '{node.name}' reads '{name}', an input of integer "
                            "token ids",
                            node.origin.location,
                            node.origin.describe(),
                            "token ids are read by an embedding layer (op: embedding) first; "
                            "or declare the input without `dtype: int`",
                        )
                    )
    if problems:
        raise SpecError(problems)


def _reads_mask(node: Node) -> bool:
    """An attention layer whose last input is a padding mask (archc.compiler.ops.attention)."""
    return node.op == "multi_head_attention" and bool(getattr(node.attrs, "padding_mask", False))


def _mask_problems(node: Node, ints: set[str], by_name: dict[str, Node]) -> list[Diagnostic]:
    """An attention layer with a padding mask reads it, last, from an input of integers (1: a
    token, 0: padding), and token ids nowhere else."""
    *attended, mask = node.inputs
    problems = []
    if mask not in ints:
        problems.append(
            Diagnostic(
                "E074",
                f"{node.op} '{node.name}' reads its padding mask from '{mask}', which is not an "
                "input of integers",
                node.origin.location,
                node.origin.describe(),
                "a padding mask is a graph input declared with `dtype: int` (1: a token, 0: "
                "padding), listed last in the layer's inputs",
            )
        )
    for name in attended:
        if name in ints:
            problems.append(
                Diagnostic(
                    "E074",
                    f"{node.op} '{node.name}' reads '{name}', an input of integers, as a "
                    "query, value or key",
                    node.origin.location,
                    node.origin.describe(),
                    "only the last input (with padding_mask: true) may be an input of "
                    "integers; token ids are read by an embedding layer first",
                )
            )
    return problems


def _unused(graph: Graph) -> list[Node]:
    by_name = {n.name: n for n in graph.nodes}
    live: set[str] = set()
    stack = list(graph.outputs)
    while stack:
        name = stack.pop()
        if name not in live:
            live.add(name)
            stack.extend(by_name[name].inputs)
    return [n for n in graph.nodes if n.name not in live]
