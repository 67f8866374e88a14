"""Cross-backend proof: the Keras and PyTorch models of a spec compute the same numbers.

Both are built from the IR, Keras weights and BN statistics are randomised and transferred
to PyTorch by name, and a seeded randn batch runs through both in inference mode; every
layer's output is compared (PyTorch's converted to channels-last) so a mismatch names the
first layer where it appears. Both models are the generated modules (imported), so what is
proven is what `archc compile` writes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archc.backends import memory, sizes
from archc.backends.compile import VerificationError, too_big, verify_model
from archc.backends.keras import backend as keras_backend
from archc.backends.keras import runtime as keras_runtime
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec, unknown_sizes
from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.ir import Counts, Graph
from archc.compiler.ops.attention import padding_masks

from .transfer import keras_to_torch

ATOL = 1e-5
RTOL = 1e-5
# Mixed precision (`verify --dtype`): each framework's own policy (Keras' mixed_<dtype> at build,
# torch.autocast at run), compared at rtol = GROWTH · u, u the dtype's unit roundoff
# (docs/ARCHITECTURE.md, "Mixed precision", says why GROWTH is 32).
UNIT_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}
GROWTH = 32
DTYPES = ("float32", *UNIT_ROUNDOFF)


@dataclass
class Report:
    ir: Counts
    keras: Counts
    torch: Counts
    max_abs_diff: float = 0.0
    layers_checked: int = 0
    first_bad: str | None = None
    odd_input: dict[str, Any] | None = None
    rows: list[tuple[str, float, float]] = field(default_factory=list)  # name, diff, limit
    sizes: list[tuple[int, int]] = field(default_factory=list)  # run at, for unknown sizes
    atol: float = ATOL  # a layer's limit: atol + RTOL·max|its Keras output|
    keras_backend: str = "tensorflow"  # the Keras backend that ran the Keras model
    rtol: float = RTOL  # GROWTH · unit roundoff under mixed precision
    dtype: str = "float32"  # the compute dtype of both models (mixed precision: not float32)

    def bound(self) -> dict[str, Any] | None:
        """The bound applied where the difference is largest: the layer, its max|Δ|, and its
        limit = atol + rtol·max|y| (y: the layer's Keras output); None with no layer."""
        if not self.rows:
            return None
        name, diff, limit = max(self.rows, key=lambda row: row[1])
        return {
            "layer": name,
            "max_abs_diff": diff,
            "limit": limit,
            "atol": self.atol,
            "rtol": self.rtol,
            "max_abs_value": max(0.0, (limit - self.atol) / self.rtol),
        }

    def agreement(self) -> str:
        """max|Δ| with the bound that was applied to it (not atol alone: each layer may differ
        by atol + rtol·max|y|), and the layer closest to its bound where that is another."""
        bound = self.bound()
        if bound is None:
            return f"max|Δ| = {self.max_abs_diff:.3g}"
        text = (
            f"max|Δ| = {bound['max_abs_diff']:.3g} at '{bound['layer']}' (its bound "
            f"{bound['limit']:.3g} = atol {self.atol:g} + rtol {self.rtol:g}·max|y| "
            f"{bound['max_abs_value']:.3g})"
        )
        name, diff, limit = max(self.rows, key=lambda row: row[1] / row[2] if row[2] else 0.0)
        if name != bound["layer"] and diff > 0:
            text += f"; closest to its bound: '{name}', {diff:.3g} of {limit:.3g}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "ir": self.ir.as_dict(),
            "keras": self.keras.as_dict(),
            "torch": self.torch.as_dict(),
            "max_abs_diff": self.max_abs_diff,
            "bound": self.bound(),
            "layers_checked": self.layers_checked,
            "keras_backend": self.keras_backend,
            "dtype": self.dtype,
            "first_diverging_layer": self.first_bad,
            **({"odd_input": self.odd_input} if self.odd_input is not None else {}),
            **({"input_sizes": [list(s) for s in self.sizes]} if self.sizes else {}),
        }


def randomize_keras(model: Any, graph: Graph, seed: int = 0) -> None:
    """Random weights and BN statistics (positive variances, gamma around 1)."""
    rng = np.random.default_rng(seed)
    for node in graph.nodes:
        if not node.weights:
            continue
        values: list[np.ndarray] = []
        for w in node.weights:
            if w.name in ("gamma", "moving_variance", "variance"):
                values.append(rng.uniform(0.5, 1.5, w.shape))
            elif w.name in ("beta", "moving_mean", "bias", "mean"):
                values.append(rng.normal(0.0, 0.2, w.shape))
            elif w.name == "count":
                values.append(rng.integers(1, 1000, w.shape))
            else:
                fan_in = int(np.prod(w.shape[:-1])) or 1
                values.append(rng.normal(0.0, 1.0 / np.sqrt(fan_in), w.shape))
        layer = model.get_layer(node.name)
        layer.set_weights([v if v.dtype.kind == "i" else v.astype(np.float32) for v in values])
        if hasattr(layer, "finalize_state"):  # Normalization computes with copies made here
            layer.finalize_state()


def channels_last(array: np.ndarray) -> np.ndarray:
    """A batch as PyTorch holds it -> channels-last (images move; vectors, sequences stay)."""
    return array if array.ndim <= 3 else np.moveaxis(array, 1, -1)


def channels_first(array: np.ndarray) -> np.ndarray:
    """A channels-last batch -> as PyTorch holds it (images channels first)."""
    return array if array.ndim <= 3 else np.moveaxis(array, -1, 1)


def vocabulary(graph: Graph, name: str) -> int:
    """The number of token ids an integer input may hold: the smallest input_dim of the
    embeddings that read it."""
    sizes = [n.attrs.input_dim for n in graph.nodes if name in n.inputs and n.op == "embedding"]
    return min(sizes, default=1)


def padded(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Padding masks of right-padded sequences (1: a token, 0: padding): the first sequence
    unpadded, the others of seeded lengths 1..steps. Every sequence keeps a token, so every
    query attends to a key, causal or not (a row of padding alone is not a number either
    framework defines the same way)."""
    steps = shape[-1]
    lengths = rng.integers(1, steps + 1, shape[:-1])
    lengths.flat[0] = steps
    return (np.arange(steps) < lengths[..., None]).astype(np.int32)


def inputs_for(graph: Graph, batch: int, seed: int) -> list[np.ndarray]:
    """A seeded batch for every input: standard normal values, for an input of token ids
    (dtype: int) random ids below its vocabulary, for a padding mask right-padded masks."""
    rng = np.random.default_rng(seed)
    masks = padding_masks(graph)
    out = []
    for n in graph.inputs:
        node = graph.node(n)
        shape = (batch, *(node.shape or ()))
        if n in masks:
            out.append(padded(rng, shape))
        elif node.attrs.dtype == "int":
            out.append(rng.integers(0, vocabulary(graph, n), shape).astype(np.int32))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def keras_layer_outputs(model: Any, graph: Graph, xs: list[np.ndarray]) -> dict[str, np.ndarray]:
    import keras

    names = [n.name for n in graph.nodes if n.op != "input"]
    values = dict(zip(graph.inputs, xs, strict=True))  # an input may also be an output
    if not names:  # every layer skipped by its `when`: the model is its input
        return values
    probe = keras.Model(model.inputs, [_keras_output(model, graph, n) for n in names])
    outs = probe(list(xs), training=False)
    outs = outs if isinstance(outs, list | tuple) else [outs]
    values.update(
        {n: _numpy(keras.ops.convert_to_numpy(o)) for n, o in zip(names, outs, strict=True)}
    )
    return values


def calls(graph: Graph) -> dict[str, int]:
    """Each node's call of its layer, in order: 0 for the layer's own node, k for the k-th
    node that applies it again (`Node.shares`), graph order being call order."""
    seen: dict[str, int] = {}
    out = {}
    for node in graph.nodes:
        out[node.name] = seen.get(node.layer, 0)
        seen[node.layer] = out[node.name] + 1
    return out


def _keras_output(model: Any, graph: Graph, name: str) -> Any:
    """The Keras tensor a node computes: its layer's output at the node's call."""
    node = graph.node(name)
    layer = model.get_layer(node.layer)
    if node.shares is None:
        return layer.output
    return layer._inbound_nodes[calls(graph)[name]].output_tensors[0]


def _numpy(array: np.ndarray) -> np.ndarray:
    """A layer's output as numpy compares it: half-precision floats widened to float32."""
    return array.astype(np.float32) if array.dtype.kind == "f" and array.itemsize < 4 else array


def torch_layer_outputs(
    model: Any, graph: Graph, xs: list[np.ndarray], dtype: str = "float32"
) -> dict[str, np.ndarray]:
    """Outputs of the PyTorch model's layers, channels-last, keyed by Keras layer name: every
    module that is a whole Keras layer (forward hooks on the generated model's own modules;
    a layer computed by a function, or whose activation follows its module, is seen through
    the layers after it) and every model output. A dtype other than float32 runs the model
    under torch.autocast with it (mixed precision)."""
    import torch

    taps: dict[str, Any] = {}
    handles = []
    called: dict[int, int] = {}  # calls of each tapped module so far
    # a module called again (`apply:`) gives each call's output to the node of that call;
    # an embedding called in reverse is no call of its module (F.linear on its weight)
    order: dict[str, list[str]] = {}
    for node in graph.nodes:
        if not getattr(node.attrs, "reverse", False):
            order.setdefault(node.layer, []).append(node.name)
    for name, path in model.keras_layers.items():
        # the layer's own node, then those of its calls again
        nodes = [graph.node(n) for n in order.get(name, [name])]
        wanted = []
        for node in nodes:
            rank = len(graph.node(node.inputs[0]).shape or ()) if node.inputs else 0
            skip = getattr(node.attrs, "activation", "linear") != "linear" or (
                node.op == "dense" and rank > 2
            )
            wanted.append(None if skip else node.name)  # the module's output is not the layer's
        if not any(wanted):
            continue

        def hook(module: Any, args: Any, out: Any, wanted: list[Any] = wanted) -> None:
            done = called[id(wanted)] = called.get(id(wanted), 0) + 1
            if done <= len(wanted) and wanted[done - 1] is not None:
                taps[wanted[done - 1]] = out

        handles.append(model.get_submodule(path).register_forward_hook(hook))
    model.eval()
    device = next((p.device.type for p in model.parameters()), "cpu")
    autocast = (
        torch.autocast(device, dtype=getattr(torch, dtype))
        if dtype != "float32"
        else contextlib.nullcontext()
    )
    try:
        with torch.no_grad(), autocast:
            ys = model(*(torch.from_numpy(channels_first(x).copy()) for x in xs))
    finally:
        for handle in handles:
            handle.remove()
    ys = ys if isinstance(ys, tuple) else (ys,)
    taps.update(zip(graph.outputs, ys, strict=True))
    return {k: channels_last(_torch_numpy(v)) for k, v in taps.items()}


def _torch_numpy(tensor: Any) -> np.ndarray:
    import torch

    if tensor.is_floating_point() and tensor.dtype != torch.float64:
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.detach().cpu().numpy()


def _unchecked_before(graph: Graph, name: str, checked: set[str]) -> list[str]:
    """The layers feeding `name` that were not compared, back to the compared ones."""
    out: list[str] = []
    stack = list(graph.node(name).inputs)
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        if current in seen or current in checked or graph.node(current).op == "input":
            continue
        seen.add(current)
        out.append(current)
        stack.extend(graph.node(current).inputs)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    return sorted(out, key=order.__getitem__)


def _compare(a: np.ndarray, b: np.ndarray, atol: float, rtol: float = RTOL) -> tuple[float, float]:
    """(max|a - b| over the finite values, allowed). Values that overflow float32 (a network
    that squares its activations again and again) agree only where both frameworks give the
    same infinity or both a NaN; any other non-finite difference is never allowed."""
    if a.shape != b.shape:
        return float("inf"), 0.0
    finite = np.isfinite(a) & np.isfinite(b)
    same_overflow = np.where(np.isnan(a), np.isnan(b), a == b)
    if not np.all(finite | same_overflow):
        return float("inf"), 0.0
    a, b = a[finite], b[finite]
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff, atol + rtol * float(np.max(np.abs(a))) if a.size else atol


def softmax_logits(km: Any, graph: Graph, node: Any, k_out: dict[str, np.ndarray]) -> float | None:
    """max|z| of the logits a softmax reads (None for a layer that is no softmax): the
    activation op's input, or a layer's output before its fused softmax (the Keras layer
    rebuilt with a linear activation on the same weights and input).

    Why: both frameworks round the logits z to float32, |Δz| up to about RTOL·max|z|, and the
    softmax's Jacobian diag(p) − ppᵀ has rows summing in absolute value to 2p(1 − p) ≤ 1/2, so
    |Δp| ≤ |Δz| / 2. A bound from the probabilities alone (at most 1) fails networks whose
    logits are large (ResNet101 under verify's random weights: logits up to 204)."""
    attrs = node.attrs
    if node.op == "activation" and getattr(attrs, "fn", None) == "softmax":
        z = k_out.get(node.inputs[0])
        return None if z is None else float(np.max(np.abs(z), initial=0.0))
    if getattr(attrs, "activation", None) != "softmax" or node.inputs[0] not in k_out:
        return None
    import keras

    layer = km.get_layer(node.name)
    config = {**layer.get_config(), "activation": "linear", "name": f"{node.name}_logits"}
    twin = type(layer).from_config(config)
    x = k_out[node.inputs[0]]
    twin.build(x.shape)
    twin.set_weights(layer.get_weights())
    z = _numpy(keras.ops.convert_to_numpy(twin(x, training=False)))  # any backend, dtype
    return float(np.max(np.abs(z), initial=0.0))


def verify(
    spec: str | Compiled,
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
    atol: float = ATOL,
    batch: int = 3,
    seed: int = 0,
    odd_input: bool = False,
    input_sizes: Sequence[tuple[int, int]] = (),
    keras_backend: str | None = None,
    dtype: str = "float32",
) -> Report:
    """Build both backends, transfer weights, compare every layer; raise on any mismatch.

    With odd_input, the spec is also verified at an odd, non-square input size when its input
    shape is a `list[int]` parameter and the network accepts such a size (TF 'same' padding
    and pooling only differ from the naive rule there).

    Where the input's height and width are unknown, the models (built once, for any size)
    run at two sizes (`archc.backends.sizes`; `input_sizes` chooses them): a module that baked in
    the first size fails at the second. An odd size is then one the network accepts.

    keras_backend (jax, tensorflow, torch) runs the Keras model on that Keras backend; it is
    fixed when keras is first imported (`keras_runtime.use`: E115 where keras already runs
    another). None: the backend keras has or picks.

    dtype bfloat16 or float16 builds the Keras model under the mixed_<dtype> policy and runs
    the PyTorch model under torch.autocast(dtype), compared at rtol = GROWTH · unit roundoff.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    running = keras_runtime.use(keras_backend)
    if not 0 <= atol < float("inf"):
        raise ValueError(f"atol must be a finite, non-negative number, got {atol!r}")
    compiled = (
        spec
        if isinstance(spec, Compiled)
        else compile_spec(spec, overrides, variant=variant, from_text=from_text)
    )
    runs = sizes.runs(compiled, input_sizes)  # [compiled] where every size is known
    short = next((s for r in runs if (s := memory.shortfall(r.graph, batch, models=2))), None)
    if short is not None:
        raise too_big(
            compiled,
            short,
            "verify (a Keras and a PyTorch model, with values)",
            f"`archc compile {compiled.loaded.file} --backend torch` proves its counts and "
            "output shapes on PyTorch's meta device; verify a smaller variant (fewer or "
            "narrower layers) for the numbers",
        )
    report = _verify_compiled(compiled, atol, batch, seed, runs, dtype)
    report.keras_backend = keras_runtime.active() or running
    if unknown_sizes(compiled.graph):
        report.sizes = [size for r in runs if (size := sizes.input_size(r)) is not None]
    if odd_input:
        other, why = _odd_input(compiled)
        if other is None:
            report.odd_input = {"skipped": why}
        else:
            odd = (
                _verify_compiled(compiled, atol, batch, seed + 1, [other], dtype)
                if unknown_sizes(compiled.graph)
                else _verify_compiled(other, atol, batch, seed + 1, dtype=dtype)
            )
            report.odd_input = {
                "shape": list(other.graph.node(other.graph.inputs[0]).shape or ()),
                "layers_checked": odd.layers_checked,
                "max_abs_diff": odd.max_abs_diff,
            }
    return report


def _odd_input(compiled: Compiled) -> tuple[Compiled | None, str]:
    """The spec compiled at an odd, non-square input size near its own, if it allows one;
    otherwise None and why not."""
    if unknown_sizes(compiled.graph):
        odd = sizes.odd_run(compiled)
        if odd is None:
            tried = ", ".join(map(sizes.text, sizes.ODD_CANDIDATES))
            return None, f"the network accepts none of the odd sizes tried ({tried})"
        return odd, ""
    spec = compiled.loaded.spec
    shape = spec.inputs[0].shape
    m = re.fullmatch(r"\$\{\s*(\w+)\s*\}", shape) if isinstance(shape, str) else None
    if m is None or m.group(1) not in spec.params or spec.params[m.group(1)].type != "list[int]":
        return None, "the spec's input shape is fixed (not a list[int] parameter)"
    name, current = m.group(1), list(compiled.params[m.group(1)])
    if len(current) != 3:
        return None, f"the input shape parameter '{name}' is not (height, width, channels)"
    h, w = current[0] | 1, current[1] | 1  # the next odd sizes
    for dh, dw in ((2, 0), (0, 2), (2, 4), (4, 2), (-2, 0), (0, -2)):
        size = [h + dh, w + dw, current[2]]
        if size[0] == size[1] or min(size[:2]) < 1:
            continue
        try:
            return compile_spec(compiled.loaded, {**compiled.params, name: size}), ""
        except SpecError:
            continue
    return None, "the network accepts no odd, non-square size near its own"


def _verify_compiled(
    compiled: Compiled,
    atol: float,
    batch: int,
    seed: int,
    runs: Sequence[Compiled] = (),
    dtype: str = "float32",
) -> Report:
    """Build the models of `compiled` once and compare them at each of `runs` (the spec
    compiled at the sizes to run at, where its input's sizes are unknown; else itself)."""
    with keras_policy(dtype):
        km = keras_backend.build(compiled)
    tm = torch_backend.build(compiled)
    report = Report(
        compiled.graph.counts,
        verify_model(compiled, km, keras_backend, "the keras model", "keras"),
        verify_model(compiled, tm, torch_backend, "the torch model", "torch"),
        atol=atol,
        rtol=GROWTH * UNIT_ROUNDOFF[dtype] if dtype in UNIT_ROUNDOFF else RTOL,
        dtype=dtype,
    )
    _check_names(compiled.graph, km, tm)
    randomize_keras(km, compiled.graph, seed)
    keras_to_torch(km, tm, compiled.graph)
    for k, run in enumerate(runs or [compiled]):
        _compare_run(report, run.graph, km, tm, atol, batch, seed + k, run is not compiled)
    return report


@contextlib.contextmanager
def keras_policy(dtype: str) -> Iterator[None]:
    """Keras' global dtype policy while a model builds: mixed_<dtype> (variables float32,
    computations in dtype) for a half precision, float32 otherwise; put back after."""
    import keras

    if dtype == "float32":
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(f"mixed_{dtype}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _check_names(graph: Graph, km: Any, tm: Any) -> None:
    """Every layer of the IR is a Keras layer of its name, and every layer with weights a
    PyTorch module that carries the name (weights move, and outputs compare, by name)."""
    keras_names = {layer.name for layer in km.layers}
    for node in graph.nodes:
        if node.shares is not None:  # the layer of `shares` called again: checked there
            continue
        if node.name not in keras_names:
            what = "the keras model"
        elif node.weights and node.name not in tm.keras_layers:
            what = "the torch model"
        else:
            continue
        raise VerificationError(
            [
                Diagnostic(
                    "E113",
                    f"{what} has no layer named '{node.name}' ({node.op}), the IR's name",
                    node.origin.location,
                    node.origin.describe(),
                    hint="the generated models name layers differently from the IR; this is a "
                    "bug in the backend if the spec is valid",
                )
            ]
        )


def _compare_run(
    report: Report,
    graph: Graph,
    km: Any,
    tm: Any,
    atol: float,
    batch: int,
    seed: int,
    sized: bool,
) -> None:
    """Run both models on one seeded batch of `graph`'s input shapes; compare every layer."""
    size = "x".join(map(str, graph.node(graph.inputs[0]).shape or ()))
    xs = inputs_for(graph, batch, seed)
    try:
        k_out = keras_layer_outputs(km, graph, xs)
        t_out = torch_layer_outputs(tm, graph, xs, report.dtype)
    except Exception as exc:  # a model that cannot run at a size the IR accepts
        if not sized:
            raise
        raise VerificationError(
            [
                Diagnostic(
                    "E112",
                    f"a generated model fails at input {size}, which the spec accepts: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                    hint="the model's unknown sizes are fixed somewhere (a module that keeps "
                    "the first size it saw?); this is a bug in the backend if the spec is valid",
                )
            ]
        ) from None
    first: tuple[str, float, float] | None = None
    for node in graph.nodes:
        if node.name not in t_out:
            continue
        diff, limit = _compare(k_out[node.name], t_out[node.name], atol, report.rtol)
        logits = softmax_logits(km, graph, node, k_out)
        if logits is not None:  # a softmax's bound follows the logits it reads (below)
            limit = max(limit, atol + report.rtol * logits)
        report.rows.append((node.name, diff, limit))
        report.layers_checked += 1
        report.max_abs_diff = max(report.max_abs_diff, diff)
        if diff > limit and first is None:
            first = (node.name, diff, limit)
    if first is not None:
        report.first_bad = first[0]
        node = graph.node(first[0])
        diff, limit = first[1], first[2]
        suspects = _unchecked_before(graph, node.name, set(t_out))
        hint = "the layers before it agree; check this op's Keras<->PyTorch rule"
        if suspects:
            hint = (
                "the checked layers before it agree; check the Keras<->PyTorch rule of this "
                "op or of the layers computed in between, which PyTorch computes without a "
                "module of their own: " + ", ".join(f"'{n}'" for n in suspects)
            )
        raise VerificationError(
            [
                Diagnostic(
                    "E110",
                    f"Keras and PyTorch disagree first at layer '{node.name}' ({node.op}): "
                    f"max|Δ| = {diff:.3g} > {limit:.3g} (input {size})",
                    node.origin.location,
                    node.origin.describe(),
                    hint=hint,
                )
            ]
        )
