"""A sandboxed evaluator for `${...}` expressions in specs.

Expressions are parsed with `ast` and walked by a small interpreter over an allow-list of
node types and functions. Nothing is ever passed to eval/exec; attribute access, dunders,
lambdas and unknown calls are rejected; integer size, exponent, sequence length, the total
size of any value (items at every depth), the iterations of list comprehensions and the
expression size are bounded, and checked before a value is built, so that `10**10**10` and
`[[[0]*9999]*9999]*9999` fail at once. The total work of one evaluation is bounded too
(MAX_WORK steps: every node evaluated, every element a range, a comprehension, a function,
an operator or a size check makes or reads), so that small values computed many times
(`[max(range(10000)) for i in range(10000)]`) end in an error, not in minutes.

`true` and `false` are constants (as YAML writes them) wherever they appear: nothing can be
named so (parameters, block arguments and loop variables are refused by the compiler,
comprehension variables here), so an expression means the same in the sandbox and in the
Python that backends/pysrc.py translates it to.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from .diagnostics import did_you_mean, short_repr

MAX_EXPR_CHARS = 1000
MAX_AST_NODES = 200
MAX_INT_BITS = 64
MAX_SEQ_LEN = 10_000
MAX_TOTAL = 100_000  # items at every depth of one value, characters of its strings included
MAX_STEPS = 100_000  # iterations of all list comprehensions in one expression, nested ones too
MAX_WORK = 1_000_000  # nodes evaluated + elements made, read or measured, in one expression
MAX_ROUND_DIGITS = 400  # round(x, n): |n| beyond a float's 10**308 only costs time
CONSTANTS = {"true": True, "false": False}  # YAML's spelling; Python's are keywords
TOO_BIG = (
    f"result larger than {MAX_TOTAL} elements in all (nested lists and strings count each item)"
)


class ExprError(Exception):
    """A user error in an expression; the caller attaches the spec location."""

    def __init__(self, message: str, hint: str = "", name: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.name = name  # the unknown name, for "unknown name" errors


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of divisor, never below 90% of it (MobileNet)."""
    if divisor <= 0:
        raise ExprError("make_divisible: divisor must be positive")
    floor = divisor if min_value is None else min_value
    new = max(floor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _range(*args: int) -> list[int]:
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise ExprError("range() takes integers")
    r = range(*args)
    if len(r) > MAX_SEQ_LEN:
        raise ExprError(f"range() longer than {MAX_SEQ_LEN}")
    return list(r)


def _round(value: Any, *ndigits: Any) -> Any:
    if ndigits and isinstance(ndigits[0], int) and abs(ndigits[0]) > MAX_ROUND_DIGITS:
        raise ExprError(
            f"round(): ndigits {short_repr(ndigits[0])} is out of range "
            f"[-{MAX_ROUND_DIGITS}, {MAX_ROUND_DIGITS}]"
        )
    return round(value, *ndigits)


def _str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ExprError(f"str() takes a number or a string, got {type_name(value)}")
    return str(value)


def _sum(values: Any, start: Any = 0) -> Any:
    items = [*values, start] if isinstance(values, list | tuple) else None
    if items is None or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in items
    ):
        raise ExprError("sum() takes a list of numbers")
    return sum(values, start)


def _chr(code: Any) -> str:
    if not isinstance(code, int) or isinstance(code, bool):
        raise ExprError(f"chr() takes an integer, got {type_name(code)}")
    return chr(code)  # ValueError out of range: reported by _Call


def _ord(text: Any) -> int:
    if not isinstance(text, str) or len(text) != 1:
        raise ExprError(f"ord() takes one character, got {short_repr(text)}")
    return ord(text)


def _shape(name: Any) -> Any:
    """`shape('layer')` where no layers are (a parameter's default, a block argument's): the
    expander binds the real one per item (SHAPE_FUNCTION in the environment)."""
    raise ExprError(
        "shape('layer') reads an earlier layer's output shape: it is available in an item's "
        "values (attributes, name, when, a call's arguments, a repeat's count), not here"
    )


SHAPE_FUNCTION = "__shape__"  # the environment key of the per-item shape('layer') function

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "bool": bool,
    "ceil": math.ceil,
    "chr": _chr,
    "float": float,
    "floor": math.floor,
    "int": int,
    "len": len,
    "make_divisible": make_divisible,
    "max": max,
    "min": min,
    "ord": _ord,
    "range": _range,
    "round": _round,
    "shape": _shape,
    "str": _str,
    "sum": _sum,
}

_BINOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Subscript,
    ast.Slice,
    ast.List,
    ast.Tuple,
    ast.Call,
    ast.ListComp,
    ast.comprehension,
    ast.Store,
    *_BINOPS,
    *_CMPOPS,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.And,
    ast.Or,
)
_FORBIDDEN_WHY = {
    ast.Attribute: "attribute access is not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed (write a list: [... for ...])",
    ast.DictComp: "dict comprehensions are not allowed",
    ast.SetComp: "set comprehensions are not allowed",
    ast.NamedExpr: "assignment expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.Await: "await is not allowed",
}


def type_name(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list"}.get(
        type(v), type(v).__name__
    )


@lru_cache(maxsize=4096)
def parse(source: str) -> ast.Expression:
    """Parse and statically check one expression (the text between `${` and `}`)."""
    if len(source) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    if not source.strip():
        raise ExprError("empty expression '${}'", hint="write a value inside ${...}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(
            f"invalid expression '{source.strip()}': {exc.msg}",
            hint="expressions use Python syntax: arithmetic, comparisons, and/or/not, "
            "a if cond else b, indexing, lists and calls to allowed functions",
        ) from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_AST_NODES:
        raise ExprError(f"expression too complex (more than {MAX_AST_NODES} parts)")
    for node in nodes:
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise ExprError(f"name '{node.id}' is not allowed (dunder names are reserved)")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise ExprError(
                    f"call to '{what}' is not allowed",
                    hint="allowed functions: " + ", ".join(sorted(FUNCTIONS)),
                )
            if node.keywords:
                raise ExprError(f"keyword arguments are not allowed in '{node.func.id}(...)'")
        if isinstance(node, ast.comprehension):
            for target in ast.walk(node.target):
                if isinstance(target, ast.Name) and target.id in CONSTANTS:
                    raise ExprError(
                        f"'{target.id}' is a constant and cannot be a loop variable",
                        hint="name the loop variable something else",
                    )
                if not isinstance(target, ast.Name | ast.Tuple | ast.Store):
                    raise ExprError(
                        f"a comprehension assigns to plain names only, not "
                        f"'{ast.unparse(node.target)}'",
                        hint="write [f(x) for x in values] or [a + b for a, b in pairs]",
                    )
        if not isinstance(node, _ALLOWED):
            why = _FORBIDDEN_WHY.get(type(node), f"'{type(node).__name__}' is not allowed")
            raise ExprError(f"{why} in expression '{source.strip()}'")
    return tree


_UNBOUND = object()  # a comprehension's variable before its loop binds it
_FLAT = {int, float, bool, type(None)}  # element types that take no room of their own


class _Interpreter:
    def __init__(self, env: Mapping[str, Any]):
        self.env = env
        self.steps = 0  # list comprehension iterations so far
        self.work = 0  # nodes evaluated and elements made, read or measured so far
        # id -> (list, size) for the sequences the caller's environment holds: they live as
        # long as the evaluation, so their sizes are kept; intermediates' sizes are not (a
        # cache would keep every intermediate alive)
        self.kept = {id(v) for v in env.values() if isinstance(v, list | tuple)}
        self.sizes: dict[int, tuple[Any, int]] = {}

    def charge(self, n: int) -> None:
        self.work += n
        if self.work > MAX_WORK:
            raise ExprError(
                f"expression takes more than {MAX_WORK} steps (values computed, and elements "
                "made or read by ranges, comprehensions, functions and operators)",
                hint="compute less in one expression: smaller ranges, fewer nested loops",
            )

    def run(self, node: ast.AST) -> Any:
        self.charge(1)
        method = getattr(self, "_" + type(node).__name__)
        return self.check(method(node))

    def check(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > MAX_INT_BITS:
                raise ExprError(f"integer result too large (more than {MAX_INT_BITS} bits)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ExprError("result is not a finite number")
        elif isinstance(value, str | list | tuple):
            if len(value) > MAX_SEQ_LEN:
                raise ExprError(f"result longer than {MAX_SEQ_LEN} items")
            self.bound(self.size(value))
        return value

    def size(self, value: Any) -> int:
        """Items at every depth plus characters: the room a value takes (a number takes 1)."""
        if isinstance(value, str):
            return len(value)
        if not isinstance(value, list | tuple):
            return 1
        return self._measure(value, {})

    def _measure(self, value: list[Any] | tuple[Any, ...], seen: dict[int, int]) -> int:
        """`size` of a sequence; `seen` counts a list shared within it once (its items are
        alive while it is measured, so their ids cannot be reused meanwhile)."""
        hit = self.sizes.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        self.charge(len(value))
        n = len(value)
        if not set(map(type, value)) <= _FLAT:
            for v in value:
                if isinstance(v, str):
                    n += len(v)
                elif isinstance(v, list | tuple):
                    if id(v) not in seen:
                        seen[id(v)] = self._measure(v, seen)
                    n += seen[id(v)]
        if id(value) in self.kept:
            self.sizes[id(value)] = (value, n)
        return n

    @staticmethod
    def bound(size: int) -> None:
        if size > MAX_TOTAL:
            raise ExprError(TOO_BIG)

    def _Expression(self, node: ast.Expression) -> Any:
        return self.run(node.body)

    def _Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, int | float | str | bool) and node.value is not None:
            raise ExprError(f"constant {short_repr(node.value)} is not allowed")
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if node.id in CONSTANTS:  # never a name in scope (see the module's docstring)
            return CONSTANTS[node.id]
        if node.id in self.env:
            value = self.env[node.id]
            if value is _UNBOUND:
                raise ExprError(
                    f"'{node.id}' is read before its loop binds it",
                    hint="a comprehension's variable is known after its own 'for': "
                    "[a + b for a in xs for b in range(a)]",
                )
            return value
        if node.id in FUNCTIONS:
            raise ExprError(f"'{node.id}' is a function; call it as {node.id}(...)")
        names = [n for n in self.env if n != SHAPE_FUNCTION]
        hint = did_you_mean(node.id, names) or (
            "names in scope: " + ", ".join(sorted(names)) if names else "no names in scope"
        )
        raise ExprError(f"unknown name '{node.id}'", hint=hint, name=node.id)

    def _List(self, node: ast.List) -> list[Any]:
        items = [self.run(e) for e in node.elts]
        self.bound(self.size(tuple(items)))
        return items

    _Tuple = _List

    def _ListComp(self, node: ast.ListComp) -> list[Any]:
        """As in Python, every loop variable belongs to the whole comprehension (all but the
        first iterable, which is read outside it), unbound until its own loop binds it."""
        out: list[Any] = []
        self.charge(len(self.env))
        scope = dict(self.env)
        for gen in node.generators:
            scope |= {t.id: _UNBOUND for t in ast.walk(gen.target) if isinstance(t, ast.Name)}
        self._generate(node, 0, scope, out, [0])
        return out

    def _generate(
        self,
        node: ast.ListComp,
        level: int,
        scope: dict[str, Any],
        out: list[Any],
        total: list[int],
    ) -> None:
        """Run generator `level` of a comprehension in `scope`, appending results to `out`
        (`total` keeps its size as `size` counts it, so the bound costs nothing per item)."""
        outer = self.env
        if level == len(node.generators):
            self.env = scope
            try:
                value = self.run(node.elt)
            finally:
                self.env = outer
            out.append(value)
            if len(out) > MAX_SEQ_LEN:
                raise ExprError(f"result longer than {MAX_SEQ_LEN} items")
            total[0] += 1 + (self.size(value) if isinstance(value, str | list | tuple) else 0)
            self.bound(total[0])
            return
        gen = node.generators[level]
        self.env = scope if level else outer
        try:
            values = self.run(gen.iter)
        finally:
            self.env = outer
        if not isinstance(values, list | tuple | str):
            raise ExprError(
                f"cannot loop over {type_name(values)} in '{ast.unparse(gen).strip()}'",
                hint="loop over a list, a string or range(...)",
            )
        self.charge(len(scope))
        inner = dict(scope)  # the loop's variables, rebound for each item
        for value in values:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise ExprError(f"comprehension runs more than {MAX_STEPS} iterations")
            self._bind(gen.target, value, inner)
            self.env = inner
            try:
                keep = all(self.run(cond) for cond in gen.ifs)
            finally:
                self.env = outer
            if keep:
                self._generate(node, level + 1, inner, out, total)

    def _bind(self, target: ast.expr, value: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            if target.id in FUNCTIONS:
                raise ExprError(f"'{target.id}' is a function and cannot be a loop variable")
            scope[target.id] = value
            return
        names = target.elts  # type: ignore[attr-defined]  # parse() allows names and tuples
        if not isinstance(value, list | tuple | str) or len(value) != len(names):
            raise ExprError(
                f"cannot unpack {short_repr(value)} into {len(names)} names "
                f"in '{ast.unparse(target)}'"
            )
        for t, v in zip(names, value, strict=True):
            self._bind(t, v, scope)

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.run(node.operand)
        if isinstance(node.op, ast.Not):
            return not v
        if not isinstance(v, int | float):
            raise ExprError(f"unary minus/plus needs a number, got {type_name(v)}")
        return -v if isinstance(node.op, ast.USub) else +v

    def _BinOp(self, node: ast.BinOp) -> Any:
        sym, fn = _BINOPS[type(node.op)]
        a, b = self.run(node.left), self.run(node.right)
        if sym == "**":
            self._check_pow(a, b)
        if sym == "%" and isinstance(a, str):
            raise ExprError(
                f"cannot apply '%' to str and {type_name(b)} in '{ast.unparse(node)}'",
                hint="build names with templates instead: 'conv${i}'",
            )
        if sym == "*" and (isinstance(a, str | list) or isinstance(b, str | list)):
            seq, n = (a, b) if isinstance(a, str | list) else (b, a)
            if isinstance(n, int) and len(seq) * max(n, 0) > MAX_SEQ_LEN:
                raise ExprError(f"result longer than {MAX_SEQ_LEN} items")
            if isinstance(n, int):
                self.bound(self.size(seq) * max(n, 0))
        if sym == "+" and isinstance(a, str | list) and type(a) is type(b):
            self.bound(self.size(a) + self.size(b))
        try:
            return fn(a, b)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{ast.unparse(node)}'") from None
        except OverflowError:
            raise ExprError(f"numeric overflow in '{ast.unparse(node)}'") from None
        except TypeError:
            raise ExprError(
                f"cannot apply '{sym}' to {type_name(a)} and {type_name(b)} "
                f"in '{ast.unparse(node)}'"
            ) from None

    @staticmethod
    def _check_pow(a: Any, b: Any) -> None:
        numbers = isinstance(a, int | float) and isinstance(b, int | float)
        if numbers and a < 0 and not float(b).is_integer():
            raise ExprError(f"power {a!r} ** {b!r} is not a real number")
        if numbers and (
            abs(b) > 256 or (abs(a) > 1 and b > 0 and b * math.log2(abs(a)) > MAX_INT_BITS)
        ):
            raise ExprError(f"power {a!r} ** {b!r} is too large")

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for e in node.values:
            value = self.run(e)
            if is_and != bool(value):
                return value
        return value

    def read(self, *values: Any) -> None:
        """Charge the work of reading values (comparing them, a function going through them)."""
        for v in values:
            if isinstance(v, str | list | tuple):
                self.charge(self.size(v))

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.run(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.run(comp)
            self.read(left, right)
            try:
                ok = _CMPOPS[type(op)](left, right)
            except TypeError:
                raise ExprError(
                    f"cannot compare {type_name(left)} and {type_name(right)} "
                    f"in '{ast.unparse(node)}'"
                ) from None
            if not ok:
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def _Subscript(self, node: ast.Subscript) -> Any:
        seq = self.run(node.value)
        if not isinstance(seq, list | str | tuple):
            raise ExprError(f"cannot index {type_name(seq)} in '{ast.unparse(node)}'")
        if isinstance(node.slice, ast.Slice):
            parts = [
                None if p is None else self.run(p)
                for p in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            if not all(
                p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts
            ):
                raise ExprError(f"slice bounds must be integers in '{ast.unparse(node)}'")
            if parts[2] == 0:
                raise ExprError("slice step cannot be zero")
            return seq[slice(*parts)]
        index = self.run(node.slice)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ExprError(f"index must be an integer, got {type_name(index)}")
        try:
            return seq[index]
        except IndexError:
            raise ExprError(
                f"index {index} out of range for {type_name(seq)} of length {len(seq)} "
                f"in '{ast.unparse(node)}'"
            ) from None

    def _Slice(self, node: ast.Slice) -> Any:  # pragma: no cover - handled in _Subscript
        raise ExprError("slice outside of indexing")

    def _Call(self, node: ast.Call) -> Any:
        name = node.func.id  # type: ignore[attr-defined]  # checked in parse()
        args = [self.run(a) for a in node.args]
        fn = FUNCTIONS[name]
        if name == "shape":
            fn = self.env.get(SHAPE_FUNCTION, fn)
        self.read(*args)
        try:
            return fn(*args)
        except ExprError:
            raise
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
            raise ExprError(f"{name}(): {exc}") from None


def value_size(value: Any) -> int:
    """Items at every depth plus characters (a number counts 1), as MAX_TOTAL counts them."""
    return _Interpreter({}).size(value)


def evaluate(source: str, env: Mapping[str, Any]) -> Any:
    """Evaluate the text of one expression (without `${` `}`)."""
    tree = parse(source)
    try:
        return _Interpreter(env).run(tree)
    except RecursionError:
        raise ExprError("expression nested too deeply") from None
