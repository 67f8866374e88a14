"""A built model held against the IR itself, layer by layer (E114).

`verify` proves that the Keras and the PyTorch model compute the same numbers; both could
still be the same wrong network (an expression translated to another value, a `when` lost in
both renderers). This check reads each built model back, with no generated source involved,
and compares it with the compiled graph:

- Keras: the model's layers are exactly the IR's nodes (same names, nothing missing, nothing
  extra); each layer is of the class the node's op makes, and its `get_config()` holds the
  node's resolved attributes: the op's Keras emitter (`keras_ops`) is applied to the node's
  *values* (not to the spec's expressions, which the generated file translated), and every
  argument it gives is compared with the layer's own configuration, with its `trainable`
  flag, its L2 factor and its initializers.
- PyTorch: the modules tagged as Keras layers (`model.keras_layers`) are IR nodes, every node
  with weights has one, each module is frozen as the node is, and the hyper-parameters
  PyTorch modules keep (channels, kernel, strides, dilation, groups, bias, epsilon, momentum,
  rates, heads) equal the node's, read from the module's own attributes by what each op's
  emitter declares (`TorchOp.reads`, backends/torch/reads.py for archc's own ops).
  What a PyTorch model computes in `forward` without a module is no attribute: where only
  element-wise steps (activations, rescalings, fused activations) lie between two modules,
  they are read back by value (`torch_forward_differences`); anything else (an add, a
  reshape) is left to `verify`, which holds it to the Keras model, held here to the IR.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import weakref
from collections.abc import Callable
from typing import Any

from archc.backends.pysrc import literal
from archc.compiler.api import Compiled
from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.ir import Graph, Node

INITIALIZERS = (
    "kernel_initializer",
    "depthwise_initializer",
    "pointwise_initializer",
    "bias_initializer",
)
HINT = "this is a bug in archc's {backend} backend, not in the spec; please report it"


class ConformanceError(SpecError):
    """A built model is not the network the IR describes."""


def _error(node: Node | None, backend: str, message: str) -> Diagnostic:
    where = node.origin.location if node is not None else None
    return Diagnostic("E114", message, where, hint=HINT.format(backend=backend))


def _values(node: Node) -> dict[str, Any]:
    """The node's resolved attributes (computed ones too: an emitter may read them)."""
    attrs = node.attrs
    if not dataclasses.is_dataclass(attrs):
        return {}
    return {f.name: getattr(attrs, f.name) for f in dataclasses.fields(attrs)}


def _plain(value: Any) -> Any:
    """Lists as tuples, recursively, so that a configuration compares with IR values."""
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as values: tuples and lists alike, floats to float32's precision (a framework
    may keep a hyper-parameter as float32), ints and floats of one value alike."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return bool(a == b)


# -- Keras ------------------------------------------------------------------------------------
def keras(compiled: Compiled, model: Any, graph: Graph | None = None) -> None:
    """Hold a built Keras model against the IR (raises ConformanceError, E114)."""
    graph = graph or compiled.graph
    layers = {layer.name: layer for layer in model.layers}
    errors: list[Diagnostic] = []
    for node in graph.nodes:
        if node.shares is not None:  # the layer of `shares` called again: checked there
            continue
        layer = layers.pop(node.name, None)
        if layer is None:
            errors.append(_error(node, "keras", f"the Keras model has no layer '{node.name}'"))
            continue
        diffs = keras_layer_differences(node, layer, graph)
        errors += [_error(node, "keras", m) for m in diffs]
    for name, layer in layers.items():
        errors.append(
            _error(
                None,
                "keras",
                f"the Keras model has a layer the IR does not: '{name}' ({type(layer).__name__})",
            )
        )
    if errors:
        raise ConformanceError(errors)


def keras_layer_differences(node: Node, layer: Any, graph: Graph) -> list[str]:
    """How a Keras layer differs from its IR node (empty when it is the node)."""
    from archc.backends.keras.ops import keras_layer

    where = f"layer '{node.name}'"
    cls = type(layer).__name__
    if node.op == "input":
        return _keras_input(node, layer)
    values = _values(node)
    spec = keras_layer(node.op, values)
    # a tied head's embedding is Keras' ReversibleEmbedding
    want_cls = "ReversibleEmbedding" if values.get("reversible") else spec.class_name or spec.cls
    if cls != want_cls:
        return [f"{where} is a {cls}, the IR's {node.op} is a {want_cls}"]
    config = layer.get_config()

    def attr(key: str) -> str | None:
        value = values.get(key)
        return None if value is None else literal(value)

    pairs = spec.args(attr)
    if spec.shaped is not None:
        rank = len(graph.node(node.inputs[0]).shape or ())
        pairs += spec.shaped(attr, rank, "x")
    wanted = _bind(type(layer), pairs)
    diffs = []
    for kw, want in wanted.items():
        if kw not in config:
            diffs.append(f"{where} ({cls}) has no '{kw}' in its configuration")
        elif not _same_keras(kw, config[kw], want, layer):
            diffs.append(f"{where} has {kw}={config[kw]!r}, the IR says {want!r}")
    diffs += _keras_extras(node, layer, config, spec.regularizes, values)
    return diffs


def _keras_input(node: Node, layer: Any) -> list[str]:
    cls = type(layer).__name__
    if cls != "InputLayer":
        return [f"layer '{node.name}' is a {cls}, the IR's input is an InputLayer"]
    config = layer.get_config()
    shape = tuple(config.get("batch_shape") or config.get("batch_input_shape") or ())[1:]
    want = node.attrs.shape
    if not same(shape, want):
        return [f"input '{node.name}' has shape {shape}, the IR says {want}"]
    return []


def _bind(cls: type, pairs: list[tuple[str | None, str]]) -> dict[str, Any]:
    """The emitter's (keyword or positional, source) arguments as keyword: value, positional
    ones bound to the names of the layer class's constructor."""
    params = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    out: dict[str, Any] = {}
    position = 0
    for kw, src in pairs:
        # literals of IR values, built above, or a layer a wrapper takes (`layers.LSTM(...)`)
        value = eval(src, {"__builtins__": {}}, {"layers": _Layers()})
        if kw is None:
            kw = params[position]
            position += 1
        out[kw] = value
    return out


@dataclasses.dataclass(frozen=True)
class _Nested:
    """A layer an emitter passes to a wrapper (Bidirectional's LSTM): its class and its
    arguments as keyword: value, held against the wrapper's configuration of it."""

    cls: type
    args: dict[str, Any]


class _Layers:
    """`layers` where an emitter's argument is evaluated: `layers.LSTM(8)` is a _Nested."""

    def __getattr__(self, name: str) -> Callable[..., _Nested]:
        import keras

        cls = getattr(keras.layers, name)

        def nested(*args: Any, **kwargs: Any) -> _Nested:
            pairs: list[tuple[str | None, str]] = [(None, repr(a)) for a in args]
            pairs += [(k, repr(v)) for k, v in kwargs.items()]
            return _Nested(cls, _bind(cls, pairs))

        return nested


def _same_keras(kw: str, got: Any, want: Any, layer: Any) -> bool:
    if isinstance(want, _Nested):  # a wrapped layer: its class and its own configuration
        inner = got.get("config", {}) if isinstance(got, dict) else {}
        return (
            isinstance(got, dict)
            and got.get("class_name") == want.cls.__name__
            and all(k in inner and _same_keras(k, inner[k], v, layer) for k, v in want.args.items())
        )
    if kw == "target_shape" and -1 in tuple(got):  # the IR's is resolved; Keras' at build
        got = tuple(layer.output.shape[1:])
    if isinstance(want, int) and isinstance(got, list | tuple) and len(got) == 1:
        got = got[0]  # a 1-D layer's kernel, strides, pool; attention's output_shape
    if kw == "activation":  # Keras serializes an alias by its function's name (swish: silu)
        import keras

        return bool(keras.activations.get(got) is keras.activations.get(want))
    return same(got, want)


def _keras_extras(
    node: Node, layer: Any, config: dict[str, Any], regularizes: str, values: dict[str, Any]
) -> list[str]:
    """trainable, the L2 factor and the initializers: arguments every layer may take."""
    import keras

    where = f"layer '{node.name}'"
    diffs = []
    if bool(layer.trainable) is not node.trainable:
        diffs.append(f"{where} has trainable={layer.trainable}, the IR says {node.trainable}")
    if regularizes:
        l2 = values.get("kernel_l2") or 0.0
        reg = getattr(layer, regularizes, None)
        got = 0.0 if reg is None else float(reg.get_config().get("l2", 0.0))
        if not same(got, l2):
            diffs.append(f"{where} has an L2 factor of {got}, the IR says {l2}")
    for k in INITIALIZERS:
        if values.get(k) is None or k not in config:
            continue
        want = keras.initializers.get(_keras_initializer(values[k]))
        got = keras.initializers.get(config[k])
        if type(got) is not type(want) or not same(got.get_config(), want.get_config()):
            diffs.append(f"{where} has {k}={config[k]!r}, the IR says {values[k]!r}")
    return diffs


def _keras_initializer(value: Any) -> Any:
    """An IR initializer (a Keras name, or {class: ..., args}) as keras.initializers.get takes
    it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        args = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"class_name": type(value).__name__, "config": args}
    return value


# -- PyTorch ----------------------------------------------------------------------------------
def _conv_read(m: Any) -> dict[str, Any]:
    return {
        "filters": m.out_channels,
        "kernel": tuple(m.kernel_size),
        "strides": tuple(m.stride),
        "dilation": tuple(m.dilation),
        "use_bias": m.bias is not None,
    }


def torch(compiled: Compiled, model: Any, graph: Graph | None = None) -> None:
    """Hold a built PyTorch model against the IR (raises ConformanceError, E114)."""
    graph = graph or compiled.graph
    errors: list[Diagnostic] = []
    tagged: dict[str, str] = dict(model.keras_layers)
    names = {node.name for node in graph.nodes}
    for name, path in tagged.items():
        if name not in names:
            errors.append(
                _error(
                    None,
                    "torch",
                    f"the PyTorch model has a module the IR does not: '{name}' ({path})",
                )
            )
    for node in graph.nodes:
        found = tagged.get(node.name)
        if found is None:
            if node.weights:
                errors.append(
                    _error(node, "torch", f"the PyTorch model has no module for '{node.name}'")
                )
            continue
        module = model.get_submodule(found)
        errors += [_error(node, "torch", m) for m in torch_module_differences(node, module)]
    errors += [_error(None, "torch", m) for m in _untagged(model, set(tagged.values()))]
    if not errors:  # what forward computes without modules, once the modules are right
        forward = torch_forward_differences(graph, model, tagged)
        errors += [_error(node, "torch", m) for node, m in forward]
    if errors:
        raise ConformanceError(errors)


_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _untagged(model: Any, tagged: set[str]) -> list[str]:
    """Modules outside every Keras layer's module that compute something: a torch.nn layer
    (not a container) or a module holding parameters or buffers of its own."""
    found = []
    for path, m in model.named_modules():
        if not path or any(path == t or path.startswith(t + ".") for t in tagged):
            continue
        cls = type(m)
        own = any(True for _ in m.parameters(recurse=False)) or any(
            True for _ in m.buffers(recurse=False)
        )
        layer = cls.__module__.startswith("torch.nn") and cls.__name__ not in _CONTAINERS
        if own or layer:
            found.append(
                f"the PyTorch model has a module the IR does not: '{path}' ({cls.__name__})"
            )
    return found


def torch_module_differences(node: Node, module: Any) -> list[str]:
    """How a PyTorch module differs from its IR node (empty when it is the node)."""
    where = f"module '{node.name}'"
    diffs = []
    frozen = not any(p.requires_grad for p in module.parameters())
    # frozen and trainable in the IR, or trainable and frozen in the IR: a difference
    if node.weights and any(True for _ in module.parameters()) and frozen == node.trainable:
        diffs.append(
            f"{where} is {'frozen' if frozen else 'trainable'}, the IR says "
            f"{'trainable' if node.trainable else 'frozen'}"
        )
    from archc.backends.torch.ops import TORCH_OPS

    op = TORCH_OPS.get(node.op)
    known = op.reads if op is not None else None
    cls = type(module).__name__
    if known is None:
        return [*diffs, f"{where} is a {cls}, but the IR's {node.op} makes no module"]
    classes, read = known
    if cls not in classes:
        return [*diffs, f"{where} is a {cls}, the IR's {node.op} is a {' or '.join(classes)}"]
    values = _values(node)
    for key, got in read(module).items():
        want = values[key]
        if want is not None and not same(got, want):
            diffs.append(f"{where} has {key}={got!r}, the IR says {want!r}")
    return diffs


def check(backend: str, compiled: Compiled, model: Any, graph: Graph | None = None) -> None:
    """Hold a built model of the named backend against the IR (E114)."""
    if backend == "keras":
        keras(compiled, model, graph)
    elif backend == "torch":
        torch(compiled, model, graph)


# -- PyTorch: what forward computes between modules ------------------------------------------
# Activations, rescalings and fused activations have no module in PyTorch: `forward` applies
# them between two modules (or before an output). They are read back by value: the model runs
# once on a seeded input, each module's output and input is recorded, and where the IR says
# that only such element-wise steps lie between two modules, the second module's input must be
# those steps, in numpy (the formulas below, not PyTorch's), applied to the first's output.

# the ops whose module takes the tensor as it flows (no layout change before the module)
_PLAIN_INPUT = {
    "conv2d", "depthwise_conv2d", "separable_conv2d", "conv2d_transpose", "conv1d",
    "batch_norm", "layer_norm", "max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d",
    "zero_pad2d", "dropout", "stochastic_depth", "layer_scale", "normalization",
}  # fmt: skip
_ELEMENTWISE = {"activation", "rescaling"}
_FUSED = {"conv2d", "depthwise_conv2d", "separable_conv2d", "conv2d_transpose", "conv1d", "dense"}


def _erf(x: Any) -> Any:
    import torch as pt

    return pt.erf(pt.from_numpy(x)).numpy()  # the error function itself, in float64


def _softmax(x: Any, axis: int) -> Any:
    import numpy as np

    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def activate(
    fn: str,
    x: Any,
    alpha: float | None = None,
    approximate: bool | None = None,
    axis: int | None = None,
) -> Any:
    """Keras' activation `fn` by its formula, in float64 numpy; a softmax over `axis`, by
    default the channels as PyTorch holds them (dim 1 of an image; a vector's or a
    sequence's last). tests/backends/test_verify.py holds every function to Keras' own."""
    import numpy as np

    selu_a, selu_s = 1.6732632423543772, 1.0507009873554805
    if fn == "gelu" and approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    table: dict[str, Callable[[], Any]] = {
        "linear": lambda: x,
        "relu": lambda: np.maximum(x, 0.0),
        "relu6": lambda: np.clip(x, 0.0, 6.0),
        "sigmoid": lambda: 1.0 / (1.0 + np.exp(-x)),
        "tanh": lambda: np.tanh(x),
        "softmax": lambda: _softmax(x, axis if axis is not None else 1 if x.ndim > 3 else -1),
        "silu": lambda: x / (1.0 + np.exp(-x)),
        "swish": lambda: x / (1.0 + np.exp(-x)),
        "gelu": lambda: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
        "hard_sigmoid": lambda: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        "hard_swish": lambda: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        "elu": lambda: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
        "selu": lambda: selu_s * np.where(x > 0, x, selu_a * np.expm1(np.minimum(x, 0.0))),
        "mish": lambda: x * np.tanh(np.logaddexp(0.0, x)),
        "leaky_relu": lambda: np.where(x > 0, x, (0.2 if alpha is None else alpha) * x),
    }
    return table[fn]()


def _step(node: Node, x: Any) -> Any:
    """One element-wise IR step on a float64 array."""
    a = node.attrs
    if node.op == "rescaling":
        return x * a.scale + a.offset
    if node.op == "activation":
        return activate(a.fn, x, a.alpha, a.approximate)
    return activate(a.activation, x)  # a fused activation


def _chain(graph: Graph, source: str, recorded: set[str]) -> tuple[Node, list[Node]] | None:
    """The module node whose output reaches `source` through element-wise steps only, and
    those steps (its fused activation first); None where anything else lies between."""
    chain: list[Node] = []
    node = graph.node(source)
    while node.op in _ELEMENTWISE:
        chain.insert(0, node)
        node = graph.node(node.inputs[0])
    if node.name not in recorded or (node.op == "dense" and len(node.shape or ()) > 1):
        return None  # no module, or not its output as it flows (a dense on an image)
    return node, ([node] if node.op in _FUSED else []) + chain


# model -> (the graph whose inputs it ran on, its outputs' shapes): the read-back's run, whose
# output shapes compile checks (E094) instead of running the model a second time
_RAN: weakref.WeakKeyDictionary[Any, tuple[Graph, list[tuple[int, ...]]]] = (
    weakref.WeakKeyDictionary()
)


def _channels_last(shape: Any) -> tuple[int, ...]:
    """A PyTorch output's shape as the IR's: batch excluded, an image's channels last."""
    dims = tuple(int(d) for d in shape)
    return (*dims[2:], dims[1]) if len(dims) > 3 else dims[1:]


def forward_output_shapes(model: Any, graph: Graph) -> list[tuple[int, ...]] | None:
    """The channels-last shapes (batch excluded) of the outputs of the read-back's run of
    `model` on inputs of `graph`'s shapes (batch 1), as `torch_backend.output_shapes` gives
    them; None where the read-back did not run it on that graph."""
    ran = _RAN.get(model)
    return ran[1] if ran is not None and ran[0] is graph else None


def torch_forward_differences(
    graph: Graph, model: Any, tagged: dict[str, str]
) -> list[tuple[Node, str]]:
    """Run the model once (seeded, eval, batch 1) and hold what forward computes between
    modules to the IR's element-wise steps (see above). A module's output is kept only until
    the modules that read it have run. Graphs with unknown sizes are skipped (verify runs
    them at a size), as are models without values (the meta device)."""
    import numpy as np
    import torch as pt

    inputs = [graph.node(n) for n in graph.inputs]
    if any(d is None for node in inputs for d in node.shape or ()):
        return []
    if any(p.is_meta for p in model.parameters()):
        return []
    # a module called more than once (a layer applied again) has no one input or output:
    # verify compares each of its calls
    shared = {n.shares for n in graph.nodes if n.shares is not None}
    tagged = {name: path for name, path in tagged.items() if name not in shared}
    recorded = set(tagged)
    # consumer -> (producer, steps); the producers' outputs wanted, and by how many readers
    plan: dict[str, tuple[Node, list[Node]]] = {}
    for name in tagged:
        node = graph.node(name)
        if node.op in _PLAIN_INPUT and len(node.inputs) == 1:
            found = _chain(graph, node.inputs[0], recorded)
            if found is not None:
                plan[name] = found
    outputs = {o: _chain(graph, o, recorded) for o in graph.outputs}
    readers: dict[str, int] = {}
    for producer, _ in [*plan.values(), *(v for v in outputs.values() if v is not None)]:
        readers[producer.name] = readers.get(producer.name, 0) + 1
    kept: dict[str, Any] = {}
    diffs: list[tuple[Node, str]] = []

    def compare(what: str, source: Node, found: tuple[Node, list[Node]], got: Any) -> None:
        producer, steps = found
        want = kept.get(producer.name)
        readers[producer.name] -= 1
        if readers[producer.name] <= 0:
            kept.pop(producer.name, None)
        if want is None:  # the module did not run as a module (nothing to read back)
            return
        if want.shape != got.shape:
            return
        if not steps:  # the same tensor, passed on
            if not np.array_equal(want, got):
                diffs.append((source, f"{what} is not the output of module '{producer.name}'"))
            return
        want = want.astype(np.float64)
        for step in steps:
            want = _step(step, want)
        # in float64, in place: a module output's size in float64 at a time, not five
        diff = np.subtract(want, got, dtype=np.float64)
        err = float(np.max(np.abs(diff, out=diff), initial=0.0))
        bound = 1e-5 + 1e-5 * float(np.max(np.abs(want, out=want), initial=0.0))
        if not err <= bound:
            described = " then ".join(_describe(s) for s in steps) or "nothing"
            diffs.append(
                (
                    source,
                    f"{what} is not {described} applied to the output of module "
                    f"'{producer.name}' (max|Δ| = {err:.3g} > {bound:.3g})",
                )
            )

    hooks = []
    for name, path in tagged.items():
        module = model.get_submodule(path)

        def pre(m: Any, args: tuple[Any, ...], name: str = name) -> None:
            found = plan.get(name)
            if found is not None and len(args) == 1 and isinstance(args[0], pt.Tensor):
                source = graph.node(graph.node(name).inputs[0])
                got = args[0].detach().float().numpy()
                compare(f"the input of module '{name}'", source, found, got)

        def post(m: Any, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            if name in readers and isinstance(out, pt.Tensor):
                kept[name] = out.detach().float().numpy().copy()

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    rng = np.random.default_rng(0)
    xs = []
    for node in inputs:
        shape = tuple(node.shape or ())
        if node.attrs.dtype == "int":
            xs.append(pt.zeros((1, *shape), dtype=pt.int64))
            continue
        x = rng.standard_normal((1, *shape)).astype(np.float32)
        if len(shape) >= 3:  # PyTorch's layout: an image's channels first
            x = np.moveaxis(x, -1, 1)
        xs.append(pt.from_numpy(np.ascontiguousarray(x)))
    was_training = model.training
    threads = pt.get_num_threads()
    try:
        model.eval()
        # one thread: at batch 1 each op is small, and PyTorch's worker threads cost more
        # than they give (CPU spent waiting, many times the pass's own where cores are busy)
        pt.set_num_threads(1)
        with pt.no_grad():
            ys = model(*xs)
    finally:
        pt.set_num_threads(threads)
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    ys = list(ys) if isinstance(ys, list | tuple) else [ys]
    if all(isinstance(y, pt.Tensor) for y in ys):
        _RAN[model] = (graph, [_channels_last(y.shape) for y in ys])
    for o, y in zip(graph.outputs, ys, strict=False):
        found = outputs[o]
        if found is not None and isinstance(y, pt.Tensor) and y.is_floating_point():
            compare(f"the model's output '{o}'", graph.node(o), found, y.float().numpy())
    return diffs


def _describe(node: Node) -> str:
    a = node.attrs
    if node.op == "rescaling":
        return f"'{node.name}' (x * {a.scale} + {a.offset})"
    fn = a.fn if node.op == "activation" else a.activation
    return f"'{node.name}' ({fn})"
