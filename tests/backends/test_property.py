"""Property-based cross-backend tests: random valid specs compile, count and compute the same.

A hypothesis strategy writes random specs as YAML text: chains and DAGs (residual adds and
multiplies, concatenations on any axis, several outputs, sometimes two inputs) over every op
in the registry, with random kernels, strides, paddings, dilations, groups, depth multipliers,
frozen layers and L2 factors, on non-square inputs of odd and even sizes. Shapes are tracked
while the spec is drawn, so every spec is valid by construction; a SpecError is a bug (in
archc or here).

The default profile runs a handful of examples so CI stays cheap; `HYPOTHESIS_PROFILE=long`
runs thousands. Nothing here measures time.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.ir import Counts
from archc.compiler.load import loads
from archc.compiler.ops import Activation
from archc.compiler.plugins import builtin_ops
from tests.backends.llm_property import LLM_EMITTERS, LLM_WEIGHTS
from tests.backends.sequence_property import SEQUENCE_EMITTERS, SEQUENCE_WEIGHTS
from tests.conftest import ROOT, RUFF

# random specs legitimately include softmax over a size-1 axis; Keras warns about it
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("archc-ci", max_examples=25, derandomize=True, **_COMMON)
LONG_EXAMPLES = int(os.environ.get("ARCHC_FUZZ_EXAMPLES", "2000"))  # scripts/fuzz.sh
settings.register_profile("archc-long", max_examples=LONG_EXAMPLES, **_COMMON)
LONG = os.environ.get("HYPOTHESIS_PROFILE", "") == "long"
PROFILE = settings.get_profile("archc-long" if LONG else "archc-ci")
# the cheap properties (no Keras) afford more examples than the cross-backend one
CHEAP = settings(PROFILE, max_examples=PROFILE.max_examples * (1 if LONG else 5))

MAX_SIZE = 1500  # values per example in any tensor (batch excluded): keeps Keras fast
ACTIVATIONS = list(typing.get_args(Activation))


# -- the spec builder -------------------------------------------------------------------------
@dataclass
class Builder:
    """Draws one spec. `shapes` maps every node (inputs included) to its channels-last shape."""

    draw: Callable[..., Any]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    inputs: list[str] = field(default_factory=list)

    def add(self, op: str, ins: list[str], shape: tuple[int, ...], **attrs: Any) -> str:
        name = f"n{len(self.items)}_{op}"
        item: dict[str, Any] = {"op": op, "name": name, **attrs}
        item["inputs"] = ins[0] if len(ins) == 1 else ins
        self.items.append(item)
        self.shapes[name] = shape
        self.used.update(ins)
        return name

    def pick(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options))

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def flag(self, p_true: float = 0.5) -> bool:
        return self.draw(st.floats(0, 1)) < p_true

    def trainable(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.flag(0.15):
            attrs["trainable"] = False
        return attrs

    def text(self) -> str:
        outputs = [n for n in self.shapes if n not in self.used and n not in self.inputs]
        lines = ["archc: 1", "name: random", "inputs:"]
        lines += [f"  - {{name: {n}, shape: {list(self.shapes[n])}}}" for n in self.inputs]
        lines.append("layers:")
        lines += [f"  - {json.dumps(item)}" for item in self.items]
        last = self.items[-1]["name"]
        if outputs != [last]:
            lines.append(f"outputs: {json.dumps([*[o for o in outputs if o != last], last])}")
        return "\n".join(lines) + "\n"


def _window(n: int, k: int, s: int, d: int, padding: str) -> int:
    span = (k - 1) * d + 1
    return -(-n // s) if padding == "same" else (n - span) // s + 1


def _window_attrs(
    b: Builder, shape: tuple[int, ...], dilate: bool, square_strides: bool = False
) -> tuple[dict, tuple]:
    """kernel / strides / dilation / padding that fit the input, and the output H, W.

    square_strides: TensorFlow's depthwise kernel only takes equal strides, and archc rejects
    others (test_verify.test_depthwise_with_unequal_strides_is_rejected_or_works)."""
    h, w, _ = shape
    kernel = [b.int(1, 4), b.int(1, 4)]
    strides = [b.int(1, 3), b.int(1, 3)]
    if square_strides:
        strides[1] = strides[0]
    dilation = [1, 1]
    if dilate and strides == [1, 1] and b.flag(0.4):
        dilation = [b.int(1, 3), b.int(1, 3)]
    padding = b.pick(["same", "valid"])
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    if spans[0] > h or spans[1] > w:
        padding = "same"
    out = (
        _window(h, kernel[0], strides[0], dilation[0], padding),
        _window(w, kernel[1], strides[1], dilation[1], padding),
    )
    attrs: dict[str, Any] = {"kernel": _pair(b, kernel), "strides": _pair(b, strides)}
    if dilation != [1, 1]:
        attrs["dilation"] = _pair(b, dilation)
    attrs["padding"] = padding
    return attrs, out


def _pair(b: Builder, v: list[int]) -> Any:
    return v[0] if v[0] == v[1] and b.flag() else v


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _activation(b: Builder, attrs: dict[str, Any]) -> dict[str, Any]:
    fn = b.pick(ACTIVATIONS)
    if fn != "linear" or b.flag(0.2):
        attrs["activation"] = fn
    return attrs


def _l2(b: Builder, attrs: dict[str, Any]) -> dict[str, Any]:
    if b.flag(0.2):
        attrs["kernel_l2"] = b.pick([0.01, 0.001, 0.0001])
    return attrs


# one emitter per op: (builder, input node) -> new node, or None when it does not apply
def conv2d(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3:
        return None
    c = shape[2]
    groups = b.pick(_divisors(c)) if b.flag(0.4) else 1
    filters = groups * b.int(1, max(1, 8 // groups))
    attrs, (ho, wo) = _window_attrs(b, shape, dilate=True)
    attrs = {"filters": filters, **attrs}
    if groups > 1:
        attrs["groups"] = groups
    if b.flag(0.3):
        attrs["use_bias"] = False
    attrs = b.trainable(_l2(b, _activation(b, attrs)))
    return b.add("conv2d", [x], (ho, wo, filters), **attrs)


def depthwise_conv2d(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3:
        return None
    mult = b.int(1, 3) if shape[2] <= 4 else 1
    attrs, (ho, wo) = _window_attrs(b, shape, dilate=True, square_strides=True)
    if mult > 1 or b.flag(0.2):
        attrs["depth_multiplier"] = mult
    if b.flag(0.3):
        attrs["use_bias"] = False
    attrs = b.trainable(_l2(b, _activation(b, attrs)))
    return b.add("depthwise_conv2d", [x], (ho, wo, shape[2] * mult), **attrs)


def separable_conv2d(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3:
        return None
    attrs, (ho, wo) = _window_attrs(b, shape, dilate=True, square_strides=True)
    filters = b.int(1, 6)
    if b.flag(0.3):
        attrs["depth_multiplier"] = b.int(1, 2)
    if b.flag(0.3):
        attrs["use_bias"] = False
    attrs = b.trainable(_activation(b, attrs))
    return b.add("separable_conv2d", [x], (ho, wo, filters), filters=filters, **attrs)


def conv2d_transpose(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3:
        return None
    kernel, strides = [b.int(1, 4), b.int(1, 4)], [b.int(1, 3), b.int(1, 3)]
    padding = b.pick(["same", "valid"])
    out = tuple(
        n * s if padding == "same" else (n - 1) * s + max(k, s)
        for n, k, s in zip(shape[:2], kernel, strides, strict=True)
    )
    filters = b.int(1, 5)
    attrs = {"kernel": _pair(b, kernel), "strides": _pair(b, strides), "padding": padding}
    if b.flag(0.3):
        attrs["use_bias"] = False
    attrs = b.trainable(_activation(b, {"filters": filters, **attrs}))
    return b.add("conv2d_transpose", [x], (*out, filters), **attrs)


def upsample2d(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3:
        return None
    size = [b.int(1, 3), b.int(1, 3)]
    mode = b.pick(["nearest", "bilinear"])
    out = (shape[0] * size[0], shape[1] * size[1], shape[2])
    return b.add("upsample2d", [x], out, size=size, interpolation=mode)


def cropping2d(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3 or min(shape[:2]) < 2:
        return None
    t, bottom = b.int(0, (shape[0] - 1) // 2), b.int(0, (shape[0] - 1) // 2)
    left, r = b.int(0, (shape[1] - 1) // 2), b.int(0, (shape[1] - 1) // 2)
    out = (shape[0] - t - bottom, shape[1] - left - r, shape[2])
    return b.add("cropping2d", [x], out, cropping=[[t, bottom], [left, r]])


def rescaling(b: Builder, x: str) -> str:
    return b.add(
        "rescaling", [x], b.shapes[x], scale=b.pick([0.5, 2.0, -1.0]), offset=b.pick([0.0, 1.5])
    )


def layer_norm(b: Builder, x: str) -> str:
    attrs: dict[str, Any] = {}
    # over one channel the output is beta, and Keras' fused x * inv + (beta - mean * inv)
    # leaves float32 rounding times 1/sqrt(epsilon) around it (1.6e-5 at 1e-6: a finding of
    # the long profile, README "what the language does not express"); PyTorch gives beta
    tiny = b.shapes[x][-1] > 1
    if b.flag(0.4):
        attrs["epsilon"] = b.pick([0.001, 0.01, 0.1, *([1e-6] if tiny else [])])
    if b.flag(0.2):
        attrs[b.pick(["center", "scale"])] = False
    return b.add("layer_norm", [x], b.shapes[x], **b.trainable(attrs))


def normalization(b: Builder, x: str) -> str:
    attrs: dict[str, Any] = {}
    c = b.shapes[x][-1]
    if b.flag(0.3):  # fixed numbers
        attrs = {"mean": b.pick([0.0, 0.5, -2.0]), "variance": b.pick([1.0, 4.0, 0.25])}
    elif b.flag(0.4):  # fixed per channel
        attrs["mean"] = [b.pick([0.0, 1.5, -0.5]) for _ in range(c)]
        attrs["variance"] = [b.pick([1.0, 2.0, 0.5]) for _ in range(c)]
    return b.add("normalization", [x], b.shapes[x], **attrs)


def layer_scale(b: Builder, x: str) -> str:
    attrs = {"init_value": b.pick([1e-6, 0.1, 1.0])} if b.flag(0.7) else {}
    return b.add("layer_scale", [x], b.shapes[x], **b.trainable(attrs))


def batch_norm(b: Builder, x: str) -> str:
    attrs: dict[str, Any] = {}
    if b.flag(0.4):
        attrs["epsilon"] = b.pick([0.001, 0.01, 0.1, 0.0001])
    if b.flag(0.3):
        attrs["momentum"] = b.pick([0.9, 0.5, 0.99])
    if b.flag(0.15):  # PyTorch has one `affine` switch for both (see test_torch_backend)
        attrs["center"] = attrs["scale"] = False
    return b.add("batch_norm", [x], b.shapes[x], **b.trainable(attrs))


def activation(b: Builder, x: str) -> str:
    attrs: dict[str, Any] = {"fn": b.pick(ACTIVATIONS)}
    if attrs["fn"] == "leaky_relu" and b.flag(0.5):  # the function's own arguments
        attrs["alpha"] = b.pick([0.0, 0.1, 0.3])
    if attrs["fn"] == "gelu" and b.flag(0.5):
        attrs["approximate"] = b.flag()
    return b.add("activation", [x], b.shapes[x], **attrs)


def dense(b: Builder, x: str) -> str | None:
    units = b.int(1, 8)
    attrs = b.trainable(_l2(b, _activation(b, {"units": units})))
    if b.flag(0.3):
        attrs["use_bias"] = False
    return b.add("dense", [x], (*b.shapes[x][:-1], units), **attrs)


def flatten(b: Builder, x: str) -> str | None:
    return b.add("flatten", [x], (math.prod(b.shapes[x]),))


def reshape(b: Builder, x: str) -> str | None:
    size = math.prod(b.shapes[x])
    target: list[int] = []
    rest = size
    for _ in range(b.int(0, 2)):
        d = b.pick(_divisors(rest))
        target.append(d)
        rest //= d
    target.append(rest)
    target = b.draw(st.permutations(target))
    shape = tuple(target)
    if b.flag(0.4):
        target[b.int(0, len(target) - 1)] = -1
    return b.add("reshape", [x], shape, target_shape=list(target))


def dropout(b: Builder, x: str) -> str | None:
    attrs: dict[str, Any] = {"rate": b.pick([0.0, 0.25, 0.5])}
    if b.flag(0.5):  # per axis: shared (1), or per element (the size or null)
        attrs["noise_shape"] = [b.pick([1, n, None]) for n in b.shapes[x]]
    return b.add("dropout", [x], b.shapes[x], **attrs)


def stochastic_depth(b: Builder, x: str) -> str | None:
    return b.add("stochastic_depth", [x], b.shapes[x], rate=b.pick([0.0, 0.1, 0.5]))


def _pool(op: str) -> Callable[[Builder, str], str | None]:
    def emit(b: Builder, x: str) -> str | None:
        shape = b.shapes[x]
        if len(shape) != 3:
            return None
        h, w, c = shape
        pool = [b.int(1, 3), b.int(1, 3)]
        strides = [b.int(1, 3), b.int(1, 3)] if b.flag(0.6) else pool
        padding = b.pick(["same", "valid"])
        if pool[0] > h or pool[1] > w:
            padding = "same"
        out = (
            _window(h, pool[0], strides[0], 1, padding),
            _window(w, pool[1], strides[1], 1, padding),
        )
        attrs: dict[str, Any] = {"pool": _pair(b, pool), "padding": padding}
        if strides is not pool:
            attrs["strides"] = _pair(b, strides)
        return b.add(op, [x], (*out, c), **attrs)

    return emit


def _global_pool(op: str) -> Callable[[Builder, str], str | None]:
    def emit(b: Builder, x: str) -> str | None:
        shape = b.shapes[x]
        if len(shape) != 3:
            return None
        keep = b.flag()
        return b.add(op, [x], (1, 1, shape[2]) if keep else (shape[2],), keepdims=keep)

    return emit


def zero_pad2d(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 3:
        return None
    t, bo, left, r = (b.int(0, 2) for _ in range(4))
    form = b.pick(["n", "hw", "each"])
    if form == "n":
        bo = left = r = t
        padding: Any = t
    elif form == "hw":
        bo, r = t, left
        padding = [t, left]
    else:
        padding = [[t, bo], [left, r]]
    out = (shape[0] + t + bo, shape[1] + left + r, shape[2])
    return b.add("zero_pad2d", [x], out, padding=padding)


def _same_shape_branch(b: Builder, x: str) -> str:
    """A node computed from x with x's shape (the other arm of a residual or a gate)."""
    shape = b.shapes[x]
    choices = ["activation", "batch_norm", "dense"] + (["conv"] if len(shape) == 3 else [])
    kind = b.pick(choices)
    if kind == "conv":
        k = b.pick([1, 3])
        attrs = _activation(b, {"filters": shape[2], "kernel": k, "padding": "same"})
        return b.add("conv2d", [x], shape, **attrs)
    if kind == "dense":
        return b.add("dense", [x], shape, **_activation(b, {"units": shape[-1]}))
    return activation(b, x) if kind == "activation" else batch_norm(b, x)


def _elementwise(op: str) -> Callable[[Builder, str], str | None]:
    def emit(b: Builder, x: str) -> str | None:
        shape = b.shapes[x]
        same = [n for n, s in b.shapes.items() if s == shape and n != x]
        ins = [x]
        if same:
            ins += b.draw(st.lists(st.sampled_from(same), max_size=2, unique=True))
        if len(ins) == 1 or b.flag(0.3):
            ins.append(_same_shape_branch(b, x))
        return b.add(op, b.draw(st.permutations(ins)), shape)

    return emit


def _add(b: Builder, x: str) -> str | None:
    """A plain sum, or (one time in three) one coefficient per input (`scales`)."""
    name = _elementwise("add")(b, x)
    if name is not None and b.flag(0.35):
        n = len(b.items[-1]["inputs"])
        b.items[-1]["scales"] = [b.pick([1, 1.0, 0.17, -2.0, 0.5]) for _ in range(n)]
    return name


def _subtract(b: Builder, x: str) -> str | None:
    """x minus a same-shape branch, or minus (or from) a broadcast per-channel mean."""
    shape = b.shapes[x]
    if len(shape) == 3 and b.flag(0.5):
        keep = b.flag()
        mean = b.add("global_avg_pool2d", [x], (1, 1, shape[2]) if keep else (shape[2],))
        if keep:
            b.items[-1]["keepdims"] = True
        return b.add("subtract", b.draw(st.permutations([x, mean])), shape)
    return b.add("subtract", b.draw(st.permutations([x, _same_shape_branch(b, x)])), shape)


def concat(b: Builder, x: str) -> str | None:
    shape = b.shapes[x]
    rank = len(shape)
    axis = b.int(-rank, rank - 1)
    ax = axis % rank

    def fits(s: tuple[int, ...]) -> bool:
        return len(s) == rank and all(s[i] == shape[i] for i in range(rank) if i != ax)

    ins = [x, *(n for n in b.shapes if n != x and fits(b.shapes[n]))][:3]
    if len(ins) == 1:
        if ax == rank - 1 and rank == 3 and b.flag():
            f = b.int(1, 4)
            ins.append(b.add("conv2d", [x], (*shape[:2], f), filters=f, kernel=1))
        elif rank == 3 and ax < 2 and b.flag():
            pads = [[0, 0], [0, 0]]
            pads[ax] = [b.int(0, 2), b.int(1, 2)]
            grown = list(shape)
            grown[ax] += sum(pads[ax])
            ins.append(b.add("zero_pad2d", [x], tuple(grown), padding=pads))
        else:
            ins.append(_same_shape_branch(b, x))
    out = list(shape)
    out[ax] = sum(b.shapes[n][ax] for n in ins)
    if math.prod(out) > MAX_SIZE:
        return None
    attrs = {} if axis == -1 and b.flag() else {"axis": axis}
    return b.add("concat", b.draw(st.permutations(ins)), tuple(out), **attrs)


EMITTERS: dict[str, Callable[[Builder, str], str | None]] = {
    "conv2d": conv2d,
    "depthwise_conv2d": depthwise_conv2d,
    "batch_norm": batch_norm,
    "layer_norm": layer_norm,
    "normalization": normalization,
    "layer_scale": layer_scale,
    "separable_conv2d": separable_conv2d,
    "conv2d_transpose": conv2d_transpose,
    "upsample2d": upsample2d,
    "cropping2d": cropping2d,
    "rescaling": rescaling,
    "activation": activation,
    "dense": dense,
    "flatten": flatten,
    "reshape": reshape,
    "dropout": dropout,
    "stochastic_depth": stochastic_depth,
    "max_pool2d": _pool("max_pool2d"),
    "avg_pool2d": _pool("avg_pool2d"),
    "global_avg_pool2d": _global_pool("global_avg_pool2d"),
    "global_max_pool2d": _global_pool("global_max_pool2d"),
    "zero_pad2d": zero_pad2d,
    "add": _add,
    "multiply": _elementwise("multiply"),
    "subtract": _subtract,
    "concat": concat,
}


# how often each op is drawn, relative to 1 (branches add activations, BNs and convs anyway)
WEIGHTS = {"conv2d": 4, "depthwise_conv2d": 2, "max_pool2d": 2, "avg_pool2d": 2, "concat": 2}
# sequences and attention: tests/backends/sequence_property.py
EMITTERS.update(SEQUENCE_EMITTERS)
WEIGHTS.update(SEQUENCE_WEIGHTS)
# rms_norm, grouped_query_attention: tests/backends/llm_property.py
EMITTERS.update(LLM_EMITTERS)
WEIGHTS.update(LLM_WEIGHTS)


@st.composite
def random_specs(draw: Callable[..., Any], max_layers: int = 7) -> str:
    """YAML text of a valid spec (shapes are tracked as it is drawn)."""
    b = Builder(draw)
    h = draw(st.integers(3, 13))
    w = draw(st.integers(3, 12))
    w += w >= h  # non-square: 3..13 without h
    c = draw(st.integers(1, 5))
    b.inputs.append("x")
    b.shapes["x"] = (h, w, c)
    x = "x"
    if draw(st.integers(0, 5)) == 0:  # a second input, merged at once
        b.inputs.append("y")
        b.shapes["y"] = (h, w, c)
        merge = draw(st.sampled_from(["add", "multiply", "concat"]))
        x = b.add(merge, ["x", "y"], (h, w, 2 * c) if merge == "concat" else (h, w, c))
    ops = [op for op in sorted(EMITTERS) for _ in range(WEIGHTS.get(op, 1))]
    for _ in range(draw(st.integers(1, max_layers))):
        for _attempt in range(10):
            op = draw(st.sampled_from(ops))
            mark = len(b.items), dict(b.shapes), set(b.used)
            new = EMITTERS[op](b, x)
            if new is not None and math.prod(b.shapes[new]) <= MAX_SIZE:
                x = new
                break
            # roll back anything a rejected emitter added
            del b.items[mark[0] :]
            b.shapes, b.used = mark[1], mark[2]
        if draw(st.integers(0, 3)) == 0:  # sometimes branch off an earlier node
            x = draw(st.sampled_from(sorted(n for n in b.shapes if n not in b.inputs) or [x]))
    # the shapes tracked while drawing, for the tests to hold against the compiler's
    return b.text() + "# shapes: " + json.dumps(b.shapes) + "\n"


def tracked_shapes(text: str) -> dict[str, tuple[int, ...]]:
    line = text.rstrip("\n").rsplit("\n", 1)[-1]
    assert line.startswith("# shapes: ")
    return {k: tuple(v) for k, v in json.loads(line[len("# shapes: ") :]).items()}


# -- helpers ----------------------------------------------------------------------------------
def compiled_from(text: str, folder: str) -> Compiled:
    """archc.compiler.load.loads + compile_spec; the text is also on disk for generated sources."""
    path = Path(folder) / "random.yaml"
    path.write_text(text, encoding="utf-8")
    return compile_spec(loads(text, str(path)))


def torch_counts(model: torch.nn.Module) -> Counts:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if "num_batches_tracked" not in n)
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


# -- properties -------------------------------------------------------------------------------
def test_the_generator_covers_every_registered_op() -> None:
    assert set(EMITTERS) == set(builtin_ops()) - {"input"}  # a plugin tests its own


@CHEAP
@given(random_specs(max_layers=10))
def test_random_specs_compile_and_torch_counts_equal_the_ir(text: str) -> None:
    """Cheap (no Keras): every drawn spec is valid, every shape the compiler infers is the
    one tracked independently while drawing, and the PyTorch model's counts (from its
    parameters and buffers) and output shapes match."""
    with tempfile.TemporaryDirectory(prefix="archc-prop-") as folder:
        compiled = compiled_from(text, folder)
        model = torch_backend.build(compiled)
    graph = compiled.graph
    tracked = tracked_shapes(text)
    assert {n.name: n.shape for n in graph.nodes} == tracked
    assert torch_counts(model) == graph.counts
    model.eval()
    xs = [torch.randn(2, *torch_backend.input_shape(tracked[n])) for n in graph.inputs]
    with torch.no_grad():
        ys = model(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    for y, name in zip(ys, graph.outputs, strict=True):
        assert tuple(y.shape) == (2, *torch_backend.input_shape(tracked[name])), name


@PROFILE
@given(random_specs())
def test_random_specs_agree_across_backends(text: str) -> None:
    """verify() passes: IR, Keras and PyTorch counts are equal and every compared layer's
    output agrees (it raises otherwise)."""
    with tempfile.TemporaryDirectory(prefix="archc-prop-") as folder:
        verify(compiled_from(text, folder))


def _ruff(*args: str, source: str) -> subprocess.CompletedProcess[str]:
    target = "generated/_archc_property.py"  # resolves pyproject.toml; never written
    return subprocess.run(
        [str(RUFF), *args, "--stdin-filename", target, "-"],
        cwd=ROOT,
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@CHEAP
@given(random_specs())
def test_random_specs_generate_ruff_clean_torch_source(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="archc-prop-") as folder:
        compiled = compiled_from(text, folder)
        source = torch_backend.render(compiled)
    lint = _ruff("check", "--no-cache", source=source)
    assert lint.returncode == 0, lint.stdout
    fmt = _ruff("format", "--diff", source=source)
    assert fmt.returncode == 0, fmt.stdout
