"""Unknown heights and widths: an input declared `shape: [null, null, 3]` through every shape
rule, against formulas written out here; the ops that need concrete sizes refuse them with a
located error; parameter counts never depend on the size; FLOPs of a layer that sees an
unknown size are unknown. Mutants at the end break each rule and must be caught.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from archc.compiler import infer as infer_module
from archc.compiler.api import at_size, compile_spec, unknown_sizes
from archc.compiler.diagnostics import SpecError
from archc.compiler.ir import Graph, Node, Origin
from archc.compiler.load import loads
from archc.compiler.ops import REGISTRY, load_all
from archc.compiler.plugins import builtin_ops

Size = int | None
Shape = tuple[Size, ...]
LAYER = "layer"

# -- formulas (Keras semantics, channels last), None where the size is unknown ---------------


def same(n: Size, s: int) -> Size:
    return None if n is None else -(-n // s)


def valid(n: Size, k: int, s: int, d: int = 1) -> Size:
    return None if n is None else (n - (k - 1) * d - 1) // s + 1


def transposed(n: Size, k: int, s: int, padding: str) -> Size:
    if n is None:
        return None
    return n * s if padding == "same" else (n - 1) * s + max(k, s)


def plus(n: Size, k: int) -> Size:
    return None if n is None else n + k


def times(n: Size, k: int) -> Size:
    return None if n is None else n * k


def conv_params(kh: int, kw: int, cin: int, filters: int, bias: bool = True) -> int:
    return kh * kw * cin * filters + (filters if bias else 0)


# -- compiling ---------------------------------------------------------------------------------


def yaml_shape(shape: Shape) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"


def spec_text(layers: list[str], *inputs: Shape) -> str:
    decls = ", ".join(f"{{name: in{i}, shape: {yaml_shape(s)}}}" for i, s in enumerate(inputs))
    body = "".join(f"  - {layer}\n" for layer in layers)
    return f"archc: 1\nname: t\ninputs: [{decls}]\nlayers:\n{body}"


def compile_text(text: str) -> Graph:
    return compile_spec(loads(text, "t.yaml")).graph


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        compile_text(text)
    return [d.format() for d in info.value.diagnostics]


# -- one case per op that accepts unknown sizes ------------------------------------------------

C = 4  # input channels


@dataclass(frozen=True)
class Case:
    op: str
    body: str  # the layer's YAML flow mapping, without its name
    out: Callable[[Size, Size], Shape]  # expected output shape from the input's (h, w)
    params: int = 0  # expected parameter count (never depends on the size)


CASES = [
    Case("conv2d", "op: conv2d, filters: 6, kernel: 3, padding: same",
         lambda h, w: (same(h, 1), same(w, 1), 6), conv_params(3, 3, C, 6)),
    Case("conv2d", "op: conv2d, filters: 6, kernel: 3, strides: 2, padding: same",
         lambda h, w: (same(h, 2), same(w, 2), 6), conv_params(3, 3, C, 6)),
    Case("conv2d", "op: conv2d, filters: 5, kernel: [3, 5], strides: [2, 1], use_bias: false",
         lambda h, w: (valid(h, 3, 2), valid(w, 5, 1), 5), conv_params(3, 5, C, 5, False)),
    Case("conv2d", "op: conv2d, filters: 2, kernel: 3, dilation: 2",
         lambda h, w: (valid(h, 3, 1, 2), valid(w, 3, 1, 2), 2), conv_params(3, 3, C, 2)),
    Case("depthwise_conv2d", "op: depthwise_conv2d, kernel: 3, strides: 2, padding: same, "
         "depth_multiplier: 2",
         lambda h, w: (same(h, 2), same(w, 2), 2 * C), 3 * 3 * C * 2 + 2 * C),
    Case("separable_conv2d", "op: separable_conv2d, filters: 7, kernel: 3",
         lambda h, w: (valid(h, 3, 1), valid(w, 3, 1), 7), 3 * 3 * C + C * 7 + 7),
    Case("conv2d_transpose", "op: conv2d_transpose, filters: 3, kernel: 2, strides: 2, "
         "padding: same",
         lambda h, w: (transposed(h, 2, 2, "same"), transposed(w, 2, 2, "same"), 3),
         2 * 2 * 3 * C + 3),
    Case("conv2d_transpose", "op: conv2d_transpose, filters: 3, kernel: 3, strides: 2",
         lambda h, w: (transposed(h, 3, 2, "valid"), transposed(w, 3, 2, "valid"), 3),
         3 * 3 * 3 * C + 3),
    Case("max_pool2d", "op: max_pool2d, pool: 2",
         lambda h, w: (valid(h, 2, 2), valid(w, 2, 2), C)),
    Case("avg_pool2d", "op: avg_pool2d, pool: 3, strides: 2, padding: same",
         lambda h, w: (same(h, 2), same(w, 2), C)),
    Case("global_avg_pool2d", "op: global_avg_pool2d", lambda h, w: (C,)),
    Case("global_max_pool2d", "op: global_max_pool2d, keepdims: true", lambda h, w: (1, 1, C)),
    Case("zero_pad2d", "op: zero_pad2d, padding: [[1, 2], [3, 4]]",
         lambda h, w: (plus(h, 3), plus(w, 7), C)),
    Case("cropping2d", "op: cropping2d, cropping: [[1, 0], [2, 1]]",
         lambda h, w: (plus(h, -1), plus(w, -3), C)),
    Case("upsample2d", "op: upsample2d, size: [2, 3]", lambda h, w: (times(h, 2), times(w, 3), C)),
    Case("upsample2d", "op: upsample2d, interpolation: bilinear",
         lambda h, w: (times(h, 2), times(w, 2), C)),
    Case("batch_norm", "op: batch_norm", lambda h, w: (h, w, C), 4 * C),
    Case("layer_norm", "op: layer_norm", lambda h, w: (h, w, C), 2 * C),
    Case("activation", "op: activation, fn: relu", lambda h, w: (h, w, C)),
    Case("dense", "op: dense, units: 5", lambda h, w: (h, w, 5), C * 5 + 5),
    Case("dropout", "op: dropout, rate: 0.5, noise_shape: [1, null, 1]", lambda h, w: (h, w, C)),
    Case("stochastic_depth", "op: stochastic_depth, rate: 0.1", lambda h, w: (h, w, C)),
    Case("rescaling", "op: rescaling, scale: 0.5", lambda h, w: (h, w, C)),
    Case("normalization", "op: normalization, mean: 0.5, variance: 2.0", lambda h, w: (h, w, C)),
    Case("normalization", "op: normalization", lambda h, w: (h, w, C), 2 * C + 1),
    Case("layer_scale", "op: layer_scale", lambda h, w: (h, w, C), C),
]  # fmt: skip
MERGES = {"add", "multiply", "subtract", "concat"}  # tested with two inputs below

SIZES = [(None, None), (None, 13), (11, None), (11, 13)]


def case_problems(case: Case, h: Size, w: Size) -> list[str]:
    """What differs from the formulas for one case at input (h, w, C); [] when nothing."""
    graph = compile_text(spec_text([f"{{name: {LAYER}, {case.body}}}"], (h, w, C)))
    node = graph.node(LAYER)
    problems = []
    if node.shape != case.out(h, w):
        problems.append(f"shape {node.shape}, formula {case.out(h, w)}")
    if node.counts.total != case.params:
        problems.append(f"params {node.counts.total}, formula {case.params}")
    sized = None not in (h, w)
    if (node.flops is None) == sized:
        problems.append(f"FLOPs {node.flops} with input ({h}, {w}, {C})")
    if sized != (graph.flops is not None):
        problems.append(f"graph FLOPs {graph.flops}")
    return problems


@pytest.mark.parametrize("h, w", SIZES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.body.split(", ", 1)[-1][:40])
def test_shape_rules_give_none_where_the_size_is_unknown(case: Case, h: Size, w: Size) -> None:
    assert case_problems(case, h, w) == []


def test_cases_cover_exactly_the_ops_that_accept_unknown_sizes() -> None:
    accepting = {name for name, op in builtin_ops().items() if op.unknown_sizes}
    assert accepting == {c.op for c in CASES} | MERGES


@pytest.mark.parametrize(
    "op", sorted(n for n, o in load_all().items() if not o.unknown_sizes and n != "input")
)
def test_every_other_op_refuses_unknown_sizes_before_its_rule_runs(op: str) -> None:
    """flatten, reshape, sequence ops...: E075 names the op, the unknown axes and the input."""
    source = Node("image", "input", None, (), Origin(None), shape=(None, 9, 3))  # type: ignore[arg-type]
    node = Node("x", op, None, ("image",), Origin(None))  # attrs are never read
    with pytest.raises(SpecError) as info:
        infer_module.infer_node(node, [(None, 9, 3)], {"image": source})  # type: ignore[list-item]
    (diag,) = info.value.diagnostics
    assert diag.code == "E075"
    assert diag.message == f"{op} 'x' needs a known height; the input is (None, 9, 3)"


# -- merges: only known sizes are checked ------------------------------------------------------


def merge_shape(op: str, *shapes: Shape) -> Shape | None:
    names = ", ".join(f"in{i}" for i in range(len(shapes)))
    graph = compile_text(spec_text([f"{{name: {LAYER}, op: {op}, inputs: [{names}]}}"], *shapes))
    return graph.node(LAYER).shape


@pytest.mark.parametrize(
    "a, b, out",
    [
        ((None, None, 8), (None, None, 8), (None, None, 8)),
        ((None, None, 8), (1, 1, 8), (None, None, 8)),  # a gate
        ((None, None, 8), (8,), (None, None, 8)),
        ((None, 5, 8), (4, None, 8), (4, 5, 8)),  # what one input knows, the other must be
        ((None, 5, 8), (1, 5, 8), (None, 5, 8)),
        ((7, None, 8), (7, 1, 8), (7, None, 8)),
    ],
)
@pytest.mark.parametrize("op", ["add", "multiply", "subtract"])
def test_element_wise_broadcasting_with_unknown_sizes(
    op: str, a: Shape, b: Shape, out: Shape
) -> None:
    assert merge_shape(op, a, b) == out
    assert merge_shape(op, b, a) == out


@pytest.mark.parametrize(
    "shapes, out",
    [
        (((None, None, 8), (None, None, 4)), (None, None, 12)),
        (((None, 6, 8), (5, None, 4)), (5, 6, 12)),
        (((None, None, 8), (None, None, 4), (None, None, 1)), (None, None, 13)),
    ],
)
def test_concat_on_channels_with_unknown_sizes(shapes: tuple[Shape, ...], out: Shape) -> None:
    assert merge_shape("concat", *shapes) == out


def test_concat_on_an_unknown_axis_is_unknown() -> None:
    text = spec_text(["{name: layer, op: concat, axis: 0, inputs: [in0, in1]}"],
                     (None, 5, 8), (4, 5, 8))  # fmt: skip
    assert compile_text(text).node(LAYER).shape == (None, 5, 8)


def test_known_sizes_that_differ_are_still_refused() -> None:
    (add,) = errors_of(spec_text(["{name: layer, op: add, inputs: [in0, in1]}"],
                                 (None, 5, 8), (None, 6, 8)))  # fmt: skip
    assert "error[E070]: add 'layer': inputs of shapes (None, 5, 8) and (None, 6, 8)" in add
    # the third input differs from the size the second one knows (the first does not know it)
    (cat,) = errors_of(spec_text(["{name: layer, op: concat, inputs: [in0, in1, in2]}"],
                                 (None, None, 8), (5, None, 8), (6, None, 8)))  # fmt: skip
    assert "cannot concatenate shapes (5, None, 8) and (6, None, 8)" in cat
    assert "(inputs 'in1' and 'in2')" in cat


def test_cropping_checks_the_known_axis_only() -> None:
    (err,) = errors_of(spec_text(["{op: cropping2d, cropping: [[1, 1], [2, 2]]}"], (None, 4, 3)))
    assert "cropping ((1, 1), (2, 2)) leaves nothing of a ?x4 input" in err
    shape = (None, 5, 3)
    text = spec_text(["{name: layer, op: cropping2d, cropping: [[1, 1], [2, 2]]}"], shape)
    assert compile_text(text).node(LAYER).shape == (None, 1, 3)


def test_dropout_noise_shape_on_an_unknown_axis() -> None:
    (err,) = errors_of(spec_text(["{op: dropout, rate: 0.1, noise_shape: [5, 1, 1]}"],
                                 (None, None, 3)))  # fmt: skip
    assert "entry 0 is 5, but that input axis' size is unknown" in err
    assert "hint: use 1 (one mask value shared along the axis) or null" in err


# -- counts, FLOPs, sizes given later ----------------------------------------------------------

NET = [
    "{op: conv2d, filters: 8, kernel: 3, strides: 2, padding: same, name: c1}",
    "{op: batch_norm}",
    "{op: max_pool2d, pool: 2, padding: same}",
    "{op: conv2d_transpose, filters: 4, kernel: 2, strides: 2, padding: same, name: up}",
    "{op: concat, inputs: [up, c1]}",
    "{op: conv2d, filters: 2, kernel: 1, activation: softmax, name: head}",
]


def test_parameter_counts_never_depend_on_the_size() -> None:
    unknown = compile_spec(loads(spec_text(NET, (None, None, 3)), "t.yaml"))
    formula = conv_params(3, 3, 3, 8) + 4 * 8 + (2 * 2 * 4 * 8 + 4) + conv_params(1, 1, 12, 2)
    assert unknown.counts.total == formula
    assert unknown.counts.non_trainable == 2 * 8
    for size in [(16, 16), (24, 40), (8, 64)]:
        sized = at_size(unknown, size)
        assert sized.counts == unknown.counts
        h, w = size
        assert sized.graph.node("head").shape == (same(h, 2), same(w, 2), 2)
        assert not unknown_sizes(sized.graph)
    assert unknown_sizes(unknown.graph)


def test_a_size_the_network_refuses_is_refused_when_given() -> None:
    """8x8 concatenates a 4x4 upsampled branch with a 4x4 one; 10x10 gives 5x5 and 3x3
    pooled (same padding) to 6x6: the skip no longer meets."""
    unknown = compile_spec(loads(spec_text(NET, (None, None, 3)), "t.yaml"))
    at_size(unknown, (8, 8))
    with pytest.raises(SpecError) as info:
        at_size(unknown, (10, 10))
    assert "cannot concatenate shapes (6, 6, 4) and (5, 5, 8)" in info.value.diagnostics[0].message


def test_flops_are_unknown_where_a_layer_sees_an_unknown_size() -> None:
    text = spec_text(
        [
            "{op: conv2d, filters: 8, kernel: 3, name: conv}",
            "{op: global_avg_pool2d, name: pool}",
            "{op: dense, units: 5, name: fc}",
        ],
        (None, None, 3),
    )
    graph = compile_text(text)
    assert graph.node("conv").flops is None
    assert graph.node("pool").flops is None
    assert graph.node("fc").flops == 2 * 8 * 5 + 5  # after global pooling: known
    assert graph.flops is None  # a sum of the known ones would read as the network's


def test_check_shows_none_and_json_null(archc, tmp_path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(spec_text(NET, (None, None, 3)))
    table = archc("check", spec).stdout
    assert "(None, None, None, 3)" in table
    assert "head (Conv2D)                    (None, None, None, 2)" in table
    data = json.loads(archc("check", spec, "--json").stdout)
    assert data["input_shape"] == [None, None, 3]
    assert data["flops"] is None
    assert [x["output_shape"] for x in data["layers"]][-1] == [None, None, 2]


def test_expressions_see_none_for_unknown_sizes() -> None:
    text = spec_text(
        [
            "{op: conv2d, filters: '${prev_shape[-1] * 2}', kernel: 1, name: wide}",
            "{op: conv2d, filters: 5, kernel: 1, name: unknown, when: '${prev_shape[0] == None}'}",
            "{op: conv2d, filters: 7, kernel: 1, name: known, when: '${in_shape[1] == 9}'}",
        ],
        (None, 9, 3),
    )
    graph = compile_text(text)
    assert graph.node("wide").shape == (None, 9, 6)
    assert graph.node("unknown").shape == (None, 9, 5)
    assert graph.node("known").shape == (None, 9, 7)


# -- mutants: each breaks one rule above and must be caught -------------------------------------


def _caught(check: Callable[[], Any]) -> bool:
    try:
        check()
    except (AssertionError, SpecError, TypeError):
        return True
    return False


def _all_cases() -> None:
    for case in CASES:
        for h, w in SIZES:
            assert case_problems(case, h, w) == [], case


def test_mutant_window_that_bakes_in_a_size_is_caught(monkeypatch) -> None:
    from archc.compiler.ops import conv, window_out

    def baked(n: Size, k: int, s: int, d: int, padding: str, axis: str, what: str) -> Any:
        return window_out(32 if n is None else n, k, s, d, padding, axis, what)

    monkeypatch.setattr(conv, "window_size", baked)
    assert _caught(_all_cases)


def test_mutant_concat_comparing_unknown_sizes_is_caught(monkeypatch) -> None:
    from archc.compiler.ops import merge

    original = merge._concat_infer

    def strict(a: Any, ins: list[Any]) -> Any:
        if any(x != y for s in ins[1:] for x, y in zip(s[:-1], ins[0][:-1], strict=True)):
            raise merge.ShapeError("sizes differ")
        return original(a, ins)

    monkeypatch.setitem(REGISTRY, "concat", dataclasses.replace(REGISTRY["concat"], infer=strict))
    assert _caught(lambda: test_concat_on_channels_with_unknown_sizes(
        ((None, 6, 8), (5, None, 4)), (5, 6, 12)))  # fmt: skip


def test_mutant_without_the_guard_is_caught(monkeypatch) -> None:
    """flatten declared as accepting unknown sizes: its rule meets None (a TypeError, not a
    located error)."""
    monkeypatch.setitem(
        REGISTRY, "flatten", dataclasses.replace(REGISTRY["flatten"], unknown_sizes=True)
    )
    assert _caught(
        lambda: test_every_other_op_refuses_unknown_sizes_before_its_rule_runs("flatten")
    )


def test_mutant_summing_the_known_flops_is_caught(monkeypatch) -> None:
    """The network's FLOPs as the sum of the layers' known ones (a number that reads as the
    whole network's)."""
    partial = property(lambda g: sum(n.flops or 0 for n in g.nodes))
    monkeypatch.setattr(Graph, "flops", partial)
    assert _caught(test_flops_are_unknown_where_a_layer_sees_an_unknown_size)
