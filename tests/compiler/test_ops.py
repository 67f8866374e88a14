"""Every op in the registry against textbook shape and parameter formulas written out here.

`CASES` is keyed by op name and must cover the whole registry: registering an op without
adding its cases here fails `test_every_registered_op_has_cases`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.ir import Graph, Node
from archc.compiler.load import loads
from archc.compiler.plugins import builtin_ops
from tests.compiler.llm_cases import llm_cases
from tests.compiler.sequence_cases import (
    NEEDS_SEQUENCE,
    SEQUENCE_INPUT,
    Tokens,
    recurrent_cases,
    sequence_cases,
)

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], tuple[int, int]]
LAYER = "layer"


# -- textbook formulas (Keras semantics, channels last) -------------------------------------------


def same_out(n: int, s: int) -> int:
    return math.ceil(n / s)


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TF's 'same': total padding split with the extra pixel after (bottom/right)."""
    pad = max(0, (same_out(n, s) - 1) * s + (k - 1) * d + 1 - n)
    return pad // 2, pad - pad // 2


def valid_out(n: int, k: int, s: int, d: int = 1) -> int:
    return math.floor((n - (k - 1) * d - 1) / s) + 1


def conv_params(
    kh: int, kw: int, cin: int, filters: int, groups: int = 1, bias: bool = True
) -> int:
    return kh * kw * cin // groups * filters + (filters if bias else 0)


def depthwise_params(kh: int, kw: int, cin: int, mult: int, bias: bool = True) -> int:
    return kh * kw * cin * mult + (cin * mult if bias else 0)


def bn_params(c: int, center: bool = True, scale: bool = True) -> tuple[int, int]:
    """(total, non-trainable): gamma and beta train, moving mean and variance do not."""
    return (int(center) + int(scale) + 2) * c, 2 * c


def dense_params(n_in: int, units: int, bias: bool = True) -> int:
    return n_in * units + (units if bias else 0)


# -- compiling one layer --------------------------------------------------------------------------


def spec_text(body: str, inputs: tuple[Shape, ...]) -> str:
    decls = ", ".join(
        f"{{name: in{i}, shape: {list(s)}{', dtype: int' if isinstance(s, Tokens) else ''}}}"
        for i, s in enumerate(inputs)
    )
    return f"archc: 1\nname: t\ninputs: [{decls}]\nlayers:\n  - {{name: {LAYER}, {body}}}\n"


def compile_layer(body: str, *inputs: Shape) -> Graph:
    return compile_spec(loads(spec_text(body, inputs), "t.yaml")).graph


def layer_errors(body: str, *inputs: Shape) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        compile_layer(body, *inputs)
    return list(info.value.diagnostics)


def layer_error(body: str, *inputs: Shape) -> Diagnostic:
    found = layer_errors(body, *inputs)
    assert len(found) == 1, [d.format() for d in found]
    return found[0]


def weights_of(node: Node) -> list[tuple[str, Shape, bool]]:
    return [(w.name, w.shape, w.trainable) for w in node.weights]


# -- one case per form of each op -----------------------------------------------------------------

W = tuple[str, Shape, bool]


@dataclass(frozen=True)
class Case:
    id: str
    body: str  # the YAML flow-mapping body of the layer under test (its name is `layer`)
    inputs: tuple[Shape, ...]
    shape: Shape  # expected output shape (batch excluded)
    total: int = 0  # expected parameter count, from the formulas above
    non_trainable: int = 0
    weights: tuple[W, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)  # resolved attributes to check
    node: str = LAYER


def kernel(*shape: int) -> W:
    return ("kernel", shape, True)


def bias(n: int) -> W:
    return ("bias", (n,), True)


def bn_weights(c: int, center: bool = True, scale: bool = True) -> tuple[W, ...]:
    trained = [("gamma", (c,), True)] if scale else []
    trained += [("beta", (c,), True)] if center else []
    return (*trained, ("moving_mean", (c,), False), ("moving_variance", (c,), False))


def conv_cases() -> list[Case]:
    return [
        Case(
            "valid",
            "op: conv2d, filters: 4, kernel: 3",
            ((7, 9, 6),),
            (valid_out(7, 3, 1), valid_out(9, 3, 1), 4),
            conv_params(3, 3, 6, 4),
            weights=(kernel(3, 3, 6, 4), bias(4)),
            attrs={"pads": ((0, 0), (0, 0)), "strides": (1, 1), "dilation": (1, 1)},
        ),
        Case(
            "same-strided-extra-pixel-bottom-right",
            "op: conv2d, filters: 4, kernel: 3, strides: 2, padding: same",
            ((8, 10, 6),),
            (same_out(8, 2), same_out(10, 2), 4),
            conv_params(3, 3, 6, 4),
            weights=(kernel(3, 3, 6, 4), bias(4)),
            attrs={"pads": (same_pads(8, 3, 2), same_pads(10, 3, 2))},
        ),
        Case(
            "same-even-kernel",
            "op: conv2d, filters: 2, kernel: 4, padding: same",
            ((7, 9, 6),),
            (7, 9, 2),
            conv_params(4, 4, 6, 2),
            weights=(kernel(4, 4, 6, 2), bias(2)),
            attrs={"pads": (same_pads(7, 4, 1), same_pads(9, 4, 1))},
        ),
        Case(
            "valid-dilated",
            "op: conv2d, filters: 3, kernel: 3, dilation: 2",
            ((9, 11, 2),),
            (valid_out(9, 3, 1, 2), valid_out(11, 3, 1, 2), 3),
            conv_params(3, 3, 2, 3),
            weights=(kernel(3, 3, 2, 3), bias(3)),
        ),
        Case(
            "same-dilated",
            "op: conv2d, filters: 3, kernel: 3, dilation: 2, padding: same",
            ((9, 8, 2),),
            (9, 8, 3),
            conv_params(3, 3, 2, 3),
            weights=(kernel(3, 3, 2, 3), bias(3)),
            attrs={"pads": (same_pads(9, 3, 1, 2), same_pads(8, 3, 1, 2))},
        ),
        Case(
            "grouped-no-bias",
            "op: conv2d, filters: 4, kernel: 1, groups: 2, use_bias: false",
            ((5, 5, 6),),
            (5, 5, 4),
            conv_params(1, 1, 6, 4, groups=2, bias=False),
            weights=(kernel(1, 1, 3, 4),),
        ),
        Case(
            "rectangular",
            "op: conv2d, filters: 2, kernel: [1, 3], strides: [2, 1]",
            ((7, 9, 6),),
            (valid_out(7, 1, 2), valid_out(9, 3, 1), 2),
            conv_params(1, 3, 6, 2),
            weights=(kernel(1, 3, 6, 2), bias(2)),
            attrs={"kernel": (1, 3), "strides": (2, 1)},
        ),
    ]


def transposed_out(n: int, k: int, s: int, padding: str) -> int:
    """Keras' Conv2DTranspose output size: n * s ('same'), or the full transposed
    convolution, (n - 1) * s + k, and at least n * s ('valid')."""
    return n * s if padding == "same" else (n - 1) * s + max(k, s)


def transpose_cases() -> list[Case]:
    return [
        Case(
            "valid-odd-kernel",
            "op: conv2d_transpose, filters: 4, kernel: 3, strides: 2",
            ((5, 7, 6),),
            (transposed_out(5, 3, 2, "valid"), transposed_out(7, 3, 2, "valid"), 4),
            conv_params(3, 3, 6, 4),
            weights=(kernel(3, 3, 4, 6), bias(4)),  # Keras' (kh, kw, filters, in)
        ),
        Case(
            "same-even-kernel-no-bias",
            "op: conv2d_transpose, filters: 2, kernel: 4, strides: 2, padding: same, "
            "use_bias: false",
            ((5, 7, 3),),
            (10, 14, 2),
            conv_params(4, 4, 3, 2, bias=False),
            weights=(kernel(4, 4, 2, 3),),
        ),
        Case(
            "valid-stride-above-kernel",
            "op: conv2d_transpose, filters: 2, kernel: [1, 2], strides: [3, 3]",
            ((5, 7, 3),),
            (transposed_out(5, 1, 3, "valid"), transposed_out(7, 2, 3, "valid"), 2),
            conv_params(1, 2, 3, 2),
            weights=(kernel(1, 2, 2, 3), bias(2)),
        ),
    ]


def depthwise_cases() -> list[Case]:
    return [
        Case(
            "valid-multiplier",
            "op: depthwise_conv2d, kernel: 3, depth_multiplier: 2",
            ((7, 9, 6),),
            (valid_out(7, 3, 1), valid_out(9, 3, 1), 12),
            depthwise_params(3, 3, 6, 2),
            weights=(("depthwise_kernel", (3, 3, 6, 2), True), bias(12)),
        ),
        Case(
            "same-strided-no-bias",
            "op: depthwise_conv2d, kernel: 3, strides: 2, padding: same, use_bias: false",
            ((8, 10, 4),),
            (same_out(8, 2), same_out(10, 2), 4),
            depthwise_params(3, 3, 4, 1, bias=False),
            weights=(("depthwise_kernel", (3, 3, 4, 1), True),),
            attrs={"pads": (same_pads(8, 3, 2), same_pads(10, 3, 2))},
        ),
    ]


def pool_cases(op: str) -> list[Case]:
    return [
        Case(
            "default-strides-are-the-pool",
            f"op: {op}, pool: 2",
            ((7, 9, 3),),
            (valid_out(7, 2, 2), valid_out(9, 2, 2), 3),
            attrs={"strides": (2, 2), "pads": ((0, 0), (0, 0))},
        ),
        Case(
            "same-default-strides",
            f"op: {op}, pool: 2, padding: same",
            ((7, 9, 3),),
            (same_out(7, 2), same_out(9, 2), 3),
            attrs={"strides": (2, 2), "pads": (same_pads(7, 2, 2), same_pads(9, 2, 2))},
        ),
        Case(
            "same-stride-1",
            f"op: {op}, pool: 3, strides: 1, padding: same",
            ((7, 9, 3),),
            (7, 9, 3),
            attrs={"pads": (same_pads(7, 3, 1), same_pads(9, 3, 1))},
        ),
        Case(
            "rectangular",
            f"op: {op}, pool: [3, 1], strides: [1, 2]",
            ((7, 9, 3),),
            (valid_out(7, 3, 1), valid_out(9, 1, 2), 3),
        ),
    ]


def merge_cases(op: str) -> list[Case]:
    two = f"op: {op}, inputs: [in0, in1]"
    cases = [
        Case("two", two, ((4, 4, 3), (4, 4, 3)), (4, 4, 3)),
        # broadcasting (numpy's and Keras' rule, batch excluded): a squeeze-excite gate, a
        # per-channel vector, and 1s on both sides
        Case("gate", two, ((8, 8, 16), (1, 1, 16)), (8, 8, 16)),
        Case("vector", two, ((16,), (8, 8, 16)), (8, 8, 16)),
        Case("both-sides", two, ((8, 1, 16), (1, 6, 16)), (8, 6, 16)),
    ]
    if op != "subtract":  # subtract takes exactly two
        cases.append(Case("three", f"op: {op}, inputs: [in0, in1, in2]", ((5,),) * 3, (5,)))
    return cases


CASES: dict[str, list[Case]] = {
    "input": [
        Case("image", "op: activation, fn: relu", ((4, 5, 3),), (4, 5, 3), node="in0"),
        Case("vector", "op: activation, fn: relu", ((10,),), (10,), node="in0"),
    ],
    "conv2d": conv_cases(),
    "depthwise_conv2d": depthwise_cases(),
    "conv2d_transpose": transpose_cases(),
    "batch_norm": [
        Case(
            "image",
            "op: batch_norm",
            ((5, 5, 8),),
            (5, 5, 8),
            *bn_params(8),
            weights=bn_weights(8),
            attrs={"epsilon": 1e-3, "momentum": 0.99},
        ),
        Case(
            "no-center-no-scale",
            "op: batch_norm, center: false, scale: false, epsilon: 1.0e-5",
            ((5, 5, 8),),
            (5, 5, 8),
            *bn_params(8, center=False, scale=False),
            weights=bn_weights(8, center=False, scale=False),
            attrs={"epsilon": 1e-5},
        ),
        Case("vector", "op: batch_norm", ((10,),), (10,), *bn_params(10), weights=bn_weights(10)),
    ],
    "upsample2d": [
        Case("default", "op: upsample2d", ((3, 4, 5),), (6, 8, 5)),
        Case(
            "size",
            "op: upsample2d, size: [2, 3], interpolation: bilinear",
            ((3, 4, 5),),
            (6, 12, 5),
        ),
    ],
    "cropping2d": [
        Case("pairs", "op: cropping2d, cropping: [[1, 0], [2, 3]]", ((7, 9, 2),), (6, 4, 2)),
        Case("int", "op: cropping2d, cropping: 1", ((7, 9, 2),), (5, 7, 2)),
    ],
    "rescaling": [Case("image", "op: rescaling, scale: 0.5, offset: 1.0", ((4, 5, 3),), (4, 5, 3))],
    "separable_conv2d": [
        Case(
            "same-strided",
            "op: separable_conv2d, filters: 5, kernel: 3, strides: 2, padding: same, "
            "depth_multiplier: 2",
            ((8, 7, 3),),
            (4, 4, 5),
            3 * 3 * 3 * 2 + 1 * 1 * 6 * 5 + 5,  # depthwise + pointwise + bias
            weights=(
                ("depthwise_kernel", (3, 3, 3, 2), True),
                ("pointwise_kernel", (1, 1, 6, 5), True),
                ("bias", (5,), True),
            ),
        ),
    ],
    "layer_norm": [
        Case(
            "image",
            "op: layer_norm",
            ((5, 5, 8),),
            (5, 5, 8),
            16,  # gamma and beta over the 8 channels
            weights=(("gamma", (8,), True), ("beta", (8,), True)),
            attrs={"epsilon": 1e-3},
        ),
        Case(
            "beta-only",
            "op: layer_norm, scale: false",
            ((10,),),
            (10,),
            10,
            weights=(("beta", (10,), True),),
        ),
    ],
    "activation": [
        Case("relu", "op: activation, fn: relu", ((4, 4, 3),), (4, 4, 3)),
        Case("softmax", "op: activation, fn: softmax", ((10,),), (10,)),
    ],
    "dense": [
        Case(
            "vector",
            "op: dense, units: 5",
            ((12,),),
            (5,),
            dense_params(12, 5),
            weights=(kernel(12, 5), bias(5)),
        ),
        Case(
            "last-axis-no-bias",
            "op: dense, units: 2, use_bias: false",
            ((3, 4),),
            (3, 2),
            dense_params(4, 2, bias=False),
            weights=(kernel(4, 2),),
        ),
    ],
    "flatten": [Case("image", "op: flatten", ((3, 4, 5),), (3 * 4 * 5,))],
    "reshape": [
        Case("inferred", "op: reshape, target_shape: [-1, 6]", ((4, 4, 3),), (4 * 4 * 3 // 6, 6)),
        Case("explicit", "op: reshape, target_shape: [2, 24]", ((4, 4, 3),), (2, 24)),
        Case("to-vector", "op: reshape, target_shape: [-1]", ((4, 4, 3),), (48,)),
    ],
    "dropout": [
        Case("vector", "op: dropout, rate: 0.5", ((7,),), (7,)),
        Case(
            "per-sample-noise-shape",
            "op: dropout, rate: 0.2, noise_shape: [1, 1, 1]",
            ((5, 7, 3),),
            (5, 7, 3),
            attrs={"noise_shape": (1, 1, 1)},
        ),
        Case(
            "per-channel-noise-shape",
            "op: dropout, rate: 0.2, noise_shape: [1, 7, null]",
            ((5, 7, 3),),
            (5, 7, 3),
            attrs={"noise_shape": (1, 7, None)},
        ),
    ],
    "normalization": [
        Case(
            "stored-statistics",
            "op: normalization",
            ((5, 7, 3),),
            (5, 7, 3),
            2 * 3 + 1,  # Keras' mean (C,), variance (C,) and count (), none trainable
            2 * 3 + 1,
            weights=(("mean", (3,), False), ("variance", (3,), False), ("count", (), False)),
        ),
        Case(
            "fixed-per-channel",
            "op: normalization, mean: [1.0, 2.0, 3.0], variance: [4.0, 0.25, 1.0]",
            ((5, 7, 3),),
            (5, 7, 3),
            attrs={"mean": (1.0, 2.0, 3.0), "variance": (4.0, 0.25, 1.0)},
        ),
        Case(
            "fixed-numbers",
            "op: normalization, mean: 127.5, variance: 16256.25",
            ((6,),),
            (6,),
            attrs={"mean": 127.5, "variance": 16256.25},
        ),
    ],
    "layer_scale": [
        Case(
            "image-default-init",
            "op: layer_scale",
            ((5, 7, 3),),
            (5, 7, 3),
            3,  # gamma, one per channel, trainable
            weights=(("gamma", (3,), True),),
            attrs={"init_value": 1e-6},
        ),
        Case(
            "vector",
            "op: layer_scale, init_value: 0.1",
            ((12,),),
            (12,),
            12,
            weights=(("gamma", (12,), True),),
            attrs={"init_value": 0.1},
        ),
    ],
    "stochastic_depth": [
        Case("image", "op: stochastic_depth, rate: 0.1", ((5, 7, 3),), (5, 7, 3)),
        Case("vector", "op: stochastic_depth, rate: 0.5", ((7,),), (7,), attrs={"rate": 0.5}),
    ],
    "add": [
        *merge_cases("add"),
        # per-input coefficients: the same shape rule, no weights
        Case(
            "scales",
            "op: add, inputs: [in0, in1], scales: [1, 0.17]",
            ((4, 4, 3), (4, 4, 3)),
            (4, 4, 3),
            attrs={"scales": (1.0, 0.17)},
        ),
        Case(
            "scales-broadcast-three",
            "op: add, inputs: [in0, in1, in2], scales: [0.5, -2, 1]",
            ((8, 1, 16), (1, 6, 16), (16,)),
            (8, 6, 16),
            attrs={"scales": (0.5, -2.0, 1.0)},
        ),
    ],
    "multiply": merge_cases("multiply"),
    "subtract": merge_cases("subtract"),
    "concat": [
        Case("channels", "op: concat, inputs: [in0, in1]", ((4, 4, 3), (4, 4, 5)), (4, 4, 8)),
        Case(
            "axis-0-three",
            "op: concat, axis: 0, inputs: [in0, in1, in2]",
            ((2, 4, 3), (5, 4, 3), (1, 4, 3)),
            (8, 4, 3),
        ),
        Case("vectors", "op: concat, inputs: [in0, in1]", ((3,), (4,)), (7,)),
    ],
    "max_pool2d": pool_cases("max_pool2d"),
    "avg_pool2d": pool_cases("avg_pool2d"),
    "global_avg_pool2d": [
        Case("flat", "op: global_avg_pool2d", ((5, 6, 7),), (7,)),
        Case("keepdims", "op: global_avg_pool2d, keepdims: true", ((5, 6, 7),), (1, 1, 7)),
    ],
    "global_max_pool2d": [
        Case("flat", "op: global_max_pool2d", ((5, 6, 7),), (7,)),
        Case("keepdims", "op: global_max_pool2d, keepdims: true", ((5, 6, 7),), (1, 1, 7)),
    ],
    "zero_pad2d": [
        Case(
            "default", "op: zero_pad2d", ((4, 5, 3),), (6, 7, 3), attrs={"padding": ((1, 1),) * 2}
        ),
        Case("int", "op: zero_pad2d, padding: 2", ((4, 5, 3),), (8, 9, 3)),
        Case(
            "height-width",
            "op: zero_pad2d, padding: [1, 2]",
            ((4, 5, 3),),
            (4 + 2, 5 + 4, 3),
            attrs={"padding": ((1, 1), (2, 2))},
        ),
        Case(
            "top-bottom-left-right",
            "op: zero_pad2d, padding: [[1, 2], [3, 4]]",
            ((4, 5, 3),),
            (4 + 1 + 2, 5 + 3 + 4, 3),
            attrs={"padding": ((1, 2), (3, 4))},
        ),
    ],
}
CASES.update(sequence_cases(Case))  # sequences and attention: tests/compiler/sequence_cases.py
CASES.update(recurrent_cases(Case))  # lstm, gru, simple_rnn: the same file
CASES.update(llm_cases(Case))  # rms_norm, grouped_query_attention: tests/compiler/llm_cases.py


def test_every_registered_op_has_cases() -> None:
    assert sorted(CASES) == sorted(builtin_ops())  # a plugin tests its own
    assert all(CASES.values())


@pytest.mark.parametrize(
    ("op", "case"),
    [pytest.param(op, case, id=f"{op}-{case.id}") for op, cases in CASES.items() for case in cases],
)
def test_op(op: str, case: Case) -> None:
    node = compile_layer(case.body, *case.inputs).node(case.node)
    assert node.op == op
    assert node.shape == case.shape
    assert weights_of(node) == list(case.weights)
    counts = node.counts
    assert (counts.total, counts.non_trainable) == (case.total, case.non_trainable)
    assert counts.trainable == case.total - case.non_trainable
    for key, value in case.attrs.items():
        assert getattr(node.attrs, key) == value, key


def test_scaled_add_counts_one_multiplication_per_coefficient_other_than_one() -> None:
    """FLOPs as for every merge (one addition per element and extra input), plus one
    multiplication per element for each coefficient that is not 1; no MACs, no weights."""
    n = 4 * 6 * 3
    shapes = ((4, 6, 3), (4, 6, 3), (4, 6, 3))
    plain = compile_layer("op: add, inputs: [in0, in1, in2]", *shapes).node(LAYER)
    assert (plain.flops, plain.macs) == (2 * n, 0)
    ones = compile_layer("op: add, inputs: [in0, in1, in2], scales: [1, 1, 1]", *shapes)
    assert ones.node(LAYER).flops == 2 * n
    scaled = compile_layer("op: add, inputs: [in0, in1, in2], scales: [1, 0.5, 3]", *shapes)
    assert (scaled.node(LAYER).flops, scaled.node(LAYER).macs) == (2 * n + 2 * n, 0)


@pytest.mark.parametrize("scales", ["[1, '${0.1 * 2}']", "'${[1, 0.1 * 2]}'", "'${[1.0] + [0.2]}'"])
def test_scales_may_be_computed(scales: str) -> None:
    graph = compile_layer(f"op: add, inputs: [in0, in1], scales: {scales}", (3,), (3,))
    assert graph.node(LAYER).attrs.scales == (1.0, 0.1 * 2)


def test_extra_pixel_goes_bottom_right() -> None:
    """The cases above compute TF's split; pin it once with literal numbers."""
    assert same_pads(8, 3, 2) == (0, 1)
    graph = compile_layer("op: conv2d, filters: 1, kernel: 3, strides: 2, padding: same", (8, 8, 1))
    assert graph.node(LAYER).attrs.pads == ((0, 1), (0, 1))


@pytest.mark.parametrize(
    ("body", "shape", "counts"),
    [
        # numbers printed by Keras' model.summary() for the same layers
        ("op: conv2d, filters: 32, kernel: 3", (224, 224, 3), (896, 896, 0)),
        ("op: conv2d, filters: 128, kernel: 3, use_bias: false", (32, 32, 3), (3456, 3456, 0)),
        ("op: batch_norm", (16, 16, 64), (256, 128, 128)),
        ("op: dense, units: 10", (784,), (7850, 7850, 0)),
        ("op: depthwise_conv2d, kernel: 3, use_bias: false", (112, 112, 32), (288, 288, 0)),
        ("op: normalization", (224, 224, 3), (7, 0, 7)),  # EfficientNetB0's normalization
    ],
)
def test_published_keras_counts(body: str, shape: Shape, counts: tuple[int, int, int]) -> None:
    c = compile_layer(body, shape).node(LAYER).counts
    assert (c.total, c.trainable, c.non_trainable) == counts


def test_trainable_false_moves_every_weight_to_non_trainable() -> None:
    c = compile_layer("op: conv2d, filters: 4, kernel: 3, trainable: false", (5, 5, 2)).counts
    assert (c.total, c.trainable, c.non_trainable) == (conv_params(3, 3, 2, 4), 0, c.total)


# -- shape rules over many sizes ------------------------------------------------------------------

windows = st.tuples(
    st.integers(1, 40),  # n
    st.integers(1, 7),  # k
    st.integers(1, 4),  # s
    st.integers(1, 3),  # d
    st.sampled_from(["valid", "same"]),
).filter(lambda w: w[2] == 1 or w[3] == 1)


@settings(max_examples=60, deadline=None)
@given(windows)
def test_conv_shape_rule(window: tuple[int, int, int, int, str]) -> None:
    n, k, s, d, padding = window
    body = f"op: conv2d, filters: 2, kernel: {k}, strides: {s}, dilation: {d}, padding: {padding}"
    if padding == "valid" and (k - 1) * d + 1 > n:
        assert layer_error(body, (n, n + 1, 3)).code == "E070"
        return
    node = compile_layer(body, (n, n + 1, 3)).node(LAYER)
    if padding == "same":
        assert node.shape == (same_out(n, s), same_out(n + 1, s), 2)
        assert node.attrs.pads == (same_pads(n, k, s, d), same_pads(n + 1, k, s, d))
    else:
        assert node.shape == (valid_out(n, k, s, d), valid_out(n + 1, k, s, d), 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 5), st.sampled_from(["valid", "same"]))
def test_pool_shape_rule(n: int, pool: int, padding: str) -> None:
    body = f"op: max_pool2d, pool: {pool}, padding: {padding}"
    if padding == "valid" and pool > n:
        assert layer_error(body, (n, n, 1)).code == "E070"
        return
    node = compile_layer(body, (n, n, 1)).node(LAYER)
    out = same_out(n, pool) if padding == "same" else valid_out(n, pool, pool)
    assert node.shape == (out, out, 1)


# -- what each op rejects -------------------------------------------------------------------------

SHAPE_ERRORS: list[tuple[str, str, tuple[Shape, ...], str]] = [
    (
        "strides-with-dilation",
        "op: conv2d, filters: 4, kernel: 3, strides: 2, dilation: 2",
        ((9, 9, 3),),
        "conv2d 'layer': strides (2, 2) with dilation (2, 2) is not supported",
    ),
    (
        "depthwise-strides-with-dilation",
        "op: depthwise_conv2d, kernel: 3, strides: [1, 2], dilation: [2, 1]",
        ((9, 9, 3),),
        "depthwise_conv2d 'layer': strides (1, 2) with dilation (2, 1) is not supported",
    ),
    (
        "groups-not-dividing-channels",
        "op: conv2d, filters: 8, kernel: 1, groups: 4",
        ((5, 5, 6),),
        "conv2d 'layer': groups=4 must divide both input channels (6) and filters (8)",
    ),
    (
        "groups-not-dividing-filters",
        "op: conv2d, filters: 4, kernel: 1, groups: 3",
        ((5, 5, 6),),
        "conv2d 'layer': groups=3 must divide both input channels (6) and filters (4)",
    ),
    (
        "dilated-kernel-larger-than-input",
        "op: conv2d, filters: 4, kernel: 3, dilation: 3",
        ((6, 9, 3),),
        "conv2d 'layer': kernel 3 (effective 7) is larger than the input height 6 "
        "with padding 'valid'",
    ),
    (
        "conv-on-a-vector",
        "op: conv2d, filters: 4, kernel: 1",
        ((12,),),
        "conv2d 'layer': conv2d needs a 3-D input (height, width, channels), got shape (12,)",
    ),
    (
        "conv-transpose-on-a-vector",
        "op: conv2d_transpose, filters: 4, kernel: 2",
        ((12,),),
        "conv2d_transpose 'layer': conv2d_transpose needs a 3-D input (height, width, "
        "channels), got shape (12,)",
    ),
    (
        "add-different-shapes",
        "op: add, inputs: [in0, in1]",
        ((4, 4, 3), (4, 4, 5)),
        "add 'layer': inputs of shapes (4, 4, 3) and (4, 4, 5) cannot be broadcast together "
        "(inputs 'in0' and 'in1')",
    ),
    (
        "add-scales-too-many",
        "op: add, inputs: [in0, in1], scales: [1, 0.2, 3]",
        ((4, 4, 3), (4, 4, 3)),
        "add 'layer': scales has 3 values for 2 inputs",
    ),
    (
        "add-scales-too-few",
        "op: add, inputs: [in0, in1, in2], scales: [1, 0.2]",
        ((3,), (3,), (3,)),
        "add 'layer': scales has 2 values for 3 inputs",
    ),
    (
        "multiply-third-input-differs",
        "op: multiply, inputs: [in0, in1, in2]",
        ((3,), (3,), (4,)),
        "multiply 'layer': inputs of shapes (3,) and (4,) cannot be broadcast together "
        "(inputs 'in0' and 'in2')",
    ),
    (
        "concat-other-axis-differs",
        "op: concat, inputs: [in0, in1]",
        ((4, 4, 3), (2, 4, 3)),
        "concat 'layer': cannot concatenate shapes (4, 4, 3) and (2, 4, 3) on axis -1 "
        "(inputs 'in0' and 'in1')",
    ),
    (
        "concat-axis-out-of-range",
        "op: concat, axis: 3, inputs: [in0, in1]",
        ((4, 4, 3), (4, 4, 3)),
        "concat 'layer': axis 3 is out of range for rank-3 inputs",
    ),
    (
        "reshape-wrong-size",
        "op: reshape, target_shape: [5, 10]",
        ((4, 4, 3),),
        "reshape 'layer': cannot reshape (4, 4, 3) (48 values) into (5, 10) (50 values)",
    ),
    (
        "reshape-inferred-not-dividing",
        "op: reshape, target_shape: [5, -1]",
        ((4, 4, 3),),
        "reshape 'layer': cannot reshape (4, 4, 3) (48 values) into (5, -1)",
    ),
    (
        "dropout-noise-shape-too-short",
        "op: dropout, rate: 0.5, noise_shape: [1, 1]",
        ((5, 7, 3),),
        "dropout 'layer': noise_shape [1, 1] has 2 entries, the input (5, 7, 3) has 3 axes "
        "(batch excluded)",
    ),
    (
        "dropout-noise-shape-wrong-size",
        "op: dropout, rate: 0.5, noise_shape: [1, 5, null]",
        ((5, 7, 3),),
        "dropout 'layer': noise_shape [1, 5, null]: entry 1 is 5, but that input axis has size 7",
    ),
    (
        "normalization-mean-without-variance",
        "op: normalization, mean: [1.0, 2.0, 3.0]",
        ((5, 7, 3),),
        "normalization 'layer': mean is given without variance",
    ),
    (
        "normalization-wrong-length",
        "op: normalization, mean: [1.0, 2.0], variance: [1.0, 1.0]",
        ((5, 7, 3),),
        "normalization 'layer': mean has 2 values, the input (5, 7, 3) has 3 channels",
    ),
    (
        "normalization-number-and-list",
        "op: normalization, mean: 0.5, variance: [1.0, 1.0, 1.0]",
        ((5, 7, 3),),
        "normalization 'layer': one of mean and variance is a number, the other a list",
    ),
    (
        "reshape-two-inferred",
        "op: reshape, target_shape: [-1, -1]",
        ((4, 4, 3),),
        "reshape 'layer': target_shape (-1, -1) is invalid",
    ),
]


@pytest.mark.parametrize(
    ("body", "inputs", "message"),
    [pytest.param(body, inputs, message, id=i) for i, body, inputs, message in SHAPE_ERRORS],
)
def test_shape_error(body: str, inputs: tuple[Shape, ...], message: str) -> None:
    d = layer_error(body, *inputs)
    assert (d.code, d.message) == ("E070", message)
    assert d.location is not None and (d.location.line, d.location.col) == (5, 5)


@pytest.mark.parametrize(
    ("body", "shape", "fragment"),
    [
        ("op: conv2d, filters: 4, kernel: [1, 5]", (9, 4, 3), "the input width 4"),
        ("op: depthwise_conv2d, kernel: 6", (5, 9, 3), "the input height 5"),
        ("op: max_pool2d, pool: 4", (3, 3, 3), "the input height 3"),
        ("op: avg_pool2d, pool: [1, 4]", (3, 3, 3), "the input width 3"),
    ],
)
def test_window_larger_than_input(body: str, shape: Shape, fragment: str) -> None:
    d = layer_error(body, shape)
    assert d.code == "E070"
    assert f"is larger than {fragment} with padding 'valid'" in d.message
    assert d.hint.startswith("use padding: same")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "op: conv2d, filters: 0, kernel: 3",
            "invalid conv2d.filters 0: input should be greater than 0",
        ),
        (
            "op: conv2d, filters: 2.0, kernel: 3",
            "invalid conv2d.filters 2.0: input should be a valid integer",
        ),
        (
            "op: conv2d, filters: 2, kernel: 3, padding: full",
            "invalid conv2d.padding 'full': input should be 'valid' or 'same'",
        ),
        (
            "op: conv2d, filters: 2, kernel: 3, use_bias: 1",
            "invalid conv2d.use_bias 1: input should be a valid boolean",
        ),
        ("op: dense, units: -3", "invalid dense.units -3: input should be greater than 0"),
        ("op: dropout, rate: 1.0", "invalid dropout.rate 1.0: input should be less than 1"),
        (
            "op: stochastic_depth, rate: -0.1",
            "invalid stochastic_depth.rate -0.1: input should be greater than or equal to 0",
        ),
        (
            "op: dropout, rate: 0.5, noise_shape: [1, 0, 1]",
            "invalid dropout.noise_shape [1, 0, 1]: input should be greater than 0",
        ),
        (
            "op: normalization, mean: 0.0, variance: -1.0",
            "invalid normalization.variance -1.0: input should be a non-negative number, or a "
            "list of them (one per channel)",
        ),
        (
            "op: add, inputs: [in0, in0], scales: [1, true]",
            "invalid add.scales [1, True]: input should be a list of numbers, one per input",
        ),
        (
            "op: add, inputs: [in0, in0], scales: [1, '0.5']",
            "invalid add.scales [1, '0.5']: input should be a list of numbers, one per input",
        ),
        (
            "op: add, inputs: [in0, in0], scales: 0.5",
            "invalid add.scales 0.5: input should be a list of numbers, one per input",
        ),
        (
            "op: add, inputs: [in0, in0], scales: [1, .inf]",
            "invalid add.scales [1, inf]: input should be a list of numbers, one per input",
        ),
        (
            "op: batch_norm, momentum: 2.0",
            "invalid batch_norm.momentum 2.0: input should be less than or equal to 1",
        ),
        (
            "op: zero_pad2d, padding: -1",
            "invalid zero_pad2d.padding -1: input should be greater than or equal to 0",
        ),
    ],
)
def test_attribute_values_are_checked_strictly(body: str, message: str) -> None:
    d = layer_error(body, (8, 8, 3))
    assert (d.code, d.message) == ("E032", message)


# What each op cannot do without, written out: a Keras layer's required constructor arguments
# (Conv2D(filters, kernel_size), Dense(units), Dropout(rate), Embedding(input_dim,
# output_dim), MultiHeadAttention(num_heads, key_dim), Permute(dims), Reshape(target_shape),
# Rescaling(scale), Activation(activation) as fn), and archc's own choices where Keras has a
# default: a pool size is always written (pool), take names its index, stochastic depth its
# rate. An op not listed here fails test_required_attributes_are_written_out.
REQUIRED: dict[str, tuple[str, ...]] = {
    "activation": ("fn",),
    "avg_pool1d": ("pool",),
    "avg_pool2d": ("pool",),
    "conv1d": ("filters", "kernel"),
    "conv2d": ("filters", "kernel"),
    "conv2d_transpose": ("filters", "kernel"),
    "dense": ("units",),
    "depthwise_conv2d": ("kernel",),
    "dropout": ("rate",),
    "embedding": ("input_dim", "output_dim"),
    "max_pool1d": ("pool",),
    "max_pool2d": ("pool",),
    "multi_head_attention": ("key_dim", "num_heads"),
    # GroupQueryAttention(head_dim, num_query_heads, num_key_value_heads)
    "grouped_query_attention": ("head_dim", "num_key_value_heads", "num_query_heads"),
    "lstm": ("units",),
    "gru": ("units",),
    "simple_rnn": ("units",),
    "permute": ("dims",),
    "rescaling": ("scale",),
    "reshape": ("target_shape",),
    "separable_conv2d": ("filters", "kernel"),
    "stochastic_depth": ("rate",),
    "take": ("index",),
    **dict.fromkeys(
        [
            *("add", "batch_norm", "class_token", "concat", "cropping2d", "flatten"),
            *("global_avg_pool1d", "global_avg_pool2d", "global_max_pool1d"),
            *("global_max_pool2d", "layer_norm", "layer_scale", "multiply", "normalization"),
            *("positional_embedding", "slice", "subtract", "upsample2d", "zero_pad2d"),
            *("rms_norm", "sinusoidal_embedding"),
        ],
        (),
    ),
}
MERGES = {"add", "concat", "multiply", "subtract"}  # two inputs at least


def test_required_attributes_are_written_out() -> None:
    ops = builtin_ops()
    assert set(REQUIRED) == set(ops) - {"input"}
    assert {name for name, op in ops.items() if op.min_inputs > 1} == MERGES


@pytest.mark.parametrize("op", sorted(REQUIRED))
def test_missing_required_attributes_are_named(op: str) -> None:
    required = REQUIRED[op]
    merge = op in MERGES
    body = f"op: {op}, inputs: [in0, in1]" if merge else f"op: {op}"
    shapes = (SEQUENCE_INPUT if op in NEEDS_SEQUENCE else (4, 4, 3),) * (2 if merge else 1)
    if not required:
        compile_layer(body, *shapes)
        return
    found = layer_errors(body, *shapes)
    need = f" ('{op}' requires: {', '.join(required)})"
    assert [(d.code, d.message, d.hint) for d in found] == [
        (
            "E011",
            f"missing required key '{key}' in op '{op}'",
            f"add '{key}: ...'{need}, or give it in defaults: {op}:",
        )
        for key in required
    ]
