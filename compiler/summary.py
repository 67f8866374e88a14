"""Summaries of a compiled graph: a Keras-style table and a JSON document."""

from __future__ import annotations

from typing import Any

from .diagnostics import Diagnostic, SpecError
from .expr import MAX_INT_BITS
from .ir import Graph
from .ops import load_all

LINE = 100
COLUMNS = (33, 55, 67, 100)  # Keras' print_summary positions for graphs with connections


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "(" + ", ".join(["None", *map(str, shape or ())]) + ")"


PARAMS_COLUMN = 2


def _row(fields: list[str]) -> str:
    """Keras' print_row: each field cut at its column's end, one space between. A parameter
    count is never cut (Keras would print 10^11 as '10000100000'): it pushes the rest right."""
    line = ""
    for i, (text, stop) in enumerate(zip(fields, COLUMNS, strict=True)):
        if i > 0:
            kept = i - 1 == PARAMS_COLUMN and not line.endswith(" ")
            line = line + " " if kept else line[:-1] + " "
        line += text
        if i != PARAMS_COLUMN or len(line) <= stop:
            line = line[:stop]
        line += " " * (stop - len(line))
    return line


def check_sizes(graph: Graph) -> None:
    """Refuse sizes no model has (past 64 bits; past 4300 digits Python cannot even print
    them), at the first layer that has one: the layers after it only inherit it."""
    for node in graph.nodes:
        sizes = {
            "output size": max((d for d in node.shape or () if d is not None), default=0),
            "parameter count": node.counts.total,
            "FLOP count": node.flops or 0,  # None: unknown (an unknown height or width)
        }
        for what, n in sizes.items():
            if abs(n).bit_length() > MAX_INT_BITS:
                message = f"layer '{node.name}': {what} too large (more than {MAX_INT_BITS} bits)"
                hint = "check the input shape and the sizes that feed this layer"
                raise SpecError([Diagnostic("E081", message, node.origin.location, hint=hint)])


def table(graph: Graph) -> str:
    """The graph as Keras' `model.summary()` prints a functional model (one line per input)."""
    check_sizes(graph)
    ops = load_all()
    lines = ["_" * LINE, _row(["Layer (type)", "Output Shape", "Param #", "Connected to"])]
    lines.append("=" * LINE)
    for k, node in enumerate(graph.nodes):
        conns = [f"{i}[0][0]" for i in node.inputs] or [""]
        title = ops[node.op].layer_type(node.attrs)
        lines.append(
            _row(
                [f"{node.name} ({title})", shape_text(node.shape), str(node.counts.total), conns[0]]
            )
        )
        lines += [_row(["", "", "", c]) for c in conns[1:]]
        lines.append(("=" if k == len(graph.nodes) - 1 else "_") * LINE)
    c = graph.counts
    lines += [
        f"Total params: {c.total:,}",
        f"Trainable params: {c.trainable:,}",
        f"Non-trainable params: {c.non_trainable:,}",
        "_" * LINE,
    ]
    return "\n".join(lines)


def macs_line(graph: Graph) -> str:
    total = graph.macs
    what = "unknown (an input size is unknown)" if total is None else f"{total:,}"
    return (
        f"MACs: {what} (multiply-accumulates of convolutions, dense layers and attention, "
        "batch 1; FLOPs = 2 x MACs)"
    )


def to_json(graph: Graph) -> dict[str, Any]:
    check_sizes(graph)
    first = graph.node(graph.inputs[0]) if graph.inputs else None
    return {
        "name": graph.name,
        "input_shape": list(first.shape or ()) if first else None,
        "params": graph.counts.as_dict(),
        "macs": graph.macs,
        "flops": graph.flops,  # null where a layer sees an unknown height or width
        "layers": [
            {
                "name": n.name,
                "op": n.op,
                "output_shape": list(n.shape or ()),
                "params": n.counts.total,
                "macs": n.macs,
                "inputs": list(n.inputs),
            }
            for n in graph.nodes
        ],
    }
