"""The `${...}` sandbox: what it computes, what it refuses, and the exact words it refuses with."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from archc.compiler.expr import FUNCTIONS, ExprError, evaluate
from archc.compiler.template import render, split_template

ENV: dict[str, Any] = {
    "stage": 2,
    "filters": [32, 32, 128],
    "alpha": 0.35,
    "width": 64,
    "prefix": "res",
    "flag": True,
}
ALLOWED_HINT = "allowed functions: " + ", ".join(sorted(FUNCTIONS))
SYNTAX_HINT = (
    "expressions use Python syntax: arithmetic, comparisons, and/or/not, a if cond else b, "
    "indexing, lists and calls to allowed functions"
)


def expr_error(source: str, env: Mapping[str, Any] = ENV) -> ExprError:
    """The ExprError that evaluating `source` raises (fails the test if there is none)."""
    with pytest.raises(ExprError) as info:
        evaluate(source, env)
    return info.value


def render_error(text: str, env: Mapping[str, Any] = ENV) -> ExprError:
    with pytest.raises(ExprError) as info:
        render(text, env)
    return info.value


def reference_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """MobileNet's `_make_divisible`, as published (tensorflow/models, keras.applications)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # never round down by more than 10%
        new_v += divisor
    return new_v


def ids(sources: Mapping[str, Any]) -> list[str]:
    """Readable test ids for expressions (long ones cut short)."""
    return [s if len(s) <= 40 else s[:37] + "..." for s in sources]


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Record the peak of Python allocations (bytes) inside the block; no clocks involved."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# -- what it computes ----------------------------------------------------------------------------

VALUES: dict[str, Any] = {
    # arithmetic
    "1 + 2 * 3": 7,
    "(1 + 2) * 3": 9,
    "7 // 2": 3,
    "-7 // 2": -4,
    "7 / 2": 3.5,
    "7 % 3": 1,
    "-7 % 3": 2,
    "2 ** 10": 1024,
    "2 ** -1": 0.5,
    "-stage": -2,
    "+stage": 2,
    "width * alpha": 64 * 0.35,
    "filters[2] // 4": 32,
    # comparisons, chained as in Python
    "stage > 1": True,
    "stage == 2": True,
    "stage != 2": False,
    "1 < stage < 3": True,
    "1 < stage > 3": False,
    "stage in [1, 2]": True,
    "3 not in filters": True,
    "prefix == 'res'": True,
    # booleans (Python's and/or return an operand)
    "stage > 1 and width > 32": True,
    "stage > 2 or flag": True,
    "not flag": False,
    "true and not false": True,
    "True and False": False,
    "0 or 'x'": "x",
    "None": None,
    # if-else
    "64 if stage > 1 else 32": 64,
    "'a' if not flag else 'b'": "b",
    # indexing and slicing
    "filters[0]": 32,
    "filters[-1]": 128,
    "filters[1:]": [32, 128],
    "filters[:stage]": [32, 32],
    "filters[::-1]": [128, 32, 32],
    "prefix[0]": "r",
    "[1, 2, 3][stage]": 3,
    # lists (tuples are lists)
    "[stage, stage * 2]": [2, 4],
    "(1, 2)": [1, 2],
    "[1] * 3": [1, 1, 1],
    "[1, 2] + [3]": [1, 2, 3],
    "'ab' * 2": "abab",
    # allow-listed functions
    "abs(-3)": 3,
    "ceil(2.1)": 3,
    "floor(2.9)": 2,
    "int(2.9)": 2,
    "float(2)": 2.0,
    "bool(0)": False,
    "len(filters)": 3,
    # the total size bound (100000) counts every element at every depth: 10 + 10 * 9999
    "len([[0] * 9999] * 10)": 10,
    "len([['a' * 9998] * 10, 'b' * 8])": 2,  # 2 + (10 + 10 * 9998) + 8 = 100_000
    "max(filters)": 128,
    "min(3, 1, 2)": 1,
    "max(1, min(4, stage))": 2,
    "range(3)": [0, 1, 2],
    "range(1, 7, 2)": [1, 3, 5],
    "round(width * alpha)": 22,
    "sum(filters)": 192,
    "str(stage)": "2",
    "prefix + str(stage)": "res2",
    "chr(97 + stage)": "c",
    "ord('a')": 97,
    "'block' + str(stage) + chr(ord('a') + 1)": "block2b",  # EfficientNet's block names
    # list comprehensions (Python's meaning: later loops nest, `if` filters, scopes are local)
    "[f // 2 for f in filters]": [16, 16, 64],
    "[f for f in filters if f > 32]": [128],
    "[i * j for i in range(1, 3) for j in range(i)]": [0, 0, 2],
    "[[a, b] for a, b in [[1, 2], [3, 4]]]": [[1, 2], [3, 4]],
    "[stage for stage in range(2)] + [stage]": [0, 1, 2],  # the loop variable stays inside
    "[c for c in prefix]": ["r", "e", "s"],
    "sum([ceil(1.2 * r) for r in [1, 2, 3][:stage]])": 5,  # depth scaling of earlier stages
    "['s' + str(i) for i in range(stage)]": ["s0", "s1"],  # computed `inputs:` lists
    "[x for x in []]": [],
}


@pytest.mark.parametrize(("source", "expected"), VALUES.items(), ids=ids(VALUES))
def test_value(source: str, expected: Any) -> None:
    result = evaluate(source, ENV)
    assert result == expected
    assert type(result) is type(expected)


MOBILENET_CHANNELS = (16, 24, 32, 64, 96, 160, 320, 1280)
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


@pytest.mark.parametrize("alpha", MOBILENET_ALPHAS)
@pytest.mark.parametrize("channels", MOBILENET_CHANNELS)
def test_make_divisible_matches_mobilenet(channels: int, alpha: float) -> None:
    got = evaluate(f"make_divisible({channels} * alpha, 8)", {"alpha": alpha})
    assert got == reference_make_divisible(channels * alpha, 8)


@pytest.mark.parametrize(
    ("source", "value", "divisor", "min_value"),
    [
        ("make_divisible(32 * 0.35, 8)", 32 * 0.35, 8, None),  # MobileNetV2-0.35 stem: 16
        ("make_divisible(1280 * 1.4, 8)", 1280 * 1.4, 8, None),  # MobileNetV2-1.4 head: 1792
        ("make_divisible(10, 8)", 10, 8, None),  # 8 would lose > 10%: goes up to 16
        ("make_divisible(3, 8, 4)", 3, 8, 4),  # min_value wins
        ("make_divisible(27, 4)", 27, 4, None),
    ],
)
def test_make_divisible_known_values(
    source: str, value: float, divisor: int, min_value: int | None
) -> None:
    assert evaluate(source, {}) == reference_make_divisible(value, divisor, min_value)


def test_make_divisible_known_values_are_the_published_ones() -> None:
    assert reference_make_divisible(32 * 0.35, 8) == 16
    assert reference_make_divisible(1280 * 1.4, 8) == 1792
    assert reference_make_divisible(10, 8) == 16


# -- templates ------------------------------------------------------------------------------------

TEMPLATES: dict[str, Any] = {
    "bn${stage}a": "bn2a",
    "conv${stage}_${stage + 1}": "conv2_3",
    "${stage}": 2,  # a whole-string expression keeps its type
    "${stage > 1}": True,
    "${filters}": [32, 32, 128],
    "${alpha}": 0.35,
    "x${alpha}": "x0.35",
    "${filters[0]}x": "32x",
    "${'}'}": "}",
    "${ stage }": 2,
    "plain": "plain",
}


@pytest.mark.parametrize(("text", "expected"), TEMPLATES.items(), ids=ids(TEMPLATES))
def test_render_template(text: str, expected: Any) -> None:
    assert render(text, ENV) == expected


def test_render_leaves_non_templates_and_walks_lists() -> None:
    assert render(3, ENV) == 3
    assert render(None, ENV) is None
    assert render(["${stage}", "a${stage}", 5], ENV) == [2, "a2", 5]


def test_split_template() -> None:
    assert split_template("bn${stage}a") == [(False, "bn"), (True, "stage"), (False, "a")]
    assert split_template("${a}${b}") == [(True, "a"), (True, "b")]
    assert split_template("${[1, 2][0]}") == [(True, "[1, 2][0]")]


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "a${filters}b",
            "cannot insert list into text 'a${filters}b'",
            "only numbers and strings can be interpolated into names",
        ),
        (
            "a${flag}b",
            "cannot insert bool into text 'a${flag}b'",
            "only numbers and strings can be interpolated into names",
        ),
        ("conv${stage", "unclosed '${' in 'conv${stage'", "close the expression with '}'"),
        ("${}", "empty expression '${}'", "write a value inside ${...}"),
        ("x${  }", "empty expression '${}'", "write a value inside ${...}"),
    ],
)
def test_template_errors(text: str, message: str, hint: str) -> None:
    exc = render_error(text)
    assert (exc.message, exc.hint) == (message, hint)


def test_template_with_braces_names_the_real_problem() -> None:
    exc = render_error("${ {1: 2} }")
    assert exc.message == "dict literals are not allowed in expression '{1: 2}'"


# -- what it refuses ------------------------------------------------------------------------------

TOTAL = "result larger than 100000 elements in all (nested lists and strings count each item)"
WORK = (
    "expression takes more than 1000000 steps (values computed, and elements made or read by "
    "ranges, comprehensions, functions and operators)"
)
UNBOUND = "'%s' is read before its loop binds it"
UNBOUND_HINT = (
    "a comprehension's variable is known after its own 'for': [a + b for a in xs for b in range(a)]"
)
WORK_HINT = "compute less in one expression: smaller ranges, fewer nested loops"

REJECTED: dict[str, tuple[str, str]] = {
    # attribute access and dunders
    "stage.real": ("attribute access is not allowed in expression 'stage.real'", ""),
    "().__class__": ("attribute access is not allowed in expression '().__class__'", ""),
    "__builtins__": ("name '__builtins__' is not allowed (dunder names are reserved)", ""),
    # calls outside the allow-list
    "__import__('os')": ("call to '__import__' is not allowed", ALLOWED_HINT),
    "open('spec.yaml')": ("call to 'open' is not allowed", ALLOWED_HINT),
    "eval('1')": ("call to 'eval' is not allowed", ALLOWED_HINT),
    "getattr(stage, 'real')": ("call to 'getattr' is not allowed", ALLOWED_HINT),
    "filters.append(1)": ("call to 'filters.append' is not allowed", ALLOWED_HINT),
    "[max][0](1)": ("call to '[max][0]' is not allowed", ALLOWED_HINT),
    "max": ("'max' is a function; call it as max(...)", ""),
    # keyword arguments, lambdas, comprehensions and other syntax
    "max(filters, key=abs)": ("keyword arguments are not allowed in 'max(...)'", ""),
    "lambda: 1": ("lambdas are not allowed in expression 'lambda: 1'", ""),
    "(x for x in filters)": (
        "generator expressions are not allowed (write a list: [... for ...]) "
        "in expression '(x for x in filters)'",
        "",
    ),
    "{x: 1 for x in filters}": (
        "dict comprehensions are not allowed in expression '{x: 1 for x in filters}'",
        "",
    ),
    "{x for x in filters}": (
        "set comprehensions are not allowed in expression '{x for x in filters}'",
        "",
    ),
    "[x for x in stage]": (
        "cannot loop over int in 'for x in stage'",
        "loop over a list, a string or range(...)",
    ),
    "[a for a, b in filters]": ("cannot unpack 32 into 2 names in '(a, b)'", ""),
    "[1 for max in filters]": ("'max' is a function and cannot be a loop variable", ""),
    # as in Python (where generated code runs it): a loop variable is the comprehension's own
    # everywhere but in the first iterable, and unbound until its loop binds it
    "[0 for i in filters for stage in range(stage)]": (UNBOUND % "stage", UNBOUND_HINT),
    "[i for i in filters if width > 0 for width in range(2)]": (UNBOUND % "width", UNBOUND_HINT),
    "[x for x in filters][3]": (
        "index 3 out of range for list of length 3 in '[x for x in filters][3]'",
        "",
    ),
    "[x for x in x]": (  # the iterable is read outside the loop's scope
        "unknown name 'x'",
        "names in scope: alpha, filters, flag, prefix, stage, width",
    ),
    "chr(-1)": ("chr(): chr() arg not in range(0x110000)", ""),
    "chr('a')": ("chr() takes an integer, got str", ""),
    "ord('ab')": ("ord() takes one character, got 'ab'", ""),
    "(x := 1)": ("assignment expressions are not allowed in expression '(x := 1)'", ""),
    "{'a': 1}": ("dict literals are not allowed in expression '{'a': 1}'", ""),
    "{1}": ("set literals are not allowed in expression '{1}'", ""),
    "f'{stage}'": ("f-strings are not allowed in expression 'f'{stage}''", ""),
    "b'x'": ("constant b'x' is not allowed", ""),
    "1j": ("constant 1j is not allowed", ""),
    "1 +": ("invalid expression '1 +': invalid syntax", SYNTAX_HINT),
    "   ": ("empty expression '${}'", "write a value inside ${...}"),
    # sizes: fail at once instead of computing
    "10**10**10": ("power 10 ** 10000000000 is too large", ""),
    "9 ** 9 ** 9": ("power 9 ** 387420489 is too large", ""),
    "2.0 ** 10000": ("power 2.0 ** 10000 is too large", ""),
    "2 ** 64": ("integer result too large (more than 64 bits)", ""),
    "[0] * 10 ** 9": ("result longer than 10000 items", ""),
    "'a' * 10 ** 9": ("result longer than 10000 items", ""),
    "[0] * 10000 + [0]": ("result longer than 10000 items", ""),
    "range(10 ** 9)": ("range() longer than 10000", ""),
    # total size: nested lists and strings count every element and character
    "[[0] * 9999] * 11": (TOTAL, ""),  # 11 + 11 * 9999 = 110_000
    "[[0] * 9999] * 9999": (TOTAL, ""),
    "[[[0] * 9999] * 9999] * 9999": (TOTAL, ""),
    "['a' * 9999] * 11": (TOTAL, ""),
    "[range(9999)] * 11": (TOTAL, ""),
    "[[0] * 9999 for i in range(11)]": (TOTAL, ""),
    "[[i] * 10 for i in range(9999)]": (TOTAL, ""),  # 9999 + 9999 * 10
    "[0 for i in range(101) for j in range(100)]": ("result longer than 10000 items", ""),
    "[0 for i in range(400) for j in range(400) if j < 0]": (
        "comprehension runs more than 100000 iterations",
        "",
    ),
    # total work: 200 ranges of 10,000 numbers are 2,000,000 elements made, though each
    # value is small and the loop short
    "[max(range(10000)) for i in range(200)]": (WORK, WORK_HINT),
    "[len(filters * 3000) for i in range(200)]": (WORK, WORK_HINT),
    "[filters * 3000 == filters * 3000 for i in range(100)]": (WORK, WORK_HINT),
    # round()'s ndigits: 10 ** 1000000 would be computed to round 1 to 0
    "round(1, -1000000)": ("round(): ndigits -1000000 is out of range [-400, 400]", ""),
    "round(1.5, 10 ** 18)": (
        "round(): ndigits 1000000000000000000 is out of range [-400, 400]",
        "",
    ),
    # true and false are constants: nothing binds them
    "[false for false in range(3)]": (
        "'false' is a constant and cannot be a loop variable",
        "name the loop variable something else",
    ),
    "[1 for i, true in [[1, 2]]]": (
        "'true' is a constant and cannot be a loop variable",
        "name the loop variable something else",
    ),
    "[[0] * 9999] * 6 + [[0] * 9999] * 6": (TOTAL, ""),  # 60_000 + 60_000
    "[[[0] * 9999] * 6, [[0] * 9999] * 6]": (TOTAL, ""),
    "[['a' * 9999] * 10, 'b' * 10, [1]]": (TOTAL, ""),  # 3 + 100_000 + 10 + 1
    "1" + " + 1" * 300: ("expression longer than 1000 characters", ""),
    "+".join(["1"] * 150): ("expression too complex (more than 200 parts)", ""),
    "1e308 * 10": ("result is not a finite number", ""),
    "float('inf')": ("result is not a finite number", ""),
    # division by zero
    "1 / 0": ("division by zero in '1 / 0'", ""),
    "stage // 0": ("division by zero in 'stage // 0'", ""),
    "stage % 0": ("division by zero in 'stage % 0'", ""),
    "1 / (stage - 2)": ("division by zero in '1 / (stage - 2)'", ""),
    "make_divisible(8, 0)": ("make_divisible: divisor must be positive", ""),
    # unknown names, with did-you-mean
    "stgae": ("unknown name 'stgae'", "did you mean 'stage'?"),
    "filter": ("unknown name 'filter'", "did you mean 'filters'?"),
    "resolution": (
        "unknown name 'resolution'",
        "names in scope: alpha, filters, flag, prefix, stage, width",
    ),
    # type errors
    "stage + 'a'": ("cannot apply '+' to int and str in 'stage + 'a''", ""),
    "filters - 1": ("cannot apply '-' to list and int in 'filters - 1'", ""),
    "filters < 3": ("cannot compare list and int in 'filters < 3'", ""),
    "-prefix": ("unary minus/plus needs a number, got str", ""),
    "stage[0]": ("cannot index int in 'stage[0]'", ""),
    "filters['a']": ("index must be an integer, got str", ""),
    "filters[5]": ("index 5 out of range for list of length 3 in 'filters[5]'", ""),
    "filters[::0]": ("slice step cannot be zero", ""),
    "filters[1:'a']": ("slice bounds must be integers in 'filters[1:'a']'", ""),
    "range(1.5)": ("range() takes integers", ""),
    "len(stage)": ("len(): object of type 'int' has no len()", ""),
    "min([])": ("min(): min() arg is an empty sequence", ""),
}


@pytest.mark.parametrize(("source", "expected"), REJECTED.items(), ids=ids(REJECTED))
def test_rejected(source: str, expected: tuple[str, str]) -> None:
    exc = expr_error(source)
    assert (exc.message, exc.hint) == expected


def test_true_and_false_are_constants_whatever_is_in_scope() -> None:
    # the compiler refuses parameters so named; were one ever in scope, generated Python
    # (where false is False) and the sandbox would still agree
    env = {"false": 1, "true": 0}
    assert evaluate("'relu' if false else 'linear'", env) == "linear"
    assert evaluate("false * 2", env) == 0
    assert evaluate("true", env) is True


def test_round_keeps_its_range() -> None:
    assert evaluate("round(123456, -400)", {}) == 0
    assert evaluate("round(2.5, 400)", {}) == 2.5
    assert evaluate("round(1234, -2)", {}) == 1200  # Python's own: round(1234, -2)


def test_unknown_name_without_anything_in_scope() -> None:
    exc = expr_error("width", {})
    assert (exc.message, exc.hint) == ("unknown name 'width'", "no names in scope")


@pytest.mark.parametrize(
    "source",
    [
        "10**10**10",
        "9 ** 9 ** 9",
        "[0] * 10 ** 9",
        "'a' * 10 ** 9",
        "range(10 ** 9)",
        "(2 ** 62) * (2 ** 62) * (2 ** 62)",
        "str(['a' * 9999] * 200)",
        "[[[0] * 9999] * 9999] * 9999",
        "[[0] * 9999] * 9999",
        "[[0] * 9999] * 6 + [[0] * 9999] * 6",
        "'%09000000d' % 1",
    ],
)
def test_hostile_expressions_fail_before_building_anything_big(source: str) -> None:
    with peak_memory() as peak:
        expr_error(source)
    assert peak[0] < 1_000_000


@pytest.mark.parametrize(
    "source",
    [
        "[[0] * 9999 for i in range(9999)]",  # 800 MB if built
        "[[[0] * 9999] * 9999 for i in range(9999)]",
        "[0 for i in range(9999) for j in range(9999) if j < 0]",  # 10^8 iterations
        "[max(range(10000)) for i in range(10000)]",  # 10^8 elements made, 3.9 GB if kept
    ],
)
def test_hostile_comprehensions_stop_early(source: str) -> None:
    # a comprehension builds items until a bound trips: at most a range of 9,999 numbers
    # (0.4 MB) and the items within the 100,000 total (0.9 MB) are ever alive
    with peak_memory() as peak:
        expr_error(source)
    assert peak[0] < 2_000_000


def test_string_formatting_is_rejected() -> None:
    exc = expr_error("'%05d' % stage")
    assert exc.message == "cannot apply '%' to str and int in ''%05d' % stage'"


def test_sum_takes_numbers_only() -> None:
    exc = expr_error("sum([[1], [2]], [])")
    assert exc.message == "sum() takes a list of numbers"


def test_str_takes_scalars_only() -> None:
    exc = expr_error("str(filters)")
    assert exc.message == "str() takes a number or a string, got list"


def test_complex_results_are_rejected() -> None:
    exc = expr_error("(-8) ** 0.5")
    assert exc.message == "power -8 ** 0.5 is not a real number"


def test_the_sandbox_never_sees_python_builtins() -> None:
    for name in ("print", "exec", "compile", "globals", "type", "object"):
        assert expr_error(f"{name}()").message == f"call to '{name}' is not allowed"
        assert expr_error(name).message == f"unknown name '{name}'"


@pytest.mark.parametrize(
    "value",
    [
        "${'a' * 9999}" * 11,  # 11 * 9999 characters
        "name_${'a' * 9999}" * 11,
        ["${[0] * 9999}"] * 11,  # 11 + 11 * 9999
        [["${'a' * 9999}"] * 6, ["${'a' * 9999}"] * 5],
    ],
    ids=["text", "text-with-literals", "list", "nested-list"],
)
def test_rendered_values_are_bounded_in_total(value: Any) -> None:
    with pytest.raises(ExprError) as info:
        render(value, {})
    assert info.value.message == TOTAL


def test_rendered_values_at_the_bound_are_kept() -> None:
    assert len(render("${'a' * 9999}" * 10, {})) == 99_990
    assert len(render(["${[0] * 9999}"] * 10, {})) == 10  # 10 + 10 * 9999 = 100_000
