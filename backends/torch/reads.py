"""What the module of each of archc's ops holds, read from PyTorch's own attributes and said
in the IR's terms (`TorchOp.reads`, which `conform` holds against the node's attributes).
Plain functions of a module: nothing here imports PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reader = Callable[[Any], dict[str, Any]]


def _padding(m: Any) -> str:
    """'same' or 'valid' as a convolution module holds it: Keras' helper classes keep a flag,
    nn.Conv2d keeps PyTorch's "same"; a folded zero pad before a 'valid' convolution is a
    padding of numbers."""
    if hasattr(m, "same"):
        return "same" if m.same else "valid"
    return "same" if m.padding == "same" else "valid"


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def conv(m: Any) -> dict[str, Any]:
    return {
        "filters": m.out_channels,
        "kernel": tuple(m.kernel_size),
        "strides": tuple(m.stride),
        "dilation": tuple(m.dilation),
        "groups": m.groups,
        "padding": _padding(m),
        "use_bias": m.bias is not None,
    }


def depthwise(m: Any) -> dict[str, Any]:
    return {
        "kernel": tuple(m.kernel_size),
        "strides": tuple(m.stride),
        "dilation": tuple(m.dilation),
        "padding": _padding(m),
        "depth_multiplier": m.out_channels // m.in_channels,
        "use_bias": m.bias is not None,
    }


def separable(m: Any) -> dict[str, Any]:
    read = depthwise(m.depthwise)
    read["use_bias"] = m.pointwise.bias is not None
    read["filters"] = m.pointwise.out_channels
    return read


def transpose(m: Any) -> dict[str, Any]:
    (top, bottom), (left, right) = m.crops
    read = {"filters": m.out_channels, "kernel": tuple(m.kernel_size), "strides": tuple(m.stride)}
    read["use_bias"] = m.bias is not None
    if any((top, bottom, left, right)):  # only 'same' crops (where k <= s, no padding does)
        read["padding"] = "same"
    return read


def conv1d(m: Any) -> dict[str, Any]:
    return {
        "filters": m.out_channels,
        "kernel": m.kernel_size[0],
        "strides": m.stride[0],
        "dilation": m.dilation[0],
        "groups": m.groups,
        "padding": _padding(m),
        "use_bias": m.bias is not None,
    }


def pool2d(m: Any) -> dict[str, Any]:
    keras_same = type(m).__name__.startswith("Keras")  # the helpers pad as 'same' does
    return {
        "pool": _pair(m.kernel_size),
        "strides": _pair(m.stride),
        "padding": "same" if keras_same else "valid",
    }


def pool1d(m: Any) -> dict[str, Any]:
    return {"pool": m.pool, "strides": m.stride, "padding": "same" if m.same else "valid"}


def norm(m: Any) -> dict[str, Any]:
    return {"epsilon": m.eps, "center": m.bias is not None, "scale": m.weight is not None}


def batch_norm(m: Any) -> dict[str, Any]:
    return {**norm(m), "momentum": 1.0 - m.momentum}  # PyTorch's is Keras' 1 - momentum


def dropout(m: Any) -> dict[str, Any]:
    return {"rate": m.p if hasattr(m, "p") else m.rate}


def attention(m: Any) -> dict[str, Any]:
    return {
        "num_heads": m.num_heads,
        "key_dim": m.key_dim,
        "use_bias": m.query_bias is not None,
        "causal": m.causal,
        "dropout": m.dropout,
    }


def nothing(m: Any) -> dict[str, Any]:
    return {}


def dense(m: Any) -> dict[str, Any]:
    return {"units": m.out_features, "use_bias": m.bias is not None}


def layer_scale(m: Any) -> dict[str, Any]:
    return {"init_value": m.init_value}


def embedding(m: Any) -> dict[str, Any]:
    return {"input_dim": m.num_embeddings, "output_dim": m.embedding_dim}
