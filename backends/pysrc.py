"""Spec values and `${...}` expressions as Python source, for generated code.

Expressions are Python syntax already; each is parsed and checked by the compiler's sandbox
(`archc.compiler.expr.parse`, the same allow-list that evaluates them) before it is rewritten, so
nothing outside that allow-list can reach generated code. The rewrite renames spec names to
the generated code's variables, maps the sandbox's functions to Python's (`ceil` ->
`math.ceil`), and turns lists into tuples (generated code uses tuples throughout, so equality
between computed and literal sequences means what it meant in the sandbox). Templates with
text around expressions ('bn${stage}a') become f-strings.
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable
from typing import Any

from archc.compiler.expr import CONSTANTS, parse
from archc.compiler.template import is_template, split_template

CONSTANT_NAMES = CONSTANTS  # `true`/`false`: constants everywhere, as in the sandbox
MATH_FUNCTIONS = {"ceil", "floor"}

# A name in an expression -> the source that replaces it (None: the name is not in scope).
Resolver = Callable[[str], ast.expr | None]


class Unresolved(Exception):
    """An expression names something the generated code has no variable for."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _bound(comp: ast.ListComp) -> set[str]:
    """The names a list comprehension's `for` targets bind."""
    return {n.id for g in comp.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}


class _Reads(ast.NodeVisitor):
    """Spec names read by an expression: not functions, constants or comprehension variables."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.bound: list[set[str]] = []

    def visit_Call(self, node: ast.Call) -> None:
        for a in node.args:
            self.visit(a)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self.visit(node.generators[0].iter)  # evaluated outside the comprehension's scope
        self.bound.append(_bound(node))
        for i, g in enumerate(node.generators):
            if i:
                self.visit(g.iter)
            for cond in g.ifs:
                self.visit(cond)
        self.visit(node.elt)
        self.bound.pop()

    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in CONSTANT_NAMES and not any(node.id in b for b in self.bound):
            self.names.add(node.id)


def expr_names(text: str) -> set[str]:
    """The spec names an expression reads (not functions, constants or loop variables)."""
    reads = _Reads()
    reads.visit(parse(text))
    return reads.names


def value_names(value: Any) -> set[str]:
    """The spec names a value (a constant, a template, or a list of them) reads."""
    if isinstance(value, list):
        return set().union(*(value_names(v) for v in value)) if value else set()
    if not is_template(value):
        return set()
    return set().union(*(expr_names(t) for is_expr, t in split_template(value) if is_expr))


def functions_used(value: Any) -> set[str]:
    """The sandbox functions a value calls (to import `math`, emit helpers)."""
    if isinstance(value, list):
        return set().union(*(functions_used(v) for v in value)) if value else set()
    if not is_template(value):
        return set()
    out: set[str] = set()
    for is_expr, text in split_template(value):
        if is_expr:
            out |= {
                n.func.id
                for n in ast.walk(parse(text))
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            }
    return out


SHAPE_OF = "shape:"  # resolver key of `shape('name')`: SHAPE_OF + name


def shape_calls(value: Any) -> list[str | None]:
    """The layer names a value's `shape('name')` calls read (None: an argument that is not a
    plain string, which generated code cannot resolve statically)."""
    if isinstance(value, list):
        return [n for v in value for n in shape_calls(v)]
    if not is_template(value):
        return []
    out: list[str | None] = []
    for is_expr, text in split_template(value):
        if is_expr:
            for n in ast.walk(parse(text)):
                if isinstance(n, ast.Call) and _is_call(n, "shape"):
                    arg = n.args[0] if len(n.args) == 1 else None
                    ok = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                    out.append(arg.value if ok else None)  # type: ignore[union-attr]
    return out


# names the rewrite itself writes: a loop variable must not hide them
_INTRODUCED = {"math", "tuple", "range"}


def _is_call(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


class _Rewrite(ast.NodeTransformer):
    def __init__(self, resolve: Resolver):
        self.resolve = resolve
        self.bound: dict[str, str] = {}  # comprehension variable -> its name in the source

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in CONSTANT_NAMES:  # never a variable (archc.compiler.expr's docstring)
            return ast.Constant(CONSTANT_NAMES[node.id])
        if node.id in self.bound:
            return ast.Name(self.bound[node.id], node.ctx)
        replacement = self.resolve(node.id)
        if replacement is None:
            raise Unresolved(node.id)
        return replacement

    def visit_ListComp(self, node: ast.ListComp) -> ast.expr:
        """`[f(x) for x in xs]` -> `tuple(f(x) for x in xs)` (sequences are tuples). A loop
        variable is renamed when a spec name it would hide resolves to the same identifier."""
        outer = self.bound  # never changed: an inner comprehension's names end with it
        self.bound = dict(outer)
        names = _bound(node)
        free = _Reads()
        free.visit(node)
        # what the comprehension's free names and shape('name') calls become in the source
        reads = [SHAPE_OF + n for n in _shapes_read(node)]
        reads += sorted(free.names - set(outer) - set(CONSTANT_NAMES))
        taken = _INTRODUCED | {
            n for name in reads if (r := self.resolve(name)) is not None for n in _names_in(r)
        }
        for name in sorted(names):
            new = name
            while (
                new in taken
                or new in outer.values()
                or (new != name and new in names)  # another loop variable's own name
                or new in [self.bound[n] for n in names if n < name]
            ):
                new += "_"
            self.bound[name] = new
        generators = []
        for i, g in enumerate(node.generators):
            # the first iterable is evaluated in the scope around the comprehension
            scope = self.bound
            if not i:
                self.bound = outer
            it = self.visit(g.iter)
            if _is_call(g.iter, "range"):  # a loop needs no tuple of its range
                it = ast.Call(ast.Name("range"), it.args[0].args, [])  # type: ignore[attr-defined]
            self.bound = scope
            target = self.visit(g.target)
            ifs = [self.visit(c) for c in g.ifs]
            generators.append(ast.comprehension(target, it, ifs, 0))
        elt = self.visit(node.elt)
        self.bound = outer
        return ast.Call(ast.Name("tuple"), [ast.ListComp(elt, generators)], [])

    def visit_Call(self, node: ast.Call) -> ast.expr:
        name = node.func.id  # type: ignore[attr-defined]  # parse() allows plain names only
        if name == "shape":  # an earlier layer's shape, where generated code keeps it
            return _shape_source(self.resolve, node).whole()
        args = [self.visit(a) for a in node.args]
        if name in MATH_FUNCTIONS:
            return ast.Call(ast.Attribute(ast.Name("math"), name), args, [])
        if name == "range":
            return ast.Call(ast.Name("tuple"), [ast.Call(ast.Name("range"), args, [])], [])
        return ast.Call(ast.Name(name), args, [])

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        """`xs + [3]` -> `(*xs, 3)`: sequences are tuples, and that is how Python (and ruff)
        writes a concatenation with a literal (in the sandbox both sides are then lists)."""
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Add) and (
            isinstance(node.left, ast.List) or isinstance(node.right, ast.List)
        ):

            def items(side: ast.expr, literal: bool) -> list[ast.expr]:
                return list(side.elts) if literal else [ast.Starred(side)]  # type: ignore[attr-defined]

            return ast.Tuple(
                items(left, isinstance(node.left, ast.List))
                + items(right, isinstance(node.right, ast.List))
            )
        return ast.BinOp(left, node.op, right)

    def visit_List(self, node: ast.List) -> ast.expr:
        return ast.Tuple([self.visit(e) for e in node.elts])

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        # shape names may resolve to a source that is indexed differently (see ShapeRef)
        if isinstance(node.value, ast.Name) and node.value.id not in self.bound:
            replacement = self.resolve(node.value.id)  # (a loop variable is not the shape)
            if isinstance(replacement, ShapeRef):
                return replacement.index(self.visit(node.slice))
        if _is_call(node.value, "shape"):
            return _shape_source(self.resolve, node.value).index(self.visit(node.slice))
        return ast.Subscript(self.visit(node.value), self.visit(node.slice))


def _shapes_read(node: ast.AST) -> list[str]:
    """The layer names of the `shape('name')` calls in an expression."""
    return [
        n.args[0].value
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and _is_call(n, "shape")
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and isinstance(n.args[0].value, str)
    ]


def _names_in(node: ast.expr) -> set[str]:
    """The variables a resolved name's source reads (a ShapeRef holds its source as text)."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ShapeRef):
            out |= {m.id for m in ast.walk(ast.parse(n.id, mode="eval")) if isinstance(m, ast.Name)}
        elif isinstance(n, ast.Name):
            out.add(n.id)
    return out


def _static_int(node: ast.expr) -> int | None:
    """The value of an index written with integer literals and unary signs only (`-(-1)`)."""
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        k = _static_int(node.operand)
        if k is None:
            return None
        return -k if isinstance(node.op, ast.USub) else k
    return None


def _shape_source(resolve: Resolver, call: Any) -> ShapeRef:
    """What `shape('name')` is in generated code (the resolver says, under SHAPE_OF)."""
    name = call.args[0].value
    found = resolve(SHAPE_OF + name)
    if found is None:
        raise Unresolved(f"shape({name!r})")
    return found if isinstance(found, ShapeRef) else ShapeRef(ast.unparse(found), 0)


class ShapeRef(ast.Name):
    """A shape in generated code that is stored with extra leading axes (Keras' batch axis).

    `offset` leading axes are skipped: `in_shape[1]` of a Keras tensor is `x.shape[2]`.
    """

    def __init__(self, source: str, offset: int):
        super().__init__(source)
        self.offset = offset

    def index(self, index: ast.expr) -> ast.expr:
        base = ast.Attribute(ast.Name(self.id), "shape")
        if not self.offset:
            return ast.Subscript(ast.Name(self.id), index)
        k = _static_int(index)  # a known axis: counted past the extra ones, or from the end
        if k is not None:
            return ast.Subscript(base, ast.Constant(k + self.offset if k >= 0 else k))
        return ast.Subscript(self.whole(), index)  # `-i` may be any axis: index the shape

    def whole(self) -> ast.expr:
        if not self.offset:
            return ast.Name(self.id)
        base = ast.Attribute(ast.Name(self.id), "shape")
        return ast.Subscript(base, ast.Slice(ast.Constant(self.offset), None, None))


class _Whole(ast.NodeTransformer):
    """A shape read whole (`len(in_shape)`): NodeTransformer dispatches on the class's name,
    and ast.unparse would print a ShapeRef left in the tree as nothing at all."""

    def visit_ShapeRef(self, node: ShapeRef) -> ast.expr:
        return node.whole()


def expr_ast(text: str, resolve: Resolver) -> ast.expr:
    """One sandbox expression (the text inside `${}`) as a Python AST."""
    body = copy.deepcopy(parse(text).body)  # parse() is cached; the rewrite edits in place
    out = _Rewrite(resolve).visit(body)
    return _Whole().visit(out)


def value_ast(value: Any, resolve: Resolver) -> ast.expr:
    """A spec value as a Python AST: constants, lists (as tuples), templates."""
    if isinstance(value, list):
        return ast.Tuple([value_ast(v, resolve) for v in value])
    if not is_template(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"no literal for the non-finite float {value!r}")
        return ast.Constant(value)
    parts = split_template(value)
    if len(parts) == 1 and parts[0][0]:
        return expr_ast(parts[0][1], resolve)
    pieces: list[ast.expr] = []
    for is_expr, text in parts:
        if is_expr:
            pieces.append(ast.FormattedValue(expr_ast(text, resolve), -1, None))
        else:
            pieces.append(ast.Constant(text))
    return ast.JoinedStr(pieces)


def source(node: ast.expr) -> str:
    return ast.unparse(ast.fix_missing_locations(node))


def is_constant(value: Any) -> bool:
    """True for a value with no expression in it (known while generating code)."""
    if isinstance(value, list):
        return all(is_constant(v) for v in value)
    return not is_template(value)


def constant(value: Any) -> Any:
    """A constant spec value as generated code holds it (lists as tuples)."""
    return tuple(constant(v) for v in value) if isinstance(value, list) else value


def literal(value: Any) -> str:
    """Python source for a constant (spec strings only ever reach code through repr())."""
    if isinstance(value, list | tuple):
        items = [literal(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"no literal for the non-finite float {value!r}")
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    raise TypeError(f"no literal for {type(value).__name__}")
