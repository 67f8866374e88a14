"""`archc import keras`: an existing Keras model as a spec, one layer a line.

The model's functional configuration (what `model.get_config()` gives, what a `.keras` file
stores as config.json) is read as data: every layer becomes an archc op item with the layer's
own name, its attributes (those equal to the op's defaults left out) and its inputs by name.
Nested Sequential and functional models are flattened (their layers keep their names; the
container's name is gone, since it holds no weights of its own). A layer archc has no op for,
or a configuration value an op cannot express (channels-first data, an L1 regularizer, a
shared layer), is an error naming the layer and its class: nothing is approximated.

`prove()` runs the round trip on the spec it wrote: check (counts equal the Keras model's),
compile both backends, verify, the original model's weights moved into the generated PyTorch
model through a Keras weights file (`archc weights`), and the original's outputs against the
PyTorch model's.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.compiler.diagnostics import Diagnostic, Location, SpecError, did_you_mean, short_repr
from archc.compiler.names import check_name
from archc.compiler.ops import load_all

APPLICATIONS = "keras.applications:"
PLUGIN_HINT = (
    "archc has no op for it: rewrite that part with built-in layers (`archc ops` lists "
    "them), or add an op for it (compiler/ops and an emitter per backend)"
)


class _Unsupported(Exception):
    """A layer or value the importer cannot express; turned into a located Diagnostic."""

    def __init__(self, code: str, message: str, hint: str):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


# -- where the model comes from ---------------------------------------------------------------


@dataclass
class Source:
    """A model to import: its functional configuration, and how to get the model itself."""

    text: str  # what the user gave
    config: dict[str, Any]  # the functional model's config (name, layers, inputs, outputs)
    load: Callable[[], Any]  # the Keras model (built from the same source)
    file: str | None = None  # the file errors point into (config JSON text), if any
    json_text: str | None = None  # its text, to find a layer's line
    application: str | None = None  # keras.applications' function name

    def where(self, layer: str | None) -> Location | None:
        """The line of the layer's `"name": "<layer>"` in the configuration text."""
        if self.file is None:
            return None
        if layer is None or self.json_text is None:
            return Location(self.file, 1, 1)
        m = re.search(r'"name"\s*:\s*' + re.escape(json.dumps(layer)), self.json_text)
        if m is None:
            return Location(self.file, 1, 1)
        line = self.json_text.count("\n", 0, m.start()) + 1
        col = m.start() - (self.json_text.rfind("\n", 0, m.start()) + 1) + 1
        return Location(self.file, line, col)


def _source_error(text: str, message: str, hint: str) -> SpecError:
    return SpecError([Diagnostic("E172", message, Location(text, 1, 1), hint=hint)])


def _functional(doc: Any, text: str) -> dict[str, Any]:
    """The functional config inside a serialized model ({class_name, config}) or itself."""
    if isinstance(doc, dict) and "class_name" in doc and isinstance(doc.get("config"), dict):
        if doc["class_name"] == "Sequential":
            return _sequential_as_functional(doc["config"])
        doc = doc["config"]
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise _source_error(
            text,
            "not a Keras model configuration (no 'layers' list)",
            "give a .keras file, the JSON of model.to_json() / model.get_config(), or "
            "keras.applications:NAME",
        )
    if "input_layers" not in doc:
        return _sequential_as_functional(doc)
    return doc


def _sequential_as_functional(cfg: dict[str, Any]) -> dict[str, Any]:
    """A top-level Sequential model's config as a functional one (inputs by order)."""
    layers = [dict(layer) for layer in cfg.get("layers", [])]
    out: list[dict[str, Any]] = []
    prev: str | None = None
    for layer in layers:
        name = layer.get("config", {}).get("name") or layer.get("name")
        layer["name"] = name
        if layer.get("class_name") == "InputLayer":
            layer["inbound_nodes"] = []
        elif prev is None:
            raise _Unsupported(
                "E174",
                f"the Sequential model has no input shape before layer '{name}'",
                "build the model with an Input (keras.Input(shape=...)) before saving it",
            )
        else:
            layer["inbound_nodes"] = [{"args": [_tensor_ref(prev)], "kwargs": {}}]
        out.append(layer)
        prev = name
    return {
        "name": cfg.get("name", "sequential"),
        "layers": out,
        "input_layers": [[out[0]["name"], 0, 0]] if out else [],
        "output_layers": [[prev, 0, 0]] if prev else [],
    }


def _tensor_ref(name: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def open_source(model: str) -> Source:
    """Resolve MODEL: keras.applications:NAME, a .keras file, or a model config JSON file."""
    if model.startswith(APPLICATIONS):
        name = model[len(APPLICATIONS) :]
        import keras

        names = sorted(n for n in dir(keras.applications) if n[:1].isupper())
        if name not in names:
            raise _source_error(
                model,
                f"keras.applications has no model {short_repr(name)}",
                did_you_mean(name, names) or f"one of: {', '.join(names)}",
            )
        built: list[Any] = []

        def application() -> Any:
            if not built:
                built.append(getattr(keras.applications, name)(weights=None))
            return built[0]

        return Source(model, application().get_config(), application, application=name)
    path = Path(model)
    if not path.is_file():
        raise _source_error(
            model,
            f"no such file: {model}",
            "give a .keras file, a model config .json, or keras.applications:NAME",
        )
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                text = z.read("config.json").decode("utf-8")
        except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as exc:
            raise _source_error(
                model,
                f"cannot read the model's config.json from {model}: {exc}",
                "give a .keras file saved by Keras 3 (model.save('x.keras'))",
            ) from None

        def load_keras() -> Any:
            import keras

            return keras.saving.load_model(path, compile=False, safe_mode=True)

        cfg = _functional(_parse_json(text, f"{model}/config.json"), model)
        return Source(model, cfg, load_keras, f"{model}/config.json", text)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _source_error(
            model, f"cannot read {model}: {exc}", "give a UTF-8 JSON file"
        ) from None
    doc = _parse_json(text, model)

    def load_json() -> Any:
        import keras

        if isinstance(doc, dict) and "class_name" in doc:
            return keras.models.model_from_json(text)
        return keras.Model.from_config(doc)

    return Source(model, _functional(doc, model), load_json, model, text)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            [
                Diagnostic(
                    "E172",
                    f"not valid JSON: {exc.msg}",
                    Location(where, exc.lineno, exc.colno),
                    hint="give the JSON of model.to_json(), a .keras file or "
                    "keras.applications:NAME",
                )
            ]
        ) from None


# -- the model's layers as op items -----------------------------------------------------------


@dataclass
class Item:
    """One op item of the spec."""

    name: str
    op: str
    attrs: dict[str, Any]
    inputs: list[str]
    keras_class: str
    trainable: bool = True


@dataclass
class Imported:
    name: str
    inputs: list[Item]
    items: list[Item]
    outputs: list[str]
    notes: list[str] = field(default_factory=list)  # what the reader should know
    containers: list[str] = field(default_factory=list)  # nested models flattened


def _dtype_ok(cfg: dict[str, Any]) -> bool:
    dtype = cfg.get("dtype")
    if dtype is None:
        return True
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    return dtype in ("float32", None)


_ACTIVATIONS = {  # Keras' names -> archc's
    "linear": "linear",
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "silu": "silu",
    "swish": "swish",
    "gelu": "gelu",
    "hard_sigmoid": "hard_sigmoid",
    "hard_silu": "hard_swish",  # Keras 3's name of hard_swish (the same function)
    "hard_swish": "hard_swish",
    "elu": "elu",
    "selu": "selu",
    "mish": "mish",
    "leaky_relu": "leaky_relu",
}


def _activation(value: Any) -> str:
    if value is None:
        return "linear"
    if isinstance(value, str) and value in _ACTIVATIONS:
        return _ACTIVATIONS[value]
    raise _Unsupported(
        "E171",
        f"activation {short_repr(value)} has no archc equivalent",
        f"archc's activations: {', '.join(sorted(set(_ACTIVATIONS.values())))}",
    )


# Keras' initializer classes whose default configuration is one of archc's names
_INIT_NAMES = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeUniform": "he_uniform",
    "HeNormal": "he_normal",
    "LecunUniform": "lecun_uniform",
    "LecunNormal": "lecun_normal",
    "Zeros": "zeros",
    "Ones": "ones",
}
# configured classes archc takes as a mapping: their keys and defaults
_INIT_CLASSES: dict[str, dict[str, Any]] = {
    "VarianceScaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
    "RandomNormal": {"mean": 0.0, "stddev": 0.05},
    "TruncatedNormal": {"mean": 0.0, "stddev": 0.05},
    "RandomUniform": {"minval": -0.05, "maxval": 0.05},
    "Constant": {"value": 0.0},
}


def _initializer(value: Any, notes: list[str], layer: str, key: str) -> Any:
    """A Keras initializer config as archc's attribute value (a name or a mapping); None
    where archc cannot express it (a note says so: initial values are not part of what the
    proof compares, the weights are moved)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value in _INIT_NAMES.values() else None
    cls = value.get("class_name")
    cfg = {k: v for k, v in (value.get("config") or {}).items() if k != "seed" and v is not None}
    if cls in _INIT_NAMES and not cfg:
        return _INIT_NAMES[cls]
    if cls in _INIT_CLASSES:
        known = _INIT_CLASSES[cls]
        if set(cfg) <= set(known):
            given = {k: v for k, v in cfg.items() if v != known[k]}
            if cls == "RandomNormal" and not given:
                return "random_normal"
            if cls == "RandomUniform" and not given:
                return "random_uniform"
            if cls == "TruncatedNormal" and not given:
                return "truncated_normal"
            if cls == "VarianceScaling" and given.get("distribution") == "normal":
                given["distribution"] = "truncated_normal"  # Keras' alias
            return {"class": cls, **given}
    notes.append(f"{key} {cls} is not carried (archc has no such initializer): {layer}")
    return None


def _l2(value: Any, layer: str, key: str) -> float | None:
    if value is None:
        return None
    cls = value.get("class_name") if isinstance(value, dict) else value
    cfg = value.get("config", {}) if isinstance(value, dict) else {}
    if cls in ("L2", "l2") and isinstance(cfg.get("l2", 0.01), int | float):
        return float(cfg.get("l2", 0.01))
    raise _Unsupported(
        "E171",
        f"{key} {short_repr(cls)} cannot be expressed (archc takes an L2 kernel regularizer)",
        "use keras.regularizers.L2 on the kernel, or remove the regularizer before importing",
    )


def _pair(value: Any) -> Any:
    """(3, 3) -> 3; (1, 2) -> [1, 2]."""
    if isinstance(value, list | tuple):
        if len(value) == 2 and value[0] == value[1]:
            return value[0]
        return list(value)
    return value


def _pads(value: Any) -> Any:
    """Keras' ((top, bottom), (left, right)) as archc writes it: n, [h, w] or the pairs."""
    if isinstance(value, int):
        return value
    (t, b), (left, r) = value
    if t == b and left == r:
        return t if t == left else [t, left]
    return [[t, b], [left, r]]


class _Layer:
    """One Keras layer's config, its values read with checks that name the layer."""

    def __init__(self, entry: dict[str, Any], rank: int | None, notes: list[str]):
        self.entry = entry
        self.cls = entry.get("class_name", "?")
        self.cfg: dict[str, Any] = dict(entry.get("config") or {})
        self.name: str = entry.get("name") or self.cfg.get("name", "?")
        self.rank = rank  # the input's rank, batch included, where the config tells
        self.notes = notes
        self.used: set[str] = {"name", "trainable", "dtype"}

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.cfg.get(key, default)

    def must(self, key: str, allowed: Sequence[Any], why: str = "") -> Any:
        value = self.get(key, allowed[0])
        if value not in allowed:
            raise _Unsupported(
                "E171",
                f"{key} {short_repr(value)} is not supported" + (f" ({why})" if why else ""),
                f"archc supports {key} {' or '.join(map(short_repr, allowed))}",
            )
        return value

    def ignore(self, *keys: str) -> None:
        self.used.update(keys)

    def channels_last(self) -> None:
        self.must(
            "data_format",
            [None, "channels_last"],
            "archc's tensors are channels-last, as Keras' default",
        )

    def axis_last(self, key: str = "axis") -> None:
        value = self.get(key, -1)
        axes = value if isinstance(value, list | tuple) else [value]
        last = {-1} | ({self.rank - 1} if self.rank else set())
        if len(axes) != 1 or axes[0] not in last:
            raise _Unsupported(
                "E171",
                f"{key} {short_repr(value)} is not supported (archc normalizes over the last "
                "axis, the channels)",
                "use axis -1",
            )

    def leftovers(self) -> None:
        """Config keys the importer did not read must hold nothing (no regularizer, no
        constraint, no LoRA, no quantization): otherwise the spec would not be the model."""
        for key, value in self.cfg.items():
            if key in self.used or value in (None, False, 0, [], {}):
                continue
            raise _Unsupported(
                "E171",
                f"{key} {short_repr(value)} cannot be expressed in archc",
                f"remove {key} from the layer before importing, or add it to the op",
            )


def _conv(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    attrs = {
        "filters": layer.get("filters"),
        "kernel": _pair(layer.get("kernel_size")),
        "strides": _pair(layer.get("strides")),
        "padding": layer.must("padding", ["valid", "same"]),
        "dilation": _pair(layer.get("dilation_rate")),
        "groups": layer.get("groups", 1),
        "use_bias": layer.get("use_bias"),
        "activation": _activation(layer.get("activation")),
        "kernel_l2": _l2(layer.get("kernel_regularizer"), layer.name, "kernel_regularizer"),
    }
    _inits(layer, attrs, "kernel_initializer", "bias_initializer")
    return "conv2d", attrs


def _inits(layer: _Layer, attrs: dict[str, Any], *keys: str) -> None:
    for key in keys:
        attrs[key] = _initializer(layer.get(key), layer.notes, layer.name, key)


def _depthwise(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    attrs = {
        "kernel": _pair(layer.get("kernel_size")),
        "strides": _pair(layer.get("strides")),
        "padding": layer.must("padding", ["valid", "same"]),
        "depth_multiplier": layer.get("depth_multiplier", 1),
        "dilation": _pair(layer.get("dilation_rate")),
        "use_bias": layer.get("use_bias"),
        "activation": _activation(layer.get("activation")),
        "kernel_l2": _l2(layer.get("depthwise_regularizer"), layer.name, "depthwise_regularizer"),
    }
    _inits(layer, attrs, "depthwise_initializer", "bias_initializer")
    return "depthwise_conv2d", attrs


def _separable(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    attrs = {
        "filters": layer.get("filters"),
        "kernel": _pair(layer.get("kernel_size")),
        "strides": _pair(layer.get("strides")),
        "padding": layer.must("padding", ["valid", "same"]),
        "depth_multiplier": layer.get("depth_multiplier", 1),
        "dilation": _pair(layer.get("dilation_rate")),
        "use_bias": layer.get("use_bias"),
        "activation": _activation(layer.get("activation")),
    }
    _inits(layer, attrs, "depthwise_initializer", "pointwise_initializer", "bias_initializer")
    return "separable_conv2d", attrs


def _transpose(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    layer.must("output_padding", [None])
    if _pair(layer.get("dilation_rate", 1)) != 1:
        raise _Unsupported("E171", "a dilated Conv2DTranspose is not supported", "use dilation 1")
    attrs = {
        "filters": layer.get("filters"),
        "kernel": _pair(layer.get("kernel_size")),
        "strides": _pair(layer.get("strides")),
        "padding": layer.must("padding", ["valid", "same"]),
        "use_bias": layer.get("use_bias"),
        "activation": _activation(layer.get("activation")),
    }
    _inits(layer, attrs, "kernel_initializer", "bias_initializer")
    return "conv2d_transpose", attrs


_BN_INITS = {
    "beta_initializer": "Zeros",
    "gamma_initializer": "Ones",
    "moving_mean_initializer": "Zeros",
    "moving_variance_initializer": "Ones",
}


def _batch_norm(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.axis_last()
    layer.must("renorm", [False])
    layer.ignore("synchronized", "renorm_clipping", "renorm_momentum")
    for key, cls in _BN_INITS.items():
        value = layer.get(key)
        if isinstance(value, dict) and value.get("class_name") != cls:
            layer.notes.append(f"{key} {value.get('class_name')} is not carried: {layer.name}")
    return "batch_norm", {
        "epsilon": layer.get("epsilon"),
        "momentum": layer.get("momentum"),
        "center": layer.get("center"),
        "scale": layer.get("scale"),
    }


def _layer_norm(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.axis_last()
    layer.must("rms_scaling", [False])
    layer.ignore("beta_initializer", "gamma_initializer")
    return "layer_norm", {
        "epsilon": layer.get("epsilon"),
        "center": layer.get("center"),
        "scale": layer.get("scale"),
    }


def _dense(layer: _Layer) -> tuple[str, dict[str, Any]]:
    attrs = {
        "units": layer.get("units"),
        "use_bias": layer.get("use_bias"),
        "activation": _activation(layer.get("activation")),
        "kernel_l2": _l2(layer.get("kernel_regularizer"), layer.name, "kernel_regularizer"),
    }
    _inits(layer, attrs, "kernel_initializer", "bias_initializer")
    return "dense", attrs


def _activation_layer(layer: _Layer) -> tuple[str, dict[str, Any]]:
    return "activation", {"fn": _activation(layer.get("activation"))}


def _relu(layer: _Layer) -> tuple[str, dict[str, Any]]:
    top, slope, threshold = (layer.get(k) for k in ("max_value", "negative_slope", "threshold"))
    if not threshold and not slope and top in (None, 6, 6.0):
        return "activation", {"fn": "relu" if top is None else "relu6"}
    if not threshold and top is None and slope:
        return "activation", {"fn": "leaky_relu", "alpha": float(slope)}
    raise _Unsupported(
        "E171",
        f"ReLU(max_value={top}, negative_slope={slope}, threshold={threshold}) has no archc "
        "equivalent",
        "archc has relu, relu6 (max_value 6) and leaky_relu (negative_slope)",
    )


def _leaky_relu(layer: _Layer) -> tuple[str, dict[str, Any]]:
    slope = layer.get("negative_slope", layer.get("alpha", 0.3))
    return "activation", {"fn": "leaky_relu", "alpha": float(slope)}


def _softmax(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.axis_last()
    return "activation", {"fn": "softmax"}


def _pool(op: str) -> Callable[[_Layer], tuple[str, dict[str, Any]]]:
    def convert(layer: _Layer) -> tuple[str, dict[str, Any]]:
        layer.channels_last()
        pool = _pair(layer.get("pool_size"))
        strides = layer.get("strides")
        return op, {
            "pool": pool,
            "strides": None if strides is None or _pair(strides) == pool else _pair(strides),
            "padding": layer.must("padding", ["valid", "same"]),
        }

    return convert


def _global_pool(op: str) -> Callable[[_Layer], tuple[str, dict[str, Any]]]:
    def convert(layer: _Layer) -> tuple[str, dict[str, Any]]:
        layer.channels_last()
        return op, {"keepdims": bool(layer.get("keepdims", False))}

    return convert


def _zero_pad(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    return "zero_pad2d", {"padding": _pads(layer.get("padding"))}


def _cropping(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    return "cropping2d", {"cropping": _pads(layer.get("cropping"))}


def _upsample(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    return "upsample2d", {
        "size": _pair(layer.get("size")),
        "interpolation": layer.must("interpolation", ["nearest", "bilinear"]),
    }


def _flatten(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.channels_last()
    return "flatten", {}


def _reshape(layer: _Layer) -> tuple[str, dict[str, Any]]:
    return "reshape", {"target_shape": list(layer.get("target_shape"))}


def _dropout(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.ignore("seed")
    noise = layer.get("noise_shape")
    if noise is not None:
        noise = list(noise)[1:]  # Keras' batch axis first
    return "dropout", {"rate": float(layer.get("rate")), "noise_shape": noise}


def _rescaling(layer: _Layer) -> tuple[str, dict[str, Any]]:
    scale, offset = layer.get("scale"), layer.get("offset", 0.0)
    for key, value in (("scale", scale), ("offset", offset)):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Unsupported(
                "E171",
                f"{key} {short_repr(value)} is not one number",
                "archc's rescaling takes one scale and one offset for every channel",
            )
    return "rescaling", {"scale": float(scale), "offset": float(offset)}


def _normalization(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.axis_last()
    layer.must("invert", [False])
    mean, variance = layer.get("mean"), layer.get("variance")
    return "normalization", {"mean": mean, "variance": variance}


def _merge(op: str) -> Callable[[_Layer], tuple[str, dict[str, Any]]]:
    return lambda layer: (op, {})


def _concat(layer: _Layer) -> tuple[str, dict[str, Any]]:
    axis = layer.get("axis", -1)
    if axis == 0:
        raise _Unsupported("E171", "concatenation on the batch axis", "use another axis")
    return "concat", {"axis": axis - 1 if axis > 0 else axis}  # archc's axes exclude the batch


def _layer_scale(layer: _Layer) -> tuple[str, dict[str, Any]]:
    layer.ignore("projection_dim")
    return "layer_scale", {"init_value": float(layer.get("init_values"))}


def _custom_scale(layer: _Layer) -> tuple[str, dict[str, Any]]:
    # keras.applications.inception_resnet_v2.CustomScaleLayer: inputs[0] + inputs[1] * scale
    return "add", {"scales": [1.0, float(layer.get("scale"))]}


Converter = Callable[[_Layer], tuple[str, dict[str, Any]]]
KERAS_CLASSES: dict[str, Converter] = {
    "Conv2D": _conv,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "Conv2DTranspose": _transpose,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "Dense": _dense,
    "Activation": _activation_layer,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "Softmax": _softmax,
    "MaxPooling2D": _pool("max_pool2d"),
    "AveragePooling2D": _pool("avg_pool2d"),
    "GlobalAveragePooling2D": _global_pool("global_avg_pool2d"),
    "GlobalMaxPooling2D": _global_pool("global_max_pool2d"),
    "ZeroPadding2D": _zero_pad,
    "Cropping2D": _cropping,
    "UpSampling2D": _upsample,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Rescaling": _rescaling,
    "Normalization": _normalization,
    "Add": _merge("add"),
    "Multiply": _merge("multiply"),
    "Subtract": _merge("subtract"),
    "Concatenate": _concat,
}
# classes of keras.applications' own modules: (module, class)
APPLICATION_CLASSES: dict[tuple[str, str], Converter] = {
    ("keras.src.applications.convnext", "LayerScale"): _layer_scale,
    ("keras.src.applications.inception_resnet_v2", "CustomScaleLayer"): _custom_scale,
}
# keras.ops applied to symbolic tensors (`x + 3.0`, `a + b`): functional nodes, not layers
_OPS_MODULE = "keras.src.ops.numpy"
_OPS = {"Add": "add", "Multiply": "multiply", "Subtract": "subtract"}
_KERAS_MODULES = ("keras.layers", "keras.src.layers")


def _converter(entry: dict[str, Any]) -> Converter | None:
    module, cls = entry.get("module") or "", entry.get("class_name")
    if module in _KERAS_MODULES or module.startswith("keras.src.layers."):
        return KERAS_CLASSES.get(cls or "")
    return APPLICATION_CLASSES.get((module, cls or ""))


class _Walker:
    """Flattens a functional config (nested models included) into items in graph order."""

    def __init__(self, source: Source):
        self.source = source
        self.items: list[Item] = []
        self.inputs: list[Item] = []
        self.notes: list[str] = []
        self.containers: list[str] = []
        self.names: set[str] = set()

    def fail(self, exc: _Unsupported, layer: str | None, cls: str | None) -> SpecError:
        what = f"layer '{layer}' ({cls})" if layer else "the model"
        return SpecError(
            [
                Diagnostic(
                    exc.code,
                    f"{what}: {exc.message}",
                    self.source.where(layer),
                    path=f"{self.source.text} > {layer}" if layer else self.source.text,
                    hint=exc.hint,
                )
            ]
        )

    def walk(self, cfg: dict[str, Any], bound: dict[str, str] | None, prefix: str) -> list[str]:
        """Add the model's layers; `bound` maps its input layers to outer tensors (None at
        the top: they become the spec's inputs). Returns its outputs' tensor names."""
        produced: dict[str, str] = {}  # Keras layer name -> the flat tensor name it outputs
        for entry in _ordered(cfg["layers"]):
            name = str(entry.get("name") or (entry.get("config") or {}).get("name"))
            cls = str(entry.get("class_name"))
            try:
                produced[name] = self.layer(entry, name, cls, produced, bound, prefix)
            except _Unsupported as exc:
                raise self.fail(exc, name, cls) from None
        return [produced[ref[0]] for ref in _refs(cfg.get("output_layers"))]

    def layer(
        self,
        entry: dict[str, Any],
        name: str,
        cls: str,
        produced: dict[str, str],
        bound: dict[str, str] | None,
        prefix: str,
    ) -> str:
        nodes = entry.get("inbound_nodes") or []
        if cls == "InputLayer":
            if bound is not None:
                return bound[name]
            return self.input(entry, name)
        if len(nodes) > 1:
            raise _Unsupported(
                "E174",
                f"the layer is called {len(nodes)} times (shared weights)",
                "archc gives every call its own layer and weights; a shared layer cannot "
                "be expressed",
            )
        if not nodes:
            raise _Unsupported("E174", "the layer is never called", "remove it from the model")
        tensors, constants = _arguments(nodes[0], produced, name)
        if cls in ("Sequential", "Functional", "Model") and entry.get("module") in (
            "keras",
            "keras.models",
            "keras.src.models.functional",
            "keras.src.models.sequential",
        ):
            return self.nested(entry, name, cls, tensors)
        if entry.get("module") == _OPS_MODULE and cls in _OPS:
            return self.op(name, cls, tensors, constants)
        convert = _converter(entry)
        if convert is None:
            raise _Unsupported("E170", "archc has no op for this layer class", PLUGIN_HINT)
        if constants:
            raise _Unsupported("E171", "the layer is called with constant arguments", "")
        shapes = _arg_shapes(nodes[0])
        layer = _Layer(entry, len(shapes[0]) if shapes and shapes[0] else None, self.notes)
        if not _dtype_ok(layer.cfg):
            raise _Unsupported(
                "E171",
                f"dtype policy {short_repr(layer.cfg.get('dtype'))} is not supported",
                "archc's models compute in float32",
            )
        op, attrs = convert(layer)
        layer.leftovers()
        return self.add(name, op, attrs, tensors, cls, bool(layer.cfg.get("trainable", True)))

    def add(
        self,
        name: str,
        op: str,
        attrs: dict[str, Any],
        inputs: list[str],
        cls: str,
        trainable: bool = True,
    ) -> str:
        why = check_name(name)
        if why is not None:
            raise _Unsupported(
                "E171",
                f"the layer name {short_repr(name)} {why}",
                "rename the layer in Keras before importing (weights move by name)",
            )
        if name in self.names:
            raise _Unsupported("E174", f"two layers are named '{name}'", "rename one of them")
        self.names.add(name)
        item = Item(name, op, attrs, inputs, cls, trainable)
        self.items.append(item)
        return name

    def input(self, entry: dict[str, Any], name: str) -> str:
        cfg = entry.get("config") or {}
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if shape is None:
            raise _Unsupported("E171", "the input has no shape", "give keras.Input a shape")
        dtype = cfg.get("dtype", "float32")
        if dtype not in ("float32", "int32", "int64"):
            raise _Unsupported("E171", f"input dtype {dtype} is not supported", "use float32")
        if check_name(name) is not None:
            raise _Unsupported(
                "E171",
                f"the input name {short_repr(name)} {check_name(name)}",
                "rename the input in Keras before importing",
            )
        attrs: dict[str, Any] = {"shape": list(shape[1:])}
        if dtype != "float32":
            attrs["dtype"] = "int"
        item = Item(name, "input", attrs, [], "InputLayer")
        self.names.add(name)
        self.inputs.append(item)
        return name

    def op(self, name: str, cls: str, tensors: list[str], constants: list[Any]) -> str:
        """keras.ops on symbolic tensors: a + b as add; x + c, x * c, x - c as rescaling
        (x * 1.0 + c is x + c exactly, x * c + 0.0 is x * c)."""
        if not constants:
            return self.add(name, _OPS[cls], {}, tensors, cls)
        if len(tensors) != 1 or len(constants) != 1 or not isinstance(constants[0][1], int | float):
            raise _Unsupported("E170", f"keras.ops.{cls.lower()} on these arguments", PLUGIN_HINT)
        position, c = constants[0]
        c = float(c)
        if cls == "Add":
            attrs = {"scale": 1.0, "offset": c}
        elif cls == "Multiply":
            attrs = {"scale": c, "offset": 0.0}
        elif position == 1:  # x - c
            attrs = {"scale": 1.0, "offset": -c}
        else:  # c - x
            attrs = {"scale": -1.0, "offset": c}
        return self.add(name, "rescaling", attrs, tensors, f"ops.{cls}")

    def nested(self, entry: dict[str, Any], name: str, cls: str, tensors: list[str]) -> str:
        inner = entry.get("config") or {}
        self.containers.append(name)
        if cls == "Sequential":
            inner = _sequential_as_functional(inner)
        inputs = [ref[0] for ref in _refs(inner.get("input_layers"))]
        if len(inputs) != len(tensors):
            raise _Unsupported(
                "E174",
                f"the nested model takes {len(inputs)} inputs but is called with {len(tensors)}",
                "",
            )
        outs = self.walk(inner, dict(zip(inputs, tensors, strict=True)), f"{name}/")
        if len(outs) != 1:
            raise _Unsupported("E174", "a nested model with several outputs", "")
        return outs[0]


def _refs(value: Any) -> list[list[Any]]:
    """Keras' input_layers / output_layers: [name, node, tensor] for one, a list of them for
    several."""
    if not value:
        return []
    return [value] if isinstance(value[0], str) else list(value)


def _ordered(layers: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The layers in an order where each comes after those it reads (Keras' own order where
    it already is one)."""
    by_name = {str(e.get("name") or (e.get("config") or {}).get("name")): e for e in layers}
    done: set[str] = set()
    pending = list(by_name)
    while pending:
        progressed = False
        rest = []
        for name in pending:
            deps = {d for node in by_name[name].get("inbound_nodes") or [] for d in _history(node)}
            if deps <= done | (deps - set(by_name)):
                done.add(name)
                progressed = True
                yield by_name[name]
            else:
                rest.append(name)
        if not progressed:
            raise _Unsupported("E174", "the layers form a cycle", "")
        pending = rest


def _history(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            yield node["config"]["keras_history"][0]
            return
        for v in node.values():
            yield from _history(v)
    elif isinstance(node, list):
        if len(node) == 3 and isinstance(node[0], str) and isinstance(node[1], int):
            yield node[0]  # Keras 2's [name, node, tensor, kwargs]
            return
        for v in node:
            yield from _history(v)


def _arguments(
    node: dict[str, Any], produced: dict[str, str], layer: str
) -> tuple[list[str], list[tuple[int, Any]]]:
    """The tensors a call reads (flat names) and its constant arguments (position, value)."""
    if not isinstance(node, dict) or "args" not in node:
        raise _Unsupported(
            "E174", "an inbound node in an old (Keras 2) format", "save with Keras 3"
        )
    tensors: list[str] = []
    constants: list[tuple[int, Any]] = []
    args = node["args"]
    if len(args) == 1 and isinstance(args[0], list):  # a merge layer's list of inputs
        args = args[0]
    for i, arg in enumerate(args):
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            src, _, index = arg["config"]["keras_history"]
            if index != 0:
                raise _Unsupported(
                    "E174", f"reads output {index} of layer '{src}' (several outputs)", ""
                )
            tensors.append(produced[src])
        else:
            constants.append((i, arg))
    for key, value in (node.get("kwargs") or {}).items():
        if key in ("mask", "training") and not isinstance(value, dict):
            continue
        raise _Unsupported("E171", f"the call's argument {key}={short_repr(value)}", "")
    return tensors, constants


def _arg_shapes(node: dict[str, Any]) -> list[list[Any] | None]:
    args = node.get("args") or []
    if len(args) == 1 and isinstance(args[0], list):
        args = args[0]
    return [
        a["config"].get("shape") if isinstance(a, dict) and "config" in a else None for a in args
    ]


def convert(source: Source) -> Imported:
    """The source's model as op items, or SpecError naming the first layer archc cannot take."""
    walker = _Walker(source)
    cfg = source.config
    outputs = walker.walk(cfg, None, "")
    if not walker.inputs:
        raise walker.fail(_Unsupported("E174", "the model has no input layer", ""), None, None)
    return Imported(
        cfg.get("name") or "model",
        walker.inputs,
        walker.items,
        outputs,
        walker.notes,
        walker.containers,
    )


# -- writing the spec --------------------------------------------------------------------------


def _defaults(op: str) -> dict[str, Any]:
    import dataclasses

    cls = load_all()[op].attrs
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, tuple) and len(b) == 2 and not isinstance(a, list | tuple):
        return b == (a, a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == [list(x) if isinstance(x, tuple) else x for x in b]
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(value)
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) and text not in (
        "true",
        "false",
        "null",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
    ):
        return text
    return json.dumps(text)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


MAX_LINE = 100


def _item_lines(item: Item, shown: dict[str, Any]) -> list[str]:
    pairs: list[tuple[str, Any]] = [("op", item.op), ("name", item.name)]
    if item.inputs is not None:
        pairs.append(("inputs", item.inputs))
    pairs += list(shown.items())
    if not item.trainable:
        pairs.append(("trainable", False))
    flow = "  - {" + ", ".join(f"{k}: {_flow(v)}" for k, v in pairs) + "}"
    if len(flow) <= MAX_LINE:
        return [flow]
    lines = [f"  - op: {_flow(item.op)}"]
    lines += [f"    {k}: {_flow(v)}" for k, v in pairs[1:]]
    return lines


@dataclass
class Written:
    text: str
    lines: int
    layers: int
    params: dict[str, Any]
    blocks: list[tuple[str, int]] = field(default_factory=list)  # (block, calls) recovered


def _classes(imported: Imported) -> tuple[int, list[Item]] | None:
    """The class count: the units (or filters) of the last layer with weights before the only
    output, through weightless one-input layers; and the layers after it (whose reshapes may
    name the count too)."""
    if len(imported.outputs) != 1:
        return None
    by_name = {i.name: i for i in imported.items}
    current = by_name.get(imported.outputs[0])
    after: list[Item] = []
    while current is not None:
        if current.op in ("dense", "conv2d"):
            key = "units" if current.op == "dense" else "filters"
            return int(current.attrs[key]), [current, *after]
        if (
            current.op not in ("activation", "flatten", "reshape", "dropout")
            or len(current.inputs) != 1
        ):
            return None
        after.append(current)
        current = by_name.get(current.inputs[0])
    return None


def _shown(item: Item, expr: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The attributes an item states: an expression, or a value other than the op's default."""
    defaults = _defaults(item.op)
    shown: dict[str, Any] = {}
    for key, value in item.attrs.items():
        if (item.name, key) in expr:
            shown[key] = expr[(item.name, key)]
        elif value is None or (key in defaults and _same(value, defaults[key])):
            continue
        else:
            shown[key] = _plain(value)
    return shown


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


MIN_SHARED = 3  # items of an op that must share a value before it becomes a spec default


def _common(shown_items: list[tuple[Item, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per op, the attribute values most of its items state (more than half of them, at least
    MIN_SHARED): written once under `defaults:` so that each item states what differs."""
    by_op: dict[str, list[dict[str, Any]]] = {}
    for item, shown in shown_items:
        by_op.setdefault(item.op, []).append(shown)
    out: dict[str, dict[str, Any]] = {}
    for op, all_shown in by_op.items():
        # an attribute the op requires stays on every line; one whose default is null stays
        # with the items that set it (an item could not write null back)
        optional = {k for k, v in _defaults(op).items() if v is not None}
        keys = sorted(
            {k for shown in all_shown for k in shown if k in optional}, key=_field_order(op)
        )
        for key in keys:
            values = [json.dumps(s[key], sort_keys=True) for s in all_shown if key in s]
            if not values or any(str(s.get(key, "")).startswith("${") for s in all_shown):
                continue
            best = max(sorted(set(values)), key=values.count)
            n = values.count(best)
            if n >= MIN_SHARED and 2 * n > len(all_shown):
                out.setdefault(op, {})[key] = json.loads(best)
    return out


def _field_order(op: str) -> Callable[[str], int]:
    import dataclasses

    order = [f.name for f in dataclasses.fields(load_all()[op].attrs)]
    return lambda key: order.index(key) if key in order else len(order)


def render(
    imported: Imported,
    counts: Any,
    origin: str,
    depth: int | None = None,
    shapes: dict[str, Any] | None = None,
) -> Written:
    """The spec's text: header, parameters (input shape, classes), inputs, the layers (one
    item a line, or with depth the blocks and repeats `import_structure` finds at that depth),
    expected counts. Deterministic: the same model gives the same bytes."""
    import keras

    params: dict[str, dict[str, Any]] = {}
    expr: dict[tuple[str, str], str] = {}  # (layer, attribute) -> expression
    inputs = []
    for inp in imported.inputs:
        shape = inp.attrs["shape"]
        entry: dict[str, Any] = {"name": inp.name}
        if len(imported.inputs) == 1 and all(isinstance(d, int) for d in shape):
            params["input_shape"] = {
                "type": "list[int]",
                "default": shape,
                "doc": "height, width, channels" if len(shape) == 3 else "the input's shape",
            }
            entry["shape"] = "${input_shape}"
        else:
            entry["shape"] = shape
        if inp.attrs.get("dtype"):
            entry["dtype"] = inp.attrs["dtype"]
        inputs.append(entry)
    classes = _classes(imported)
    if classes is not None and classes[0] > 1:
        n, chain = classes
        params["classes"] = {"type": "int", "default": n, "min": 1}
        head = chain[0]
        expr[(head.name, "units" if head.op == "dense" else "filters")] = "${classes}"
        for item in chain[1:]:
            if item.op == "reshape" and item.attrs["target_shape"] == [n]:
                expr[(item.name, "target_shape")] = "${[classes]}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", imported.name)
    if not re.match(r"[A-Za-z]", name):
        name = "model_" + name
    lines = [
        f"# Imported by `archc import keras` (Keras {keras.__version__}) from {origin}",
        "# One layer a line. Every layer keeps its Keras name, so the Keras model's weights",
        "# move by name (`archc weights`). Attributes equal to the op's defaults are left out;",
        "# `defaults:` holds the values most layers of an op share.",
    ]
    if imported.containers:
        lines.append(
            "# Nested models flattened (their layers kept, their own names gone): "
            + ", ".join(imported.containers)
            + "."
        )
    grouped: dict[str, list[str]] = {}
    for note in imported.notes:  # "what: layer", one line per what
        what, _, layer = note.rpartition(": ")
        grouped.setdefault(what, []).append(layer)
    for what, layers in grouped.items():
        listed = ", ".join(layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")
        lines.append(f"# note: {what} ({listed})")
    lines += [
        "archc: 1",
        f"name: {_scalar(name)}",
        f"doc: {json.dumps(f'{origin}, imported layer for layer')}",
        "",
    ]
    if params:
        lines.append("params:")
        for key, decl in params.items():
            lines += _param_lines(key, decl)
        lines.append("")
    shown_items = [(item, _shown(item, expr)) for item in imported.items]
    common = _common(shown_items)
    if common:
        lines.append("defaults:")
        for op, values in common.items():
            lines.append(f"  {op}: {_flow(values)}")
        lines.append("")
    op_defaults_of = {op: _defaults(op) for op in {item.op for item in imported.items}}
    shown_of = {id(item): shown for item, shown in shown_items}

    def stated(item: Item) -> dict[str, Any]:
        """What the item writes: its shown values that differ from the spec's defaults, and
        the op's default where the spec's differs."""
        spec_defaults = common.get(item.op, {})
        shown = shown_of[id(item)]
        here: dict[str, Any] = {}
        for key, value in shown.items():
            if key in spec_defaults and _same(value, spec_defaults[key]):
                continue
            here[key] = value
        for key in spec_defaults:  # the op's default where the spec's differs
            if key not in shown:
                here[key] = op_defaults_of[item.op][key]
        return {k: here[k] for k in item.attrs if k in here}

    def item_lines(item: Item, prev: str | None) -> list[str]:
        one = Item(item.name, item.op, item.attrs, item.inputs, item.keras_class, item.trainable)
        if item.inputs == [prev]:
            one.inputs = None  # type: ignore[assignment]  # prev: the previous item
        return _item_lines(one, stated(item))

    first = imported.inputs[0].name if imported.inputs else ""
    found: list[tuple[str, int]] = []
    layer_lines: list[str] = []
    block_lines: list[str] = []
    if depth is not None and len(imported.inputs) == 1:
        from .import_structure import recover

        recovered = recover(
            imported.items, first, depth, stated, _plain, item_lines, _flow, MAX_LINE, shapes
        )
        if recovered is not None:
            found, block_lines, layer_lines = (
                recovered.found,
                recovered.blocks,
                recovered.layers,
            )
            if recovered.params:
                at = lines.index("params:") + 1 if "params:" in lines else None
                extra = [x for k, v in recovered.params.items() for x in _param_lines(k, v)]
                if at is None:
                    at = lines.index("") + 1 if "" in lines else len(lines)
                    extra = ["params:", *extra, ""]
                else:
                    at += len(params)
                lines[at:at] = extra
    if found:
        lines[1] = (
            "# Blocks and repeats from the layers' numbered names. Every layer keeps its name, so"
        )
        lines[2] = (
            "# weights move by name (`archc weights`). Attributes equal to the op's defaults are"
        )
        lines[3] = "# left out; `defaults:` holds the values most layers of an op share."
    if not found:
        prev = first or None
        for item in imported.items:
            layer_lines += item_lines(item, prev)
            prev = item.name
    if block_lines:
        lines += ["blocks:", *block_lines, ""]
    lines.append("inputs:")
    lines += [f"  - {_flow(one)}" for one in inputs]
    lines += ["", "layers:", *layer_lines]
    last = imported.items[-1].name if imported.items else None
    if imported.outputs != [last]:
        lines += ["", f"outputs: {_flow(imported.outputs)}"]
    lines += [
        "",
        f"expect: {{total: {counts.total}, trainable: {counts.trainable}, "
        f"non_trainable: {counts.non_trainable}}}",
    ]
    text = "\n".join(lines) + "\n"
    return Written(text, text.count("\n"), len(imported.items), params, found)


def _param_lines(key: str, decl: dict[str, Any]) -> list[str]:
    one = f"  {key}: {_flow(decl)}"
    if len(one) <= MAX_LINE:
        return [one]
    return [f"  {key}:", *(f"    {k}: {_flow(v)}" for k, v in decl.items())]


def keras_counts(model: Any) -> Any:
    """Counts by Keras' own rule: trainable and non-trainable weights' sizes."""
    from archc.compiler.ir import Counts

    t = sum(math.prod(w.shape) for w in model.trainable_weights)
    n = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return Counts(t + n, t, n)


def import_keras(
    model: str, out: str | os.PathLike[str], flat: bool = False
) -> tuple[Written, Any]:
    """Import MODEL and write the spec to `out` atomically: with blocks and repeats where the
    layers' names show them (the shortest form that expands to the flat import's graph
    exactly), or one layer a line (`flat`, or where none does). Returns (what was written,
    the Keras model)."""
    source = open_source(model)
    imported = convert(source)
    keras_model = source.load()
    counts = keras_counts(keras_model)
    origin = model if source.application else Path(model).name
    written = render(imported, counts, origin)
    if not flat:
        written = _structured(imported, counts, origin, written)
    from .codegen import write_atomic

    write_atomic(Path(out), written.text)
    return written, keras_model


def _structured(imported: Imported, counts: Any, origin: str, flat: Written) -> Written:
    """The shortest structured rendering that expands to the flat one's graph, node for node,
    and that both backends can generate; the flat one where none does."""
    import tempfile

    from archc.compiler.api import compile_spec

    from .structure import analyse

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flat.yaml"
        path.write_text(flat.text)
        graph = compile_spec(str(path)).graph
        reference = _nodes(graph)
        shapes = {n.name: n.shape for n in graph.nodes}
        candidates = []
        for depth in range(1, 4):
            try:
                written = render(imported, counts, origin, depth, shapes)
            except Exception:  # a structure the recovery did not foresee: the flat form holds
                continue
            if written.blocks and written.lines < flat.lines:
                candidates.append(written)
        for written in sorted(candidates, key=lambda w: w.lines):
            path = Path(tmp) / "structured.yaml"
            path.write_text(written.text)
            try:
                compiled = compile_spec(str(path))
                if _nodes(compiled.graph) != reference:
                    continue
                analyse(compiled)
            except SpecError:
                continue
            return written
    return flat


def _nodes(graph: Any) -> dict[str, Any]:
    """A graph as what the spec states: per layer, its op, attributes, inputs, shape and
    weights."""
    return {
        n.name: (n.op, n.attrs, tuple(n.inputs), n.shape, n.trainable, n.weights)
        for n in graph.nodes
    }


# -- the proof ---------------------------------------------------------------------------------


class _FlatModel:
    """A Keras model's layers by name, nested models' layers included (get_layer)."""

    def __init__(self, model: Any):
        self.layers: dict[str, Any] = {}
        self._add(model)

    def _add(self, model: Any) -> None:
        for layer in model.layers:
            if hasattr(layer, "layers") and layer.__class__.__name__ in (
                "Sequential",
                "Functional",
            ):
                self._add(layer)
            else:
                self.layers[layer.name] = layer

    def get_layer(self, name: str) -> Any:
        return self.layers[name]


@dataclass
class Step:
    name: str
    result: str
    seconds: float


@dataclass
class Proof:
    steps: list[Step]
    max_abs_diff: float
    max_abs_output: float

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": [
                {"step": s.name, "result": s.result, "seconds": s.seconds} for s in self.steps
            ],
            "max_abs_diff": self.max_abs_diff,
            "max_abs_output": self.max_abs_output,
        }


RTOL = 1e-5


def _softmax_logits(keras_model: Any, graph: Any, x: Any) -> float | None:
    """max|z| of the logits the model's softmax output reads, as `verify` bounds a softmax
    (archc.backends.proof.verify.softmax_logits); None where the output is no softmax, or its
    layer is not a top-level layer of the original model."""
    import keras
    import numpy as np

    from archc.backends.proof.verify import softmax_logits

    node = graph.node(graph.outputs[0])
    try:
        layer = keras_model.get_layer(node.name)
        feed = keras.Model(keras_model.inputs, layer.input)(x, training=False)
    except (ValueError, KeyError, AttributeError):
        return None
    return softmax_logits(keras_model, graph, node, {node.inputs[0]: np.asarray(feed)})


class StepLog:
    """A proof's steps as they finish: each timed from the end of the one before (or from the
    log's start), kept, and reported at once."""

    def __init__(self, report: Callable[[Step], None]) -> None:
        self.steps: list[Step] = []
        self.report = report
        self.start = time.perf_counter()

    def done(self, name: str, result: str) -> None:
        step = Step(name, result, round(time.perf_counter() - self.start, 2))
        self.steps.append(step)
        self.report(step)
        self.start = time.perf_counter()

    def compile_both(self, spec: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> None:
        """The proof's compile step, the same for every importer: both backends written and
        held to the IR."""
        from .compile import compile_to_file

        paths = [compile_to_file(Path(spec), b, Path(out_dir)).path for b in ("keras", "torch")]
        written = ", ".join(map(str, paths))
        self.done("compile", f"both written and verified against the IR: {written}")

    def verified(self, checked: Any) -> None:
        """The verify step's line, from verify's report."""
        agree = f"{checked.layers_checked} layers agree, max|Δ| = {checked.max_abs_diff:.3g}"
        self.done("verify", agree)


def prove(
    spec: str | os.PathLike[str],
    keras_model: Any,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    input_size: tuple[int, int] = (224, 224),
    report: Callable[[Step], None] = lambda s: None,
) -> Proof:
    """Check, compile both, verify, move the Keras model's weights into the generated
    PyTorch model through a weights file, and compare their outputs; SpecError (E173) when a
    step finds a difference."""
    import numpy as np

    from archc.backends.proof.verify import _compare, channels_first, randomize_keras
    from archc.backends.proof.verify import verify as run_verify
    from archc.backends.proof.weights import convert as convert_weights
    from archc.backends.torch import backend as torch_backend
    from archc.compiler.api import compile_spec

    from . import sizes

    log = StepLog(report)
    compiled = compile_spec(str(spec))
    want = keras_counts(keras_model)
    got = compiled.graph.counts
    if got != want:
        raise proof_error(
            spec, f"the spec has {got.as_dict()} parameters, the Keras model {want.as_dict()}"
        )
    flat = _FlatModel(keras_model)
    missing = [n.name for n in compiled.graph.nodes if n.weights and n.name not in flat.layers]
    weighted = [name for name, layer in flat.layers.items() if layer.weights]
    lost = sorted(set(weighted) - {n.name for n in compiled.graph.nodes})
    if missing or lost:
        raise proof_error(spec, f"layer names differ: spec only {missing}, Keras only {lost}")
    log.done(
        "check",
        f"counts equal the Keras model's: {got.total:,} ({got.trainable:,} "
        f"trainable, {got.non_trainable:,} non-trainable)",
    )
    log.compile_both(spec, out_dir)

    unknown = any(d is None for d in compiled.graph.node(compiled.graph.inputs[0]).shape or ())
    checked = run_verify(
        compiled, odd_input=False, input_sizes=(input_size,) if unknown else (), batch=2
    )
    log.verified(checked)

    randomize_keras(flat, compiled.graph, seed)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "original.weights.h5"
        keras_model.save_weights(h5)
        moved = Path(tmp) / "original.safetensors"
        route = "a Keras weights file, `archc weights`"
        try:
            converted = convert_weights(spec, h5, moved)
            arrays = converted.arrays
            torch_model = torch_backend.build(compiled)
            from safetensors.torch import load_file

            torch_model.load_state_dict(load_file(str(moved)), strict=True)
        except SpecError:
            # a file whose groups do not carry the layers' names (nested models): the same
            # bindings, from the layers themselves
            from archc.backends.proof.transfer import keras_to_torch

            route = "by layer name from the model (its weights file nests containers)"
            torch_model = torch_backend.build(compiled)
            arrays = keras_to_torch(flat, torch_model, compiled.graph)
    log.done("weights", f"{arrays} arrays moved into the generated PyTorch model ({route})")

    run = compiled if not unknown else sizes._at(compiled, input_size)
    shape = run.graph.node(run.graph.inputs[0]).shape or ()
    x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
    import keras
    import torch

    y_keras = keras.ops.convert_to_numpy(keras_model(x, training=False))
    torch_model.eval()
    with torch.no_grad():
        y_torch = torch_model(torch.from_numpy(channels_first(x).copy()))
    y_torch = y_torch[0] if isinstance(y_torch, tuple) else y_torch
    y_t = y_torch.numpy()
    y_t = y_t if y_t.ndim <= 3 else np.moveaxis(y_t, 1, -1)
    diff, allowed = _compare(y_keras, y_t, 0.0)  # relative: RTOL * max|y|
    logits = _softmax_logits(keras_model, run.graph, x)
    if logits is not None:  # a softmax head: the bound follows its logits (verify's rule)
        allowed = max(allowed, RTOL * logits)
    largest = float(np.max(np.abs(y_keras))) if y_keras.size else 0.0
    if not diff <= allowed:
        raise proof_error(
            spec,
            f"the generated PyTorch model's outputs differ from the Keras model's: max|Δ| = "
            f"{diff:.3g} (allowed {allowed:.3g})",
        )
    size = "x".join(map(str, shape))
    log.done(
        "outputs",
        f"the original Keras model and the PyTorch model agree at {size}: "
        f"max|Δ| = {diff:.3g} (max|y| = {largest:.3g})",
    )
    return Proof(log.steps, diff, largest)


def proof_error(
    spec: str | os.PathLike[str], message: str, importer: str = "importer"
) -> SpecError:
    """E173: a step of an import's proof found a difference (archc's bug, not the user's)."""
    return SpecError(
        [
            Diagnostic(
                "E173",
                message,
                Location(str(spec), 1, 1),
                hint=f"this is a bug in archc's {importer} or a backend; please report it with "
                "the model",
            )
        ]
    )
