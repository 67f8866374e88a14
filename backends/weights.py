"""Weight files between Keras and PyTorch: `archc weights` and `convert()`.

A Keras file (`.weights.h5` from `model.save_weights`, or a `.keras` full save) becomes a
PyTorch state dict (`.safetensors`, or `.pt` / `.pth` from `torch.save(model.state_dict())`)
of the spec's generated PyTorch model, or the other way round. Weights move by Keras layer
name through `transfer.py` (each op's bindings and `model.keras_layers`); this module only
reads, checks and writes files:

- Keras files are read with h5py, without building a Keras model: Keras 3 keeps each layer's
  variables under `layers/<class>/vars/<i>`, in `get_weights()` order, with the layer's name
  as the group's `name` attribute. Keras files are written by Keras itself (`save_weights`,
  `save`) from the spec's generated Keras model.
- PyTorch files are loaded without running pickled code (safetensors, or
  `torch.load(weights_only=True)`) and written from the generated model's `state_dict()`.
- The file must be the spec's model, exactly: a missing, extra or mis-shaped weight is an
  error naming the layer (or state-dict key) and both shapes, before anything is written.
- The output is written to a temp file next to it and renamed over it: an error or Ctrl-C
  leaves the old file (or none) in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler.api import Compiled, compile_spec
from compiler.diagnostics import Diagnostic, Location, SpecError, short_repr
from compiler.ir import Graph

# Codes: E150 unreadable file, E151 a weight of another shape, E152 weights missing from the
# file, E153 weights the model lacks, E154 a file of another model, E155 cannot write.
MAX_LISTED = 10  # weights named in one message; the rest are counted


@dataclass(frozen=True)
class Format:
    suffix: str
    framework: str  # "keras" or "torch"
    description: str


FORMATS = (
    Format(".weights.h5", "keras", "Keras weights file (save_weights)"),
    Format(".keras", "keras", "Keras model file (save)"),
    Format(".safetensors", "torch", "PyTorch state dict (safetensors)"),
    Format(".pt", "torch", "PyTorch state dict (torch.save)"),
    Format(".pth", "torch", "PyTorch state dict (torch.save)"),
)
FRAMEWORK_NAMES = {"keras": "Keras", "torch": "PyTorch"}
KNOWN = "Keras: .weights.h5, .keras; PyTorch: .safetensors, .pt (or .pth)"


class FormatError(ValueError):
    """The files' names do not say a conversion archc makes (a usage error: exit 2)."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}\nhint: {hint}")
        self.message = message
        self.hint = hint


class WholeFile(Location):
    """A diagnostic about a whole file (a binary one has no lines): printed as the path."""

    __slots__ = ()

    def __str__(self) -> str:
        return self.file


def file_format(path: str | os.PathLike[str]) -> Format | None:
    name = Path(path).name.lower()
    for fmt in FORMATS:
        if name.endswith(fmt.suffix) and len(name) > len(fmt.suffix):
            return fmt
    return None


def formats(
    source: str | os.PathLike[str], target: str | os.PathLike[str]
) -> tuple[Format, Format]:
    """The formats of a conversion, from the files' extensions; FormatError when they do not
    name one Keras file and one PyTorch file."""
    found = []
    for role, path in (("--from", source), ("--to", target)):
        fmt = file_format(path)
        if fmt is None:
            suffix = "".join(Path(path).suffixes[-2:]) or "no extension"
            hint = f"weights files are named by their format ({KNOWN})"
            if Path(path).name.lower().endswith(".h5"):
                hint = (
                    "Keras 3 saves weights as NAME.weights.h5 (model.save_weights) or a whole "
                    "model as NAME.keras (model.save); " + hint
                )
            raise FormatError(f"{role} {short_repr(str(path))}: unknown format ({suffix})", hint)
        found.append(fmt)
    src, dst = found
    if src.framework == dst.framework:
        name = FRAMEWORK_NAMES[src.framework]
        other = next(f for f in FORMATS if f.framework != src.framework)
        raise FormatError(
            f"both files are {name} files ({src.suffix}, {dst.suffix}): archc weights converts "
            "between Keras and PyTorch",
            f"name the output after the other framework's format, e.g. --to "
            f"{Path(target).name[: -len(dst.suffix)]}{other.suffix} ({KNOWN})",
        )
    return src, dst


@dataclass(frozen=True)
class Converted:
    """What convert() did."""

    source: Path
    target: Path
    source_format: Format
    target_format: Format
    layers: int  # Keras layers whose weights moved
    arrays: int  # Keras arrays moved (a layer has one or more)


def convert(
    spec: str | os.PathLike[str],
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
) -> Converted:
    """Convert the weights file `source` of the spec's model (with `params` overrides, or a
    variant) into `target`, between Keras and PyTorch; the direction comes from the
    extensions. Raises FormatError for names that say no conversion, SpecError (with
    diagnostics) for a file that cannot be read, is not the spec's model, or cannot be
    written.

    >>> convert("specs/resnet_preact.yaml", "seed.weights.h5", "seed.safetensors")
    """
    src_fmt, dst_fmt = formats(source, target)
    src, dst = Path(source), Path(target)
    compiled = compile_spec(str(spec), params, variant=variant, from_text=from_text)
    graph = compiled.graph
    described = _described(compiled)
    if src_fmt.framework == "keras":
        from . import torch_backend
        from .transfer import keras_to_torch

        layers = read_keras(src, src_fmt)
        check_keras(layers, graph, src, described)
        torch_model = torch_backend.build(compiled)
        arrays = keras_to_torch(_ArrayModel(layers), torch_model, graph)
        write_torch(torch_model, dst, dst_fmt)
    else:
        from . import keras_backend, torch_backend
        from .transfer import torch_to_keras

        state = read_torch(src, src_fmt)
        torch_model = torch_backend.build(compiled)
        check_torch(state, torch_model, graph, src, described)
        torch_model.load_state_dict(state, strict=True)
        keras_model = keras_backend.build(compiled)
        arrays = torch_to_keras(torch_model, keras_model, graph)
        write_keras(keras_model, dst, dst_fmt)
    moved = sum(1 for node in graph.nodes if node.weights)
    return Converted(src, dst, src_fmt, dst_fmt, moved, arrays)


def _described(compiled: Compiled) -> str:
    """The model: 'rnpa', 'resnet50 (variant resnet101)', 'rnpa (nb_classes=10)'."""
    what = [f"variant {compiled.variant}"] if compiled.variant is not None else []
    what += [f"{k}={short_repr(compiled.params[k])}" for k in sorted(compiled.overrides)]
    return f"'{compiled.graph.name}'" + (f" ({', '.join(what)})" if what else "")


# -- reading --------------------------------------------------------------------------------
def _unreadable(path: Path, fmt: Format, reason: str, hint: str = "") -> SpecError:
    return SpecError(
        [
            Diagnostic(
                "E150",
                f"cannot read {path} as a {fmt.description}: {reason}",
                WholeFile(str(path), 1, 1),
                hint=hint,
            )
        ]
    )


def _check_regular(path: Path, fmt: Format) -> None:
    """Only a regular file is read (a FIFO would wait for a writer forever)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise _unreadable(path, fmt, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(mode):
        raise _unreadable(path, fmt, "not a regular file")


def read_keras(path: Path, fmt: Format) -> dict[str, list[Any]]:
    """Keras layer name -> its arrays, in get_weights() order (layers without weights are
    left out). Optimizer state and metrics in a .keras file are not model weights."""
    import numpy as np

    _check_regular(path, fmt)
    try:
        import h5py
    except ImportError:
        raise _unreadable(
            path, fmt, "h5py is not installed", hint="install Keras (archc's keras extra)"
        ) from None
    try:
        if fmt.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "model.weights.h5" not in names:
                    found = ", ".join(sorted(names)[:5]) or "nothing"
                    raise _unreadable(
                        path,
                        fmt,
                        f"it holds no model.weights.h5 (it holds {found})",
                        hint="save the model with model.save(PATH) (weights unsharded)",
                    )
                data = archive.read("model.weights.h5")
            opened = h5py.File(io.BytesIO(data), "r")
        else:
            opened = h5py.File(path, "r")
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _unreadable(path, fmt, _reason(exc)) from None
    layers: dict[str, list[Any]] = {}
    unnamed: list[str] = []
    with opened as f:
        groups: list[tuple[str, Any]] = []

        def visit(name: str, obj: Any) -> None:
            top, last = name.split("/", 1)[0], name.rsplit("/", 1)[-1]
            # a layer's variables; not an optimizer's or a metric's
            if isinstance(obj, h5py.Group) and last == "vars" and top in ("layers", "vars"):
                groups.append((name, obj))

        try:
            f.visititems(visit)
            for name, group in groups:
                keys = [k for k in group if isinstance(group[k], h5py.Dataset)]
                if not keys:
                    continue
                if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
                    raise _unreadable(path, fmt, f"{name} holds {sorted(keys)}, not 0, 1, ...")
                layer = group.attrs.get("name")
                if isinstance(layer, bytes):
                    layer = layer.decode("utf-8", "replace")
                if not isinstance(layer, str):
                    unnamed.append(name)
                    continue
                if layer in layers:
                    raise _unreadable(path, fmt, f"two layers are named {short_repr(layer)}")
                layers[layer] = [np.asarray(group[str(i)][()]) for i in range(len(keys))]
        except (OSError, KeyError, ValueError) as exc:
            raise _unreadable(path, fmt, _reason(exc)) from None
    if unnamed:
        raise _unreadable(
            path,
            fmt,
            f"it does not record its layers' names ({len(unnamed)} layers, e.g. {unnamed[0]})",
            hint="it was saved by an older Keras: load it into the spec's Keras model "
            "(build_model().load_weights(PATH)) and save it again with this Keras",
        )
    return layers


def read_torch(path: Path, fmt: Format) -> dict[str, Any]:
    """A state dict, read without running pickled code."""
    import torch

    _check_regular(path, fmt)
    if fmt.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise _unreadable(
                path,
                fmt,
                "safetensors is not installed",
                hint="install it (archc's torch extra), or convert a .pt state dict",
            ) from None
        try:
            loaded: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise _unreadable(path, fmt, _reason(exc)) from None
    else:
        import pickle

        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise _unreadable(
                path,
                fmt,
                f"it holds more than tensors ({_reason(exc)})",
                hint="archc loads .pt files with weights_only=True, which never runs pickled "
                "code: save the state dict alone, torch.save(model.state_dict(), PATH)",
            ) from None
        except (OSError, RuntimeError, EOFError, ValueError) as exc:
            raise _unreadable(path, fmt, _reason(exc)) from None
    if not isinstance(loaded, Mapping):
        raise _unreadable(
            path,
            fmt,
            f"it holds a {type(loaded).__name__}, not a state dict",
            hint="save the state dict alone: torch.save(model.state_dict(), PATH)",
        )
    odd = [k for k, v in loaded.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if odd:
        raise _unreadable(
            path,
            fmt,
            f"it is not a state dict of tensors ({short_repr(odd[0])} is "
            f"{type(loaded[odd[0]]).__name__})",
            hint="save the model's state dict alone (not a checkpoint with an optimizer or "
            "epoch): torch.save(model.state_dict(), PATH)",
        )
    return dict(loaded)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0] or type(exc).__name__
    return text[:300]


# -- checking -------------------------------------------------------------------------------
def _shape(shape: Any) -> str:
    return str(tuple(int(d) for d in shape))


def _listed(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _mismatch(
    path: Path,
    described: str,
    what: str,
    shapes: list[tuple[str, str, str]],  # label, the file's shape, the model's
    missing: list[tuple[str, str]],  # label, the model's shape
    extra: list[tuple[str, str]],  # label, the file's shape
    names: tuple[list[str], list[str]] | None,  # nothing in common: the file's, the model's
) -> None:
    """Raise one diagnostic per mis-shaped weight (up to MAX_LISTED) and one for the missing
    and for the extra ones; a file with nothing in common with the model is one error."""
    if not (shapes or missing or extra):
        return
    where = WholeFile(str(path), 1, 1)
    hint = (
        f"the file must hold exactly the weights of {described}: convert it with the spec, "
        "--set values and --variant of the model it was saved from"
    )
    if names is not None:
        theirs, ours = (_listed([f"'{n}'" for n in group], 6) for group in names)
        raise SpecError(
            [
                Diagnostic(
                    "E154",
                    f"the file holds no weights of {described}: none of its {what} "
                    f"({theirs}) is one of the model's ({ours})",
                    where,
                    hint="it is another model's file: convert it with the spec it was saved from",
                )
            ]
        )
    diagnostics = []
    for label, theirs, ours in shapes[:MAX_LISTED]:
        message = f"{label}: the file has shape {theirs}, the spec's model {ours}"
        diagnostics.append(Diagnostic("E151", message, where))
    if len(shapes) > MAX_LISTED:
        diagnostics.append(
            Diagnostic("E151", f"{len(shapes) - MAX_LISTED} more weights differ in shape", where)
        )
    if missing:
        diagnostics.append(
            Diagnostic(
                "E152",
                f"the file lacks {len(missing)} weight{'s' if len(missing) != 1 else ''} of "
                f"the spec's model: " + _listed([f"{label} {shape}" for label, shape in missing]),
                where,
                hint=hint,
            )
        )
    if extra:
        diagnostics.append(
            Diagnostic(
                "E153",
                f"the file has {len(extra)} weight{'s' if len(extra) != 1 else ''} the spec's "
                "model lacks: " + _listed([f"{label} {shape}" for label, shape in extra]),
                where,
            )
        )
    diagnostics[-1] = dataclasses.replace(diagnostics[-1], hint=hint)  # one hint, at the end
    raise SpecError(diagnostics)


def check_keras(layers: Mapping[str, list[Any]], graph: Graph, path: Path, described: str) -> None:
    """The file's layers and arrays must be the graph's, by name, count and shape."""
    if not layers:
        raise _unreadable(path, file_format(path) or FORMATS[0], "it holds no weights")
    shapes: list[tuple[str, str, str]] = []
    missing: list[tuple[str, str]] = []
    ours = {node.name: node for node in graph.nodes if node.weights}
    for name, node in ours.items():
        arrays = layers.get(name)
        if arrays is None:
            missing += [(f"layer '{name}' {w.name}", _shape(w.shape)) for w in node.weights]
            continue
        if len(arrays) != len(node.weights):
            shapes.append(
                (
                    f"layer '{name}'",
                    f"{len(arrays)} arrays " + ", ".join(_shape(a.shape) for a in arrays),
                    f"{len(node.weights)} arrays "
                    + ", ".join(f"{w.name} {_shape(w.shape)}" for w in node.weights),
                )
            )
            continue
        for w, array in zip(node.weights, arrays, strict=True):
            if tuple(array.shape) != tuple(w.shape):
                shapes.append((f"layer '{name}' {w.name}", _shape(array.shape), _shape(w.shape)))
    extra = [
        (f"layer '{name}' [{i}]", _shape(a.shape))
        for name, arrays in layers.items()
        if name not in ours
        for i, a in enumerate(arrays)
    ]
    common = any(name in ours for name in layers)
    names = None if common else (list(layers), list(ours))
    _mismatch(path, described, "layers", shapes, missing, extra, names)


def _torch_labels(model: Any, graph: Graph) -> dict[str, str]:
    """State-dict key -> what it is in Keras terms, through the ops' bindings."""
    from .torch_ops import TORCH_OPS

    labels: dict[str, str] = {}
    for node in graph.nodes:
        path = model.keras_layers.get(node.name)
        if path is None:
            continue
        for w in node.weights:
            key = TORCH_OPS[node.op].weights[w.name].key
            labels[f"{path}.{key}" if path else key] = f"Keras layer '{node.name}' {w.name}"
    return labels


def _owner(key: str, model: Any) -> str:
    """The Keras layer whose module holds a state-dict key (the longest module path)."""
    best, found = "", ""
    for name, path in model.keras_layers.items():
        if key.startswith(path + ".") and len(path) > len(best):
            best, found = path, name
    return f"Keras layer '{found}'" if found else ""


def check_torch(
    state: Mapping[str, Any], model: Any, graph: Graph, path: Path, described: str
) -> None:
    """The file's keys and shapes must be the generated model's state dict's, exactly."""
    if not state:
        raise _unreadable(path, file_format(path) or FORMATS[2], "it holds no tensors")
    want = model.state_dict()
    labels = _torch_labels(model, graph)

    def label(key: str) -> str:
        what = labels.get(key) or _owner(key, model)
        return f"'{key}'" + (f" ({what})" if what else "")

    shapes = [
        (label(k), _shape(state[k].shape), _shape(v.shape))
        for k, v in want.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [(label(k), _shape(v.shape)) for k, v in want.items() if k not in state]
    extra = [(f"'{k}'", _shape(v.shape)) for k, v in state.items() if k not in want]
    common = any(k in want for k in state)
    names = None if common else (sorted(_modules(state), key=_natural), _modules(want))
    _mismatch(path, described, "modules", shapes, missing, extra, names)


def _modules(keys: Iterable[str]) -> list[str]:
    """The modules that state-dict keys belong to, in the keys' order."""
    return list(dict.fromkeys(key.rsplit(".", 1)[0] for key in keys))


def _natural(name: str) -> list[tuple[int, int | str]]:
    """A sort key: 'stack.2' before 'stack.10' (a file's keys may come in any order)."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in name.split(".")]


class _ArrayLayer:
    """One layer of _ArrayModel: get_weights() / set_weights() on arrays."""

    def __init__(self, store: dict[str, list[Any]], name: str):
        self.store, self.name = store, name

    def get_weights(self) -> list[Any]:
        return self.store[self.name]

    def set_weights(self, values: list[Any]) -> None:
        self.store[self.name] = list(values)


class _ArrayModel:
    """Arrays read from a Keras file, as the Keras model transfer.py copies from."""

    def __init__(self, layers: dict[str, list[Any]]):
        self.layers = layers

    def get_layer(self, name: str) -> _ArrayLayer:
        return _ArrayLayer(self.layers, name)


# -- writing --------------------------------------------------------------------------------
def write_torch(model: Any, path: Path, fmt: Format) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if fmt.suffix == ".safetensors":
        try:
            import safetensors.torch
        except ImportError:
            raise _cannot_write(
                path, "safetensors is not installed", "install it (archc's torch extra)"
            ) from None
        with atomic(path, fmt) as tmp:
            safetensors.torch.save_file(state, str(tmp), metadata={"format": "pt"})
    else:
        import torch

        with atomic(path, fmt) as tmp:
            torch.save(state, tmp)


def write_keras(model: Any, path: Path, fmt: Format) -> None:
    with atomic(path, fmt) as tmp:
        if fmt.suffix == ".keras":
            model.save(str(tmp))
        else:
            model.save_weights(str(tmp))


def _cannot_write(path: Path, reason: str, hint: str = "") -> SpecError:
    return SpecError(
        [
            Diagnostic(
                "E155",
                f"cannot write {path}: {reason}",
                WholeFile(str(path), 1, 1),
                hint=hint or "choose a writable place for --to",
            )
        ]
    )


@contextlib.contextmanager
def atomic(path: Path, fmt: Format) -> Iterator[Path]:
    """A temp file next to path (`.<name>.<pid>.<random>.tmp<suffix>`: Keras insists on its
    suffixes) for the body to write; then fsync, the usual permissions, and a rename over
    path. On any error or interruption the temp file is removed and path is left as it was.
    The path is added to codegen.WRITTEN, which an interrupted command reports."""
    from .codegen import WRITTEN

    if path.is_dir():
        raise _cannot_write(path, "it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{fmt.suffix}", dir=path.parent
        )
    except OSError as exc:
        raise _cannot_write(path, exc.strerror or str(exc)) from None
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        try:
            yield tmp  # the writer (a framework's own)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk, a read-only folder
            raise _cannot_write(path, exc.strerror or _reason(exc)) from None
        WRITTEN.append(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
