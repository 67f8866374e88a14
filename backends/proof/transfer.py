"""Weight transfer between Keras and PyTorch models of one graph, by Keras layer name.

Op-agnostic: every IR weight of a layer goes through its op's binding (torch_ops.TORCH_OPS:
the PyTorch parameter or buffer it is, and the layout change both ways) to the module that
`torch_model.keras_layers` names for the layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from archc.backends.torch.ops import TORCH_OPS, Binding
from archc.compiler.ir import Graph, Node, Weight


def _module(torch_model: Any, node: Node) -> Any:
    path = torch_model.keras_layers.get(node.name)
    if path is None:
        raise ValueError(f"the PyTorch model has no module for Keras layer '{node.name}'")
    return torch_model.get_submodule(path)


def _tensor(module: Any, key: str) -> Any:
    """A parameter or buffer by its dotted key under the module ('pointwise.bias')."""
    for part in key.split("."):
        module = getattr(module, part)
    return module


def bound_tensors(torch_model: Any, graph: Graph) -> Iterator[tuple[Node, Weight, Any, Binding]]:
    """(node, IR weight, the PyTorch parameter or buffer it is, its binding) for every weight
    of the graph, through the op's bindings and `keras_layers`."""
    for node in graph.nodes:
        if not node.weights:
            continue
        module = _module(torch_model, node)
        for weight in node.weights:
            binding = TORCH_OPS[node.op].weights[weight.name]
            yield node, weight, _tensor(module, binding.key), binding


def _keras_arrays(layer: Any, node: Node) -> list[np.ndarray]:
    values = layer.get_weights()
    shapes = [tuple(v.shape) for v in values]
    if shapes != [w.shape for w in node.weights]:
        raise ValueError(
            f"layer '{node.name}': Keras weights {shapes} do not match the IR's "
            f"{[(w.name, w.shape) for w in node.weights]}"
        )
    return [np.asarray(v) for v in values]


def keras_to_torch(keras_model: Any, torch_model: Any, graph: Graph) -> int:
    """Copy every weight of the Keras model into the PyTorch model; returns arrays copied."""
    import torch

    copied = 0
    for node in graph.nodes:
        if not node.weights:
            continue
        module = _module(torch_model, node)
        arrays = _keras_arrays(keras_model.get_layer(node.name), node)
        for weight, value in zip(node.weights, arrays, strict=True):
            binding = TORCH_OPS[node.op].weights[weight.name]
            target = _tensor(module, binding.key)
            array = binding.to_torch(value)
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(
                    f"layer '{node.name}' weight {weight.name}: shape {array.shape} != "
                    f"{tuple(target.shape)}"
                )
            with torch.no_grad():
                target.copy_(torch.from_numpy(np.array(array, order="C")))  # 0-d stays 0-d
            copied += 1
    return copied


def torch_to_keras(torch_model: Any, keras_model: Any, graph: Graph) -> int:
    """Copy every weight of the PyTorch model into the Keras model; returns arrays copied."""
    copied = 0
    for node in graph.nodes:
        if not node.weights:
            continue
        module = _module(torch_model, node)
        values = []
        for weight in node.weights:
            binding = TORCH_OPS[node.op].weights[weight.name]
            value = _tensor(module, binding.key).detach().cpu().numpy()
            values.append(binding.to_keras(value, weight.shape))
        layer = keras_model.get_layer(node.name)
        layer.set_weights(values)
        if hasattr(layer, "finalize_state"):  # Normalization computes with copies made here
            layer.finalize_state()
        copied += len(values)
    return copied
