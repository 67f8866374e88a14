"""Spec values and `${...}` expressions as Python source, for generated code.

Expressions are Python syntax already; each is parsed and checked by the compiler's sandbox
(`compiler.expr.parse`, the same allow-list that evaluates them) before it is rewritten, so
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

from compiler.expr import parse
from compiler.template import is_template, split_template

CONSTANT_NAMES = {"true": True, "false": False, "True": True, "False": False, "None": None}
MATH_FUNCTIONS = {"ceil", "floor"}

# A name in an expression -> the source that replaces it (None: the name is not in scope).
Resolver = Callable[[str], ast.expr | None]


class Unresolved(Exception):
    """An expression names something the generated code has no variable for."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def expr_names(text: str) -> set[str]:
    """The spec names an expression reads (not functions or constants)."""
    tree = parse(text)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and id(n) not in calls and n.id not in CONSTANT_NAMES
    }


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


class _Rewrite(ast.NodeTransformer):
    def __init__(self, resolve: Resolver):
        self.resolve = resolve

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in CONSTANT_NAMES:
            return ast.Constant(CONSTANT_NAMES[node.id])
        replacement = self.resolve(node.id)
        if replacement is None:
            raise Unresolved(node.id)
        return replacement

    def visit_Call(self, node: ast.Call) -> ast.expr:
        name = node.func.id  # type: ignore[attr-defined]  # parse() allows plain names only
        args = [self.visit(a) for a in node.args]
        if name in MATH_FUNCTIONS:
            return ast.Call(ast.Attribute(ast.Name("math"), name), args, [])
        if name == "range":
            return ast.Call(ast.Name("tuple"), [ast.Call(ast.Name("range"), args, [])], [])
        return ast.Call(ast.Name(name), args, [])

    def visit_List(self, node: ast.List) -> ast.expr:
        return ast.Tuple([self.visit(e) for e in node.elts])

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        # shape names may resolve to a source that is indexed differently (see ShapeRef)
        if isinstance(node.value, ast.Name):
            replacement = self.resolve(node.value.id)
            if isinstance(replacement, ShapeRef):
                return replacement.index(self.visit(node.slice))
        return ast.Subscript(self.visit(node.value), self.visit(node.slice))


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
        if isinstance(index, ast.Constant) and isinstance(index.value, int):
            k = index.value
            return ast.Subscript(base, ast.Constant(k + self.offset if k >= 0 else k))
        if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
            return ast.Subscript(base, index)
        return ast.Subscript(self.whole(), index)

    def whole(self) -> ast.expr:
        if not self.offset:
            return ast.Name(self.id)
        base = ast.Attribute(ast.Name(self.id), "shape")
        return ast.Subscript(base, ast.Slice(ast.Constant(self.offset), None, None))


class _Whole(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.expr:
        return node.whole() if isinstance(node, ShapeRef) else node


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
