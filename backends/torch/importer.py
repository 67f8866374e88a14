"""`archc import torch MODULE:FACTORY`: an nn.Module built from torch.nn layers as a spec.

The model is traced with torch.fx (`Tracer`: the torch.nn layers archc has an op for are
leaves, user modules, Sequential and ModuleList are traced through; nn.TransformerEncoder and
its layers are leaves this module expands itself) and run once on a seeded example batch to
know every tensor's shape (`ShapeProp`). Each node becomes op items, in archc's channels-last
layout: an (N, C, H, W) tensor is the spec's (H, W, C) image, (N, T, C) a sequence, (N, C) a
vector; a `dim` argument is mapped through that permutation (`torch.cat(dim=1)` on images is
`concat` on axis -1), a flatten of an image with more than one pixel is a `permute` to
(C, H, W) first (PyTorch flattens channels first). Layer names are the modules' qualified
names with dots as underscores (`layer1.0.conv1` -> `layer1_0_conv1`), functional nodes keep
torch.fx's names. Anything else (a function archc has no op for, a mask, a value an op cannot
express) is a located error naming the node and the line of the model's source.

`prove()` holds the spec to the original: counts (PyTorch's: parameters and floating-point
buffers, less the recurrent biases Keras folds into one), compile both backends, verify, the
original's state_dict moved into the generated PyTorch model by the mapped names, then to a
Keras weights file with `archc weights`, and the generated Keras model's outputs against the
original PyTorch model's on a seeded batch.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import math
import operator
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from archc.backends.importer import (
    PLUGIN_HINT,
    Item,
    Proof,
    Step,
    StepLog,
    _classes,
    _common,
    _defaults,
    _flow,
    _item_lines,
    _same,
    _scalar,
    _shown,
    proof_error,
)
from archc.compiler.diagnostics import Diagnostic, Location, SpecError, short_repr
from archc.compiler.names import check_name

RTOL = 1e-5
ROOT = "root"  # the wrapper's name for a model that is itself one torch.nn layer


class _Unsupported(Exception):
    """A node or value the importer cannot express; turned into a located Diagnostic."""

    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


# -- where the model comes from ---------------------------------------------------------------


def _source_error(text: str, message: str, hint: str, code: str = "E172") -> SpecError:
    return SpecError([Diagnostic(code, message, Location(text, 1, 1), hint=hint)])


FACTORY_HINT = (
    "give MODULE:FACTORY, MODULE an importable module (package.module) or a .py file, FACTORY "
    "a function or class that takes no arguments and returns the nn.Module, or a module object"
)


def load_factory(text: str) -> Any:
    """The nn.Module that MODULE:FACTORY names (built, in eval mode)."""
    import torch

    module_text, sep, attr = text.rpartition(":")
    if not sep or not module_text or not attr:
        raise _source_error(text, f"not MODULE:FACTORY: {short_repr(text)}", FACTORY_HINT)
    try:
        if module_text.endswith(".py"):
            path = Path(module_text)
            if not path.is_file():
                raise _source_error(text, f"no such file: {module_text}", FACTORY_HINT)
            name = re.sub(r"\W", "_", path.stem)
            if name in sys.modules:
                name = "archc_import_" + name
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise _source_error(text, f"cannot load {module_text}", FACTORY_HINT)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_text)
    except SpecError:
        raise
    except Exception as exc:  # the user's module failed to import
        raise _source_error(
            text,
            f"importing {module_text} failed: {type(exc).__name__}: {exc}",
            "the module must import without errors (run it with python first)",
        ) from None
    if not hasattr(module, attr):
        raise _source_error(text, f"{module_text} has no {short_repr(attr)}", FACTORY_HINT)
    factory = getattr(module, attr)
    try:
        model = factory if isinstance(factory, torch.nn.Module) else factory()
    except Exception as exc:
        raise _source_error(
            text, f"{attr}() failed: {type(exc).__name__}: {exc}", FACTORY_HINT
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise _source_error(
            text, f"{attr} gave {type(model).__name__}, not an nn.Module", FACTORY_HINT
        )
    return model.eval()


def parse_shape(text: str) -> tuple[int, ...]:
    """'3x32x32' or '3,32,32' (PyTorch's layout, no batch) -> (3, 32, 32)."""
    parts = [p for p in re.split(r"[x,\s]+", text.strip()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected sizes like 3x32x32 (PyTorch's layout, no batch), got {text!r}")
    return tuple(int(p) for p in parts)


# -- layouts ----------------------------------------------------------------------------------


def logical(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A PyTorch tensor's shape (batch excluded) as the spec's: (C, H, W) -> (H, W, C)."""
    if len(shape) == 3:
        return (shape[1], shape[2], shape[0])
    return tuple(shape)


def logical_dim(dim: int, rank: int) -> int:
    """A PyTorch dim of a tensor of `rank` (batch included) as the spec's axis (-1: channels)."""
    d = dim + rank if dim < 0 else dim
    if d <= 0 or d >= rank:
        raise _Unsupported("E171", f"dim {dim} is the batch axis or out of range", "")
    if rank == 4:
        return {1: -1, 2: 0, 3: 1}[d]
    return -1 if d == rank - 1 else d - 1


# -- what the trace gives ---------------------------------------------------------------------


@dataclass
class Move:
    """How the original's weights reach one spec item: `kind` ('same', 'lstm', 'gru', 'rnn',
    'mha'), the original module's qualified name, and for a recurrent layer its index."""

    kind: str
    path: str
    layer: int = 0


@dataclass
class TorchImported:
    name: str
    inputs: list[Item]
    items: list[Item]
    outputs: list[str]
    notes: list[str] = field(default_factory=list)
    moves: dict[str, Move] = field(default_factory=dict)  # item name -> its weights' source
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # item -> spec shape
    folded: int = 0  # recurrent biases Keras holds as one (PyTorch's count less the spec's)
    torch_inputs: list[tuple[int, ...]] = field(default_factory=list)  # PyTorch's layout
    token_inputs: dict[int, int] = field(default_factory=dict)  # input index -> vocabulary


@dataclass
class _Tuple:
    """A leaf's tuple output (nn.LSTM's (output, (h, c)), attention's (output, weights))."""

    first: str  # the item holding element 0
    what: str


_SKIP = object()  # a value that is no tensor (x.size(0)): allowed only as a shape argument


def _activation_modules() -> dict[type, Callable[[Any], tuple[str, dict[str, Any]]]]:
    from torch import nn

    def plain(fn: str) -> Callable[[Any], tuple[str, dict[str, Any]]]:
        return lambda m: (fn, {})

    def gelu(m: Any) -> tuple[str, dict[str, Any]]:
        return "gelu", ({"approximate": True} if m.approximate == "tanh" else {})

    def elu(m: Any) -> tuple[str, dict[str, Any]]:
        if m.alpha != 1.0:
            raise _Unsupported("E171", f"ELU(alpha={m.alpha})", "archc's elu has alpha 1")
        return "elu", {}

    return {
        nn.ReLU: plain("relu"),
        nn.ReLU6: plain("relu6"),
        nn.Sigmoid: plain("sigmoid"),
        nn.Tanh: plain("tanh"),
        nn.SiLU: plain("silu"),
        nn.Hardswish: plain("hard_swish"),
        nn.Hardsigmoid: plain("hard_sigmoid"),
        nn.SELU: plain("selu"),
        nn.Mish: plain("mish"),
        nn.GELU: gelu,
        nn.ELU: elu,
        nn.LeakyReLU: lambda m: ("leaky_relu", {"alpha": float(m.negative_slope)}),
    }


def _activation_functions() -> dict[Any, str]:
    import torch
    import torch.nn.functional as F

    return {
        F.relu: "relu",
        torch.relu: "relu",
        F.relu6: "relu6",
        torch.sigmoid: "sigmoid",
        F.sigmoid: "sigmoid",
        torch.tanh: "tanh",
        F.tanh: "tanh",
        F.silu: "silu",
        F.hardswish: "hard_swish",
        F.hardsigmoid: "hard_sigmoid",
        F.selu: "selu",
        torch.selu: "selu",
        F.mish: "mish",
        F.gelu: "gelu",
        F.elu: "elu",
        F.leaky_relu: "leaky_relu",
    }


_ACTIVATION_METHODS = {
    f"{name}{suffix}": name for name in ("relu", "sigmoid", "tanh") for suffix in ("", "_")
}  # x.relu(), x.relu_() (in place: the same value)
_NON_NEGATIVE = {"relu", "relu6", "sigmoid", "hard_sigmoid", "softmax"}


def _leaf_types() -> tuple[type, ...]:
    from torch import nn

    return (
        nn.Conv2d,
        nn.ConvTranspose2d,
        nn.BatchNorm2d,
        nn.BatchNorm1d,
        nn.Linear,
        nn.LayerNorm,
        nn.Embedding,
        nn.LSTM,
        nn.GRU,
        nn.RNN,
        nn.MultiheadAttention,
        nn.TransformerEncoder,
        nn.TransformerEncoderLayer,
    )


def _location(stack: str | None) -> Location | None:
    """The innermost frame of the model's own code in a torch.fx stack trace."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', stack or "")
    for file, line in reversed(frames):
        if not _framework_file(file):
            return Location(file, int(line), 1)
    return None


def _framework_file(file: str) -> bool:
    import torch

    root = str(Path(torch.__file__).parent)
    return file.startswith(root) or file.startswith("<")


def _traceback_location(exc: BaseException) -> Location | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not _framework_file(frame.filename) and not frame.filename.startswith(
            str(Path(__file__).parent)
        ):
            return Location(frame.filename, frame.lineno or 1, 1)
    return None


def _trace(model: Any, source: str) -> Any:
    """model as a torch.fx GraphModule whose leaves are the modules archc maps."""
    from torch import fx, nn

    leaves = _leaf_types()
    activations = tuple(_activation_modules())

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if type(m) in leaves or type(m) in activations:
                return True
            if isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict):
                return False
            return bool(super().is_leaf_module(m, qualname))

    tracer = Tracer()
    tracer.record_stack_traces = True
    try:
        # arguments with defaults (a mask=None) are traced at their defaults
        params = inspect.signature(model.forward).parameters.items()
        fixed = {k: p.default for k, p in params if p.default is not inspect.Parameter.empty}
        graph = tracer.trace(model, concrete_args=fixed or None)
    except Exception as exc:
        raise SpecError(
            [
                Diagnostic(
                    "E174",
                    f"torch.fx cannot trace the model: {type(exc).__name__}: {exc}",
                    _traceback_location(exc) or Location(source, 1, 1),
                    path=source,
                    hint="archc imports models whose forward is the same for every input "
                    "(no branch or loop on tensor values); write that part with torch.nn "
                    "layers",
                )
            ]
        ) from None
    return fx.GraphModule(tracer.root, graph)


def example_inputs(
    shapes: list[tuple[int, ...]], tokens: dict[int, int], batch: int, seed: int
) -> list[Any]:
    """Seeded inputs in PyTorch's layout: normal floats, or token ids below the vocabulary."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for i, shape in enumerate(shapes):
        if i in tokens:
            out.append(torch.randint(0, tokens[i], (batch, *shape), generator=g))
        else:
            out.append(torch.randn((batch, *shape), generator=g))
    return out


def _vocabularies(gm: Any) -> dict[str, int]:
    """Placeholders read by an nn.Embedding: their smallest vocabulary."""
    from torch import nn

    found: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Embedding):
            arg: Any = node.args[0] if node.args else None
            if arg is not None and getattr(arg, "op", None) == "placeholder":
                n = gm.get_submodule(node.target).num_embeddings
                found[arg.name] = min(n, found.get(arg.name, n))
    return found


# -- the converter ----------------------------------------------------------------------------


class _Converter:
    def __init__(self, model: Any, gm: Any, source: str, wrapped: bool = False):
        self.model, self.gm, self.source = model, gm, source
        self.wrapped = wrapped  # the model is one torch.nn layer, traced inside a wrapper
        self.items: list[Item] = []
        self.inputs: list[Item] = []
        self.notes: list[str] = []
        self.moves: dict[str, Move] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.folded = 0
        self.values: dict[Any, Any] = {}  # fx node -> item name, _Tuple or _SKIP
        self.by_name: dict[str, Item] = {}
        self.taken: set[str] = set()  # names kept for modules and inputs, and given
        for n in gm.graph.nodes:
            if n.op in ("call_module", "placeholder"):
                self.taken |= {str(n.name), spec_name(str(n.target))}
        self.used_modules: dict[str, Any] = {}  # qualified name -> node that calls it
        self.node: Any = None
        self.act_modules = _activation_modules()
        self.act_functions = _activation_functions()

    # -- errors and names
    def fail(self, exc: _Unsupported, node: Any) -> SpecError:
        what = _describe(node, self.gm)
        return SpecError(
            [
                Diagnostic(
                    exc.code,
                    f"node '{node.name}' ({what}): {exc.message}",
                    _location(node.stack_trace) or Location(self.source, 1, 1),
                    path=f"{self.source} > {node.name}",
                    hint=exc.hint,
                )
            ]
        )

    def fresh(self, base: str) -> str:
        """A name no node or item has (base, base_1, ...)."""
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def functional_name(self, node: Any) -> str:
        """A functional node's name: torch.fx's, without its counter, after the module whose
        forward computes it (`layer1_0_add` for `out += identity` in layer1[0])."""
        base = re.sub(r"_\d+$", "", str(node.name))
        stack = node.meta.get("nn_module_stack") or {}
        scope = list(stack.values())[-1][0] if stack else ""
        return self.fresh(f"{spec_name(str(scope))}_{base}" if scope else base)

    def add(
        self,
        name: str,
        op: str,
        attrs: dict[str, Any],
        inputs: list[str],
        shape: tuple[int, ...] | None,
        cls: str,
        move: Move | None = None,
        trainable: bool = True,
    ) -> str:
        why = check_name(name)
        if why is not None:
            raise _Unsupported("E171", f"the layer name {short_repr(name)} {why}", "rename it")
        if name in self.by_name:
            raise _Unsupported("E174", f"two layers would be named '{name}'", "rename a module")
        item = Item(name, op, attrs, inputs, cls, trainable)
        self.items.append(item)
        self.by_name[name] = item
        self.taken.add(name)
        if shape is not None:
            self.shapes[name] = shape
        if move is not None:
            self.moves[name] = move
        return name

    # -- walking the graph
    def run(self) -> TorchImported:
        nodes = list(self.gm.graph.nodes)
        live = _live(nodes)
        outputs: list[str] = []
        for node in nodes:
            if node not in live:
                continue
            self.node = node
            try:
                if node.op == "output":
                    outputs = self.output(node)
                else:
                    self.values[node] = self.convert(node)
            except _Unsupported as exc:
                raise self.fail(exc, node) from None
            except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
                # a call written in a way the converter does not read (arguments by keyword
                # where it expects them by position, ...): located, not a traceback
                unread = _Unsupported(
                    "E171",
                    f"archc cannot read this call ({type(exc).__name__}: {exc})",
                    "pass the tensor as the first positional argument, other values as the "
                    "torch.nn documentation names them",
                )
                raise self.fail(unread, node) from None
        self.unused_parameters()
        return TorchImported(
            type(self.model).__name__,
            self.inputs,
            self.items,
            outputs,
            self.notes,
            self.moves,
            self.shapes,
            self.folded,
        )

    def unused_parameters(self) -> None:
        """Every parameter and buffer must belong to a module the spec holds."""
        for key, _ in [*self.model.named_parameters(), *self.model.named_buffers()]:
            owner = key.rpartition(".")[0]
            if not any(owner == m or owner.startswith(m + ".") for m in self.used_modules):
                if key.endswith("num_batches_tracked"):
                    continue
                raise SpecError(
                    [
                        Diagnostic(
                            "E174",
                            f"'{key}' is a weight no traced node uses (a module forward never "
                            "calls, or a parameter read directly)",
                            Location(self.source, 1, 1),
                            path=self.source,
                            hint="remove unused modules; parameters are imported only as part "
                            "of a torch.nn layer archc has an op for",
                        )
                    ]
                )

    def output(self, node: Any) -> list[str]:
        value = node.args[0]
        values = list(value) if isinstance(value, tuple | list) else [value]
        return [self.tensor(v) for v in values]

    def tensor(self, arg: Any) -> str:
        """The item an argument reads (an fx node producing a tensor)."""
        value = self.values.get(arg) if hasattr(arg, "op") else None
        if isinstance(value, str):
            return value
        if isinstance(value, _Tuple):
            raise _Unsupported(
                "E174",
                f"{value.what} gives a tuple; the spec holds only its first element (use "
                f"`out, _ = ...`)",
            )
        raise _Unsupported("E171", f"argument {short_repr(str(arg))} is not a tensor archc holds")

    def shape(self, node: Any) -> tuple[int, ...]:
        """PyTorch's shape of the node's tensor, batch included."""
        meta = node.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if shape is None:
            raise _Unsupported("E174", "its value is no single tensor", "")
        return tuple(int(d) for d in shape)

    def out_shape(self) -> tuple[int, ...]:
        shape = self.shape(self.node)
        if len(shape) > 4:
            raise _Unsupported("E171", f"a tensor of rank {len(shape)}", "archc holds rank 2 to 4")
        return logical(shape[1:])

    def convert(self, node: Any) -> Any:
        if node.op == "placeholder":
            return self.placeholder(node)
        if node.op == "call_module":
            return self.call_module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function":
            return self.call_function(node)
        if node.op == "call_method":
            return self.call_method(node)
        if node.op == "get_attr":
            raise _Unsupported(
                "E170",
                f"reads the tensor '{node.target}' directly (a parameter or buffer outside "
                "a layer)",
                "hold it in a torch.nn layer archc has an op for",
            )
        raise _Unsupported("E170", f"fx node kind {node.op}", PLUGIN_HINT)

    def placeholder(self, node: Any) -> str:
        shape = self.shape(node)
        attrs: dict[str, Any] = {"shape": list(logical(shape[1:]))}
        if not node.meta["tensor_meta"].dtype.is_floating_point:
            attrs["dtype"] = "int"
        name = str(node.name) if check_name(str(node.name)) is None else self.fresh(f"{node.name}_")
        why = check_name(name)
        if why is not None:
            raise _Unsupported("E171", f"the input name {short_repr(name)} {why}", "rename it")
        item = Item(name, "input", attrs, [], "placeholder")
        self.inputs.append(item)
        self.by_name[name] = item
        self.shapes[name] = logical(shape[1:])
        return name

    # -- modules
    def module_name(self, node: Any, module: Any) -> str:
        qual = str(node.target)
        has_weights = any(True for _ in module.parameters()) or any(
            b.is_floating_point() for b in module.buffers()
        )
        if qual in self.used_modules:
            if has_weights:
                raise _Unsupported(
                    "E174",
                    f"module '{qual}' is called more than once (shared weights)",
                    "archc gives every call its own layer and weights; a shared layer "
                    "cannot be expressed",
                )
            return str(node.name)
        self.used_modules[qual] = node
        path = self.path(qual)
        if not path:  # the model itself is one torch.nn layer
            return self.fresh(re.sub(r"(?<!^)(?=[A-Z])", "_", type(module).__name__).lower())
        name = spec_name(path)
        if name != node.name and name in {n.name for n in self.gm.graph.nodes}:
            name = str(node.name)
        return name

    def path(self, target: Any) -> str:
        """A module's qualified name in the user's model (the wrapper's `root.` removed)."""
        qual = str(target)
        if self.wrapped:
            return "" if qual == ROOT else qual.removeprefix(ROOT + ".")
        return qual

    def sub_name(self, qual: str, part: str) -> str:
        """The layer name of a part of a composite module (`encoder.layers.0` + `add1`)."""
        return self.fresh(spec_name(_join(qual, part)))

    def weighted(self, node: Any, m: Any, name: str, op: str, attrs: dict[str, Any], x: str) -> str:
        """The item of a module with weights: they move from the module as they are."""
        trainable = self.trainable(m, node.target)
        move = Move("same", self.path(node.target))
        return self.add(name, op, attrs, [x], self.out_shape(), type(m).__name__, move, trainable)

    def trainable(self, module: Any, qual: str) -> bool:
        flags = {p.requires_grad for p in module.parameters()}
        if len(flags) > 1:
            raise _Unsupported(
                "E171",
                f"module '{qual}' has frozen and trainable parameters",
                "freeze all of a layer's parameters or none",
            )
        return flags != {False}

    def call_module(self, node: Any, m: Any) -> Any:
        from torch import nn

        name = self.module_name(node, m)
        if node.kwargs and type(m) not in (nn.MultiheadAttention,):
            for key, value in node.kwargs.items():
                if value is not None and value is not False:  # mask=None, is_causal=False
                    raise _Unsupported("E171", f"called with {key}={short_repr(value)}", "")
        cls = type(m)
        if cls in self.act_modules:
            fn, attrs = self.act_modules[cls](m)
            return self.add(
                name,
                "activation",
                {"fn": fn, **attrs},
                self.args(node, 1),
                self.out_shape(),
                cls.__name__,
            )
        handler = {
            nn.Conv2d: self.conv,
            nn.ConvTranspose2d: self.transposed,
            nn.Upsample: self.upsample_module,
            nn.BatchNorm2d: self.batch_norm,
            nn.BatchNorm1d: self.batch_norm,
            nn.Linear: self.linear,
            nn.LayerNorm: self.layer_norm,
            nn.Embedding: self.embedding,
            nn.LSTM: self.recurrent,
            nn.GRU: self.recurrent,
            nn.RNN: self.recurrent,
            nn.MultiheadAttention: self.attention,
            nn.TransformerEncoderLayer: self.encoder_layer_call,
            nn.TransformerEncoder: self.encoder_call,
            nn.Dropout: self.dropout_module,
            nn.Identity: lambda node, m, name: self.tensor(node.args[0]),
            nn.Flatten: self.flatten_module,
            nn.MaxPool2d: self.max_pool_module,
            nn.AvgPool2d: self.avg_pool_module,
            nn.AdaptiveAvgPool2d: self.adaptive_module,
            nn.AdaptiveMaxPool2d: self.adaptive_module,
            nn.ZeroPad2d: self.zero_pad_module,
            nn.Softmax: lambda node, m, name: self.softmax(name, node.args[0], m.dim, cls.__name__),
        }.get(cls)
        if handler is None:
            raise _Unsupported(
                "E170", f"archc has no op for {cls.__module__}.{cls.__name__}", PLUGIN_HINT
            )
        return handler(node, m, name)

    def args(self, node: Any, n: int) -> list[str]:
        if len(node.args) != n:
            raise _Unsupported(
                "E171", f"called with {len(node.args)} arguments, archc takes {n}", ""
            )
        return [self.tensor(a) for a in node.args]

    def rank(self, arg: Any) -> int:
        return len(self.shape(arg))

    def conv(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        if m.padding_mode != "zeros":
            raise _Unsupported(
                "E171", f"padding_mode {m.padding_mode!r}", "archc pads convolutions with zeros"
            )
        if self.rank(node.args[0]) != 4:
            raise _Unsupported("E171", "nn.Conv2d on a tensor that is not (N, C, H, W)", "")
        kernel, stride, dilation = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
        padding = "valid"
        if m.padding == "same":
            padding = "same"
        elif m.padding != "valid" and any(m.padding):
            pads = tuple(m.padding)
            odd = all(d * (k - 1) % 2 == 0 for k, d in zip(kernel, dilation, strict=True))
            if (
                stride == (1, 1)
                and odd
                and all(
                    p == d * (k - 1) // 2 for p, k, d in zip(pads, kernel, dilation, strict=True)
                )
            ):
                padding = "same"  # stride 1, odd window: TF's split is p on each side
            else:
                x = self.add(
                    self.fresh(f"{name}_pad"),
                    "zero_pad2d",
                    {"padding": _pad_value(pads)},
                    [x],
                    None,
                    "padding",
                )
        attrs = {
            "filters": m.out_channels,
            "kernel": _pair(kernel),
            "strides": _pair(stride),
            "padding": padding,
            "dilation": _pair(dilation),
            "groups": m.groups,
            "use_bias": m.bias is not None,
        }
        return self.weighted(node, m, name, "conv2d", attrs, x)

    def transposed(self, node: Any, m: Any, name: str) -> str:
        """nn.ConvTranspose2d as Keras' Conv2DTranspose where they compute the same: `valid`
        is padding 0 (output_padding s - k where s > k), `same` crops (k - s) / 2 each side."""
        (x,) = self.args(node, 1)
        if m.padding_mode != "zeros" or m.groups != 1 or _two(m.dilation) != (1, 1):
            raise _Unsupported(
                "E171",
                "a grouped, dilated or non-zero-padded ConvTranspose2d",
                "archc's conv2d_transpose has groups 1, dilation 1, zero padding",
            )
        if self.rank(node.args[0]) != 4:
            raise _Unsupported("E171", "nn.ConvTranspose2d on a tensor that is not (N, C, H, W)")
        kernel, stride = _two(m.kernel_size), _two(m.stride)
        pads, extra = _two(m.padding), _two(m.output_padding)
        valid = [(0, max(s - k, 0)) for k, s in zip(kernel, stride, strict=True)]
        same = [
            ((k - s) // 2, 0) if k >= s and (k - s) % 2 == 0 else None
            for k, s in zip(kernel, stride, strict=True)
        ]
        given = list(zip(pads, extra, strict=True))
        if given == valid:
            padding = "valid"
        elif given == same:
            padding = "same"
        else:
            raise _Unsupported(
                "E171",
                f"padding {pads} and output_padding {extra} with kernel {kernel}, stride {stride}",
                "Keras' Conv2DTranspose is padding 0 (valid) or (k - s) / 2 (same), "
                "output_padding 0 (s - k where s > k, valid)",
            )
        attrs = {
            "filters": m.out_channels,
            "kernel": _pair(kernel),
            "strides": _pair(stride),
            "padding": padding,
            "use_bias": m.bias is not None,
        }
        return self.weighted(node, m, name, "conv2d_transpose", attrs, x)

    def upsample_module(self, node: Any, m: Any, name: str) -> str:
        return self.upsample(name, node.args[0], m.size, m.scale_factor, m.mode, m.align_corners)

    def upsample(self, name: str, arg: Any, size: Any, scale: Any, mode: str, corners: Any) -> str:
        x = self.tensor(arg)
        factors = (scale, scale) if isinstance(scale, int | float) else scale
        if (
            self.rank(arg) != 4
            or size is not None
            or factors is None
            or any(float(f) != int(f) or f < 1 for f in factors)
            or mode not in ("nearest", "bilinear")
            or corners
        ):
            raise _Unsupported(
                "E171",
                f"upsampling by size {size}, scale_factor {scale}, mode {mode!r}, "
                f"align_corners {corners}",
                "archc upsamples an image by whole factors, nearest or bilinear "
                "(align_corners=False)",
            )
        attrs = {"size": _pair(tuple(int(f) for f in factors)), "interpolation": mode}
        return self.add(name, "upsample2d", attrs, [x], self.out_shape(), "upsample")

    def batch_norm(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        rank = self.rank(node.args[0])
        if rank not in (2, 4):
            raise _Unsupported(
                "E171",
                f"{type(m).__name__} on a tensor of rank {rank} (its channels at dim 1)",
                "archc normalizes an image's (N, C, H, W) or a vector's (N, C) channels",
            )
        if not m.track_running_stats or m.running_mean is None:
            raise _Unsupported("E171", "track_running_stats=False", "keep running statistics")
        if m.momentum is None:
            raise _Unsupported(
                "E171", "momentum=None (a cumulative average)", "give a momentum (Keras' 1 - it)"
            )
        attrs = {
            "epsilon": float(m.eps),
            "momentum": _round(1.0 - float(m.momentum)),
            "center": m.affine,
            "scale": m.affine,
        }
        return self.weighted(node, m, name, "batch_norm", attrs, x)

    def linear(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        if self.rank(node.args[0]) not in (2, 3):
            raise _Unsupported(
                "E171",
                "nn.Linear on an (N, C, H, W) tensor acts on its width, not its channels",
                "flatten or pool the image first",
            )
        attrs = {"units": m.out_features, "use_bias": m.bias is not None}
        return self.weighted(node, m, name, "dense", attrs, x)

    def layer_norm(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        shape = self.shape(node.args[0])
        if len(shape) not in (2, 3) or tuple(m.normalized_shape) != (shape[-1],):
            raise _Unsupported(
                "E171",
                f"LayerNorm{tuple(m.normalized_shape)} on a tensor of shape {shape}",
                "archc normalizes over the channels, the last dim of (N, C) or (N, T, C)",
            )
        affine = m.elementwise_affine
        attrs = {
            "epsilon": float(m.eps),
            "center": affine and m.bias is not None,
            "scale": affine,
        }
        return self.weighted(node, m, name, "layer_norm", attrs, x)

    def embedding(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
            raise _Unsupported("E171", "max_norm, scale_grad_by_freq or sparse", "leave them out")
        if m.padding_idx is not None:
            self.notes.append(
                "padding_idx is not carried (the row keeps its values; Keras trains it): " + name
            )
        attrs = {"input_dim": m.num_embeddings, "output_dim": m.embedding_dim}
        return self.weighted(node, m, name, "embedding", attrs, x)

    def recurrent(self, node: Any, m: Any, name: str) -> _Tuple:
        from torch import nn

        (x,) = self.args(node, 1)
        kind = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "rnn"}[type(m)]
        if not m.batch_first:
            raise _Unsupported(
                "E171", "batch_first=False", "archc holds sequences (N, T, C): batch_first=True"
            )
        if getattr(m, "proj_size", 0):
            raise _Unsupported("E171", "proj_size", "archc's lstm has no projection")
        if self.rank(node.args[0]) != 3:
            raise _Unsupported("E171", "the input is not (N, T, C)", "")
        op = {"lstm": "lstm", "gru": "gru", "rnn": "simple_rnn"}[kind]
        attrs: dict[str, Any] = {"units": m.hidden_size, "return_sequences": True}
        if not m.bias:
            attrs["use_bias"] = False
        if m.bidirectional:
            attrs["bidirectional"] = True
        if kind == "rnn":
            attrs["activation"] = m.nonlinearity
        trainable = self.trainable(m, node.target)
        steps = self.shape(node.args[0])[1]
        width = m.hidden_size * (2 if m.bidirectional else 1)
        for k in range(m.num_layers):
            item = name if m.num_layers == 1 else self.fresh(f"{name}_l{k}")
            x = self.add(
                item,
                op,
                dict(attrs),
                [x],
                (steps, width),
                type(m).__name__,
                Move(kind, self.path(node.target), k),
                trainable,
            )
            if m.bias and kind in ("lstm", "rnn"):  # bias_ih + bias_hh: one bias in Keras
                self.folded += (
                    m.hidden_size * (4 if kind == "lstm" else 1) * (2 if m.bidirectional else 1)
                )
            if m.dropout and k < m.num_layers - 1:
                x = self.add(
                    self.fresh(f"{name}_dropout_l{k}"),
                    "dropout",
                    {"rate": float(m.dropout)},
                    [x],
                    None,
                    "dropout",
                )
        return _Tuple(x, f"nn.{type(m).__name__} '{node.target}'")

    def attention(self, node: Any, m: Any, name: str) -> _Tuple:
        args = list(node.args)
        kwargs = dict(node.kwargs)
        for i, key in enumerate(("query", "key", "value")):
            if key in kwargs:
                if len(args) != i:
                    raise _Unsupported("E171", "query, key and value given oddly", "")
                args.append(kwargs.pop(key))
        if len(args) > 3:
            raise _Unsupported("E171", "masks or flags passed by position", "pass them by name")
        if len(args) != 3:
            raise _Unsupported("E171", "called without query, key and value", "")
        for key, value in kwargs.items():
            if key in ("need_weights", "average_attn_weights"):
                continue
            if (key == "is_causal" and value is False) or value is None:
                continue
            raise _Unsupported(
                "E171",
                f"called with {key}={short_repr(str(value))}",
                "archc's attention takes no mask (causal attention is `causal: true` in a spec)",
            )
        q, k, v = (self.tensor(a) for a in args)
        return _Tuple(
            self.mha(name, m, self.path(node.target), q, k, v, args[0]),
            f"nn.MultiheadAttention '{node.target}'",
        )

    def mha(self, name: str, m: Any, qual: str, q: str, k: str, v: str, q_node: Any) -> str:
        if not m.batch_first:
            raise _Unsupported(
                "E171", "batch_first=False", "archc holds sequences (N, T, C): batch_first=True"
            )
        if m.bias_k is not None or m.add_zero_attn:
            raise _Unsupported("E171", "add_bias_kv or add_zero_attn", "leave them out")
        if m.dropout:
            self.notes.append("attention dropout is not carried (training only): " + name)
        inputs = [q] if q == k == v else [q, v] if k == v else [q, v, k]
        attrs = {
            "key_dim": m.head_dim,
            "num_heads": m.num_heads,
            "use_bias": m.in_proj_bias is not None,
        }
        shape = self.shapes[q]
        return self.add(
            name,
            "multi_head_attention",
            attrs,
            inputs,
            (shape[0], m.embed_dim),
            "MultiheadAttention",
            Move("mha", qual),
            self.trainable(m, qual),
        )

    def encoder_layer_call(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        return self.encoder_layer(m, self.path(node.target), x)

    def encoder_layer(self, m: Any, qual: str, x: str) -> str:
        """nn.TransformerEncoderLayer as the items its forward computes (eval: the fast path
        computes the same)."""
        import torch.nn.functional as F
        from torch import nn

        shape = self.shapes[x]
        act = m.activation
        if act is F.relu or isinstance(act, nn.ReLU):
            fn: dict[str, Any] = {"activation": "relu"}
        elif act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
            fn = {"activation": "gelu"}
        else:
            raise _Unsupported(
                "E171", f"activation {short_repr(str(act))}", "archc's encoder takes relu or gelu"
            )

        def sub(part: str) -> str:
            return self.sub_name(qual, part)

        def norm(part: str, src: str) -> str:
            n = getattr(m, part)
            return self.add(
                sub(part),
                "layer_norm",
                {
                    "epsilon": float(n.eps),
                    "center": n.bias is not None,
                    "scale": n.elementwise_affine,
                },
                [src],
                shape,
                "LayerNorm",
                Move("same", _join(qual, part)),
            )

        def dropout(part: str, src: str) -> str:
            rate = float(getattr(m, part).p)
            return self.add(sub(part), "dropout", {"rate": rate}, [src], shape, "Dropout")

        def block(src: str) -> str:
            path = _join(qual, "self_attn")
            a = self.mha(sub("self_attn"), m.self_attn, path, src, src, src, None)
            return dropout("dropout1", a)

        def ff(src: str) -> str:
            lin1, lin2 = m.linear1, m.linear2
            h = self.add(
                sub("linear1"),
                "dense",
                {"units": lin1.out_features, "use_bias": lin1.bias is not None, **fn},
                [src],
                (shape[0], lin1.out_features),
                "Linear",
                Move("same", _join(qual, "linear1")),
            )
            h = self.add(
                sub("dropout"), "dropout", {"rate": float(m.dropout.p)}, [h], None, "Dropout"
            )
            h = self.add(
                sub("linear2"),
                "dense",
                {"units": lin2.out_features, "use_bias": lin2.bias is not None},
                [h],
                shape,
                "Linear",
                Move("same", _join(qual, "linear2")),
            )
            return dropout("dropout2", h)

        if m.norm_first:
            h = self.add(sub("add1"), "add", {}, [x, block(norm("norm1", x))], shape, "add")
            return self.add(sub("add2"), "add", {}, [h, ff(norm("norm2", h))], shape, "add")
        h = norm("norm1", self.add(sub("add1"), "add", {}, [x, block(x)], shape, "add"))
        return norm("norm2", self.add(sub("add2"), "add", {}, [h, ff(h)], shape, "add"))

    def encoder_call(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        qual = self.path(node.target)
        if self.rank(node.args[0]) != 3:
            raise _Unsupported("E171", "the input is not (N, T, C)", "batch_first=True")
        for i, layer in enumerate(m.layers):
            if not getattr(layer.self_attn, "batch_first", False):
                raise _Unsupported(
                    "E171", "batch_first=False", "archc holds sequences (N, T, C): batch_first=True"
                )
            x = self.encoder_layer(layer, _join(qual, f"layers.{i}"), x)
        if m.norm is not None:
            n = m.norm
            x = self.add(
                self.sub_name(qual, "norm"),
                "layer_norm",
                {
                    "epsilon": float(n.eps),
                    "center": n.bias is not None,
                    "scale": n.elementwise_affine,
                },
                [x],
                self.shapes[x],
                "LayerNorm",
                Move("same", _join(qual, "norm")),
            )
        return x

    def dropout_module(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        return self.add(name, "dropout", {"rate": float(m.p)}, [x], self.out_shape(), "Dropout")

    def flatten_module(self, node: Any, m: Any, name: str) -> str:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _Unsupported("E171", "a flatten that keeps more than the batch", "start_dim=1")
        return self.flatten(name, node.args[0])

    def flatten(self, name: str, arg: Any) -> str:
        x = self.tensor(arg)
        shape = self.shape(arg)
        if len(shape) == 2:
            return x
        item = self.by_name.get(x)
        if (
            item is not None
            and item.op in ("global_avg_pool2d", "global_max_pool2d")
            and item.attrs.get("keepdims")
            and len(arg.users) == 1
        ):  # adaptive pool to 1, then flatten: a global pool
            item.attrs["keepdims"] = False
            self.shapes[x] = (shape[1],)
            return x
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            # PyTorch flattens (C, H, W), the spec (H, W, C): channels first, then flatten
            h, w, c = logical(shape[1:])
            x = self.add(
                self.fresh(f"{name}_chw"), "permute", {"dims": [2, 0, 1]}, [x], (c, h, w), "permute"
            )
        return self.add(name, "flatten", {}, [x], (math.prod(shape[1:]),), "flatten")

    def pool(
        self,
        name: str,
        arg: Any,
        op: str,
        kernel: Any,
        stride: Any,
        padding: Any,
        ceil: bool,
        include_pad: bool = True,
    ) -> str:
        x = self.tensor(arg)
        if self.rank(arg) != 4:
            raise _Unsupported("E171", "a 2-D pool on a tensor that is not (N, C, H, W)", "")
        if ceil:
            raise _Unsupported("E171", "ceil_mode=True", "archc's pools floor (ceil_mode=False)")
        kernel, stride = _two(kernel), _two(stride if stride else kernel)
        pads = _two(padding)
        if any(pads):
            if op == "max_pool2d" and not self.non_negative(x):
                raise _Unsupported(
                    "E171",
                    f"max pooling with padding {pads} on values that may be negative",
                    "PyTorch pads max pooling with -inf; archc pads with zeros, which is the same "
                    "only after a relu (or another non-negative activation)",
                )
            if op == "avg_pool2d" and not include_pad:
                raise _Unsupported(
                    "E171",
                    "count_include_pad=False with padding",
                    "archc's zero padding is counted in the average",
                )
            x = self.add(
                self.fresh(f"{name}_pad"),
                "zero_pad2d",
                {"padding": _pad_value(pads)},
                [x],
                None,
                "padding",
            )
        attrs = {"pool": _pair(kernel), "strides": None if stride == kernel else _pair(stride)}
        return self.add(name, op, attrs, [x], self.out_shape(), op)

    def non_negative(self, name: str) -> bool:
        item = self.by_name.get(name)
        while item is not None:
            if item.op == "activation":
                return item.attrs.get("fn") in _NON_NEGATIVE
            if item.op in ("max_pool2d", "zero_pad2d", "dropout") and len(item.inputs) == 1:
                item = self.by_name.get(item.inputs[0])
                continue
            return False
        return False

    def max_pool_module(self, node: Any, m: Any, name: str) -> str:
        if _two(m.dilation) != (1, 1) or m.return_indices:
            raise _Unsupported("E171", "dilation or return_indices", "leave them out")
        return self.pool(
            name, node.args[0], "max_pool2d", m.kernel_size, m.stride, m.padding, m.ceil_mode
        )

    def avg_pool_module(self, node: Any, m: Any, name: str) -> str:
        if m.divisor_override:
            raise _Unsupported("E171", "divisor_override", "leave it out")
        return self.pool(
            name,
            node.args[0],
            "avg_pool2d",
            m.kernel_size,
            m.stride,
            m.padding,
            m.ceil_mode,
            m.count_include_pad,
        )

    def adaptive_module(self, node: Any, m: Any, name: str) -> str:
        from torch import nn

        op = "global_avg_pool2d" if isinstance(m, nn.AdaptiveAvgPool2d) else "global_max_pool2d"
        return self.adaptive(name, node.args[0], m.output_size, op)

    def adaptive(self, name: str, arg: Any, size: Any, op: str) -> str:
        x = self.tensor(arg)
        if self.rank(arg) != 4 or _two(size) != (1, 1):
            raise _Unsupported(
                "E171",
                f"adaptive pooling to {short_repr(size)}",
                "archc pools adaptively only to one pixel (a global pool)",
            )
        return self.add(name, op, {"keepdims": True}, [x], self.out_shape(), op)

    def zero_pad_module(self, node: Any, m: Any, name: str) -> str:
        (x,) = self.args(node, 1)
        left, right, top, bottom = m.padding
        if min(m.padding) < 0:
            raise _Unsupported("E171", "negative padding (a crop)", "")
        padding = (
            _pad_value((top, left))
            if (top, left) == (bottom, right)
            else [[top, bottom], [left, right]]
        )
        return self.add(
            name, "zero_pad2d", {"padding": padding}, [x], self.out_shape(), "ZeroPad2d"
        )

    def softmax(self, name: str, arg: Any, dim: Any, cls: str) -> str:
        x = self.tensor(arg)
        rank = self.rank(arg)
        if dim is None or logical_dim(int(dim), rank) != -1:
            raise _Unsupported(
                "E171",
                f"softmax over dim {dim}",
                "archc's softmax is over the channels (dim 1 of an image, the last dim otherwise)",
            )
        return self.add(name, "activation", {"fn": "softmax"}, [x], self.out_shape(), cls)

    # -- functions and methods
    def call_function(self, node: Any) -> Any:
        import torch
        import torch.nn.functional as F

        fn = node.target
        if fn is operator.getitem:
            return self.getitem(node)
        name = self.functional_name(node)
        if fn in self.act_functions:
            return self.activation_call(node, self.act_functions[fn], name)
        if fn in (operator.add, torch.add, operator.iadd):
            return self.arith(node, "add", name)
        if fn in (operator.mul, torch.mul, operator.imul):
            return self.arith(node, "multiply", name)
        if fn in (operator.sub, torch.sub, operator.isub):
            return self.arith(node, "subtract", name)
        if fn in (operator.truediv, torch.div):
            return self.arith(node, "divide", name)
        if fn in (operator.neg, torch.neg):
            return self.add(
                name,
                "rescaling",
                {"scale": -1.0},
                [self.tensor(node.args[0])],
                self.out_shape(),
                "neg",
            )
        if fn in (torch.cat, torch.concat, torch.concatenate):
            tensors = node.args[0] if node.args else node.kwargs.get("tensors")
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            names = [self.tensor(t) for t in tensors]
            axis = logical_dim(int(dim), self.rank(tensors[0]))
            attrs = {"axis": axis}
            return self.add(name, "concat", attrs, names, self.out_shape(), "cat")
        if fn is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise _Unsupported(
                    "E171",
                    f"flatten({start}, {end})",
                    "archc flattens all but the batch: flatten(x, 1)",
                )
            return self.flatten(name, node.args[0])
        if fn is F.adaptive_avg_pool2d or fn is F.adaptive_max_pool2d:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            op = "global_avg_pool2d" if fn is F.adaptive_avg_pool2d else "global_max_pool2d"
            return self.adaptive(name, node.args[0], size, op)
        if fn is F.dropout:
            rate = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
            return self.add(
                name,
                "dropout",
                {"rate": float(rate)},
                [self.tensor(node.args[0])],
                self.out_shape(),
                "dropout",
            )
        if fn is F.softmax or fn is torch.softmax:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return self.softmax(name, node.args[0], dim, "softmax")
        if fn is F.interpolate:
            keys = ("size", "scale_factor", "mode", "align_corners")
            kw = dict(zip(keys, node.args[1:], strict=False))
            kw.update(node.kwargs)
            for key in ("recompute_scale_factor", "antialias"):
                if kw.pop(key, None):
                    raise _Unsupported("E171", f"{key}=True", "leave it out")
            return self.upsample(
                name,
                node.args[0],
                kw.get("size"),
                kw.get("scale_factor"),
                kw.get("mode", "nearest"),
                kw.get("align_corners"),
            )
        if fn is torch.mean:
            return self.mean(node, name)
        what = getattr(fn, "__module__", None) or "?"
        raise _Unsupported(
            "E170",
            f"archc has no op for {what}.{getattr(fn, '__name__', fn)}",
            PLUGIN_HINT,
        )

    def activation_call(self, node: Any, fn: str, name: str) -> str:
        x = self.tensor(node.args[0])
        attrs: dict[str, Any] = {"fn": fn}
        kwargs = dict(node.kwargs)
        kwargs.pop("inplace", None)
        if fn == "gelu" and kwargs.pop("approximate", "none") == "tanh":
            attrs["approximate"] = True
        if fn == "leaky_relu":
            slope = node.args[1] if len(node.args) > 1 else kwargs.pop("negative_slope", 0.01)
            attrs["alpha"] = float(slope)
        if fn == "elu":
            alpha = node.args[1] if len(node.args) > 1 else kwargs.pop("alpha", 1.0)
            if alpha != 1.0:
                raise _Unsupported("E171", f"elu alpha {alpha}", "archc's elu has alpha 1")
        if kwargs:
            raise _Unsupported("E171", f"arguments {sorted(kwargs)}", "")
        return self.add(name, "activation", attrs, [x], self.out_shape(), fn)

    def arith(self, node: Any, op: str, name: str) -> str:
        if node.kwargs:
            raise _Unsupported("E171", f"arguments {sorted(node.kwargs)}", "")
        a, b = node.args
        tensors = [hasattr(v, "op") for v in (a, b)]
        if all(tensors):
            if op == "divide":
                raise _Unsupported("E170", "archc has no op for dividing two tensors", PLUGIN_HINT)
            ra, rb = self.rank(a), self.rank(b)
            if ra != rb:
                raise _Unsupported(
                    "E171",
                    f"broadcasting a rank-{ra} tensor with a rank-{rb} one",
                    "give both operands the same rank (unsqueeze), as archc's merges align "
                    "channels-last axes",
                )
            return self.add(name, op, {}, [self.tensor(a), self.tensor(b)], self.out_shape(), op)
        const, position = (b, 1) if tensors[0] else (a, 0)
        x = self.tensor(a if tensors[0] else b)
        if not isinstance(const, int | float) or isinstance(const, bool):
            raise _Unsupported(
                "E171", f"an operand {short_repr(str(const))} that is not a number", ""
            )
        c = float(const)
        if op == "add":
            attrs = {"scale": 1.0, "offset": c}
        elif op == "multiply":
            attrs = {"scale": c, "offset": 0.0}
        elif op == "subtract":
            attrs = {"scale": 1.0, "offset": -c} if position == 1 else {"scale": -1.0, "offset": c}
        elif position == 1 and c != 0:
            attrs = {"scale": 1.0 / c, "offset": 0.0}
        else:
            raise _Unsupported(
                "E170", "archc has no op for a number divided by a tensor", PLUGIN_HINT
            )
        return self.add(name, "rescaling", attrs, [x], self.out_shape(), op)

    def mean(self, node: Any, name: str) -> str:
        arg = node.args[0]
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        rank = self.rank(arg)
        dims = sorted(d % rank for d in ([dims] if isinstance(dims, int) else list(dims or [])))
        if rank == 3 and dims == [1]:  # a sequence's mean over its steps
            x = self.tensor(arg)
            attrs = {"keepdims": bool(keep)}
            return self.add(name, "global_avg_pool1d", attrs, [x], self.out_shape(), "mean")
        if rank != 4 or dims != [2, 3]:
            raise _Unsupported(
                "E171",
                f"a mean over dims {dims}",
                "archc averages an image over dims (2, 3) or a sequence over dim 1: a global pool",
            )
        return self.add(
            name,
            "global_avg_pool2d",
            {"keepdims": bool(keep)},
            [self.tensor(arg)],
            self.out_shape(),
            "mean",
        )

    def getitem(self, node: Any) -> Any:
        src, index = node.args
        value = self.values.get(src)
        if isinstance(value, _Tuple):
            if index != 0:
                raise _Unsupported(
                    "E171",
                    f"reads element {index} of {value.what}'s result (final states or "
                    "attention weights)",
                    "archc's layer gives the output sequence, element 0 (its last step is "
                    "out[:, -1])",
                )
            return value.first
        if value is _SKIP:
            return _SKIP
        if isinstance(value, str) and self.rank(src) == 3:
            return self.index_steps(node, value, index)
        raise _Unsupported(
            "E170",
            f"indexing a tensor with {short_repr(str(index))}",
            "archc maps indexing only of an nn.LSTM's or attention's tuple",
        )

    def index_steps(self, node: Any, x: str, index: Any) -> str:
        """x[:, i] (one step: take) or x[:, a:b] (steps a..b: slice) of an (N, T, C)
        sequence."""
        whole = slice(None)
        if not isinstance(index, tuple) or len(index) != 2 or index[0] != whole:
            raise _Unsupported(
                "E171",
                f"indexing a sequence with {short_repr(str(index))}",
                "archc takes x[:, i] and x[:, a:b] of an (N, T, C) sequence",
            )
        steps, at = self.shape(node.args[0])[1], index[1]
        name = self.functional_name(node)
        if isinstance(at, int):
            attrs = {"index": at % steps, "axis": 0}
            return self.add(name, "take", attrs, [x], self.out_shape(), "index")
        if isinstance(at, slice) and at.step in (None, 1):
            start, stop, _ = at.indices(steps)
            attrs = {"start": start, "stop": stop, "axis": 0}
            return self.add(name, "slice", attrs, [x], self.out_shape(), "slice")
        raise _Unsupported("E171", f"the steps {short_repr(str(at))}", "x[:, i] or x[:, a:b]")

    def call_method(self, node: Any) -> Any:
        method = str(node.target)
        if method == "size" or method == "dim":
            return _SKIP
        if method in ("contiguous", "clone"):
            return self.tensor(node.args[0])
        name = self.functional_name(node)
        if method in _ACTIVATION_METHODS:
            return self.add(
                name,
                "activation",
                {"fn": _ACTIVATION_METHODS[method]},
                [self.tensor(node.args[0])],
                self.out_shape(),
                method,
            )
        if method == "softmax":
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return self.softmax(name, node.args[0], dim, "softmax")
        if method == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise _Unsupported(
                    "E171", f"flatten({start}, {end})", "flatten all but the batch: x.flatten(1)"
                )
            return self.flatten(name, node.args[0])
        if method in ("view", "reshape"):
            return self.reshape(node, name)
        if method == "mean":
            return self.mean(node, name)
        if method in ("add", "mul", "sub"):
            return self.arith(
                node, {"add": "add", "mul": "multiply", "sub": "subtract"}[method], name
            )
        raise _Unsupported(
            "E170",
            f"archc has no op for the tensor method .{method}()",
            PLUGIN_HINT,
        )

    def reshape(self, node: Any, name: str) -> str:
        arg = node.args[0]
        before, after = self.shape(arg), self.shape(node)
        if len(after) == 2 and after[1] == math.prod(before[1:]):
            return self.flatten(name, arg)
        if len(before) <= 3 and len(after) <= 3:
            x = self.tensor(arg)
            return self.add(
                name, "reshape", {"target_shape": list(after[1:])}, [x], tuple(after[1:]), "reshape"
            )
        raise _Unsupported(
            "E171",
            f"a reshape from {before} to {after} (PyTorch's channels-first layout)",
            "archc maps flattening an image (x.flatten(1)) and reshapes of sequences",
        )


def _live(nodes: list[Any]) -> set[Any]:
    """The nodes the output depends on."""
    out = next((n for n in reversed(nodes) if n.op == "output"), None)
    live: set[Any] = set()
    stack = [out] if out is not None else []
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.all_input_nodes)
    for n in nodes:  # inputs are the model's, used or not (not those fixed at a default)
        if _is_input(n):
            live.add(n)
    return live


def _join(qual: str, part: str) -> str:
    return f"{qual}.{part}" if qual else part


def _is_input(node: Any) -> bool:
    """A placeholder the caller gives (one traced at its default value has that value as its
    argument)."""
    return bool(node.op == "placeholder" and not node.args)


def spec_name(qualname: str) -> str:
    """A module's layer name: its qualified name with dots as underscores (`layer_` before
    one that is no identifier, as nn.Sequential's `0`)."""
    name = qualname.replace(".", "_")
    return name if check_name(name) is None else f"layer_{name}"


def _describe(node: Any, gm: Any) -> str:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return f"{type(m).__module__}.{type(m).__name__} '{node.target}'"
    if node.op == "call_function":
        fn = node.target
        return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__name__', fn)}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return str(node.op)


def _two(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def _pair(value: Any) -> Any:
    a, b = _two(value)
    return a if a == b else [a, b]


def _pad_value(pads: tuple[int, ...]) -> Any:
    """Symmetric pads (h, w) as zero_pad2d's value."""
    h, w = pads
    return h if h == w else [h, w]


def _round(value: float) -> float:
    """1 - 0.1 as 0.9 (float noise beyond 12 digits dropped)."""
    return float(f"{value:.12g}")


# -- counting ---------------------------------------------------------------------------------


def torch_counts(model: Any) -> Any:
    """Counts by archc's rule for PyTorch: trainable = parameters with requires_grad;
    non-trainable = frozen parameters and floating-point buffers."""
    from archc.compiler.ir import Counts

    t = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return Counts(t + frozen + buffers, t, frozen + buffers)


def expected_counts(model: Any, folded: int) -> Any:
    """The spec's counts: PyTorch's, less the recurrent biases Keras holds as one."""
    from archc.compiler.ir import Counts

    c = torch_counts(model)
    return Counts(c.total - folded, c.trainable - folded, c.non_trainable)


# -- import -----------------------------------------------------------------------------------


def _is_layer(model: Any) -> bool:
    """A model that is itself a torch.nn layer (not a container): tracing would go into its
    forward."""
    from torch import nn

    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return type(model).__module__.startswith("torch.nn") and not isinstance(model, containers)


def _wrapped(layer: Any) -> Any:
    """The layer inside an nn.Module whose forward calls it (as `root`)."""
    from torch import nn

    class Wrapper(nn.Module):
        def forward(self, x: Any) -> Any:
            return getattr(self, ROOT)(x)

    wrapper = Wrapper()
    wrapper.add_module(ROOT, layer)
    return wrapper.eval()


def convert(
    model: Any, input_shapes: list[tuple[int, ...]], source: str, seed: int = 0
) -> TorchImported:
    """The model's trace as op items, or SpecError naming the first node archc cannot take."""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    model.eval()
    traced, wrapped = model, _is_layer(model)
    if wrapped:  # tracing starts inside the root's forward: hold the layer in a wrapper
        if len(input_shapes) != 1:
            raise _source_error(
                source,
                f"the model is one {type(model).__name__}: archc imports it with one input",
                "wrap it in an nn.Module whose forward takes one tensor",
            )
        traced = _wrapped(model)
    gm = _trace(traced, source)
    placeholders = [n for n in gm.graph.nodes if _is_input(n)]
    if len(placeholders) != len(input_shapes):
        raise _source_error(
            source,
            f"the model's forward takes {len(placeholders)} inputs "
            f"({', '.join(n.name for n in placeholders)}); {len(input_shapes)} shapes given",
            "give one --input-shape per input, in PyTorch's layout without the batch "
            "(3x224x224, or 50 for token ids)",
        )
    vocab = _vocabularies(gm)
    tokens = {i: vocab[n.name] for i, n in enumerate(placeholders) if n.name in vocab}
    xs = example_inputs(input_shapes, tokens, 2, seed)
    try:
        with torch.no_grad():
            model(*xs)  # the model's own code first: its errors point into it
            ShapeProp(gm).propagate(*xs)
    except Exception as exc:
        raise SpecError(
            [
                Diagnostic(
                    "E172",
                    f"the model fails on inputs of shape {input_shapes}: "
                    f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}",
                    _traceback_location(exc) or Location(source, 1, 1),
                    path=source,
                    hint="give --input-shape in PyTorch's layout without the batch "
                    "(3x224x224: channels, height, width)",
                )
            ]
        ) from None
    imported = _Converter(traced, gm, source, wrapped).run()
    imported.torch_inputs = list(input_shapes)
    imported.token_inputs = tokens
    return imported


def render(imported: TorchImported, counts: Any, origin: str) -> Any:
    """The spec's text: header, the input shape as a parameter, one item a line, expected
    counts (importer's writer conventions: op defaults left out, shared values under
    `defaults:`)."""
    import torch

    from archc.backends.importer import Written

    params: dict[str, dict[str, Any]] = {}
    inputs = []
    for inp in imported.inputs:
        shape = inp.attrs["shape"]
        entry: dict[str, Any] = {"name": inp.name}
        if len(imported.inputs) == 1:
            docs = {3: "height, width, channels", 2: "steps, channels", 1: "the input's size"}
            if inp.attrs.get("dtype"):
                docs[1] = "steps (token ids)"
            params["input_shape"] = {
                "type": "list[int]",
                "default": shape,
                "doc": docs.get(len(shape), "the input's shape"),
            }
            entry["shape"] = "${input_shape}"
        else:
            entry["shape"] = shape
        if inp.attrs.get("dtype"):
            entry["dtype"] = inp.attrs["dtype"]
        inputs.append(entry)
    expr: dict[tuple[str, str], str] = {}  # (layer, attribute) -> expression
    classes = _classes(cast(Any, imported))
    if classes is not None and classes[0] > 1:  # the last dense layer's units: a parameter
        n, chain = classes
        params["classes"] = {"type": "int", "default": n, "min": 1}
        head = chain[0]
        expr[(head.name, "units" if head.op == "dense" else "filters")] = "${classes}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", imported.name)
    if not re.match(r"[A-Za-z]", name):
        name = "model_" + name
    lines = [
        f"# Imported by `archc import torch` (PyTorch {torch.__version__}) from {origin}",
        "# One layer a line, named after its module (dots as underscores), so the original",
        "# state_dict maps onto the generated PyTorch model by name. Tensors are channels-last:",
        "# an (N, C, H, W) tensor is an (H, W, C) image here. Attributes equal to the op's",
        "# defaults are left out; `defaults:` holds the values most layers of an op share.",
    ]
    if imported.folded:
        lines.append(
            f"# Recurrent layers hold one bias (bias_ih + bias_hh): {imported.folded} fewer "
            "parameters than the PyTorch model."
        )
    grouped: dict[str, list[str]] = {}
    for note in imported.notes:
        what, _, layer = note.rpartition(": ")
        grouped.setdefault(what, []).append(layer)
    for what, layers in grouped.items():
        listed = ", ".join(layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")
        lines.append(f"# note: {what} ({listed})")
    lines += [
        "archc: 1",
        f"name: {_scalar(name)}",
        f"doc: {json.dumps(f'{origin}, imported from PyTorch layer for layer')}",
        "",
    ]
    if params:
        lines.append("params:")
        lines += [f"  {key}: {_flow(decl)}" for key, decl in params.items()]
        lines.append("")
    shown_items = [(item, _shown(item, expr)) for item in imported.items]
    common = _common(shown_items)
    if common:
        lines.append("defaults:")
        lines += [f"  {op}: {_flow(values)}" for op, values in common.items()]
        lines.append("")
    lines.append("inputs:")
    lines += [f"  - {_flow(one)}" for one in inputs]
    lines += ["", "layers:"]
    prev = imported.inputs[0].name if imported.inputs else None
    for item, shown in shown_items:
        spec_defaults = common.get(item.op, {})
        op_defaults = _defaults(item.op)
        here = {
            k: v
            for k, v in shown.items()
            if not (k in spec_defaults and _same(v, spec_defaults[k]))
        }
        for key in spec_defaults:
            if key not in shown:
                here[key] = op_defaults[key]
        ordered = {k: here[k] for k in item.attrs if k in here}
        one = Item(item.name, item.op, item.attrs, item.inputs, item.keras_class, item.trainable)
        if item.inputs == [prev]:
            one.inputs = None  # type: ignore[assignment]  # prev: the previous item
        lines += _item_lines(one, ordered)
        prev = item.name
    last = imported.items[-1].name if imported.items else None
    if imported.outputs != [last]:
        lines += ["", f"outputs: {_flow(imported.outputs)}"]
    lines += [
        "",
        f"expect: {{total: {counts.total}, trainable: {counts.trainable}, "
        f"non_trainable: {counts.non_trainable}}}",
    ]
    text = "\n".join(lines) + "\n"
    return Written(text, text.count("\n"), len(imported.items), params)


def import_torch(
    factory: str, input_shapes: list[tuple[int, ...]], out: str | os.PathLike[str]
) -> tuple[Any, Any, TorchImported]:
    """Import MODULE:FACTORY and write the spec to `out` atomically; returns (what was
    written, the PyTorch model, the import)."""
    model = load_factory(factory)
    imported = convert(model, input_shapes, factory)
    written = render(imported, expected_counts(model, imported.folded), factory)
    from archc.backends.codegen import write_atomic

    write_atomic(Path(out), written.text)
    return written, model, imported


# -- the proof ---------------------------------------------------------------------------------


def moved_state(original: Any, generated: Any, imported: TorchImported) -> dict[str, Any]:
    """The original's weights as the generated PyTorch model's state_dict (by the mapped
    names: module `layer1.0.conv1` -> layer `layer1_0_conv1`; attention's packed projections
    unpacked into Keras' layout; a recurrent layer's two biases summed as Keras' one)."""
    import torch

    source = dict(original.state_dict())
    target = generated.state_dict()
    paths = generated.keras_layers
    state: dict[str, Any] = {}
    for layer, move in imported.moves.items():
        prefix = paths[layer] + "."
        local = {k[len(prefix) :]: v for k, v in target.items() if k.startswith(prefix)}
        orig = {
            k[len(move.path) + 1 :]: v for k, v in source.items() if k.startswith(move.path + ".")
        }
        values = _move(move, orig, local)
        for key, value in values.items():
            if key not in local:
                raise _proof_error(f"{layer}: the generated module has no '{key}'")
            if tuple(value.shape) != tuple(local[key].shape):
                raise _proof_error(
                    f"{layer}.{key}: shape {tuple(value.shape)} moved onto "
                    f"{tuple(local[key].shape)}"
                )
            state[prefix + key] = value.detach().clone().to(local[key].dtype)
    for key, value in target.items():
        if key not in state:
            if value.is_floating_point():
                raise _proof_error(f"no original weight reaches '{key}'")
            state[key] = value  # num_batches_tracked: not a weight
    extra = set(state) - set(target)
    if extra:
        raise _proof_error(f"weights the generated model does not hold: {sorted(extra)[:5]}")
    return {k: torch.as_tensor(v) for k, v in state.items()}


def _move(move: Move, orig: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
    import torch

    if move.kind == "same":
        return {k: orig[k] for k in local if k in orig}
    if move.kind in ("lstm", "gru", "rnn"):
        out = {}
        for d in ("_l0", "_l0_reverse"):
            if f"weight_ih{d}" not in local:
                continue
            src = d.replace("_l0", f"_l{move.layer}")
            out[f"weight_ih{d}"] = orig[f"weight_ih{src}"]
            out[f"weight_hh{d}"] = orig[f"weight_hh{src}"]
            if f"bias{d}" in local:
                ih, hh = orig[f"bias_ih{src}"], orig[f"bias_hh{src}"]
                out[f"bias{d}"] = torch.stack([ih, hh]) if move.kind == "gru" else ih + hh
        return out
    # nn.MultiheadAttention -> Keras' kernels (channels, heads, head size), (heads, size, out)
    heads, size = local["query_kernel"].shape[1:]
    e = heads * size
    if "in_proj_weight" in orig:
        wq, wk, wv = orig["in_proj_weight"].split(e)
    else:
        wq, wk, wv = (orig[f"{p}_proj_weight"] for p in "qkv")
    out = {
        "query_kernel": wq.T.reshape(-1, heads, size),
        "key_kernel": wk.T.reshape(-1, heads, size),
        "value_kernel": wv.T.reshape(-1, heads, size),
        "output_kernel": orig["out_proj.weight"].T.reshape(heads, size, -1),
    }
    if "query_bias" in local:
        bq, bk, bv = orig["in_proj_bias"].split(e)
        out.update(
            query_bias=bq.reshape(heads, size),
            key_bias=bk.reshape(heads, size),
            value_bias=bv.reshape(heads, size),
            output_bias=orig["out_proj.bias"],
        )
    return out


def _proof_error(message: str, where: str = "<import>") -> SpecError:
    return proof_error(where, message, "PyTorch importer")


def _to_keras_layout(y: Any) -> Any:
    import numpy as np

    return np.moveaxis(y, 1, -1) if y.ndim == 4 else y


def prove(
    spec: str | os.PathLike[str],
    model: Any,
    imported: TorchImported,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    batch: int = 2,
    report: Callable[[Step], None] = lambda s: None,
) -> Proof:
    """Check (counts equal the original's, less folded biases; every layer's shape equal to
    the trace's), compile both, verify, move the original's state_dict into the generated
    PyTorch model and through `archc weights` into the generated Keras model, and compare the
    original's outputs with the Keras model's; SpecError (E173) on a difference."""
    import tempfile

    import numpy as np
    import torch

    from archc.backends.keras import backend as keras_backend
    from archc.backends.proof.verify import _compare
    from archc.backends.proof.verify import verify as run_verify
    from archc.backends.proof.weights import convert as convert_weights
    from archc.backends.proof.weights import file_format, write_torch
    from archc.compiler.api import compile_spec

    from . import backend as torch_backend

    where = str(spec)
    log = StepLog(report)
    compiled = compile_spec(where)
    want = expected_counts(model, imported.folded)
    got = compiled.graph.counts
    if got != want:
        raise _proof_error(
            f"the spec has {got.as_dict()} parameters, the PyTorch model {want.as_dict()} "
            f"(less {imported.folded} folded recurrent biases)",
            where,
        )
    for node in compiled.graph.nodes:
        traced = imported.shapes.get(node.name)
        if traced is not None and tuple(node.shape or ()) != tuple(traced):
            raise _proof_error(
                f"layer '{node.name}': the spec's shape {node.shape}, the trace's {traced}",
                where,
            )
    folded = f", less {imported.folded} folded recurrent biases" if imported.folded else ""
    log.done(
        "check",
        f"counts equal the PyTorch model's{folded}: {got.total:,} ({got.trainable:,} "
        f"trainable, {got.non_trainable:,} non-trainable); every layer's shape the trace's",
    )
    log.compile_both(spec, out_dir)
    checked = run_verify(compiled, batch=batch, seed=seed)
    log.verified(checked)

    generated = torch_backend.build(compiled)
    state = moved_state(model, generated, imported)
    generated.load_state_dict(state, strict=True)
    keras_model = keras_backend.build(compiled)
    with tempfile.TemporaryDirectory() as tmp:
        moved = Path(tmp) / "original.safetensors"
        write_torch(generated, moved, file_format(moved))  # type: ignore[arg-type]
        h5 = Path(tmp) / "original.weights.h5"
        converted = convert_weights(where, moved, h5)
        keras_model.load_weights(str(h5))
    log.done(
        "weights",
        f"{len(state)} tensors of the original's state_dict moved into the generated PyTorch "
        f"model by name, {converted.arrays} arrays to Keras by `archc weights`",
    )

    xs = example_inputs(imported.torch_inputs, imported.token_inputs, batch, seed + 1)
    model.eval()
    with torch.no_grad():
        y_orig = model(*xs)
    y_orig = y_orig if isinstance(y_orig, tuple | list) else (y_orig,)
    keras_xs = [_to_keras_layout(x.numpy()) for x in xs]
    y_keras = keras_model(keras_xs if len(keras_xs) > 1 else keras_xs[0], training=False)
    y_keras = y_keras if isinstance(y_keras, tuple | list) else (y_keras,)
    worst, largest = 0.0, 0.0
    for a, b in zip(y_orig, y_keras, strict=True):
        want_y = _to_keras_layout(a.numpy())
        got_y = np.asarray(b)
        diff, allowed = _compare(want_y, got_y, 0.0)
        if not diff <= allowed:
            raise _proof_error(
                f"the generated Keras model's outputs differ from the original PyTorch "
                f"model's: max|Δ| = {diff:.3g} (allowed {allowed:.3g})",
                where,
            )
        worst = max(worst, diff)
        largest = max(largest, float(np.max(np.abs(want_y))) if want_y.size else 0.0)
    shapes = ", ".join("x".join(map(str, s)) for s in imported.torch_inputs)
    log.done(
        "outputs",
        f"the original PyTorch model and the generated Keras model agree on a seeded batch of "
        f"{batch} ({shapes}): max|Δ| = {worst:.3g} (max|y| = {largest:.3g})",
    )
    return Proof(log.steps, worst, largest)
