"""Training equivalence: the same SGD steps in Keras and PyTorch give the same numbers.

Inference equivalence (`verify`) says nothing about training: BatchNorm's momentum is the
weight of the *old* statistics in Keras and of the *new* ones in PyTorch, Keras moves the
moving variance towards the biased batch variance and PyTorch towards the unbiased one,
Keras adds L2 penalties to the loss by itself, and a frozen layer must stay frozen in both.
Here both generated models start from the same weights (Keras' randomised ones, moved to
PyTorch by name), take `steps` plain SGD steps on the same batch with the same targets
(mean squared error over every output, plus Keras' regularisation losses and
`regularization_loss()`), and after every step the loss, every gradient, every updated weight
and every moving statistic are compared in graph order; the first that differs is named.

Both run in float64 (Keras' floatx and `model.double()`: the generated code is the same).
In float32 the frameworks' summation orders differ by ~1e-5 relative once gradients are
summed over a batch and through BatchNorm, the size of a small L2 penalty's gradient; in
float64 they agree to ~1e-13, except that Keras keeps an L2 factor as a float32 constant
(0.0005 becomes 0.000500000024: penalties differ by ~5e-8 relative). The tolerance,
max|Δ| ≤ 1e-10 + 1e-6 · max|value| per array, sits well above both and far below any rule
difference (a momentum not converted is off by ~0.5, a biased variance by 1/n, an L2 term
left out by all of it).

Dropout, stochastic depth and attention's probability dropout draw random masks no two
frameworks share: their rates are set to 0 in both models for the run (and reported).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archc.backends import memory, sizes
from archc.backends.compile import VerificationError, too_big
from archc.backends.keras import backend as keras_backend
from archc.backends.keras import runtime as keras_runtime
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.ir import Graph, Node

from .transfer import bound_tensors, keras_to_torch
from .verify import channels_first, inputs_for, randomize_keras

ATOL = 1e-10
RTOL = 1e-6
LEARNING_RATE = 0.01
RANDOM_OPS = ("dropout", "stochastic_depth")


@dataclass
class TrainReport:
    steps: int
    losses: list[tuple[float, float]] = field(default_factory=list)  # (keras, torch) per step
    arrays_checked: int = 0
    max_rel_diff: float = 0.0  # max over arrays of max|Δ| / (atol + rtol·max|value|)
    dropout_off: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "losses": [{"keras": k, "torch": t} for k, t in self.losses],
            "arrays_checked": self.arrays_checked,
            "max_diff_over_tolerance": self.max_rel_diff,
            "random_layers_turned_off": self.dropout_off,
        }


def verify_training(
    spec: str | Compiled,
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
    steps: int = 3,
    batch: int = 4,
    seed: int = 0,
    learning_rate: float = LEARNING_RATE,
    input_size: tuple[int, int] | None = None,
) -> TrainReport:
    """Run `steps` SGD steps in both frameworks; raise VerificationError (E111) at the first
    loss, gradient, weight or moving statistic that differs. Where the input's height and
    width are unknown, the models (built for any size) train at `input_size`, or at the
    first size `archc.backends.sizes` finds."""
    training_backend(None)
    compiled = (
        spec
        if isinstance(spec, Compiled)
        else compile_spec(spec, overrides, variant=variant, from_text=from_text)
    )
    (run,) = sizes.runs(compiled, [input_size] if input_size else (), count=1)
    graph = run.graph  # compiled's, or the spec at a size where its sizes are unknown
    short = memory.shortfall(graph, batch, models=4)  # two models and their gradients
    if short is not None:
        raise too_big(
            compiled, short, "train in both frameworks", "verify training on a smaller variant"
        )
    km = _keras_float64(compiled)
    tm = torch_backend.build(compiled).double()
    randomize_keras(km, graph, seed)
    keras_to_torch(km, tm, graph)
    report = TrainReport(steps, dropout_off=_random_layers_off(km, tm, graph))
    xs = inputs_for(graph, batch, seed)  # token ids stay integers
    xs = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in xs]
    rng = np.random.default_rng(seed + 1)
    targets = [rng.standard_normal((batch, *(graph.node(n).shape or ()))) for n in graph.outputs]
    for step in range(1, steps + 1):
        k_loss, k_grads = _keras_step(km, graph, xs, targets, learning_rate)
        t_loss, t_grads = _torch_step(tm, graph, xs, targets, learning_rate)
        report.losses.append((k_loss, t_loss))
        _check(report, compiled, step, "the loss", None, k_loss, t_loss)
        for (node, name), grad in k_grads.items():
            what = f"the gradient of {name}"
            _check(report, compiled, step, what, node, grad, t_grads[node, name])
        for node, name, k_value, t_value in _weights(km, tm, graph):
            _check(report, compiled, step, f"{name} after the update", node, k_value, t_value)
    return report


def training_backend(keras_backend: str | None) -> None:
    """The Keras side's step takes its gradients with TensorFlow's GradientTape: training is
    verified on Keras' tensorflow backend only (E115 for another)."""
    running = keras_runtime.use(keras_backend)
    if running != "tensorflow":
        raise SpecError(
            [
                Diagnostic(
                    "E115",
                    f"verify --train runs on Keras' tensorflow backend, not on '{running}' "
                    "(the Keras training step takes its gradients with tf.GradientTape)",
                    hint="verify training without --keras-backend (and without KERAS_BACKEND "
                    "set to another backend); inference verifies on every Keras backend",
                )
            ]
        )


# -- one step in each framework ---------------------------------------------------------------
def _keras_float64(compiled: Compiled) -> Any:
    """The generated Keras model built in float64 (floatx and the dtype policy, which layers
    read, both set for the build and put back after)."""
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        model = keras_backend.build(compiled)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    dtypes = {str(w.dtype) for w in model.weights}
    if dtypes - {"float64"}:
        raise RuntimeError(f"the Keras model was not built in float64 (weights: {dtypes})")
    return model


def _trainable(km: Any, graph: Graph) -> Iterator[tuple[Node, str, Any]]:
    """(node, weight name, Keras variable) of every weight training changes."""
    for node in graph.nodes:
        if not node.weights:
            continue
        layer = km.get_layer(node.name)
        for weight, variable in zip(node.weights, layer.weights, strict=True):
            if weight.trainable and layer.trainable:
                yield node, weight.name, variable


def _keras_step(
    km: Any, graph: Graph, xs: list[np.ndarray], targets: list[np.ndarray], lr: float
) -> tuple[float, dict[tuple[Node, str], np.ndarray]]:
    import tensorflow as tf

    trainable = list(_trainable(km, graph))
    variables = [v for _, _, v in trainable]
    with tf.GradientTape() as tape:
        ys = km(xs if len(xs) > 1 else xs[0], training=True)
        ys = ys if isinstance(ys, list | tuple) else [ys]
        loss = sum(tf.reduce_mean(tf.square(y - t)) for y, t in zip(ys, targets, strict=True))
        loss = loss + sum(km.losses)  # L2 penalties, as fit() adds them
    grads = tape.gradient(loss, variables)
    out = {}
    for (node, name, variable), grad in zip(trainable, grads, strict=True):
        # an embedding's gradient is IndexedSlices (the rows read): made dense
        g = np.zeros(variable.shape) if grad is None else np.asarray(tf.convert_to_tensor(grad))
        out[node, name] = g
        variable.assign(variable - lr * g)
    return float(loss), out


def _torch_step(
    tm: Any, graph: Graph, xs: list[np.ndarray], targets: list[np.ndarray], lr: float
) -> tuple[float, dict[tuple[Node, str], np.ndarray]]:
    import torch

    tm.train()
    tm.zero_grad(set_to_none=True)
    ys = tm(*(torch.from_numpy(channels_first(x).copy()) for x in xs))
    ys = ys if isinstance(ys, tuple) else (ys,)
    loss = sum(
        torch.mean(torch.square(y - torch.from_numpy(channels_first(t).copy())))
        for y, t in zip(ys, targets, strict=True)
    )
    loss = loss + tm.regularization_loss()
    loss.backward()
    value = float(loss.detach())
    out = {}
    with torch.no_grad():
        for node, name, tensor, binding, shape in _bound(tm, graph):
            if not tensor.requires_grad:
                continue
            grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
            out[node, name] = binding.to_keras(grad.numpy(), shape)
            tensor -= lr * grad
    return value, out


def _bound(tm: Any, graph: Graph) -> Iterator[tuple[Node, str, Any, Any, tuple[int, ...]]]:
    """(node, weight name, PyTorch tensor, binding, Keras shape) of every IR weight."""
    for node, weight, tensor, binding in bound_tensors(tm, graph):
        yield node, weight.name, tensor, binding, weight.shape


def _weights(km: Any, tm: Any, graph: Graph) -> Iterator[tuple[Node, str, Any, Any]]:
    """Every weight and moving statistic of both models, in Keras' layout."""
    torch_side = {(n.name, name): (t, b, s) for n, name, t, b, s in _bound(tm, graph)}
    for node in graph.nodes:
        if not node.weights:
            continue
        layer = km.get_layer(node.name)
        for weight, value in zip(node.weights, layer.get_weights(), strict=True):
            tensor, binding, shape = torch_side[node.name, weight.name]
            yield node, weight.name, value, binding.to_keras(tensor.detach().numpy(), shape)


def _random_layers_off(km: Any, tm: Any, graph: Graph) -> list[str]:
    """Set every dropout-like layer's rate to 0 in both models (the PyTorch module found by
    its Keras name, as transfer finds it); their names."""
    names = []
    for node in graph.nodes:
        if node.op == "multi_head_attention" and node.attrs.dropout:
            layer = km.get_layer(node.name)  # attention probabilities' dropout
            layer._dropout = layer._dropout_layer.rate = 0.0
            tm.get_submodule(tm.keras_layers[node.name]).dropout = 0.0
            names.append(node.name)
        if node.op not in RANDOM_OPS or not getattr(node.attrs, "rate", 0):
            continue
        if node.shares is not None:  # the layer of `shares` called again: turned off there
            continue
        km.get_layer(node.name).rate = 0.0
        module = tm.get_submodule(tm.keras_layers[node.name])
        for attr in ("p", "rate"):  # nn.Dropout's, KerasDropout's
            if hasattr(module, attr):
                setattr(module, attr, 0.0)
        names.append(node.name)
    return names


# -- comparing --------------------------------------------------------------------------------
def _check(
    report: TrainReport,
    compiled: Compiled,
    step: int,
    what: str,
    node: Node | None,
    keras_value: Any,
    torch_value: Any,
) -> None:
    a = np.asarray(keras_value, np.float64)
    b = np.asarray(torch_value, np.float64)
    limit = ATOL + RTOL * (float(np.max(np.abs(a))) if a.size else 0.0)
    diff = float(np.max(np.abs(a - b))) if a.shape == b.shape and a.size else 0.0
    if a.shape != b.shape or not np.isfinite(diff):
        diff = float("inf")
    report.arrays_checked += 1
    report.max_rel_diff = max(report.max_rel_diff, diff / limit)
    if diff <= limit:
        return
    where = f" of layer '{node.name}' ({node.op})" if node is not None else ""
    raise VerificationError(
        [
            Diagnostic(
                "E111",
                f"training step {step}: Keras and PyTorch disagree first at {what}{where}: "
                f"max|Δ| = {diff:.3g} > {limit:.3g}",
                node.origin.location if node is not None else None,
                hint="everything before it agreed (loss, gradients, updates and moving "
                "statistics in graph order); check this op's training rule: BatchNorm "
                "momentum (Keras' is the old statistics' weight, PyTorch's the new one's) "
                "and biased moving variance, L2 penalties, frozen layers",
            )
        ]
    )
