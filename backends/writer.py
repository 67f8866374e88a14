"""Writing generated Python: indented lines, spec values as source, and `ruff format`.

Renderers emit plain, unwrapped code; `formatted` lays it out with ruff (the formatter the
repository itself uses), so no renderer decides where a line breaks.
"""

from __future__ import annotations

import ast
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

from archc.compiler.api import Compiled
from archc.compiler.names import SHAPE_NAMES
from archc.compiler.schema import ParamDecl
from archc.compiler.template import is_template

from .pysrc import SHAPE_OF, ShapeRef, literal, source, value_ast
from .structure import Block, Ref, Step, Structure

LINE_LENGTH = 100


class Lines:
    def __init__(self, indent: int = 0):
        self.lines: list[str] = []
        self.level = indent

    def __call__(self, text: str = "") -> None:
        self.lines.append(("    " * self.level + text) if text else "")

    @contextmanager
    def indented(self, head: str) -> Iterator[None]:
        self(head)
        self.level += 1
        start = len(self.lines)
        yield
        if len(self.lines) == start:
            self("pass")
        self.level -= 1

    def doc(self, text: str) -> None:
        """A docstring (one line, or several with the closing quotes on their own line)."""
        body = text.strip().replace("\\", "\\\\").replace('"', '\\"')
        width = LINE_LENGTH - 4 * self.level - 8
        rows = [
            row
            for para in body.splitlines()
            for row in (textwrap.wrap(para, width, break_on_hyphens=False) or [""])
        ] or [""]
        if len(rows) == 1:
            self(f'"""{rows[0]}"""')
            return
        self(f'"""{rows[0]}')
        for row in rows[1:]:
            self(row)
        self('"""')

    def text(self) -> str:
        return "\n".join(self.lines)


class Values:
    """Spec values as source in one place of the generated code: spec names are renamed to
    their Python variables; `in_shape`/`prev_shape` are what `shapes` says they are there."""

    def __init__(
        self,
        structure: Structure,
        shapes: Callable[[str], ast.expr],
        ref_shape: Callable[[Ref], ast.expr] | None = None,
    ):
        self.structure = structure
        self.shapes = shapes
        self.ref_shape = ref_shape  # `shape('name')`: the shape of what a reference names
        self.step: Step | None = None  # the step whose values are rendered

    def resolve(self, name: str) -> ast.expr | None:
        if name in SHAPE_NAMES:
            return self.shapes(name)
        if name.startswith(SHAPE_OF):
            ref = self.step.shapes.get(name[len(SHAPE_OF) :]) if self.step else None
            return self.ref_shape(ref) if ref is not None and self.ref_shape else None
        if name in self.structure.names:
            return ast.Name(self.structure.names[name])
        return None

    def src(self, value: Any) -> str:
        return source(value_ast(value, self.resolve))


def keras_shapes(input_var: Callable[[], str], prev_var: Callable[[], str]) -> Any:
    """Shapes of Keras tensors: `x.shape` with the batch axis skipped."""

    def shapes(name: str) -> ast.expr:
        return ShapeRef(input_var() if name == "in_shape" else prev_var(), 1)

    return shapes


PY_TYPES = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "list[int]": "tuple[int, ...]",
    "list[float]": "tuple[float, ...]",
    "list[str]": "tuple[str, ...]",
}


def py_type(decl: ParamDecl) -> str:
    """A spec parameter's annotation: `int | None` where it may be null (`default: null`)."""
    return PY_TYPES[decl.type] + (" | None" if decl.nullable else "")


def coerce_constant(value: Any, decl: ParamDecl) -> Any:
    """A constant as the compiler coerces it (an int given where a float is declared)."""
    if decl.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if decl.type == "list[float]" and isinstance(value, list):
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


@cache
def _ruff() -> str:
    from ruff.__main__ import find_ruff_bin

    return str(find_ruff_bin())


_LAY_OUT = ContextVar("lay_out", default=True)


@contextmanager
def unformatted() -> Iterator[None]:
    """Within it, `formatted` returns the text as emitted: for `archc check`, which needs
    only what a backend refuses, not the source's layout."""
    token = _LAY_OUT.set(False)
    try:
        yield
    finally:
        _LAY_OUT.reset(token)


_SOURCE = ContextVar("source", default=True)


@contextmanager
def refusals_only() -> Iterator[None]:
    """Within it, a renderer stops once it has walked the spec (every refusal is raised
    there) and returns "": for `archc check`, which needs what a backend refuses, not the
    file (no helper's source is gathered, no template rendered, nothing laid out)."""
    token = _SOURCE.set(False)
    try:
        yield
    finally:
        _SOURCE.reset(token)


def source_wanted() -> bool:
    """False within `refusals_only()`: the renderer returns before its template."""
    return _SOURCE.get()


def formatted(text: str) -> str:
    """`ruff format` of generated source (isolated from any project configuration)."""
    if not _LAY_OUT.get():
        return text
    proc = subprocess.run(
        [
            _ruff(),
            "format",
            "--isolated",
            f"--line-length={LINE_LENGTH}",
            "--target-version=py311",
            "--stdin-filename=generated.py",
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"ruff could not format generated code: {proc.stderr.strip()}")
    return proc.stdout


def loop_bounds(count: str, start: int) -> str:
    """The arguments of `range` for `count` iterations from `start`."""
    if start == 0:
        return count
    end = ast.BinOp(ast.parse(count, mode="eval").body, ast.Add(), ast.Constant(start))
    return f"{start}, {ast.unparse(end)}"


_ASSIGN = re.compile(r"^(\s*)(\w+) = ")


def prune_dead_stores(lines: list[str], names: re.Pattern[str]) -> list[str]:
    """Drop assignments to matching local names that nothing after them reads (the shapes a
    constructor tracks but does not need), outside loops; then `if` blocks left empty."""
    lines = list(lines)
    changed = True
    while changed:
        changed = False
        for i in range(len(lines) - 1, -1, -1):
            m = _ASSIGN.match(lines[i])
            if not m or not names.fullmatch(m.group(2)) or _in_loop(lines, i):
                continue
            var = re.compile(rf"\b{m.group(2)}\b")
            if not any(var.search(line) for line in lines[i + 1 :]):
                del lines[i]
                changed = True
        for i in range(len(lines) - 1, -1, -1):
            head = lines[i]
            if head.lstrip().startswith("if ") and head.endswith(":"):
                indent = len(head) - len(head.lstrip())
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                if len(nxt) - len(nxt.lstrip()) <= indent:
                    del lines[i]
                    changed = True
    return lines


def _in_loop(lines: list[str], i: int) -> bool:
    indent = len(lines[i]) - len(lines[i].lstrip())
    for line in reversed(lines[:i]):
        level = len(line) - len(line.lstrip())
        if line.strip() and level < indent:
            if line.lstrip().startswith(("for ", "while ")):
                return True
            indent = level
    return False


def param_signature(s: Structure) -> tuple[list[str], list[str]]:
    """`build_model`'s (or the model's) keyword arguments: each spec parameter with the
    compiled value as its default, or None where the spec's default is an expression of other
    parameters (computed in the body); and those computed parameters."""
    compiled = s.compiled
    spec = compiled.loaded.spec
    given = set(compiled.overrides)
    if compiled.variant is not None:
        given |= set(spec.variants[compiled.variant].params)
    args, computed = [], []
    for p, decl in spec.params.items():
        annotation = py_type(decl)
        if p not in given and is_template(decl.default):
            args.append(f"{s.name(p)}: {annotation} | None = None")
            computed.append(p)
        else:
            args.append(f"{s.name(p)}: {annotation} = {literal(compiled.params[p])}")
    return args, computed


def block_signature(s: Structure, block: Block) -> tuple[list[str], list[str]]:
    """A block's keyword-only arguments (its own, then the spec parameters it reads) and
    those whose default is an expression (computed in the body)."""
    args, computed = [], []
    for key, decl in block.args.items():
        annotation = PY_TYPES[decl.type]
        if decl.default is None:
            args.append(f"{s.name(key)}: {annotation}")
        elif is_template(decl.default):
            args.append(f"{s.name(key)}: {annotation} | None = None")
            computed.append(key)
        else:
            default = literal(coerce_constant(decl.default, decl))
            args.append(f"{s.name(key)}: {annotation} = {default}")
    params = s.compiled.loaded.spec.params
    args += [f"{s.name(p)}: {py_type(params[p])}" for p in block.params]
    return args, computed


def computed_defaults(out: Lines, values: Values, decls: dict[str, ParamDecl], keys: list[str]):
    """`if name is None: name = <default>` for arguments whose default is an expression."""
    for key in keys:
        name = values.structure.name(key)
        with out.indented(f"if {name} is None:"):
            out(f"{name} = {values.src(decls[key].default)}")


def variants_context(compiled: Compiled) -> dict[str, Any]:
    """Each variant's parameter values and expected counts, as generated files record them."""
    from archc.compiler.params import resolve

    spec = compiled.loaded.spec
    params, counts = {}, {}
    for name, variant in spec.variants.items():
        values = resolve(compiled.loaded, variant=name)
        params[name] = {k: values[k] for k in variant.params}
        counts[name] = variant.expect.model_dump(exclude_none=True) if variant.expect else {}
    return {"variants": bool(params), "variants_params": params, "variants_counts": counts}
