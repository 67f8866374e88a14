"""The property test's emitters (tests/backends/test_property.py, `EMITTERS`) for the sequence
and attention ops: each draws a valid use of its op on the current node, or returns None.

Random specs start from an image; sequences come from reshapes, so these emitters mostly
apply after one. `embedding` needs an input of token ids, which random specs (float images)
do not draw: its emitter returns None, and tests/backends/test_sequences.py covers it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

Emit = Callable[[Any, str], "str | None"]
ACTIVATIONS = ["linear", "relu", "gelu", "softmax", "tanh", "silu"]


def _steps(n: int, k: int, s: int, d: int, padding: str) -> int:
    return -(-n // s) if padding == "same" else (n - (k - 1) * d - 1) // s + 1


def conv1d(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 2:
        return None
    steps, c = shape
    groups = b.pick([g for g in range(1, c + 1) if c % g == 0]) if b.flag(0.3) else 1
    filters = groups * b.int(1, max(1, 6 // groups))
    kernel, strides = b.int(1, 4), b.int(1, 3)
    dilation = b.int(1, 3) if strides == 1 and b.flag(0.3) else 1
    padding = b.pick(["same", "valid"])
    if (kernel - 1) * dilation + 1 > steps:
        padding = "same"
    attrs: dict[str, Any] = {"filters": filters, "kernel": kernel, "strides": strides}
    attrs["padding"] = padding
    if dilation > 1:
        attrs["dilation"] = dilation
    if groups > 1:
        attrs["groups"] = groups
    if b.flag(0.3):
        attrs["use_bias"] = False
    if b.flag(0.5):
        attrs["activation"] = b.pick(ACTIVATIONS)
    if b.flag(0.2):
        attrs["kernel_l2"] = 0.001
    out = (_steps(steps, kernel, strides, dilation, padding), filters)
    return b.add("conv1d", [x], out, **b.trainable(attrs))


def _pool1d(op: str) -> Emit:
    def emit(b: Any, x: str) -> str | None:
        shape = b.shapes[x]
        if len(shape) != 2:
            return None
        pool = b.int(1, 3)
        strides = b.int(1, 3) if b.flag(0.5) else pool
        padding = b.pick(["same", "valid"])
        if pool > shape[0]:
            padding = "same"
        attrs: dict[str, Any] = {"pool": pool, "padding": padding}
        if b.flag(0.5):
            attrs["strides"] = strides
        else:
            strides = pool
        out = (_steps(shape[0], pool, strides, 1, padding), shape[1])
        return b.add(op, [x], out, **attrs)

    return emit


def _global1d(op: str) -> Emit:
    def emit(b: Any, x: str) -> str | None:
        shape = b.shapes[x]
        if len(shape) != 2:
            return None
        keep = b.flag()
        return b.add(op, [x], (1, shape[1]) if keep else (shape[1],), keepdims=keep)

    return emit


def embedding(b: Any, x: str) -> str | None:
    return None  # random specs have float inputs only (see the module's docstring)


def positional_embedding(b: Any, x: str) -> str | None:
    return b.add("positional_embedding", [x], b.shapes[x], **b.trainable({}))


def sinusoidal_embedding(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 2:
        return None
    attrs = {"max_wavelength": b.pick([10.0, 10000.0])} if b.flag() else {}
    return b.add("sinusoidal_embedding", [x], shape, **attrs)


def class_token(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) < 2:
        return None
    return b.add("class_token", [x], (shape[0] + 1, *shape[1:]), **b.trainable({}))


def take(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) < 2:
        return None
    axis = b.int(-len(shape), len(shape) - 1)
    size = shape[axis]
    index = b.int(-size, size - 1)
    out = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    attrs = {"index": index} if axis == 0 and b.flag() else {"index": index, "axis": axis}
    return b.add("take", [x], out, **attrs)


def slice_(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    axis = b.int(-len(shape), len(shape) - 1)
    size = shape[axis]
    start = b.int(-size, size - 1)
    stop = b.pick([None, b.int(-size, size)])
    length = len(range(size)[start:stop])
    if length == 0:
        return None
    out = list(shape)
    out[axis] = length
    attrs: dict[str, Any] = {"start": start, "axis": axis}
    if stop is not None:
        attrs["stop"] = stop
    return b.add("slice", [x], tuple(out), **attrs)


def permute(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    dims = list(b.draw(st.permutations(list(range(len(shape))))))
    return b.add("permute", [x], tuple(shape[d] for d in dims), dims=dims)


def multi_head_attention(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 2:
        return None
    heads, key_dim = b.int(1, 3), b.int(1, 4)
    attrs: dict[str, Any] = {"num_heads": heads, "key_dim": key_dim}
    if b.flag(0.3):
        attrs["value_dim"] = b.int(1, 4)
    if b.flag(0.3):
        attrs["output_dim"] = b.int(1, 6)
    if b.flag(0.3):
        attrs["use_bias"] = False
    if b.flag(0.4):
        attrs["causal"] = True
    ins = [x]
    others = [n for n, s in b.shapes.items() if len(s) == 2 and n != x]
    if others and b.flag(0.5):  # cross-attention: a value (and a key) of another sequence
        value = b.pick(sorted(others))
        ins.append(value)
        keys = [n for n in others if b.shapes[n][0] == b.shapes[value][0]]
        if b.flag(0.3):
            ins.append(b.pick(sorted(keys)))
    out = (shape[0], attrs.get("output_dim", shape[1]))
    if math.prod(out) * heads > 5000:
        return None
    # head size 1 with as many heads as steps: Keras adds the bias along the wrong axis, which
    # `archc check` refuses (E121, test_attention.py); valid specs only here
    steps = [b.shapes[n][0] for n in ins]
    size_one = 1 in (key_dim, attrs.get("value_dim", key_dim))
    if attrs.get("use_bias", True) and heads > 1 and size_one and heads in steps:
        return None
    return b.add("multi_head_attention", ins, out, **b.trainable(attrs))


def _recurrent(op: str) -> Emit:
    """lstm, gru or simple_rnn on a short sequence: every step or the last, one direction
    or both (merged by any mode), with or without biases."""

    def emit(b: Any, x: str) -> str | None:
        shape = b.shapes[x]
        if len(shape) != 2 or shape[0] > 12:
            return None
        units = b.int(1, 5)
        attrs: dict[str, Any] = {"units": units}
        if op == "simple_rnn" and b.flag(0.3):
            attrs["activation"] = "relu"
        if b.flag(0.5):
            attrs["return_sequences"] = True
        if b.flag(0.2):
            attrs["use_bias"] = False
        width = units
        if b.flag(0.4):
            attrs["bidirectional"] = True
            mode = b.pick(["concat", "sum", "mul", "ave"])
            if mode != "concat" or b.flag(0.3):
                attrs["merge_mode"] = mode
            width = 2 * units if mode == "concat" else units
        out = (shape[0], width) if attrs.get("return_sequences") else (width,)
        return b.add(op, [x], out, **b.trainable(attrs))

    return emit


SEQUENCE_EMITTERS: dict[str, Emit] = {
    "conv1d": conv1d,
    "max_pool1d": _pool1d("max_pool1d"),
    "avg_pool1d": _pool1d("avg_pool1d"),
    "global_avg_pool1d": _global1d("global_avg_pool1d"),
    "global_max_pool1d": _global1d("global_max_pool1d"),
    "embedding": embedding,
    "positional_embedding": positional_embedding,
    "class_token": class_token,
    "sinusoidal_embedding": sinusoidal_embedding,
    "take": take,
    "slice": slice_,
    "permute": permute,
    "multi_head_attention": multi_head_attention,
    **{op: _recurrent(op) for op in ("lstm", "gru", "simple_rnn")},
}
# ops of rank-2 inputs are drawn more often: a reshape to a sequence comes first
SEQUENCE_WEIGHTS = {"conv1d": 2, "multi_head_attention": 3}
