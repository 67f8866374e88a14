"""Keras 3 backend: the IR as a functional keras.Model, live or as generated source.

One table (`_SPECS`) says, per op, which Keras layer class and keyword arguments a node
becomes; the live builder and the source generator both read it, so they cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compiler.api import Compiled
from compiler.ir import Counts, Graph, Node

from .codegen import Code, call, environment, header_context, python_names

NAME = "keras"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is first imported
_MODULE_NAMES = {"keras", "layers", "regularizers", "build_model", "PARAMS", "INPUT_SHAPE", "SPEC"}


@dataclass(frozen=True)
class L2:
    """An L2 kernel regularizer (loss += factor * sum(w**2))."""

    factor: float

    def live(self) -> Any:
        import keras

        return keras.regularizers.L2(self.factor)

    def code(self) -> Code:
        return Code(f"regularizers.L2({self.factor!r})")


@dataclass(frozen=True)
class LayerSpec:
    cls: str  # a keras.layers class name, or "Input"
    kwargs: tuple[tuple[str, Any], ...]


def _act(a: Any) -> list[tuple[str, Any]]:
    return [] if a.activation == "linear" else [("activation", a.activation)]


def _reg(key: str, factor: float | None) -> list[tuple[str, Any]]:
    return [] if factor is None else [(key, L2(factor))]


def _conv(a: Any) -> list[tuple[str, Any]]:
    kw: list[tuple[str, Any]] = [
        ("filters", a.filters),
        ("kernel_size", a.kernel),
        ("strides", a.strides),
        ("padding", a.padding),
    ]
    if a.dilation != (1, 1):
        kw.append(("dilation_rate", a.dilation))
    if a.groups != 1:
        kw.append(("groups", a.groups))
    return [*kw, ("use_bias", a.use_bias), *_act(a), *_reg("kernel_regularizer", a.kernel_l2)]


def _depthwise(a: Any) -> list[tuple[str, Any]]:
    kw: list[tuple[str, Any]] = [
        ("kernel_size", a.kernel),
        ("strides", a.strides),
        ("padding", a.padding),
        ("depth_multiplier", a.depth_multiplier),
    ]
    if a.dilation != (1, 1):
        kw.append(("dilation_rate", a.dilation))
    return [*kw, ("use_bias", a.use_bias), *_act(a), *_reg("depthwise_regularizer", a.kernel_l2)]


def _pool(a: Any) -> list[tuple[str, Any]]:
    return [("pool_size", a.pool), ("strides", a.strides), ("padding", a.padding)]


_SPECS: dict[str, tuple[str, Callable[[Any], list[tuple[str, Any]]]]] = {
    "input": ("Input", lambda a: [("shape", a.shape)]),
    "conv2d": ("Conv2D", _conv),
    "depthwise_conv2d": ("DepthwiseConv2D", _depthwise),
    "batch_norm": (
        "BatchNormalization",
        lambda a: [
            ("axis", -1),
            ("momentum", a.momentum),
            ("epsilon", a.epsilon),
            ("center", a.center),
            ("scale", a.scale),
        ],
    ),
    "activation": ("Activation", lambda a: [("activation", a.fn)]),
    "add": ("Add", lambda a: []),
    "multiply": ("Multiply", lambda a: []),
    # the IR's axes exclude the batch; Keras' include it
    "concat": ("Concatenate", lambda a: [("axis", a.axis + 1 if a.axis >= 0 else a.axis)]),
    "max_pool2d": ("MaxPooling2D", _pool),
    "avg_pool2d": ("AveragePooling2D", _pool),
    "global_avg_pool2d": ("GlobalAveragePooling2D", lambda a: [("keepdims", a.keepdims)]),
    "zero_pad2d": ("ZeroPadding2D", lambda a: [("padding", a.padding)]),
    "flatten": ("Flatten", lambda a: []),
    "reshape": ("Reshape", lambda a: [("target_shape", a.target_shape)]),
    "dense": (
        "Dense",
        lambda a: [
            ("units", a.units),
            *_act(a),
            ("use_bias", a.use_bias),
            *_reg("kernel_regularizer", a.kernel_l2),
        ],
    ),
    "dropout": ("Dropout", lambda a: [("rate", a.rate)]),
}


def layer_spec(node: Node) -> LayerSpec:
    cls, kwargs = _SPECS[node.op]
    kw = kwargs(node.attrs)
    if not node.trainable and node.weights:
        kw.append(("trainable", False))
    return LayerSpec(cls, (*kw, ("name", node.name)))


def supported_ops() -> set[str]:
    return set(_SPECS)


# -- live models ------------------------------------------------------------------------------
def build(graph: Graph) -> Any:
    """Build a functional keras.Model from a checked graph."""
    import keras

    tensors: dict[str, Any] = {}
    for node in graph.nodes:
        spec = layer_spec(node)
        kwargs = {k: (v.live() if isinstance(v, L2) else v) for k, v in spec.kwargs}
        if spec.cls == "Input":
            tensors[node.name] = keras.Input(**kwargs)
            continue
        layer = getattr(keras.layers, spec.cls)(**kwargs)
        ins = [tensors[i] for i in node.inputs]
        tensors[node.name] = layer(ins if len(ins) > 1 else ins[0])
    ins = [tensors[n] for n in graph.inputs]
    outs = [tensors[n] for n in graph.outputs]
    return keras.Model(
        inputs=ins if len(ins) > 1 else ins[0],
        outputs=outs if len(outs) > 1 else outs[0],
        name=graph.name,
    )


def output_shapes(model: Any, graph: Graph) -> list[tuple[int, ...]]:
    """Run the model once on zeros (batch 1); the shapes of its outputs, batch excluded."""
    import numpy as np

    xs = [np.zeros((1, *(graph.node(n).shape or ())), np.float32) for n in graph.inputs]
    ys = model(xs if len(xs) > 1 else xs[0], training=False)
    ys = ys if isinstance(ys, list | tuple) else [ys]
    return [tuple(int(d) for d in y.shape[1:]) for y in ys]


def counts(model: Any) -> Counts:
    """Keras' own accounting: trainable_weights and non_trainable_weights."""
    t = sum(int(_size(w)) for w in model.trainable_weights)
    n = sum(int(_size(w)) for w in model.non_trainable_weights)
    return Counts(t + n, t, n)


def layer_counts(model: Any) -> dict[str, Counts]:
    out = {}
    for layer in model.layers:
        t = sum(int(_size(w)) for w in layer.trainable_weights)
        n = sum(int(_size(w)) for w in layer.non_trainable_weights)
        out[layer.name] = Counts(t + n, t, n)
    return out


def _size(w: Any) -> int:
    size = 1
    for d in w.shape:
        size *= int(d)
    return size


# -- generated source -------------------------------------------------------------------------
def render(compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str:
    graph = compiled.graph
    names = python_names([n.name for n in graph.nodes], _MODULE_NAMES)
    lines: list[str] = []
    uses_reg = False
    for node in graph.nodes:
        spec = layer_spec(node)
        kwargs = []
        for k, v in spec.kwargs:
            if isinstance(v, L2):
                uses_reg = True
                v = v.code()
            kwargs.append((k, v))
        var = names[node.name]
        if spec.cls == "Input":
            lines.append(call("keras.Input", (), kwargs, prefix=f"{var} = "))
            continue
        args = [Code(names[i]) for i in node.inputs]
        then = args if len(args) > 1 else args[0]
        lines.append(call(f"layers.{spec.cls}", (), kwargs, prefix=f"{var} = ", then=then))
    ins = [names[n] for n in graph.inputs]
    outs = [names[n] for n in graph.outputs]
    ret = call(
        "keras.Model",
        (),
        [
            ("inputs", Code(ins[0]) if len(ins) == 1 else [Code(i) for i in ins]),
            ("outputs", Code(outs[0]) if len(outs) == 1 else [Code(o) for o in outs]),
            ("name", graph.name),
        ],
        prefix="return ",
    )
    ctx = header_context(compiled, out_dir)
    ctx.update(lines=lines, ret=ret, uses_regularizers=uses_reg)
    return environment().get_template("keras.py.jinja").render(ctx)


def from_spec(
    spec: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    variant: str | None = None,
) -> Any:
    """The Python API: a live, count-verified keras.Model from a spec path plus overrides.

    >>> model = from_spec("specs/resnet_preact.yaml", {"nb_classes": 10})
    """
    from .compile import live_model

    return live_model(NAME, spec, overrides, variant=variant)
