"""`archc graph`: the network as a picture.

One model of the picture (`picture()`: every IR node with its op and parameter count, every
edge with its producer's output shape, and the groups that `Graph.tree` records: block calls,
repeats and, where a body has several items, iterations), written three ways:

- `.dot`: Graphviz source, one `subgraph cluster_*` per group; needs nothing installed.
- `.svg`: that source laid out by Graphviz' `dot` (a missing `dot` is `LayoutError`, with how
  to install it). The file records the hash of its DOT source, so that a check can tell a
  stale picture from one that another Graphviz version laid out.
- `.html`: one self-contained page, laid out in the browser by dagre (vendored in
  `archc/graph_assets/`, MIT, inlined), so that groups can be collapsed and expanded with a
  fresh layout; it needs neither Graphviz nor a network connection.

No framework is imported (as `archc check`). docs/ARCHITECTURE.md says why two layout engines.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.ir import Expansion, Graph, Node

FORMATS = (".svg", ".html", ".dot")
ASSETS = Path(__file__).parent / "graph_assets"
TIMES = "\u00d7"  # the multiplication sign of shapes and kernels: 16×16×128

INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; Fedora: `dnf install "
    "graphviz`; macOS: `brew install graphviz`; conda: `conda install graphviz`), or write "
    ".html (laid out in the browser) or .dot (Graphviz source) instead"
)


class LayoutError(Exception):
    """The layout engine is missing or failed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    shape: str  # the producer's output shape, as drawn
    skip: bool  # an input of a merge other than its main one (see edges())


@dataclass(slots=True)
class Group:
    id: str  # "b3" (block call), "r1" (repeat), "i7" (iteration)
    kind: str  # "block", "repeat" or "iteration"
    title: str
    subtitle: str
    parent: str | None
    nodes: list[str] = field(default_factory=list)  # direct members
    groups: list[str] = field(default_factory=list)  # direct child groups


@dataclass(slots=True)
class Picture:
    graph: Graph
    groups: dict[str, Group]  # in tree order: parents before children
    top: list[str]  # top-level groups
    loose: list[str]  # nodes in no group
    group_of: dict[str, str | None]
    edges: list[Edge]

    def members(self, group: str) -> list[str]:
        """Every node inside a group, nested groups included."""
        g = self.groups[group]
        out = list(g.nodes)
        for child in g.groups:
            out += self.members(child)
        return out


def shape_text(shape: Sequence[int] | None) -> str:
    return TIMES.join(map(str, shape)) if shape is not None else "?"


def _value(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pair(value: Any) -> str | None:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}" if value[0] == value[1] else f"{value[0]}{TIMES}{value[1]}"
    return None


def detail(node: Node) -> str:
    """A few attributes that tell layers of one op apart: kernel, stride, width, function."""
    a = node.attrs
    parts: list[str] = []
    kernel = getattr(a, "kernel", None) or getattr(a, "pool", None)
    strides = _pair(getattr(a, "strides", None))
    if isinstance(kernel, tuple) and len(kernel) == 2:
        text = f"{kernel[0]}{TIMES}{kernel[1]}"
        if strides is not None and strides != "1" and strides != _pair(kernel):
            text += f"/{strides}"  # a stride other than 1 (or, for pools, than the pool)
        parts.append(text)
    for name in ("filters", "units"):
        value = getattr(a, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            parts.append(str(value))
    for name in ("fn", "activation"):
        value = getattr(a, name, None)
        if isinstance(value, str) and value != "linear":
            parts.append(value)
    rate = getattr(a, "rate", None)
    if isinstance(rate, float):
        parts.append(f"rate {rate:g}")
    return ", ".join(parts)


def params_text(node: Node) -> str:
    c = node.counts
    text = f"{c.total:,} params"
    if c.non_trainable:
        text += f" ({c.non_trainable:,} non-trainable)"
    return text


def where(node: Node) -> str:
    """Where a node comes from, for tooltips: file name (not the path: the text must not
    depend on where archc ran), line, column, and the expansion path."""
    loc = node.origin.location
    at = f"{Path(loc.file).name}:{loc.line}:{loc.col}" if loc is not None else ""
    path = node.origin.describe()
    return f"{at} ({path})" if at and path else at or path


def picture(graph: Graph) -> Picture:
    """The groups, memberships and edges to draw, from the IR alone."""
    groups: dict[str, Group] = {}
    group_of: dict[str, str | None] = {}
    top: list[str] = []
    counter = {"block": 0, "repeat": 0, "iteration": 0}

    def new(kind: str, title: str, subtitle: str, parent: str | None) -> Group:
        counter[kind] += 1
        g = Group(f"{kind[0]}{counter[kind]}", kind, title, subtitle, parent)
        groups[g.id] = g
        (groups[parent].groups if parent else top).append(g.id)
        return g

    def walk(e: Expansion, parent: str | None, bound: dict[str, Any]) -> None:
        if not e.taken:
            return
        if e.kind == "op":
            if e.node is not None:
                group_of[e.node] = parent
                if parent:
                    groups[parent].nodes.append(e.node)
            return
        if e.kind == "block":
            args = dict(e.values)
            extra = {k: v for k, v in bound.items() if args.get(k, object()) != v}
            text = ", ".join(f"{k}={_value(v)}" for k, v in {**extra, **args}.items())
            g = new("block", e.label, text, parent)
            for child in e.children:
                walk(child, g.id, {})
            return
        if e.kind == "repeat":
            values = [v for it in e.children for _, v in it.values[:1]]
            var = e.children[0].values[0][0] if e.children and e.children[0].values else ""
            if values and len(values) > 1:
                span = f"{var} = {_value(values[0])}…{_value(values[-1])}"
            else:
                span = f"{var} = {_value(values[0])}" if values else "no iterations"
            prefix = ", ".join(f"{k}={_value(v)}" for k, v in bound.items())
            g = new("repeat", f"{e.label} {TIMES} {len(e.children)}", span, parent)
            if prefix:
                g.subtitle = f"{prefix}; {span}"
            for child in e.children:
                walk(child, g.id, {})
            return
        # an iteration: boxed only where its body is more than one group (a lone block call
        # or repeat is its own box, labelled with the loop variable)
        binding = dict(e.values)
        boxed = [c for c in e.children if c.taken and (c.kind != "op" or c.node is not None)]
        if len(boxed) == 1 and boxed[0].kind in ("block", "repeat"):
            walk(boxed[0], parent, {**bound, **binding})
            return
        text = ", ".join(f"{k} = {_value(v)}" for k, v in {**bound, **binding}.items())
        g = new("iteration", text, "", parent)
        for child in e.children:
            walk(child, g.id, {})

    for e in graph.tree:
        walk(e, None, {})
    for node in graph.nodes:  # nodes the tree does not hold (none today) are drawn loose
        group_of.setdefault(node.name, None)
    # groups without a node (a repeat of zero iterations, a body whose `when`s were all false)
    for gid in [gid for gid in reversed(list(groups)) if not _has_nodes(groups, gid)]:
        g = groups.pop(gid)
        siblings = groups[g.parent].groups if g.parent else top
        siblings.remove(gid)
    loose = [n.name for n in graph.nodes if group_of[n.name] is None]
    return Picture(graph, groups, top, loose, group_of, edges(graph))


def _has_nodes(groups: dict[str, Group], gid: str) -> bool:
    g = groups[gid]
    return bool(g.nodes) or any(_has_nodes(groups, c) for c in g.groups if c in groups)


def edges(graph: Graph) -> list[Edge]:
    """One edge per input. A merge's main input is the one that comes through the longest
    chain of layers (a residual block's body, not its shortcut: an identity, or a projection
    of one or two layers; a U-Net's upsampling path, not the encoder's skip), of equals the
    one written last; its other inputs are skips. Where the spec writes the shortcut does
    not matter (a projection written after the body is the layer just before the add)."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    depth: dict[str, int] = {}  # layers on the longest chain from a graph input
    for node in graph.nodes:  # in topological order
        depth[node.name] = 1 + max((depth[i] for i in node.inputs), default=0)
    out = []
    for node in graph.nodes:
        sources = set(node.inputs)
        main = max(sources, key=lambda s: (depth[s], order[s])) if len(sources) > 1 else None
        for name in node.inputs:
            skip = main is not None and name != main
            out.append(Edge(name, node.name, shape_text(graph.node(name).shape), skip))
    return out


def group_counts(pic: Picture, gid: str) -> tuple[int, int]:
    """(layers, parameters) inside a group."""
    members = pic.members(gid)
    return len(members), sum(pic.graph.node(n).counts.total for n in members)


def title(graph: Graph, note: str = "") -> str:
    c = graph.counts
    text = (
        f"{graph.name}: {c.total:,} params ({c.trainable:,} trainable, "
        f"{c.non_trainable:,} non-trainable), {len(graph.nodes)} layers"
    )
    return f"{text}; {note}" if note else text


# ---------------------------------------------------------------------------------------- DOT

FAMILIES = (  # (op prefix or name, fill colour): conv blue, norm grey, activation green, ...
    (("input",), "#fce7f3"),
    (("conv2d", "depthwise_conv2d", "separable_conv2d"), "#dbeafe"),
    (("batch_norm", "layer_norm", "normalization", "rescaling"), "#e5e7eb"),
    (("activation",), "#dcfce7"),
    (("add", "multiply", "subtract", "concat"), "#fed7aa"),
    (("max_pool2d", "avg_pool2d", "global_avg_pool2d", "global_max_pool2d"), "#fef9c3"),
    (("dense",), "#ede9fe"),
)
SKIP_COLOUR = "#2563eb"


def fill(op: str) -> str:
    for ops, colour in FAMILIES:
        if op in ops:
            return colour
    return "#ffffff"


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Text inside a DOT HTML-like label."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _node_label(node: Node) -> str:
    """Name (bold) and op on the first line, the parameter count on the second."""
    op = node.op + (f" {detail(node)}" if detail(node) else "")
    return (
        f'<<B>{_h(node.name)}</B> <FONT POINT-SIZE="9">{_h(op)}</FONT>'
        f'<BR/><FONT POINT-SIZE="9" COLOR="#475569">{_h(params_text(node))}</FONT>>'
    )


def to_dot(graph: Graph, note: str = "") -> str:
    """Graphviz source: clusters for groups, shapes on edges, merges' skip inputs in blue."""
    pic = picture(graph)
    font = 'fontname="Helvetica,Arial,sans-serif"'
    lines = [
        f"digraph {_q(graph.name)} {{",
        f"  graph [{font}, fontsize=12, label={_q(title(graph, note))}, labelloc=t, "
        'labeljust=l, rankdir=TB, nodesep=0.25, ranksep=0.18, bgcolor="#ffffff", '
        'pad=0.2, newrank=true, id="archc"];',
        f'  node [{font}, fontsize=11, shape=box, style="rounded,filled", color="#64748b", '
        'margin="0.12,0.03", height=0.3];',
        f'  edge [{font}, fontsize=8, fontcolor="#334155", color="#64748b", arrowsize=0.6];',
    ]

    def node_line(name: str, indent: str) -> str:
        node = graph.node(name)
        attrs = (
            f"label={_node_label(node)}, fillcolor={_q(fill(node.op))}, "
            f"tooltip={_q(where(node))}, class={_q('op-' + node.op)}"
        )
        return f"{indent}{_q(name)} [{attrs}];"

    def cluster(gid: str, depth: int) -> None:
        g = pic.groups[gid]
        layers, params = group_counts(pic, gid)
        indent = "  " * depth
        head = f"<<B>{_h(g.title)}</B>"
        if g.subtitle:
            head += f'  <FONT POINT-SIZE="9">{_h(g.subtitle)}</FONT>'
        head += '<BR ALIGN="LEFT"/><FONT POINT-SIZE="9" COLOR="#475569">'
        head += f'{layers} layers, {params:,} params</FONT><BR ALIGN="LEFT"/>>'
        style = {
            "block": 'style="rounded,filled", fillcolor="#f8fafc", color="#94a3b8"',
            "repeat": 'style="rounded,dashed", fillcolor="none", color="#475569"',
            "iteration": 'style="rounded", color="#cbd5e1"',
        }[g.kind]
        lines.append(f"{indent}subgraph {_q('cluster_' + gid)} {{")
        lines.append(
            f"{indent}  graph [label={head}, labeljust=l, fontsize=11, {style}, "
            f"class={_q(g.kind)}, id={_q('cluster_' + gid)}];"
        )
        for child in g.groups:
            cluster(child, depth + 1)
        lines.extend(node_line(n, indent + "  ") for n in g.nodes)
        lines.append(f"{indent}}}")

    for gid in pic.top:
        cluster(gid, 1)
    lines.extend(node_line(n, "  ") for n in pic.loose)
    for e in pic.edges:
        style = (
            f"color={_q(SKIP_COLOUR)}, penwidth=1.4, weight=1, class=skip" if e.skip else "weight=8"
        )
        lines.append(f"  {_q(e.source)} -> {_q(e.target)} [label={_q(e.shape)}, {style}];")
    taken = {n.name for n in graph.nodes}
    for out in graph.outputs:
        marker = _unique(f"{out}:output", taken)
        shape = shape_text(graph.node(out).shape)
        lines.append(
            f'  {_q(marker)} [label="output", shape=plaintext, style="", fontsize=9, '
            'class="output"];'
        )
        lines.append(f"  {_q(out)} -> {_q(marker)} [label={_q(shape)}, weight=8];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


# ---------------------------------------------------------------------------------------- SVG

DOT_HASH = re.compile(r"<!-- archc graph: dot source sha256 ([0-9a-f]{64}) -->")


def find_dot() -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise LayoutError(f"drawing .svg needs Graphviz' `dot`, not found on PATH: {INSTALL_HINT}")
    return dot


def to_svg(graph: Graph, note: str = "") -> str:
    """The DOT source laid out by Graphviz, with the source's hash recorded in the file."""
    source = to_dot(graph, note)
    dot = find_dot()
    try:
        done = subprocess.run(
            [dot, "-Tsvg"], input=source.encode(), capture_output=True, check=False
        )
    except OSError as exc:
        raise LayoutError(f"could not run {dot}: {exc}; {INSTALL_HINT}") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise LayoutError(f"Graphviz' dot failed: {reason}")
    svg = done.stdout.decode()
    digest = hashlib.sha256(source.encode()).hexdigest()
    mark = f"<!-- archc graph: dot source sha256 {digest} -->\n"
    at = svg.find("<svg")
    return svg[:at] + mark + svg[at:] if at >= 0 else svg


# --------------------------------------------------------------------------------------- HTML


def model_json(graph: Graph, note: str = "") -> dict[str, Any]:
    """What the HTML page draws: the picture's model, as JSON."""
    pic = picture(graph)
    nodes = []
    for node in graph.nodes:
        c = node.counts
        nodes.append(
            {
                "name": node.name,
                "op": node.op,
                "detail": detail(node),
                "params": c.total,
                "nonTrainable": c.non_trainable,
                "shape": shape_text(node.shape),
                "group": pic.group_of[node.name],
                "where": where(node),
                "fill": fill(node.op),
            }
        )
    groups = []
    for gid, g in pic.groups.items():
        layers, params = group_counts(pic, gid)
        groups.append(
            {
                "id": gid,
                "kind": g.kind,
                "title": g.title,
                "subtitle": g.subtitle,
                "parent": g.parent,
                "layers": layers,
                "params": params,
            }
        )
    return {
        "title": title(graph, note),
        "nodes": nodes,
        "groups": groups,
        "edges": [
            {"source": e.source, "target": e.target, "shape": e.shape, "skip": e.skip}
            for e in pic.edges
        ],
        "outputs": [{"name": o, "shape": shape_text(graph.node(o).shape)} for o in graph.outputs],
        "skipColour": SKIP_COLOUR,
    }


def _script(text: str) -> str:
    """Code safe inside <script>: no `</` can close the element early."""
    return text.replace("</", "<\\/")


def _json_script(data: Any) -> str:
    """JSON safe inside <script>, whatever its strings hold: no `<` at all (`\\u003c` in a
    string is the same string), so that neither `</script` ends the element nor `<!--` then
    `<script` keeps the browser from ending it (the data would swallow the page's scripts)."""
    text = json.dumps(data, ensure_ascii=False, indent=1)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def dagre_source() -> str:
    """The vendored dagre with its license in front, without the source-map comment (the page
    fetches nothing)."""
    code = (ASSETS / "dagre.min.js").read_text(encoding="utf-8")
    code = re.sub(r"^//# sourceMappingURL=.*$", "", code, flags=re.M)
    license = (ASSETS / "dagre.LICENSE").read_text(encoding="utf-8").replace("*/", "* /")
    return f"/*! dagre (@dagrejs/dagre with @dagrejs/graphlib), MIT License:\n{license}*/\n{code}"


def to_html(graph: Graph, note: str = "") -> str:
    page = (ASSETS / "page.html").read_text(encoding="utf-8")
    parts = {
        "@TITLE@": _h(title(graph, note)),
        "@DAGRE@": _script(dagre_source()),
        "@VIEWER@": _script((ASSETS / "viewer.js").read_text(encoding="utf-8")),
        "@MODEL@": _json_script(model_json(graph, note)),
    }
    return re.sub("|".join(map(re.escape, parts)), lambda m: parts[m.group(0)], page)


# -------------------------------------------------------------------------------------- write


def suffix(path: str | Path) -> str | None:
    """The output format of a file name (".svg", ".html" or ".dot"), or None."""
    s = Path(path).suffix.lower()
    return s if s in FORMATS else None


def render(graph: Graph, fmt: str, note: str = "") -> str:
    if fmt == ".dot":
        return to_dot(graph, note)
    if fmt == ".svg":
        return to_svg(graph, note)
    if fmt == ".html":
        return to_html(graph, note)
    raise ValueError(f"unknown picture format {fmt!r}")


def write(graph: Graph, path: str | Path, note: str = "") -> Path:
    """Render and write atomically (a temp file renamed over the target; a failed layout
    leaves the old file as it was). A path that cannot be written is E095, as compile's."""
    from archc.backends.codegen import write_atomic  # no framework: Jinja2 and the compiler

    target = Path(path)
    fmt = suffix(target)
    if fmt is None:
        raise ValueError(f"{target}: not one of {', '.join(FORMATS)}")
    text = render(graph, fmt, note)
    try:
        write_atomic(target, text)
    except OSError as exc:
        raise SpecError(
            [
                Diagnostic(
                    "E095",
                    f"cannot write {target}: {_why_unwritable(target, exc)}",
                    hint="choose a writable path with -o FILE",
                )
            ]
        ) from None
    return target


def _why_unwritable(target: Path, exc: OSError) -> str:
    """The reason, in words: a folder on the way that is a file, else the system's words."""
    for folder in target.parents:  # the nearest first
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder"
            break
    return exc.strerror or str(exc)


def note_for(variant: str | None, overrides: Iterable[tuple[str, Any]]) -> str:
    """The variant and overrides a picture was drawn with, for its title."""
    parts = [f"variant {variant}"] if variant else []
    parts += [f"{k}={_value(v)}" for k, v in overrides]
    return ", ".join(parts)
