"""`archc graph`: the picture's structure against the seed's own summary table (an independent
reference: names, layer types, output shapes, parameters, connections), usage and spec errors,
atomic writes, the committed docs/seed.svg, and screenshots in a real headless browser.

Graphviz (`dot`) and Chromium are Debian packages that scripts/test.sh installs when it runs as
root; where they are missing and cannot be installed (not root), the tests that need them skip
and say what to install."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import ROOT, SEED, SPECS
from tests.seedtable import SEED_TABLE, seed_rows

SVG_NS = "{http://www.w3.org/2000/svg}"
DOCS_SVG = ROOT / "docs" / "seed.svg"

# The seed table's Keras layer types, as the spec's ops (written out here, not read from archc)
KERAS_TYPES = {
    "InputLayer": "input",
    "Conv2D": "conv2d",
    "BatchNormalization": "batch_norm",
    "Activation": "activation",
    "Add": "add",
    "AveragePooling2D": "avg_pool2d",
    "Flatten": "flatten",
    "Dense": "dense",
}


def table() -> dict[str, dict]:
    """The seed summary as {name: {op, shape, params, inputs}}, shapes drawn as 16×16×128."""
    rows = {}
    for name, kind, shape, params, conns in seed_rows(SEED_TABLE):
        dims = [d.strip() for d in shape.strip("()").split(",")][1:]  # batch (None) dropped
        rows[name] = {
            "op": KERAS_TYPES[kind],
            "shape": "×".join(dims),
            "params": int(params),
            "inputs": [c.split("[")[0] for c in conns],
        }
    return rows


def table_edges() -> list[tuple[str, str, str]]:
    """(producer, consumer, the producer's output shape) for every connection of the table."""
    rows = table()
    return [(src, name, rows[src]["shape"]) for name, row in rows.items() for src in row["inputs"]]


def need(tool: str, package: str) -> str:
    """The tool's path; a skip (not root: cannot install) or a failure (root: scripts/test.sh
    installs it, so its absence is a broken test setup) when it is missing."""
    path = shutil.which(tool)
    if path is not None:
        return path
    how = f"`apt-get install {package}` (scripts/test.sh does, when run as root)"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.fail(f"{tool} is not installed; run scripts/test.sh or {how}")
    pytest.skip(f"{tool} is not installed and this user cannot install it: {how}")


@pytest.fixture
def dot() -> str:
    return need("dot", "graphviz")


@pytest.fixture
def browser() -> str:
    return need("chromium", "chromium")


def draw(archc, out: Path, *args: str, spec: Path = SEED):
    result = archc("graph", spec, "-o", out, *args)
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------- structure


def svg_tree(path: Path) -> ElementTree.Element:
    return ElementTree.parse(path).getroot()


def groups_of(root: ElementTree.Element, cls: str) -> list[ElementTree.Element]:
    return [g for g in root.iter(f"{SVG_NS}g") if cls in (g.get("class") or "").split()]


def layers(root: ElementTree.Element) -> list[ElementTree.Element]:
    """The drawn layers (not the small `output` markers after the model's outputs)."""
    return [g for g in groups_of(root, "node") if "output" not in g.get("class", "").split()]


def texts(g: ElementTree.Element) -> list[str]:
    """The non-blank text elements (Graphviz writes a label's spaces as elements too)."""
    lines = ["".join(t.itertext()).strip() for t in g.iter(f"{SVG_NS}text")]
    return [t for t in lines if t]


def title(g: ElementTree.Element) -> str:
    t = g.find(f"{SVG_NS}title")
    assert t is not None and t.text is not None
    return t.text


def numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?[0-9]+(?:\.[0-9]+)?", text)]


def bbox(g: ElementTree.Element) -> tuple[float, float, float, float]:
    """The outline of a node or cluster (a path or polygon), in the SVG's user units."""
    for shape in g.iter():
        if shape.tag in (f"{SVG_NS}path", f"{SVG_NS}polygon"):
            v = numbers(shape.get("d") or shape.get("points") or "")
            xs, ys = v[0::2], v[1::2]
            return min(xs), min(ys), max(xs), max(ys)
    raise AssertionError(f"no outline in {title(g)}")


def test_svg_has_every_layer_edge_shape_and_count_of_the_seed_table(archc, dot, tmp_path) -> None:
    out = tmp_path / "seed.svg"
    draw(archc, out)
    root = svg_tree(out)
    expected = table()
    nodes = {title(g): g for g in layers(root)}
    assert set(nodes) == set(expected)
    for name, row in expected.items():
        lines = texts(nodes[name])
        assert lines[0] == name
        assert lines[1].split()[0] == row["op"]
        params = f"{row['params']:,} params"
        if row["op"] == "batch_norm":  # Keras: moving mean and variance, half the weights
            params += f" ({row['params'] // 2:,} non-trainable)"
        assert lines[2] == params, name
        assert f"op-{row['op']}" in nodes[name].get("class", "")
    edges = {title(g): g for g in groups_of(root, "edge")}
    wanted = {f"{src}->{name}" for name, row in expected.items() for src in row["inputs"]}
    wanted.add("fc10->fc10:output")  # the model's output, with its shape
    assert set(edges) == wanted
    for key, g in edges.items():
        source = key.split("->")[0]
        assert texts(g) == [expected[source]["shape"]], key
    # skip connections: each merge's second input (the block input), drawn apart in blue
    skips = {title(g) for g in groups_of(root, "skip")}
    assert skips == {"relu0->merge1"} | {f"merge{k}->merge{k + 1}" for k in range(1, 5)}
    for key in skips:
        assert any(p.get("stroke") == "#2563eb" for p in edges[key].iter(f"{SVG_NS}path"))
    # the totals of the table's last lines
    heading = " ".join(texts(root)[:1])
    assert "96,133 params (93,957 trainable, 2,176 non-trainable)" in heading


def seed_block_members(stage: int) -> set[str]:
    """The spec's preact_bottleneck body for one stage (stage 1 skips the first BN-relu)."""
    names = {f"{p}{stage}{s}" for p in ("conv", "bn", "relu") for s in "abc"}
    if stage == 1:
        names -= {"bn1a", "relu1a"}
    return names | {f"merge{stage}"}


def test_svg_clusters_are_the_block_calls_and_the_repeat_and_hold_their_layers(
    archc, dot, tmp_path
) -> None:
    out = tmp_path / "seed.svg"
    draw(archc, out)
    root = svg_tree(out)
    blocks = groups_of(root, "block")
    repeats = groups_of(root, "repeat")
    assert len(blocks) == 5 and len(repeats) == 1  # num_stages = 5 calls, one repeat
    assert len(groups_of(root, "cluster")) == 6
    assert texts(repeats[0])[0] == "stage × 5"
    boxes = {title(g): bbox(g) for g in layers(root)}

    def inside(name: str, box: tuple[float, float, float, float]) -> bool:
        x0, y0, x1, y1 = boxes[name]
        return box[0] <= x0 and box[1] <= y0 and x1 <= box[2] and y1 <= box[3]

    outer = bbox(repeats[0])
    for stage, cluster in enumerate(blocks, start=1):
        lines = texts(cluster)
        assert lines[0] == "preact_bottleneck" and f"stage={stage}" in " ".join(lines)
        box = bbox(cluster)
        members = {n for n in boxes if inside(n, box)}
        assert members == seed_block_members(stage)
        weights = sum(table()[n]["params"] for n in members)
        assert f"{len(members)} layers, {weights:,} params" in lines
        assert all(inside(n, outer) for n in members)
    assert not any(inside(n, outer) for n in ("relu0", "bnF", "fc10"))


def parse_dot(text: str) -> tuple[list[str], list[tuple[str, str, str]], list[str]]:
    """(node names, (source, target, label) edges, cluster names) of archc's DOT output."""
    nodes = re.findall(r'^\s*"([^"]+)" \[label=<', text, re.M)
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)" \[label="([^"]*)"', text, re.M)
    clusters = re.findall(r'^\s*subgraph "(cluster_[^"]+)"', text, re.M)
    return nodes, edges, clusters


def test_dot_needs_no_graphviz_and_has_every_layer_and_edge(archc, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` to be found
    out = tmp_path / "seed.dot"
    draw(archc, out)
    text = out.read_text(encoding="utf-8")
    nodes, edges, clusters = parse_dot(text)
    expected = table()
    assert set(nodes) == set(expected)
    assert {(s, t, label) for s, t, label in edges if t in expected} == {
        (src, name, expected[src]["shape"])
        for name, row in expected.items()
        for src in row["inputs"]
    }
    assert sorted(clusters) == [f"cluster_b{k}" for k in range(1, 6)] + ["cluster_r1"]
    for name, row in expected.items():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{name}" [label='))
        assert f"{row['params']:,} params" in line and f"{row['op']}" in line


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_every_spec_draws_one_cluster_per_block_call_and_repeat(archc, tmp_path, spec) -> None:
    """Every zoo spec: all layers, every input an edge, clusters as the expansion tree has
    block calls and repeats (counted from Graph.tree here, drawn from it there)."""
    from archc.compiler.api import compile_spec

    out = tmp_path / "g.dot"
    draw(archc, out, spec=SPECS / spec)
    graph = compile_spec(SPECS / spec).graph
    nodes, edges, clusters = parse_dot(out.read_text(encoding="utf-8"))
    assert sorted(nodes[: len(graph.nodes)]) == sorted(n.name for n in graph.nodes)
    assert len([e for e in edges if e[1] in {n.name for n in graph.nodes}]) == sum(
        len(n.inputs) for n in graph.nodes
    )
    taken = [e for top in graph.tree for e in top.walk() if e.taken]
    calls = sum(1 for e in taken if e.kind == "block" and _has_node(e))
    repeats = sum(1 for e in taken if e.kind == "repeat" and _has_node(e))
    assert sum(c.startswith("cluster_b") for c in clusters) == calls
    assert sum(c.startswith("cluster_r") for c in clusters) == repeats


def _has_node(e) -> bool:
    return any(x.node is not None for x in e.walk())


def test_html_is_self_contained_and_carries_the_model(archc, tmp_path) -> None:
    out = tmp_path / "seed.html"
    draw(archc, out)
    page = out.read_text(encoding="utf-8")
    # nothing fetched when viewed: no external script, style, image or font
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "@import" not in page and "url(http" not in page
    assert "sourceMappingURL" not in page
    assert "Permission is hereby granted" in page  # dagre's license travels with its code
    import json

    model = json.loads(re.search(r'id="model">(.*?)</script>', page, re.S).group(1))
    expected = table()
    assert {n["name"]: (n["op"], n["params"]) for n in model["nodes"]} == {
        name: (row["op"], row["params"]) for name, row in expected.items()
    }
    assert sorted((e["source"], e["target"], e["shape"]) for e in model["edges"]) == sorted(
        (src, name, expected[src]["shape"])
        for name, row in expected.items()
        for src in row["inputs"]
    )
    kinds = sorted(g["kind"] for g in model["groups"])
    assert kinds == ["block"] * 5 + ["repeat"]


TAGGED = """archc: 1
name: net
inputs:
  - {name: image, shape: [8, 8, 3]}
blocks:
  tagged:
    args:
      tag: {type: str}
    body:
      - {op: conv2d, name: conv, filters: 4, kernel: 1}
layers:
  - {block: tagged, args: {tag: "<!--<script>"}}
  - {op: flatten, name: flat}
  - {op: dense, name: fc, units: 2}
"""


def _scripts(page: str) -> list[tuple[str, str]]:
    """The page's script elements, (attributes, text), as a browser that meets no `<!--` in
    them splits the page: each ends at the first `</script`."""
    return re.findall(r"<script([^>]*)>(.*?)</script", page, re.S | re.I)


def test_html_data_cannot_end_or_escape_its_script_element(archc, tmp_path) -> None:
    """A block argument "<!--<script>" in the page's JSON: inside a script element `<!--`
    followed by `<script` makes the browser's tokenizer skip the next `</script>` (HTML's
    "script data double escaped" state), so the JSON would swallow the scripts after it and
    the page stay blank. The JSON carries no `<` at all (\\u003c, still the same string)."""
    import json

    spec = tmp_path / "tagged.yaml"
    spec.write_text(TAGGED, encoding="utf-8")
    out = tmp_path / "tagged.html"
    draw(archc, out, spec=spec)
    page = out.read_text(encoding="utf-8")
    assert "<!--" not in page
    scripts = _scripts(page)
    assert len(scripts) == 3 == page.count("</script>")
    (attrs, data), *code = scripts
    assert 'id="model"' in attrs
    assert "<" not in data
    assert all("<!--" not in text and "<script" not in text.lower() for _, text in code)
    (group,) = json.loads(data)["groups"]
    assert group["subtitle"] == "tag='<!--<script>'"  # the text itself is unchanged


# The viewer run by Node.js in a stand-in for the browser: every DOM object is a stub that
# takes any call, the model's script text and the URL's fragment are real, dagre lays out.
NODE_HARNESS = r"""
const vm = require("vm");
const [scripts, hash] = JSON.parse(require("fs").readFileSync(0, "utf8"));
const marks = {};
function stub(name) {
  const f = function () {};
  return new Proxy(f, {
    get(t, k) {
      if (k === Symbol.toPrimitive) return () => 0;
      if (k === Symbol.iterator) return function* () {};
      return stub(name + "." + String(k));
    },
    apply(t, self, args) {
      if (name === "document.documentElement.setAttribute") marks[args[0]] = args[1];
      return stub(name + "()");
    },
    set() { return true; },
  });
}
const doc = stub("document");
const document = new Proxy({}, {
  get(t, k) {
    if (k === "getElementById") {
      return (id) => (id === "model" ? { textContent: scripts[0] } : stub("#" + id));
    }
    return doc[k];
  },
});
const context = vm.createContext({
  document, location: { hash }, history: stub("history"), scrollX: 0, scrollY: 0, console,
  structuredClone, setTimeout, clearTimeout,
});
try {
  for (const code of scripts.slice(1)) vm.runInContext(code, context);
  console.log(JSON.stringify({ drawn: marks["data-drawn"] ?? null }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
}
"""


def run_viewer(node: str, page: str, hash: str) -> dict:
    import json

    scripts = [text for _, text in _scripts(page)]
    done = subprocess.run(
        [node, "-e", NODE_HARNESS],
        input=json.dumps([scripts, hash]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("hash", ["", "#collapsed=all", "#%E0%A4%A", "#collapsed=%"])
def test_html_viewer_draws_whatever_the_url_fragment(archc, tmp_path, hash: str) -> None:
    """A fragment that is not valid percent-encoding (decodeURIComponent throws URIError)
    must not leave the page blank: the viewer draws as without one. Needs Node.js (skips
    without it); the Chromium tests below draw the real page."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (the viewer's script runs in it)")
    out = tmp_path / "seed.html"
    draw(archc, out)
    result = run_viewer(node, out.read_text(encoding="utf-8"), hash)
    expected = table()
    # what dagre laid out: expanded, every layer, the seed's 6 groups (5 block calls in a
    # repeat) and the output marker; all collapsed, the stem, the repeat as one box, the head
    # and the marker
    stages = {n for n in expected if re.fullmatch(r"(bn|relu|conv|merge)[1-5][abc]?", n)}
    if hash == "#collapsed=all":
        count = len(expected) - len(stages) + 1 + 1
    else:
        count = len(expected) + 6 + 1
    assert result == {"drawn": str(count)}, result


# ------------------------------------------------------------------------------- errors


def test_unknown_extension_is_a_usage_error(archc, tmp_path) -> None:
    result = archc("graph", SEED, "-o", tmp_path / "seed.png")
    assert result.exit_code == 2
    assert "must end in .svg, .html, .dot" in result.output
    assert not (tmp_path / "seed.png").exists()


def test_spec_errors_exit_1_as_check_does(archc, tmp_path) -> None:
    broken = ROOT / "tests" / "compiler" / "broken" / "add_shape_mismatch.yaml"
    checked = archc("check", broken)
    drawn = archc("graph", broken, "-o", tmp_path / "x.svg")
    assert checked.exit_code == drawn.exit_code == 1
    assert drawn.stderr == checked.stderr and "error[" in drawn.stderr
    bad_set = archc("graph", SEED, "-o", tmp_path / "x.dot", "--set", "num_stages=0")
    assert bad_set.exit_code == 1 and "num_stages" in bad_set.stderr
    assert not list(tmp_path.iterdir())


def test_missing_graphviz_says_how_to_install_it(archc, tmp_path, monkeypatch) -> None:
    out = tmp_path / "seed.svg"
    out.write_text("old picture")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = archc("graph", SEED, "-o", out)
    assert result.exit_code == 1
    assert "Graphviz" in result.stderr and "apt-get install graphviz" in result.stderr
    assert ".html" in result.stderr  # what works without it
    assert "Traceback" not in result.output
    assert out.read_text() == "old picture"


def test_written_atomically(archc, dot, tmp_path, monkeypatch) -> None:
    """Ctrl-C while the new file is being written: exit 130, the old picture untouched and no
    temp file left (archc.backends.codegen.write_atomic)."""
    from archc.backends import codegen as backends_codegen

    out = tmp_path / "seed.svg"
    out.write_text("old picture")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backends_codegen.os, "fsync", interrupted)
    result = archc("graph", SEED, "-o", out)
    assert result.exit_code == 130 and "nothing was written" in result.stderr
    assert out.read_text() == "old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["seed.svg"]
    monkeypatch.undo()
    draw(archc, out)
    assert out.read_text().startswith("<?xml")
    assert [p.name for p in tmp_path.iterdir()] == ["seed.svg"]


def test_graph_imports_no_framework(tmp_path) -> None:
    code = (
        "import sys\n"
        "from archc.cli import main\n"
        f"try:\n    main(['graph', {str(SEED)!r}, '-o', {str(tmp_path / 'g.html')!r}])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'torch', 'jax', 'numpy'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


def test_docs_seed_svg_is_fresh(archc, dot, tmp_path) -> None:
    """docs/seed.svg (the README's picture) was drawn from today's DOT source; its layout may
    come from another Graphviz version or other fonts, so the drawn structure is compared."""
    fresh = tmp_path / "seed.svg"
    draw(archc, fresh)
    mark = re.compile(r"<!-- archc graph: dot source sha256 ([0-9a-f]{64}) -->")
    committed_text = DOCS_SVG.read_text(encoding="utf-8")
    hint = "regenerate: archc graph specs/resnet_preact.yaml -o docs/seed.svg"
    assert mark.search(committed_text), hint
    assert mark.search(committed_text).group(1) == mark.search(fresh.read_text()).group(1), hint

    def drawn(root: ElementTree.Element) -> list[tuple[str, str, tuple[str, ...]]]:
        return sorted(
            (g.get("class", ""), title(g), tuple(texts(g)))
            for g in root.iter(f"{SVG_NS}g")
            if g.find(f"{SVG_NS}title") is not None
        )

    assert drawn(svg_tree(DOCS_SVG)) == drawn(svg_tree(fresh)), hint


# ------------------------------------------------------------------------------- browser


def png_pixels(path: Path) -> tuple[int, int, list[bytearray]]:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) into rows of
    RGB bytes, with the standard's five row filters."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        prev = line
        rows.append(line if bpp == 3 else bytearray(v for i, v in enumerate(line) if i % 4 != 3))
    return width, height, rows


def screenshot(browser: str, url: str, out: Path, size: tuple[int, int], profile: Path) -> Path:
    """Chromium, headless, renders url into a PNG of exactly `size` CSS pixels."""
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # as root (CI)
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), done.stderr[-2000:]
    return out


def dump_dom(browser: str, url: str, size: tuple[int, int], profile: Path) -> str:
    """The page's DOM after its scripts ran (the HTML page draws itself with dagre)."""
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "<svg" in done.stdout, done.stderr[-2000:]
    return done.stdout


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def region(rows: list[bytearray], box: tuple[int, int, int, int]) -> list[tuple[int, int, int]]:
    x0, y0, x1, y1 = box
    return [
        (rows[y][3 * x], rows[y][3 * x + 1], rows[y][3 * x + 2])
        for y in range(y0, y1)
        for x in range(x0, x1)
    ]


def check_drawn(rows: list[bytearray], box: tuple[int, int, int, int], fill: str, what: str):
    """Inside a box the layout put a layer at: mostly its fill colour, and dark text."""
    pixels = region(rows, box)
    want = hex_rgb(fill)
    near = sum(all(abs(p[i] - want[i]) <= 12 for i in range(3)) for p in pixels)
    dark = sum(sum(p) < 3 * 110 for p in pixels)
    assert near > 0.4 * len(pixels), f"{what}: fill {fill} on {near}/{len(pixels)} pixels"
    assert dark > 0.01 * len(pixels), f"{what}: no text drawn ({dark} dark pixels)"


def check_not_blank(rows: list[bytearray]) -> None:
    colours = {tuple(row[i : i + 3]) for row in rows[::7] for i in range(0, len(row), 21)}
    white = sum(
        row[i] > 245 and row[i + 1] > 245 and row[i + 2] > 245
        for row in rows
        for i in range(0, len(row), 3)
    )
    total = len(rows) * len(rows[0]) // 3
    assert len(colours) > 20, "the screenshot is blank"
    assert 0.3 < white / total < 0.98, f"{white / total:.0%} of the screenshot is white"


SVG_FILLS = {"input": "#fce7f3", "conv2d": "#dbeafe", "batch_norm": "#e5e7eb"}
SVG_FILLS |= {"activation": "#dcfce7", "add": "#fed7aa", "dense": "#ede9fe"}


def test_svg_screenshot_draws_the_layers_where_the_layout_put_them(
    archc, dot, browser, tmp_path
) -> None:
    out = tmp_path / "seed.svg"
    draw(archc, out)
    size = (800, 1500)
    png = screenshot(browser, out.as_uri(), tmp_path / "svg.png", size, tmp_path / "profile")
    width, height, rows = png_pixels(png)
    assert (width, height) == size
    check_not_blank(rows)
    root = svg_tree(out)
    # user units (points) to CSS pixels: Chromium draws the SVG at its width in pt
    width_pt = float(root.get("width", "").removesuffix("pt"))
    scale = width_pt * 4 / 3 / numbers(root.get("viewBox", ""))[2]
    graph0 = next(root.iter(f"{SVG_NS}g"))
    tx, ty = numbers(graph0.get("transform", "").split("translate")[1])
    ops = {name: row["op"] for name, row in table().items()}
    checked = 0
    for g in layers(root):
        name = title(g)
        x0, y0, x1, y1 = bbox(g)
        box = tuple(round((v + t) * scale) for v, t in ((x0, tx), (y0, ty), (x1, tx), (y1, ty)))
        box = (box[0] + 4, box[1] + 4, box[2] - 4, box[3] - 4)  # inside the outline
        if box[3] > height:
            continue
        check_drawn(rows, box, SVG_FILLS[ops[name]], name)
        checked += 1
    assert checked >= 12  # the stem and the first block, at least
    # right of the drawing: background only
    right = round(width_pt * 4 / 3) + 10
    assert all(sum(p) > 3 * 245 for p in region(rows, (right, 0, width, height)))


class Boxes(HTMLParser):
    """The `data-box` (page x, y, width, height) that the page's script put on every box."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: dict[str, tuple[str, tuple[int, ...]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-box") and (a.get("data-name") or a.get("data-group")):
            key = a.get("data-name") or a.get("data-group") or ""
            self.boxes[key] = (a.get("class") or "", tuple(map(int, a["data-box"].split(","))))


def html_boxes(page: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    parser = Boxes()
    parser.feed(page)
    return parser.boxes


def test_html_screenshot_draws_the_layers_and_collapses_groups(archc, browser, tmp_path) -> None:
    out = tmp_path / "seed.html"
    draw(archc, out)
    size = (800, 1500)
    profile = tmp_path / "profile"
    expected = table()
    ops = {name: row["op"] for name, row in expected.items()}

    dom = dump_dom(browser, out.as_uri(), size, profile)
    boxes = html_boxes(dom)
    assert set(boxes) == set(expected)  # every layer drawn, the seed expanded
    png = screenshot(browser, out.as_uri(), tmp_path / "html.png", size, profile)
    _, height, rows = png_pixels(png)
    check_not_blank(rows)
    checked = 0
    for name, (_, (x, y, w, h)) in boxes.items():
        if y + h > height:
            continue
        check_drawn(rows, (x + 4, y + 4, x + w - 4, y + h - 4), SVG_FILLS[ops[name]], name)
        checked += 1
    assert checked >= 8

    # everything collapsed: the stem, the repeat as one box, the head
    url = out.as_uri() + "#collapsed=all"
    boxes = html_boxes(dump_dom(browser, url, size, profile))
    stages = {n for n in expected if re.fullmatch(r"(bn|relu|conv|merge)[1-5][abc]?", n)}
    assert set(boxes) == (set(expected) - stages) | {"r1"}
    cls, (x, y, w, h) = boxes["r1"]
    assert "group-node" in cls
    _, height, rows = png_pixels(screenshot(browser, url, tmp_path / "c.png", size, profile))
    assert y + h <= height
    check_drawn(rows, (x + 4, y + 4, x + w - 4, y + h - 4), "#e2e8f0", "collapsed stages")


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_output_path_is_e095_as_compile_gives(archc, tmp_path, where) -> None:
    """-o under a regular file, or in /proc (where no file can be created, root or not): the
    error compile gives for its output folder (E095, the path named), exit 1, not exit 3."""
    blocker = tmp_path / "some_file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    if where == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("needs Linux' /proc")
        out = Path("/proc") / "x.dot"
    else:
        out = blocker / "x.dot"
    result = archc("graph", SEED, "-o", out)
    assert result.exit_code == 1, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error[E095]: cannot write {out}: "), result.stderr
    if where == "under-a-file":
        assert first.endswith(f"{blocker} is a file, not a folder")
    assert "hint: " in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    assert blocker.read_text(encoding="utf-8") == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some_file"]


def test_html_draws_with_markup_in_its_data_and_a_malformed_fragment(
    archc, browser, tmp_path
) -> None:
    """The page of a block argument "<!--<script>", opened with a fragment that is not valid
    percent-encoding: Chromium draws every layer (before, the data swallowed the scripts, and
    the fragment threw; either left the page blank)."""
    spec = tmp_path / "tagged.yaml"
    spec.write_text(TAGGED, encoding="utf-8")
    out = tmp_path / "tagged.html"
    draw(archc, out, spec=spec)
    boxes = html_boxes(dump_dom(browser, out.as_uri() + "#%E0%A4%A", (600, 600), tmp_path / "p"))
    assert set(boxes) == {"image", "conv", "flat", "fc"}


# A projection block written body first: the shortcut's 1x1 conv and BN come after the body,
# just before the add. The body is the main path, the shortcut the skip (as in an identity
# block), wherever the spec writes it.
PROJECTION = """archc: 1
name: net
inputs:
  - {name: image, shape: [8, 8, 3]}
blocks:
  projection:
    body:
      - {op: conv2d, name: body_a, filters: 4, kernel: 1}
      - {op: batch_norm, name: body_a_bn}
      - {op: activation, fn: relu, name: body_a_relu}
      - {op: conv2d, name: body_b, filters: 8, kernel: 3, padding: same}
      - {op: batch_norm, name: body_b_bn, id: body}
      - {op: conv2d, name: short, inputs: input, filters: 8, kernel: 1}
      - {op: batch_norm, name: short_bn}
      - {op: add, name: merge, inputs: [body, prev]}
layers:
  - {op: conv2d, name: stem, filters: 4, kernel: 3}
  - {block: projection}
  - {op: flatten, name: flat}
"""


def test_projection_shortcut_is_the_skip_and_the_body_the_main_path(archc, tmp_path) -> None:
    import json

    spec = tmp_path / "projection.yaml"
    spec.write_text(PROJECTION, encoding="utf-8")
    main = {
        ("image", "stem"),
        ("stem", "body_a"),
        ("body_a", "body_a_bn"),
        ("body_a_bn", "body_a_relu"),
        ("body_a_relu", "body_b"),
        ("body_b", "body_b_bn"),
        ("body_b_bn", "merge"),  # the body's edge into the add
        ("stem", "short"),  # one producer, one input: not a merge's
        ("short", "short_bn"),
        ("merge", "flat"),
    }
    skip = {("short_bn", "merge")}
    dot = tmp_path / "projection.dot"
    draw(archc, dot, spec=spec)
    drawn = re.findall(r'^\s*"(\w+)" -> "(\w+)" \[.*?\];$', dot.read_text(), re.M)
    skipped = re.findall(r'^\s*"(\w+)" -> "(\w+)" \[.*class=skip.*\];$', dot.read_text(), re.M)
    assert set(skipped) == skip
    assert set(drawn) - skip == main
    page = tmp_path / "projection.html"
    draw(archc, page, spec=spec)
    model = json.loads(_scripts(page.read_text(encoding="utf-8"))[0][1])
    flags = {(e["source"], e["target"]): e["skip"] for e in model["edges"]}
    assert flags == {edge: edge in skip for edge in main | skip}


def test_resnet50_projection_and_identity_blocks_skip_their_shortcuts(archc, tmp_path) -> None:
    """resnet50's first block of a stack projects its shortcut (written before the body), the
    others add their input: in both, the only skip edge into the add is the shortcut's."""
    out = tmp_path / "resnet50.dot"
    draw(archc, out, spec=SPECS / "resnet50.yaml")
    skipped = set(re.findall(r'^\s*"(\w+)" -> "(\w+)" \[.*class=skip.*\];$', out.read_text(), re.M))
    assert ("conv3_block1_0_bn", "conv3_block1_add") in skipped  # projection
    assert ("conv3_block1_3_bn", "conv3_block1_add") not in skipped
    assert ("conv3_block1_out", "conv3_block2_add") in skipped  # identity
    assert ("conv3_block2_3_bn", "conv3_block2_add") not in skipped
    blocks = [3, 4, 6, 3]  # resnet50's blocks per stack, conv2..conv5
    assert len(skipped) == sum(blocks)  # one shortcut per block, nothing else
