"""Property: a `${...}` expression means in generated Python what it means in the sandbox.

Random expressions (typed, so that most are valid) over names that Python reads as something
else: spec parameters called `x`, `none`, `print`, `len`, `max`, `list`, `tuple`, `math`,
`range`, `stem`; the constants `true`/`false`; the shapes `in_shape`, `prev_shape` and
`shape('stem')`; comprehension variables that reuse those names or the names generated code
gives them (`len_`, `x_`, `stem_shape`); nested unary signs, conditionals, comprehensions,
indexing and slicing. Each is evaluated by the sandbox (`archc.compiler.expr.evaluate`) and, through
`archc.backends.pysrc`, by Python with the generated code's variables bound, once as Keras code
sees shapes (tensors whose shape has a batch axis) and once as PyTorch code does (tuples).
The two values must be equal and of the same type, lists being tuples in generated code.
Where the sandbox refuses an expression (a division by zero, an index out of range) the
spec would not compile, so the example says nothing.
"""

from __future__ import annotations

import ast
import builtins
import math
import re
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.backends import py_helpers
from archc.backends.pysrc import SHAPE_OF, ShapeRef, expr_ast, source
from archc.backends.structure import identifier
from archc.compiler import expr as sandbox
from archc.compiler.expr import SHAPE_FUNCTION, ExprError, evaluate

# spec parameters: name -> (kind, value)
PARAMS: dict[str, tuple[str, Any]] = {
    "x": ("int", 3),
    "none": ("int", -2),
    "print": ("int", 5),
    "len": ("int", 2),
    "max": ("int", 7),
    "math": ("int", 4),
    "tuple": ("int", 1),
    "range": ("int", 6),
    "stem": ("int", 8),
    "list": ("seq", [2, 0, 5]),
    "widths": ("seq", [16, 24, 40, 80]),
    "flag": ("bool", True),
    "act": ("str", "relu"),
}
IN_SHAPE, PREV_SHAPE, STEM_SHAPE = [6, 5, 3], [3, 2, 4], [2, 2, 8]
# comprehension variables: spec names, shape names, and the names generated code uses
# (the names of the shape variables thrice: only a loop whose body reads the shape shows them)
LOOP_NAMES = ["i", "none", "print", "tuple", "math", "len_", "x_", "print_", "stem_", "range_"]
LOOP_NAMES += ["x", "stem", "stem_shape", "in_shape", "prev_shape", "shape", "inputs"] * 3

KINDS = ("int", "bool", "seq", "str", "seqs")
Scope = dict[str, str]  # name -> kind


def _names(scope: Scope, kind: str) -> list[str]:
    return sorted(n for n, k in scope.items() if k == kind)


# the forms of each kind: `<kind>` is a subexpression of that kind, drawn only when the form
# is chosen; `<comp>` a comprehension giving items of the kind's item type
FORMS: dict[str, list[str]] = {
    "int": [
        "-<int>",
        "-(<int>)",
        "+<int>",
        "-(-<int>)",
        "- -<int>",
        "<int> + <int>",
        "<int> - -<int>",
        "-<int> * <int>",
        "(<int>) // (<int>)",
        "<int> % (<int>)",
        "abs(<int>)",
        "max(<int>, <int>)",
        "min(<seq> + [<int>])",
        "len(<seq>)",
        "sum(<seq>)",
        "<seq>[<int>]",
        "<seq>[-<int>]",
        "in_shape[<int>]",
        "in_shape[-(<int>)]",
        "prev_shape[-<int>]",
        "shape('stem')[<int>]",
        "(<int> if <bool> else <int>)",
        "<int> if <bool> else -<int>",
        "int(<int> / 2)",
        "round(<int> * 0.5)",
        "ceil(<int> / 3)",
        "floor(-<int> / 3)",
        "make_divisible(<int> * 8)",
        "len(<str>)",
    ],
    "bool": [
        "<int> < <int>",
        "<int> == -<int>",
        "<seq> == <seq>",
        "<seq> < <seq>",
        "<int> in <seq>",
        "not <bool>",
        "<bool> and <bool>",
        "<bool> or not <bool>",
        "bool(<int>)",
        "<str> == 'relu'",
    ],
    "seq": [
        "[<int>, <int>]",
        "(<int>, -<int>)",
        "<seq> + <seq>",
        "<seq> + [<int>]",
        "[<int>] + <seq>",
        "<seq> * 2",
        "<seq>[<int>:<int>]",
        "<seq>[::-1]",
        "range(<int>)",
        "<seqs>[<int>]",
        "(<seq> if <bool> else <seq>)",
        "<comp>",
        "<comp>",
    ],
    "str": [
        "<str> + <str>",
        "str(<int>)",
        "('relu' if <bool> else 'linear')",
        "<str>[<int>]",
    ],
    "seqs": ["[<seq>, <seq>]", "<seqs> + [<seq>]", "<comp>"],
}
LEAVES: dict[str, list[str]] = {
    "int": ["0", "1", "2", "5", "12", "true", "false"],
    "bool": ["true", "false"],
    "seq": ["in_shape", "prev_shape", "shape('stem')", "[1, 2]", "[]", "range(3)"],
    "str": ["'ab'", "'relu'"],
    "seqs": ["[[1, 2], [3]]", "[in_shape, prev_shape]"],
}
ITEM = {"seq": "int", "seqs": "seq"}
_HOLE = re.compile(r"<(\w+)>")


@st.composite
def expr(draw: st.DrawFn, kind: str, depth: int, scope: Scope) -> str:
    """Source of a random expression of `kind` (int, bool, seq of ints, str, seq of seqs)."""
    names = _names(scope, kind)
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(LEAVES[kind] + names * 2))
    form = draw(st.sampled_from(FORMS[kind]))

    def fill(hole: re.Match[str]) -> str:
        if hole[1] == "comp":
            return draw(comprehension(ITEM[kind], depth, scope))
        return draw(expr(hole[1], depth - 1, scope))

    return _HOLE.sub(fill, form)


@st.composite
def comprehension(draw: st.DrawFn, elt_kind: str, depth: int, scope: Scope) -> str:
    """`[elt for v in xs if cond]`, `[elt for v in xs for w in ys]`, loop variables named like
    parameters, shapes and the generated code's own variables."""
    source_kind = draw(st.sampled_from(["seq", "seqs"]))
    var_kind = "int" if source_kind == "seq" else "seq"
    var = draw(st.sampled_from(LOOP_NAMES))
    iterable = draw(expr(source_kind, depth - 1, scope))  # read outside the loop's scope
    inner = {**scope, var: var_kind}
    loops = f"for {var} in {iterable}"
    if draw(st.booleans()):
        var2 = draw(st.sampled_from(LOOP_NAMES))
        loops += f" for {var2} in {draw(expr('seq', depth - 2, inner))}"
        inner = {**inner, var2: "int"}
    if draw(st.booleans()):
        loops += f" if {draw(expr('bool', depth - 2, inner))}"
    return f"[{draw(expr(elt_kind, depth - 1, inner))} {loops}]"


TOP_SCOPE: Scope = {name: kind for name, (kind, _) in PARAMS.items()}
EXPRESSIONS = st.sampled_from(KINDS).flatmap(lambda kind: expr(kind, 4, TOP_SCOPE))


class Tensor:
    """A Keras tensor as generated code reads its shape: with the batch axis first."""

    def __init__(self, shape: list[int]):
        self.shape = (None, *shape)


def _python_names() -> dict[str, str]:
    """Spec parameter -> its variable in generated code (structure.identifier: '_' added to
    names Python or the generated code already uses); the tensors' variables are taken."""
    taken = {"inputs", "x", "stem", "stem_shape", "in_shape", "shape"}
    out = {}
    for name in PARAMS:
        out[name] = identifier(name, taken, "v")
        taken.add(out[name])
    return out


PY_NAMES = _python_names()


def _resolver(framework: str) -> Any:
    def resolve(name: str) -> ast.expr | None:
        if name in PY_NAMES:
            return ast.Name(PY_NAMES[name])
        if framework == "keras":  # shapes of tensors, batch axis skipped
            shapes = {"in_shape": "inputs", "prev_shape": "x", SHAPE_OF + "stem": "stem"}
            return ShapeRef(shapes[name], 1) if name in shapes else None
        shapes = {"in_shape": "in_shape", "prev_shape": "shape"}  # PyTorch: tracked tuples
        if name == SHAPE_OF + "stem":
            return ShapeRef("stem_shape", 0)
        return ast.Name(shapes[name]) if name in shapes else None

    return resolve


def _globals(framework: str) -> dict[str, Any]:
    values = {PY_NAMES[n]: _tuples(v) for n, (_, v) in PARAMS.items()}
    if framework == "keras":
        tensors = {"inputs": IN_SHAPE, "x": PREV_SHAPE, "stem": STEM_SHAPE}
        values |= {name: Tensor(shape) for name, shape in tensors.items()}
    else:
        values |= {"in_shape": tuple(IN_SHAPE), "shape": tuple(PREV_SHAPE)}
        values["stem_shape"] = tuple(STEM_SHAPE)
    helpers = {"make_divisible": py_helpers.make_divisible}
    return {"__builtins__": builtins, "math": math, **helpers, **values}


def _tuples(value: Any) -> Any:
    """A sandbox value as generated code holds it: lists are tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _stem_shape(name: Any) -> list[int]:
    if name != "stem":
        raise ExprError(f"no layer {name!r}")
    return list(STEM_SHAPE)


SANDBOX_ENV = {name: value for name, (_, value) in PARAMS.items()}
SANDBOX_ENV |= {"in_shape": IN_SHAPE, "prev_shape": PREV_SHAPE, SHAPE_FUNCTION: _stem_shape}


def translated_value(text: str, framework: str) -> Any:
    code = source(expr_ast(text, _resolver(framework)))
    return eval(compile(code, "<generated>", "eval"), _globals(framework))


def check(text: str) -> bool:
    """Sandbox and both translations agree on `text`; False where the sandbox refuses it."""
    try:  # with a smaller work budget: a drawn range(9999) inside a loop says nothing more
        with mock.patch.object(sandbox, "MAX_WORK", 20_000):
            want = _tuples(evaluate(text, SANDBOX_ENV))
    except ExprError:
        return False
    for framework in ("keras", "torch"):
        got = translated_value(text, framework)
        assert _same(got, want), (framework, text, source(expr_ast(text, _resolver(framework))))
    return True


# the bugs this property found, and the forms it must keep covering
KNOWN = [
    "in_shape[-(-1)]",  # printed as x.shape[--1]: axis 1 of the tensor, the batch's neighbour
    "in_shape[-(x - 3)]",  # -0: axis 0, not the tensor's batch axis
    "[in_shape[0] for in_shape in [[7, 8]]]",  # the loop variable, not the shape
    "[shape('stem')[-1] for stem in range(2)]",
    "[shape('stem')[-1] + stem_shape for stem_shape in range(2)]",
    "[prev_shape[0] + x for x in range(2)]",  # Keras' x is prev_shape's tensor
    "[x + x_ + prev_shape[0] for x in [1] for x_ in [2]]",  # x renamed x_: not the other's
    # an inner comprehension's variable ends with it: the last in_shape is the shape
    "[in_shape for i in [in_shape for in_shape in in_shape]] + [in_shape]",
    "[len + len_ for len_ in range(2)]",  # the parameter len is len_ in generated code
    "-(-x) - -(-(-none))",
    "'relu' if false else 'linear'",
    "max(x, max) * true",
    "[tuple + i for i in range(tuple)]",
    "[math + ceil(math / 2) for math in range(3)]",  # math.ceil, not the loop variable
]


def test_known_expressions_agree() -> None:
    for text in KNOWN:
        assert check(text), text


@settings(
    max_examples=600,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(EXPRESSIONS)
def test_random_expressions_agree(text: str) -> None:
    check(text)


def test_most_random_expressions_are_valid() -> None:
    """The property is not vacuous: most drawn expressions evaluate in the sandbox."""
    valid: list[bool] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None)
    @given(EXPRESSIONS)
    def run(text: str) -> None:
        valid.append(check(text))

    run()
    assert len(valid) >= 100 and sum(valid) > len(valid) // 2
