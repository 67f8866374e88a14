"""Weight transfer between Keras and PyTorch models of one graph, by layer name.

Layouts (DESIGN.md): conv kernel (kh, kw, in/g, out) <-> (out, in/g, kh, kw); depthwise
(kh, kw, C, M) <-> (C*M, 1, kh, kw); dense (in, out) <-> (out, in); BatchNorm gamma, beta,
moving mean, moving variance <-> weight, bias, running_mean, running_var.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir import Graph, Node

TORCH_NAME = {
    "kernel": "weight",
    "depthwise_kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def keras_to_torch_array(node: Node, weight: str, value: np.ndarray) -> np.ndarray:
    if weight == "kernel" and node.op == "conv2d":
        return value.transpose(3, 2, 0, 1)
    if weight == "depthwise_kernel":
        kh, kw, c, m = value.shape
        return value.reshape(kh, kw, c * m, 1).transpose(2, 3, 0, 1)
    if weight == "kernel" and node.op == "dense":
        return value.T
    return value


def torch_to_keras_array(node: Node, weight: str, value: np.ndarray) -> np.ndarray:
    if weight == "kernel" and node.op == "conv2d":
        return value.transpose(2, 3, 1, 0)
    if weight == "depthwise_kernel":
        kh, kw, c, m = next(w.shape for w in node.weights if w.name == weight)
        return value.transpose(2, 3, 0, 1).reshape(kh, kw, c, m)
    if weight == "kernel" and node.op == "dense":
        return value.T
    return value


def _keras_arrays(layer: Any, node: Node) -> dict[str, np.ndarray]:
    values = layer.get_weights()
    names = [w.name for w in node.weights]
    shapes = [tuple(v.shape) for v in values]
    if shapes != [w.shape for w in node.weights]:
        raise ValueError(
            f"layer '{node.name}': Keras weights {shapes} do not match the IR's "
            f"{[(w.name, w.shape) for w in node.weights]}"
        )
    return dict(zip(names, values, strict=True))


def keras_to_torch(keras_model: Any, torch_model: Any, graph: Graph) -> int:
    """Copy every weight of the Keras model into the PyTorch model; returns arrays copied."""
    import torch

    state = torch_model.state_dict()
    update = {}
    for node in graph.nodes:
        if not node.weights:
            continue
        arrays = _keras_arrays(keras_model.get_layer(node.name), node)
        for name, value in arrays.items():
            key = f"{node.name}.{TORCH_NAME[name]}"
            target = state[key]
            array = keras_to_torch_array(node, name, np.asarray(value))
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(f"{key}: shape {array.shape} != {tuple(target.shape)}")
            update[key] = torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype)
    torch_model.load_state_dict(update, strict=False)
    return len(update)


def torch_to_keras(torch_model: Any, keras_model: Any, graph: Graph) -> int:
    """Copy every weight of the PyTorch model into the Keras model; returns arrays copied."""
    state = torch_model.state_dict()
    copied = 0
    for node in graph.nodes:
        if not node.weights:
            continue
        values = [
            torch_to_keras_array(
                node, w.name, state[f"{node.name}.{TORCH_NAME[w.name]}"].detach().cpu().numpy()
            )
            for w in node.weights
        ]
        keras_model.get_layer(node.name).set_weights(values)
        copied += len(values)
    return copied
