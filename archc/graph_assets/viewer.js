// archc graph: draws the model of compiler/graph.py (the JSON in #model) as SVG, laid out by
// dagre; groups (block calls, repeats, iterations) collapse into one box and expand again,
// with a fresh layout each time. The state is kept in the URL's fragment:
// #collapsed=all, #collapsed=b1,r2 or #expanded=all.
"use strict";
(function () {
  const M = JSON.parse(document.getElementById("model").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("canvas");
  const groups = new Map(M.groups.map((g) => [g.id, g]));
  const nodes = new Map(M.nodes.map((n) => [n.name, n]));
  const FONT = "Helvetica, Arial, sans-serif";
  const ctx = document.createElement("canvas").getContext("2d");
  const fmt = (n) => n.toLocaleString("en-US");

  function width(text, size, bold) {
    ctx.font = (bold ? "bold " : "") + size + "px " + FONT;
    return ctx.measureText(text).width;
  }

  function depth(id) {
    let d = 0;
    for (let g = groups.get(id); g && g.parent; g = groups.get(g.parent)) d++;
    return d;
  }

  // The URL's fragment, decoded; one that is not valid percent-encoding (#%E0%A4%A, where
  // decodeURIComponent throws) counts as none, so that the page draws anyway.
  function fragment() {
    try {
      return decodeURIComponent(location.hash.slice(1));
    } catch (e) {
      return "";
    }
  }

  function initial() {
    const hash = fragment();
    if (hash.startsWith("collapsed=")) {
      const ids = hash.slice("collapsed=".length);
      return new Set(ids === "all" ? groups.keys() : ids.split(",").filter((i) => groups.has(i)));
    }
    if (hash === "expanded=all" || M.nodes.length <= 300) return new Set();
    // a large model opens with its groups below the top level collapsed
    return new Set([...groups.keys()].filter((id) => depth(id) >= 1));
  }
  let collapsed = initial();

  // The outermost collapsed group holding a node or group, or null when it is shown itself.
  function hiddenIn(groupId) {
    let shown = null;
    for (let g = groupId; g; g = groups.get(g).parent) if (collapsed.has(g)) shown = g;
    return shown;
  }
  const repOfNode = (name) => hiddenIn(nodes.get(name).group) || name;

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function nodeLines(n) {
    const op = n.detail ? n.op + " " + n.detail : n.op;
    let params = fmt(n.params) + " params";
    if (n.nonTrainable) params += " (" + fmt(n.nonTrainable) + " non-trainable)";
    return [[n.name + "  " + op, 11, true, n.name.length], [params, 10, false]];
  }
  function groupLines(g) {
    const sub = g.subtitle ? g.subtitle + " \u00b7 " : "";
    return [["\u25b8 " + g.title, 11, true], [sub + g.layers + " layers, " + fmt(g.params) + " params", 10, false]];
  }
  const boxSize = (lines) => ({
    width: Math.max(...lines.map(([t, s, b]) => width(t, s, b))) + 18,
    height: lines.length * 14 + 10,
  });

  function layout() {
    const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
    g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 64, edgesep: 8, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const grp of M.groups) {
      if (grp.parent && hiddenIn(grp.parent)) continue;
      const lines = collapsed.has(grp.id) ? groupLines(grp) : null;
      g.setNode(grp.id, lines ? { kind: "collapsed", lines, ...boxSize(lines) } : { kind: "cluster" });
      if (grp.parent) g.setParent(grp.id, grp.parent);
    }
    for (const n of M.nodes) {
      if (hiddenIn(n.group)) continue;
      const lines = nodeLines(n);
      g.setNode(n.name, { kind: "node", lines, ...boxSize(lines) });
      if (n.group) g.setParent(n.name, n.group);
    }
    const seen = new Set();
    const edge = (a, b, label, skip) => {
      if (a === b || seen.has(a + "\u0000" + b)) return;
      seen.add(a + "\u0000" + b);
      g.setEdge(a, b, {
        label, skip, width: width(label, 9, false) + 6, height: 12, labelpos: "c",
        weight: skip ? 1 : 8,
      });
    };
    for (const e of M.edges) edge(repOfNode(e.source), repOfNode(e.target), e.shape, e.skip);
    for (const o of M.outputs) {
      const marker = "\u0000output:" + o.name;
      g.setNode(marker, { kind: "output", lines: [["output", 10, false]], width: 50, height: 20 });
      edge(repOfNode(o.name), marker, o.shape, false);
    }
    dagre.layout(g);
    return g;
  }

  function path(points) {
    let d = "M" + points[0].x + "," + points[0].y;
    for (let i = 1; i < points.length - 1; i++) {
      const p = points[i], q = points[i + 1];
      const mx = i === points.length - 2 ? q.x : (p.x + q.x) / 2;
      const my = i === points.length - 2 ? q.y : (p.y + q.y) / 2;
      d += " Q" + p.x + "," + p.y + " " + mx + "," + my;
    }
    if (points.length === 2) d += " L" + points[1].x + "," + points[1].y;
    return d;
  }

  // Lines of a box; a line with a 4th entry n is bold for its first n characters only.
  function text(parent, lines, x, top, anchor) {
    lines.forEach(([t, size, bold, n], i) => {
      const line = el("text", {
        x, y: top + 14 * i + 11, "font-size": size, "text-anchor": anchor, "font-family": FONT,
        fill: i === 0 ? "#0f172a" : "#475569",
      }, parent);
      if (n === undefined) {
        line.setAttribute("font-weight", bold ? "bold" : "normal");
        line.textContent = t;
      } else {
        el("tspan", { "font-weight": "bold" }, line, t.slice(0, n));
        el("tspan", { "font-size": size - 1 }, line, t.slice(n));
      }
    });
  }

  function toggle(id) {
    if (collapsed.has(id)) collapsed.delete(id);
    else collapsed.add(id);
    const all = collapsed.size === groups.size && groups.size > 0;
    history.replaceState(null, "", "#" + (all ? "collapsed=all"
      : collapsed.size ? "collapsed=" + [...collapsed].join(",") : "expanded=all"));
    draw();
  }

  function draw() {
    const g = layout();
    svg.textContent = "";
    const info = g.graph();
    svg.setAttribute("width", Math.ceil(info.width));
    svg.setAttribute("height", Math.ceil(info.height));
    const defs = el("defs", {}, svg);
    for (const [id, colour] of [["arrow", "#64748b"], ["arrow-skip", M.skipColour]]) {
      const m = el("marker", {
        id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
        orient: "auto-start-reverse",
      }, defs);
      el("path", { d: "M0,0 L10,5 L0,10 z", fill: colour }, m);
    }
    // clusters, outermost first
    const clusters = g.nodes().filter((v) => g.node(v).kind === "cluster");
    clusters.sort((a, b) => depth(a) - depth(b));
    for (const id of clusters) {
      const c = g.node(id), grp = groups.get(id);
      const box = el("g", { class: "cluster " + grp.kind, "data-group": id }, svg);
      el("rect", {
        x: c.x - c.width / 2, y: c.y - c.height / 2, width: c.width, height: c.height, rx: 6,
        fill: grp.kind === "block" ? "#f8fafc" : "none",
        stroke: grp.kind === "iteration" ? "#cbd5e1" : grp.kind === "block" ? "#94a3b8" : "#475569",
        "stroke-dasharray": grp.kind === "repeat" ? "5,3" : "none",
      }, box);
      const label = el("text", {
        class: "cluster-label", x: c.x - c.width / 2 + 6, y: c.y - c.height / 2 + 13,
        "font-size": 11, "font-family": FONT, fill: "#0f172a",
      }, box);
      el("tspan", { "font-weight": "bold" }, label, "\u25be " + grp.title);
      el("tspan", { "font-size": 9, fill: "#475569", x: c.x - c.width / 2 + 6, dy: 12 }, label,
        (grp.subtitle ? grp.subtitle + " \u00b7 " : "") + grp.layers + " layers, " +
        fmt(grp.params) + " params");
      el("title", {}, label, "collapse " + grp.title);
      label.addEventListener("click", () => toggle(id));
    }
    for (const e of g.edges()) {
      const d = g.edge(e);
      const cls = "edge" + (d.skip ? " skip" : "");
      const grp = el("g", { class: cls, "data-source": e.v, "data-target": e.w }, svg);
      el("path", {
        d: path(d.points), fill: "none", stroke: d.skip ? M.skipColour : "#64748b",
        "stroke-width": d.skip ? 1.6 : 1, "marker-end": d.skip ? "url(#arrow-skip)" : "url(#arrow)",
      }, grp);
      el("text", {
        class: "edge-label", x: d.x, y: d.y + 3, "font-size": 9, "text-anchor": "middle",
        "font-family": FONT, fill: "#334155", stroke: "#ffffff", "stroke-width": 3,
        "paint-order": "stroke",
      }, grp, d.label);
    }
    for (const v of g.nodes()) {
      const n = g.node(v);
      if (n.kind === "cluster") continue;
      const x = n.x - n.width / 2, y = n.y - n.height / 2;
      let grp;
      if (n.kind === "node") {
        const data = nodes.get(v);
        grp = el("g", { class: "node op-" + data.op, "data-name": v }, svg);
        el("rect", { x, y, width: n.width, height: n.height, rx: 5, fill: data.fill, stroke: "#64748b" }, grp);
        el("title", {}, grp, data.name + " \u2014 " + data.where);
      } else if (n.kind === "collapsed") {
        const data = groups.get(v);
        grp = el("g", { class: "group-node " + data.kind, "data-group": v }, svg);
        el("rect", {
          x, y, width: n.width, height: n.height, rx: 6, fill: "#e2e8f0", stroke: "#475569",
          "stroke-dasharray": "5,3",
        }, grp);
        el("title", {}, grp, "expand " + data.title);
        grp.addEventListener("click", () => toggle(v));
      } else {
        grp = el("g", { class: "output" }, svg);
      }
      text(grp, n.lines, n.x, y + 4, "middle");
    }
    // labels may reach past the layout's width: size the drawing to what was drawn
    const bb = svg.getBBox();
    svg.setAttribute("width", Math.ceil(Math.max(info.width, bb.x + bb.width + 16)));
    svg.setAttribute("height", Math.ceil(Math.max(info.height, bb.y + bb.height + 16)));
    // where each drawn box is on the page (for tests and tools that read the DOM)
    for (const box of svg.querySelectorAll(".node, .group-node")) {
      const r = box.querySelector("rect").getBoundingClientRect();
      box.setAttribute("data-box", [r.left + scrollX, r.top + scrollY, r.width, r.height]
        .map((v) => Math.round(v)).join(","));
    }
    document.documentElement.setAttribute("data-drawn", String(g.nodes().length));
  }

  document.getElementById("expand-all").addEventListener("click", () => {
    collapsed = new Set();
    history.replaceState(null, "", "#expanded=all");
    draw();
  });
  document.getElementById("collapse-all").addEventListener("click", () => {
    collapsed = new Set(groups.keys());
    history.replaceState(null, "", "#collapsed=all");
    draw();
  });
  draw();
})();
