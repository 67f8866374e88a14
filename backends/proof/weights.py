"""Weight files between Keras and PyTorch: `archc weights` and `convert()`.

A Keras file (`.weights.h5` from `model.save_weights`, or a `.keras` full save) becomes a
PyTorch state dict (`.safetensors`, or `.pt` / `.pth` from `torch.save(model.state_dict())`)
of the spec's generated PyTorch model, or the other way round. Weights move by Keras layer
name through `transfer.py` (each op's bindings and `model.keras_layers`); this module only
reads, checks and writes files:

- Keras files are read with h5py, without building a Keras model: Keras 3 keeps each layer's
  variables under `layers/<class>/vars/<i>`, in `get_weights()` order, with the layer's name
  as the group's `name` attribute; a layer made of layers keeps its parts' under the part's
  attribute (`layers/lstm/cell/vars/<i>`, `layers/bidirectional/forward_layer/cell/vars/<i>`
  and `backward_layer/...`), after its own arrays in get_weights() order (SUBLAYERS). Keras
  files are written by Keras itself (`save_weights`, `save`) from the spec's generated Keras
  model.
- PyTorch files are loaded without running pickled code (safetensors, or
  `torch.load(weights_only=True)`) and written from the generated model's `state_dict()`.
- The file must be the spec's model, exactly: a missing, extra or mis-shaped weight is an
  error naming the layer (or state-dict key) and both shapes, before anything is written.
- A weights file is untrusted input. Nothing outside it is read (HDF5 external storage,
  external and soft links, virtual datasets are refused), sizes come before data (a file or
  archive member larger than the model's weights could take, and every declared shape, are
  checked before the data is read), and a weight that is not an array of real numbers (a
  complex, string, compound or variable-length dataset; a sparse, meta, quantized or nested
  tensor) is an error naming it, never a cast.
- The output is written to a temp file next to it and renamed over it: an error or Ctrl-C
  leaves the old file (or none) in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import Diagnostic, Location, SpecError, short_repr
from archc.compiler.ir import Graph

# Codes: E150 unreadable file, E151 a weight of another shape, E152 weights missing from the
# file, E153 weights the model lacks, E154 a file of another model, E155 cannot write, E156 a
# weight archc does not read (stored or linked outside the file, not an array of real
# numbers), E157 a file or archive member larger than the model's weights could take.
MAX_LISTED = 10  # weights named in one message; the rest are counted
# The most bytes a weights file of a model may take, read before any data: float64 weights
# and up to seven more copies (an optimizer's slots in a .keras file), headers for every layer
# and array (an HDF5 group's are a few KB), and a MiB for the rest.
BYTES_PER_WEIGHT = 64
BYTES_PER_ARRAY = 16 * 1024
BYTES_PER_FILE = 1 << 20
# HDF5 filters that never make data larger: byte shuffling and checksums. Compression is
# refused (Keras writes none): a small chunk could inflate without bound.
SAFE_FILTERS = {2: "shuffle", 3: "fletcher32"}  # h5z.FILTER_SHUFFLE, FILTER_FLETCHER32
# A Keras layer made of layers keeps each part's arrays in its own group, under the attribute
# that holds the part (a recurrent layer's `cell`, a Bidirectional's `forward_layer` and
# `backward_layer`: `layers/bidirectional/forward_layer/cell/vars/<i>`; MultiHeadAttention's
# four projections). get_weights() gives the layer's own arrays, then its parts' in this order
# (HDF5 lists the groups by name). Parts without arrays (a dropout, a softmax) are passed over.
SUBLAYERS = {
    "cell": 0,
    "forward_layer": 0,
    "backward_layer": 1,
    "query_dense": 0,
    "key_dense": 1,
    "value_dense": 2,
    "output_dense": 3,
    # GroupQueryAttention's projections (and the rotary subclass's) are saved by attribute
    "_query_dense": 0,
    "_key_dense": 1,
    "_value_dense": 2,
    "_output_dense": 3,
}
# What zipfile raises for a broken, encrypted or unsupported archive or member.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    ValueError,
)


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
    limits = size_limits(graph)
    if src_fmt.framework == "keras":
        from archc.backends.torch import backend as torch_backend

        from .transfer import keras_to_torch

        layers = read_keras(
            src, src_fmt, limits, described, lambda found: check_keras(found, graph, src, described)
        )
        torch_model = torch_backend.build(compiled)
        arrays = keras_to_torch(_ArrayModel(layers), torch_model, graph)
        write_torch(torch_model, dst, dst_fmt)
    else:
        from archc.backends.keras import backend as keras_backend
        from archc.backends.torch import backend as torch_backend

        from .transfer import torch_to_keras

        torch_model = torch_backend.build(compiled)
        state = read_torch(
            src,
            src_fmt,
            limits,
            described,
            lambda found: check_torch(found, torch_model, graph, src, described),
        )
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


def _check_regular(path: Path, fmt: Format) -> int:
    """Only a regular file is read (a FIFO would wait for a writer forever); its size."""
    try:
        info = path.stat()
    except OSError as exc:
        raise _unreadable(path, fmt, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise _unreadable(path, fmt, "not a regular file")
    return info.st_size


@dataclass(frozen=True)
class Limits:
    """The most bytes parts of a weights file of a model may take, checked where the part
    would be read (or inflated) whole, before it is: `data` for weights and their headers,
    `headers` for a part without weights (a pickle, a JSON header)."""

    data: int
    headers: int


def size_limits(graph: Graph) -> Limits:
    weights = [w for node in graph.nodes for w in node.weights]
    headers = BYTES_PER_ARRAY * (len(graph.nodes) + len(weights)) + BYTES_PER_FILE
    return Limits(BYTES_PER_WEIGHT * sum(w.size for w in weights) + headers, headers)


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _too_large(path: Path, what: str, size: int, limit: int, described: str) -> SpecError:
    return SpecError(
        [
            Diagnostic(
                "E157",
                f"{what} is {_bytes(size)}, more than the weights of {described} can take "
                f"({_bytes(limit)} at most); nothing was read",
                WholeFile(str(path), 1, 1),
                hint="it is not a weights file of this model: convert it with the spec, --set "
                "values and --variant of the model it was saved from",
            )
        ]
    )


KERAS_HINT = (
    "archc reads only arrays of real numbers stored in the file itself, as Keras writes them: "
    "save the weights again with Keras (model.save_weights(PATH) or model.save(PATH))"
)
TORCH_HINT = (
    "archc reads only dense CPU tensors of real numbers (floating point or integer) and casts "
    "nothing else: convert the tensor to one (e.g. .to_dense(), .dequantize()) and save the "
    "state dict again, torch.save(model.state_dict(), PATH)"
)


def _not_read(path: Path, what: str, problem: str, hint: str) -> SpecError:
    """E156: a weight archc does not read, named with what is wrong with it."""
    return SpecError(
        [Diagnostic("E156", f"{what}: {problem}", WholeFile(str(path), 1, 1), hint=hint)]
    )


def _quoted(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return short_repr(str(text), 200)


def read_keras(
    path: Path,
    fmt: Format,
    limits: Limits,
    described: str,
    check: Callable[[Mapping[str, list[Any]]], None],
) -> dict[str, list[Any]]:
    """Keras layer name -> its arrays, in get_weights() order (layers without weights are
    left out). Optimizer state and metrics in a .keras file are not model weights. `check`
    gets the file's datasets (their shapes) before any data is read."""
    import numpy as np

    _check_regular(path, fmt)
    try:
        import h5py
    except ImportError:
        raise _unreadable(
            path, fmt, "h5py is not installed", hint="install Keras (archc's keras extra)"
        ) from None
    where = "its model.weights.h5: " if fmt.suffix == ".keras" else ""
    with contextlib.ExitStack() as stack:
        try:
            if fmt.suffix == ".keras":
                source: Any = _keras_member(path, fmt, limits.data, described, stack)
            else:
                source = path
            f = stack.enter_context(h5py.File(source, "r"))
        except (OSError, ValueError) as exc:
            raise _unreadable(path, fmt, where + _reason(exc)) from None
        try:
            found = _keras_datasets(f, path, fmt)
            check(found)  # every shape, before any data
            return {layer: [np.asarray(d[()]) for d in found[layer]] for layer in found}
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise _unreadable(path, fmt, where + _reason(exc)) from None


def _keras_member(
    path: Path, fmt: Format, limit: int, described: str, stack: contextlib.ExitStack
) -> Any:
    """A .keras file's model.weights.h5 as a file for h5py: a stored member (as Keras writes
    it) is read in place, as needed; a compressed one is inflated into memory only when its
    declared size is the model's (and never more than that, whatever the header says)."""
    member = "model.weights.h5"
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                found = ", ".join(sorted(archive.namelist())[:5]) or "nothing"
                raise _unreadable(
                    path,
                    fmt,
                    f"it holds no {member} (it holds {found})",
                    hint="save the model with model.save(PATH) (weights unsharded)",
                ) from None
            if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
                return _StoredMember.open(path, info, stack)
            if info.file_size > limit:
                raise _too_large(path, f"its {member} (unpacked)", info.file_size, limit, described)
            with archive.open(info) as stream:
                data = stream.read(limit + 1)  # zipfile stops at the declared size anyway
    except ZIP_ERRORS as exc:
        raise _unreadable(path, fmt, f"its {member}: {_reason(exc)}") from None
    if len(data) > limit:
        raise _too_large(path, f"its {member} (unpacked)", len(data), limit, described)
    return io.BytesIO(data)


class _StoredMember(io.RawIOBase):
    """A stored (uncompressed) zip member, read in place from its archive."""

    def __init__(self, fd: int, start: int, size: int):
        super().__init__()
        self.fd, self.start, self.size, self.pos = fd, start, size, 0

    @classmethod
    def open(cls, path: Path, info: zipfile.ZipInfo, stack: contextlib.ExitStack) -> _StoredMember:
        raw = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (closed by the stack)
        fd = raw.fileno()
        header = os.pread(fd, 30, info.header_offset)  # the member's local header
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local header for {info.filename}")
        name, extra = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name + extra
        if info.compress_size != info.file_size:
            raise zipfile.BadZipFile(f"{info.filename} is stored, yet declares two sizes")
        if start + info.file_size > os.fstat(fd).st_size:
            raise zipfile.BadZipFile(f"{info.filename} runs past the end of the archive")
        return stack.enter_context(cls(fd, start, info.file_size))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.size - self.pos))
        data = os.pread(self.fd, n, self.start + self.pos) if n else b""
        memoryview(buffer).cast("B")[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _keras_datasets(f: Any, path: Path, fmt: Format) -> dict[str, list[Any]]:
    """Keras layer name -> its datasets (opened, not read), from the file's `layers/.../vars`
    groups: a layer's own (`layers/<class>/vars`, named by its `name` attribute), then its
    parts' (`layers/<class>/<part>/.../vars`, SUBLAYERS' order). Only hard links are followed,
    each group once: a soft or external link, or a second link to a group, is an error; so is
    a dataset that is not an array of real numbers stored in the file (_dataset_problem)."""
    import h5py

    # layer group ('layers/lstm', or '' for the model's own `vars`) -> its name and its
    # vars groups with datasets: (the part, '' or 'forward_layer/cell'; path; group; arrays)
    owners: dict[str, tuple[str | None, list[tuple[str, str, Any, int]]]] = {}
    seen = {h5py.h5o.get_info(f.id).addr: "/"}
    stack: list[tuple[str, Any, str | None]] = [("", f, None)]
    while stack:
        name, group, layer = stack.pop()
        parts = name.split("/")
        if len(parts) == 2 and parts[0] == "layers":  # a layer's group: its name, if any
            layer = _layer_name(group)
        # a layer's variables (or a part's); not an optimizer's or a metric's
        is_vars = parts[-1] == "vars" and (parts == ["vars"] or parts[0] == "layers")
        if parts == ["vars"]:
            layer = _name_attribute(group)
        groups: list[tuple[str, Any, str | None]] = []
        for key in group:  # link names: nothing is followed yet
            child = f"{name}/{key}" if name else key
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                if isinstance(link, h5py.SoftLink):
                    problem = f"a soft link (to {_quoted(link.path)}), which Keras never writes"
                elif isinstance(link, h5py.ExternalLink):
                    problem = (
                        f"a link into another file ({_quoted(link.filename)}, "
                        f"{_quoted(link.path)}): archc reads nothing outside the given file"
                    )
                else:
                    problem = "a user-defined link, which Keras never writes"
                raise _not_read(path, _label(layer, child), problem, KERAS_HINT)
            obj = group[key]
            if isinstance(obj, h5py.Group):
                address = h5py.h5o.get_info(obj.id).addr
                if address in seen:
                    raise _not_read(
                        path,
                        _label(layer, child),
                        f"a second link to the group {_quoted(seen[address])} (a loop, or a "
                        "group linked twice), which Keras never writes",
                        KERAS_HINT,
                    )
                seen[address] = "/" + child
                groups.append((child, obj, layer))
        stack.extend(reversed(groups))
        if not is_vars:
            continue
        keys = [k for k in group if isinstance(group[k], h5py.Dataset)]
        if not keys:
            continue
        if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
            raise _unreadable(path, fmt, f"{name} holds {sorted(keys)}, not 0, 1, ...")
        owner = "/".join(parts[:2]) if parts[0] == "layers" else ""
        part = "/".join(parts[2:-1])
        owners.setdefault(owner, (layer, []))[1].append((part, name, group, len(keys)))
    layers: dict[str, list[Any]] = {}
    unnamed: list[str] = []
    for layer, found in owners.values():
        if layer is None:
            unnamed.append(found[0][1])
            continue
        if layer in layers:
            raise _unreadable(path, fmt, f"two layers are named {short_repr(layer)}")
        for part, name, _, _ in found:
            unknown = [p for p in part.split("/") if part and p not in SUBLAYERS]
            if unknown:
                raise _unreadable(
                    path,
                    fmt,
                    f"layer {_quoted(layer)} keeps arrays in {name}, a part "
                    f"({_quoted(unknown[0])}) of no Keras layer archc writes",
                    hint="it is not a weights file of this model: convert it with the spec it "
                    "was saved from",
                )
        found.sort(key=lambda entry: [SUBLAYERS[p] for p in entry[0].split("/") if p])
        named = [(f"{name}/{i}", g[str(i)]) for _, name, g, n in found for i in range(n)]
        for i, (where, dataset) in enumerate(named):
            problem = _dataset_problem(dataset)
            if problem:
                raise _not_read(path, _label(layer, where, f" [{i}]"), problem, KERAS_HINT)
        layers[layer] = [dataset for _, dataset in named]
    if unnamed:
        raise _unreadable(
            path,
            fmt,
            f"it does not record its layers' names ({len(unnamed)} layers, e.g. {unnamed[0]})",
            hint="it was saved by an older Keras: load it into the spec's Keras model "
            "(build_model().load_weights(PATH)) and save it again with this Keras",
        )
    return layers


def _layer_name(group: Any) -> str | None:
    """A layer's name: its `vars` group's `name` attribute (a hard link to a group only)."""
    import h5py

    if "vars" not in group or not isinstance(group.get("vars", getlink=True), h5py.HardLink):
        return None
    own = group["vars"]
    return _name_attribute(own) if isinstance(own, h5py.Group) else None


def _label(layer: str | None, path_in_file: str, index: str = "") -> str:
    """What a message calls an HDF5 object: "layer 'fc10' [0] (layers/dense/vars/0)"."""
    if layer is None:
        return path_in_file
    return f"layer {_quoted(layer)}{index} ({path_in_file})"


def _name_attribute(group: Any) -> str | None:
    """A group's `name` attribute, when it is one string (read only then)."""
    import h5py

    if "name" not in group.attrs:
        return None
    attribute = group.attrs.get_id("name")
    if attribute.shape not in ((), (1,)) or h5py.check_string_dtype(attribute.dtype) is None:
        return None
    value = group.attrs["name"]
    if attribute.shape == (1,):
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _dataset_problem(dataset: Any) -> str:
    """Why a dataset is not read ('' when it is an array of real numbers stored in the file,
    uncompressed), from its metadata alone."""
    import h5py

    if dataset.is_virtual:
        return (
            "a virtual dataset, whose data lies in other datasets or files: archc reads "
            "nothing outside the given file"
        )
    if dataset.external:
        files = ", ".join(_quoted(entry[0]) for entry in dataset.external[:3])
        return (
            f"its data is stored in another file ({files}, HDF5 external storage): archc "
            "reads nothing outside the given file"
        )
    if dataset.shape is None:
        return "an empty dataspace, no array"
    dtype = dataset.dtype
    what = ""
    if h5py.check_string_dtype(dtype) is not None:
        what = "strings"
    elif h5py.check_vlen_dtype(dtype) is not None:
        what = "variable-length sequences"
    elif dtype.names:
        what = "compound records (fields " + ", ".join(map(_quoted, dtype.names[:5])) + ")"
    elif dtype.subdtype is not None:
        what = f"arrays of shape {_shape(dtype.subdtype[1])} in each element"
    elif dtype.kind == "c":
        what = f"complex numbers ({dtype}; converting them would drop the imaginary parts)"
    elif dtype.kind == "b":
        what = "booleans (bool)"
    elif dtype.kind not in "fiu":
        what = f"values of type {_quoted(dtype)}"
    if what:
        return f"it holds {what}, not real numbers"
    plist = dataset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if code not in SAFE_FILTERS:
            return (
                f"it is compressed ({_quoted(name)}), which Keras never does: archc does not "
                "inflate HDF5 data (a small chunk can inflate without bound)"
            )
    if dataset.chunks:
        chunk = math.prod(dataset.chunks) * dtype.itemsize
        if chunk > max(math.prod(dataset.shape) * dtype.itemsize, BYTES_PER_FILE):
            return f"its chunks take {_bytes(chunk)} each, more than the array"
    return ""


@dataclass(frozen=True)
class _Declared:
    """A tensor as a file's header declares it, not read yet."""

    shape: tuple[int, ...]
    dtype: str


def read_torch(
    path: Path,
    fmt: Format,
    limits: Limits,
    described: str,
    check: Callable[[Mapping[str, Any]], None],
) -> dict[str, Any]:
    """A state dict, read without running pickled code. `check` gets the file's tensors
    before their data is read (safetensors: the header; .pt: memory-mapped records)."""
    import torch

    size = _check_regular(path, fmt)
    if fmt.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError, safe_open
        except ImportError:
            raise _unreadable(
                path,
                fmt,
                "safetensors is not installed",
                hint="install it (archc's torch extra), or convert a .pt state dict",
            ) from None
        with open(path, "rb") as raw:
            header = int.from_bytes(raw.read(8), "little")
        if limits.headers < header <= size - 8:  # one longer than the file: safetensors says
            raise _too_large(path, "its header", header, limits.headers, described)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as opened:
                declared: dict[str, Any] = {}
                for key in opened.keys():  # noqa: SIM118 (a safe_open handle, no __iter__)
                    piece = opened.get_slice(key)
                    dtype = str(piece.get_dtype())
                    problem = _safetensors_problem(dtype)
                    if problem:
                        raise _not_read(path, _quoted(key), problem, TORCH_HINT)
                    declared[key] = _Declared(tuple(piece.get_shape()), dtype)
                check(declared)
                loaded: Any = {key: opened.get_tensor(key) for key in declared}
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
            raise _unreadable(path, fmt, _reason(exc)) from None
    else:
        import pickle

        if zipfile.is_zipfile(path):
            mmap = _check_records(path, limits, described)
        elif size > limits.data:  # the legacy format: read whole
            raise _too_large(path, "the file", size, limits.data, described)
        else:
            mmap = False
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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
    for key, value in loaded.items():
        problem = _tensor_problem(value)
        if problem:
            raise _not_read(path, _quoted(key), problem, TORCH_HINT)
    if fmt.suffix != ".safetensors":
        check(loaded)  # shapes; a memory-mapped record is read only when copied
    return dict(loaded)


def _check_records(path: Path, limits: Limits, described: str) -> bool:
    """Whether a zip .pt file is memory-mapped: when its records are stored (as torch.save
    writes them), torch.load maps them and reads only the pickle; otherwise it inflates and
    reads them all. What is read must fit the model (sizes as declared, before reading)."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except ZIP_ERRORS:
        return False  # torch.load says what is wrong
    mapped = all(info.compress_type == zipfile.ZIP_STORED for info in records)
    for info in records:
        storage = "/data/" in info.filename  # 'archive/data/0'; not data.pkl, version, ...
        limit = limits.data if storage else limits.headers
        if info.file_size > limit and not (storage and mapped):
            what = f"its record {_quoted(info.filename)} (unpacked)"
            raise _too_large(path, what, info.file_size, limit, described)
    total = sum(info.file_size for info in records)
    if not mapped and total > limits.data:
        raise _too_large(path, "its records (unpacked)", total, limits.data, described)
    return mapped


def _safetensors_problem(dtype: str) -> str:
    """Why a safetensors dtype ('F32', 'BF16', 'C64', 'BOOL', ...) is not read ('' if it is)."""
    if dtype.startswith(("F", "BF", "I", "U")):
        return ""
    if dtype.startswith("C"):
        what = f"complex numbers ({dtype}; converting them would drop the imaginary parts)"
    elif dtype == "BOOL":
        what = "booleans (BOOL)"
    else:
        what = f"values of type {_quoted(dtype)}"
    return f"it holds {what}, not real numbers"


def _tensor_problem(tensor: Any) -> str:
    """Why a loaded tensor is not read ('' when it is a dense CPU tensor of real numbers)."""
    import torch

    if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        return f"a {_quoted(type(tensor).__name__)}, a tensor subclass"
    if tensor.is_nested:
        return "a nested tensor (a list of tensors), not one array"
    if tensor.layout != torch.strided:
        return f"a sparse tensor ({str(tensor.layout).removeprefix('torch.')}), not a dense one"
    if tensor.is_quantized:
        return f"a quantized tensor ({str(tensor.dtype).removeprefix('torch.')})"
    if tensor.device.type != "cpu":
        return f"a tensor without data (on the {tensor.device.type} device)"
    dtype = tensor.dtype
    name = str(dtype).removeprefix("torch.")
    if dtype.is_complex:
        what = f"complex numbers ({name}; converting them would drop the imaginary parts)"
    elif dtype == torch.bool:
        what = "booleans (bool)"
    elif dtype.is_floating_point or name in _INTEGERS:
        return ""
    else:
        what = f"values of type {_quoted(name)}"
    return f"it holds {what}, not real numbers"


_INTEGERS = frozenset(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"))


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
    from archc.backends.torch.ops import TORCH_OPS

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
    """A temp file next to path (with the format's suffix: Keras insists on its suffixes) for
    the body to write, renamed over path when it is done (codegen.atomic_file)."""
    from archc.backends.codegen import atomic_file

    with atomic_file(path, fmt.suffix, _cannot_write) as tmp:
        yield tmp
