"""One emitter per op for Keras: the layer an op item becomes, as source.

An emitter gets the item's attributes as Python source (`attr(key)`, None when the spec leaves
the attribute to its default) and returns the layer class and its arguments. Keras' own
defaults equal the ops' defaults (compiler/ops), so an attribute the spec does
not set is not spelled out. Keras and the IR name weights alike (kernel, bias, gamma, beta,
moving_mean, moving_variance, depthwise_kernel), so weights bind by layer and weight name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.compiler.ops import RegistrationError
from archc.compiler.plugins import attach

Attr = Callable[[str], str | None]  # attribute -> Python source, None when not set
Args = list[tuple[str | None, str]]  # (keyword or None for positional, source)
# (attr, the input's rank when the compiled graph knows it, the input's source) -> more args
Shaped = Callable[[Attr, int | None, str], Args]


@dataclass(frozen=True)
class KerasLayer:
    cls: str  # a keras.layers class
    args: Callable[[Attr], Args]
    regularizes: str = ""  # the keyword taking the L2 regularizer of `kernel_l2`
    shaped: Shaped | None = None  # arguments that depend on the input's rank
    custom: bool = False  # a class of keras_helpers, which the generated file defines
    helpers: Path | None = None  # the module of a custom class of the op's own (its file)
    # the call's arguments from the inputs' sources (default: the input, or a list of them)
    call: Callable[[Attr, list[str]], str] | None = None
    # (attribute, layer), ...: the layer an item that sets the attribute becomes instead
    variants: tuple[tuple[str, KerasLayer], ...] = ()
    # (why Keras would compute a node wrongly, what to change) from its attributes and its
    # inputs' shapes, or None: `archc check` refuses such an item (E121), not verify later
    wrong: Callable[[Any, list[tuple[int, ...]]], tuple[str, str] | None] | None = None
    # the class's own name where keras.layers exports it under another (`cls`)
    class_name: str = ""


def _kw(attr: Attr, *pairs: tuple[str, str]) -> Args:
    """Keyword arguments for the attributes the spec sets: (attribute, Keras keyword)."""
    return [(kw, src) for key, kw in pairs if (src := attr(key)) is not None]


def _pos(attr: Attr, *keys: str) -> Args:
    return [(None, src) for key in keys if (src := attr(key)) is not None]


def _conv(attr: Attr) -> Args:
    return [
        *_pos(attr, "filters", "kernel"),
        *_kw(
            attr,
            ("strides", "strides"),
            ("padding", "padding"),
            ("dilation", "dilation_rate"),
            ("groups", "groups"),
            ("use_bias", "use_bias"),
            ("activation", "activation"),
        ),
    ]


def _depthwise(attr: Attr) -> Args:
    return [
        *_pos(attr, "kernel"),
        *_kw(
            attr,
            ("strides", "strides"),
            ("padding", "padding"),
            ("depth_multiplier", "depth_multiplier"),
            ("dilation", "dilation_rate"),
            ("use_bias", "use_bias"),
            ("activation", "activation"),
        ),
    ]


def _separable(attr: Attr) -> Args:
    return [*_pos(attr, "filters"), *_depthwise(attr)]


def _pool(attr: Attr) -> Args:
    return [*_pos(attr, "pool"), *_kw(attr, ("strides", "strides"), ("padding", "padding"))]


def _concat(attr: Attr) -> Args:
    axis = attr("axis")
    if axis is None:
        return []
    # the IR's axes exclude the batch axis; Keras' include it
    if axis.lstrip("-").isdigit():
        value = int(axis)
        return [("axis", str(value + 1 if value >= 0 else value))]
    return [("axis", f"({axis}) + 1 if ({axis}) >= 0 else ({axis})")]


def _with_batch(src: str) -> str:
    """A noise shape (batch excluded) as Keras' noise_shape: None (any batch size) first; an
    expression may give null (no noise shape: one mask value per element)."""
    tree = ast.parse(src, mode="eval").body
    if isinstance(tree, ast.Tuple):
        return "(" + ", ".join(["None", *(ast.unparse(e) for e in tree.elts)]) + ")"
    return f"None if ({src}) is None else (None, *{src})"


def _dropout(attr: Attr) -> Args:
    noise = attr("noise_shape")
    if noise is None or noise == "None":  # null: over `defaults:` giving one
        return _pos(attr, "rate")
    return [*_pos(attr, "rate"), ("noise_shape", _with_batch(noise))]


def _per_sample(attr: Attr, rank: int | None, x: str) -> Args:
    """Stochastic depth as Keras' Dropout: a noise shape of ones but the batch, one mask value
    per sample (as ConvNeXt's StochasticDepth layer: x / keep * floor(keep + uniform))."""
    if rank is None:  # the item sees inputs of several ranks: Keras' own shape tells
        return [("noise_shape", f"(None,) + (1,) * (len({x}.shape) - 1)")]
    return [("noise_shape", "(None" + ", 1" * rank + ")")]


_GELU = KerasLayer("GELU", lambda a: _kw(a, ("approximate", "approximate")), custom=True)
_SCALED_ADD = KerasLayer("ScaledAdd", lambda a: _kw(a, ("scales", "scales")), custom=True)

KERAS_LAYERS: dict[str, KerasLayer] = {
    "conv2d": KerasLayer("Conv2D", _conv, "kernel_regularizer"),
    "depthwise_conv2d": KerasLayer("DepthwiseConv2D", _depthwise, "depthwise_regularizer"),
    "conv2d_transpose": KerasLayer("Conv2DTranspose", _conv),
    "separable_conv2d": KerasLayer("SeparableConv2D", _separable),
    "batch_norm": KerasLayer(
        "BatchNormalization",
        lambda a: _kw(
            a,
            ("momentum", "momentum"),
            ("epsilon", "epsilon"),
            ("center", "center"),
            ("scale", "scale"),
        ),
    ),
    "layer_norm": KerasLayer(
        "LayerNormalization",
        lambda a: _kw(a, ("epsilon", "epsilon"), ("center", "center"), ("scale", "scale")),
    ),
    "activation": KerasLayer(
        "Activation",
        lambda a: _pos(a, "fn"),
        variants=(  # Keras' layer with a slope; archc's GELU layer (keras_helpers)
            ("alpha", KerasLayer("LeakyReLU", lambda a: _kw(a, ("alpha", "negative_slope")))),
            ("approximate", _GELU),
        ),
    ),
    "add": KerasLayer(
        "Add",
        lambda a: [],
        variants=(("scales", _SCALED_ADD),),
    ),
    "multiply": KerasLayer("Multiply", lambda a: []),
    "subtract": KerasLayer("Subtract", lambda a: []),
    "concat": KerasLayer("Concatenate", _concat),
    "max_pool2d": KerasLayer("MaxPooling2D", _pool),
    "avg_pool2d": KerasLayer("AveragePooling2D", _pool),
    "global_avg_pool2d": KerasLayer(
        "GlobalAveragePooling2D", lambda a: _kw(a, ("keepdims", "keepdims"))
    ),
    "global_max_pool2d": KerasLayer(
        "GlobalMaxPooling2D", lambda a: _kw(a, ("keepdims", "keepdims"))
    ),
    "zero_pad2d": KerasLayer("ZeroPadding2D", lambda a: _pos(a, "padding")),
    "flatten": KerasLayer("Flatten", lambda a: []),
    "upsample2d": KerasLayer(
        "UpSampling2D", lambda a: [*_pos(a, "size"), *_kw(a, ("interpolation", "interpolation"))]
    ),
    "cropping2d": KerasLayer("Cropping2D", lambda a: _pos(a, "cropping")),
    "layer_scale": KerasLayer("LayerScale", lambda a: _pos(a, "init_value"), custom=True),
    "rescaling": KerasLayer(
        "Rescaling", lambda a: [*_pos(a, "scale"), *_kw(a, ("offset", "offset"))]
    ),
    "reshape": KerasLayer("Reshape", lambda a: _pos(a, "target_shape")),
    "dense": KerasLayer(
        "Dense",
        lambda a: [
            *_pos(a, "units"),
            *_kw(a, ("activation", "activation"), ("use_bias", "use_bias")),
        ],
        "kernel_regularizer",
    ),
    "dropout": KerasLayer("Dropout", _dropout),
    "stochastic_depth": KerasLayer("Dropout", lambda a: _pos(a, "rate"), shaped=_per_sample),
    "normalization": KerasLayer(
        "Normalization", lambda a: _kw(a, ("mean", "mean"), ("variance", "variance"))
    ),
}


def keras_layer(op: str, attrs: Mapping[str, Any]) -> KerasLayer:
    """The layer an op item with these (spec) attributes becomes: the op's, or its variant
    where the item sets the variant's attribute (an add with scales is a ScaledAdd)."""
    layer = KERAS_LAYERS[op]
    for key, variant in layer.variants:
        if attrs.get(key) is not None:
            return variant
    return layer


# the sequence and attention ops: backends/keras/sequence.py adds them to KERAS_LAYERS
# and the recurrent ops (lstm, gru, simple_rnn): backends/keras/recurrent.py
# and the language-model ops (rms_norm, grouped_query_attention): backends/keras/llm.py
# and sinusoidal_embedding: backends/keras/sinusoidal.py
from . import llm as keras_llm  # noqa: E402, F401
from . import recurrent as keras_recurrent  # noqa: E402, F401
from . import sequence as keras_sequence  # noqa: E402, F401
from . import sinusoidal as keras_sinusoidal  # noqa: E402, F401


def check_plugin_layer(op: str, layer: KerasLayer) -> None:
    """A plugin's Keras layer: a keras.layers class, or a class its own module defines."""
    from archc.backends.helper_library import KERAS_MODULES, library

    for each in (layer, *(v for _, v in layer.variants)):
        if not callable(each.args):
            raise RegistrationError(f"KerasLayer {each.cls}'s args is not callable")
        if not each.custom:
            continue
        if each.helpers is None:
            raise RegistrationError(f"custom KerasLayer {each.cls} names no helpers module")
        try:
            found = library((*KERAS_MODULES, each.helpers)).helpers.get(each.cls)
        except (OSError, SyntaxError, ValueError) as exc:
            raise RegistrationError(f"its Keras helpers {each.helpers}: {exc}") from exc
        if found is None or found.module != Path(each.helpers):
            raise RegistrationError(f"{each.helpers} defines no class {each.cls}")


attach("keras", KERAS_LAYERS, KerasLayer, check_plugin_layer)
