"""spec -> generated source file, verified before it replaces anything on disk."""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from archc.backends.proof import conform
from archc.compiler.api import Compiled, check_expect, compile_spec
from archc.compiler.diagnostics import Diagnostic, Location, SpecError
from archc.compiler.ir import Counts, Graph

from . import memory, sizes
from .codegen import (
    import_source,
    read_spec_header,
    remove_stale_temps,
    spec_header,
    write_atomic,
)


class Counting(Protocol):
    """How a backend counts a model's parameters (a backend module is one)."""

    def counts(self, model: Any) -> Counts: ...

    def layer_counts(self, model: Any) -> dict[str, Counts]: ...


class Backend(Counting, Protocol):
    """A backend: renders a compiled spec as source, builds its live model, and measures it."""

    @property
    def name(self) -> str: ...

    def render(self, compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str:
        """The generated module's source (out_dir: where it goes, for the header's path)."""
        ...

    def build(self, compiled: Compiled) -> Any:
        """The live model (the generated module, imported and built)."""
        ...

    def output_shapes(self, model: Any, graph: Graph) -> list[tuple[int, ...]]:
        """The channels-last shapes (batch excluded) of the model's outputs, run once."""
        ...

    def build_abstract(self, module: Any) -> Any | None:
        """The generated module's model built without allocating its weights (shapes only),
        for models larger than memory; None where the framework cannot."""
        ...


class BackendModule(Counting, Protocol):
    """What a backend module (backends/<name>_backend.py) defines."""

    def render(self, compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str: ...

    def build(self, compiled: Compiled) -> Any: ...

    def output_shapes(self, model: Any, graph: Graph) -> list[tuple[int, ...]]: ...

    def build_abstract(self, module: Any) -> Any | None: ...


@dataclass(frozen=True)
class ModuleBackend:
    """A backend module as a Backend."""

    name: str
    module: BackendModule

    def render(self, compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str:
        return self.module.render(compiled, out_dir)

    def build(self, compiled: Compiled) -> Any:
        return self.module.build(compiled)

    def counts(self, model: Any) -> Counts:
        return self.module.counts(model)

    def layer_counts(self, model: Any) -> dict[str, Counts]:
        return self.module.layer_counts(model)

    def output_shapes(self, model: Any, graph: Graph) -> list[tuple[int, ...]]:
        return self.module.output_shapes(model, graph)

    def build_abstract(self, module: Any) -> Any | None:
        return self.module.build_abstract(module)


def _keras() -> Backend:
    from archc.backends.keras import backend as keras_backend

    return ModuleBackend("keras", keras_backend)


def _torch() -> Backend:
    from archc.backends.torch import backend as torch_backend

    return ModuleBackend("torch", torch_backend)


# Name -> loader. A backend (and its framework) is imported the first time it is asked for,
# never by `archc check`.
REGISTRY: dict[str, Callable[[], Backend]] = {"keras": _keras, "torch": _torch}
_loaded: dict[str, Backend] = {}


def register(name: str, loader: Callable[[], Backend]) -> None:
    """Make a backend available by name; loader runs on first use."""
    REGISTRY[name] = loader
    _loaded.pop(name, None)


def check_generation(compiled: Compiled) -> None:
    """Walk the spec as every backend's renderer does (no framework is imported): a spec a
    backend cannot generate is refused here with its located error (E120), so `archc check`
    never passes a spec that `archc compile` then refuses. Only the refusals are wanted: the
    renderers stop before their templates (`refusals_only`), and nothing is laid out."""
    from .writer import refusals_only, unformatted

    with unformatted(), refusals_only():
        for name in REGISTRY:
            backend(name).render(compiled)


class VerificationError(SpecError):
    """A generated model does not match the IR (exit 1, like a spec error)."""


def backend(name: str) -> Backend:
    """The backend called name, loaded on first use."""
    if name not in REGISTRY:
        raise SpecError(
            [
                Diagnostic(
                    "E090",
                    f"unknown backend '{name}'",
                    hint=f"backends: {', '.join(sorted(REGISTRY))}",
                )
            ]
        )
    if name not in _loaded:
        _loaded[name] = REGISTRY[name]()
    return _loaded[name]


def output_path(
    spec: str | Path, backend_name: str, out_dir: str | Path, variant: str | None = None
) -> Path:
    """DIR/<spec stem>[_<variant>]_<backend>.py, as an importable ASCII module name."""
    stem = Path(spec).stem + (f"_{variant}" if variant else "")
    stem = re.sub(r"[^0-9A-Za-z_]", "_", stem)
    if not stem[:1].isalpha():
        stem = "m_" + stem
    return Path(out_dir) / f"{stem}_{backend_name}.py"


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def read_existing(path: Path) -> str | None:
    """The text of the file at the output path (None when there is none). Only a regular file
    is read: reading a FIFO would wait for a writer forever, so anything else is an error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without a writer
    except (FileNotFoundError, NotADirectoryError):  # writing it will say what is wrong
        return None
    except OSError as exc:
        if exc.errno == errno.EISDIR:  # where folders cannot be opened
            _not_regular(path, stat.S_IFDIR)
        raise SpecError([Diagnostic("E092", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            _not_regular(path, stat.S_IFMT(mode))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read()
    except OSError as exc:
        raise SpecError([Diagnostic("E092", f"cannot read {path}: {exc.strerror}")]) from None
    finally:
        if fd >= 0:
            os.close(fd)
    return data.decode("utf-8", errors="replace")


def _not_regular(path: Path, kind: int) -> None:
    raise SpecError(
        [
            Diagnostic(
                "E096",
                f"{path} is {_KINDS.get(kind, 'not a file')}, not a regular file",
                Location(str(path), 1, 1),
                hint="compile writes <spec stem>_<backend>.py there; remove what is in the "
                "way, or write elsewhere with -o DIR",
            )
        ]
    )


def check_same_spec(
    path: Path, old: str, new: dict[str, Any], spec: str | Path, variant: str | None
) -> None:
    """A generated file may be replaced by one from the same spec and variant only: two spec
    names can map to one module name (a-b.yaml and a_b.yaml; x.yaml --variant a and x_a.yaml),
    and a file archc did not write is not archc's to replace."""
    recorded = read_spec_header(old)
    hint = (
        "two specs (or a spec and a variant) give this file name: write this one elsewhere "
        f"with -o DIR, or delete {path} if it is no longer needed"
    )
    if recorded is None:
        message = f"{path} exists and was not written by archc (it has no SPEC header)"
        hint = f"write elsewhere with -o DIR, or move {path} away"
        raise SpecError([Diagnostic("E097", message, Location(str(path), 1, 1), hint=hint)])
    theirs = recorded.values
    if theirs.get("path") == new["path"] and theirs.get("variant") == new.get("variant"):
        return
    message = (
        f"{path} was generated from {_described(theirs.get('path'), theirs.get('variant'))}, "
        f"not from {_described(str(spec), variant)}"
    )
    where = Location(str(path), recorded.path_line, recorded.path_col)
    raise SpecError([Diagnostic("E097", message, where, hint=hint)])


def _described(path: object, variant: object) -> str:
    where = f"'{path}'" if isinstance(path, str) else "an unknown spec"
    return where + (f" (variant '{variant}')" if variant is not None else "")


@dataclass(frozen=True)
class Result:
    path: Path
    compiled: Compiled
    source: str
    changed: bool
    counts: Counts | None  # the generated model's own counts, when verified
    abstract: memory.Shortfall | None = None  # verified without values: it does not fit


def too_big(compiled: Compiled, short: memory.Shortfall, what: str, instead: str) -> SpecError:
    """The located error for a model that cannot be built here (at its largest layer)."""
    node = compiled.graph.node(short.largest)
    return SpecError(
        [
            Diagnostic(
                "E098",
                f"the model is too large to {what} on this machine: it {short.describe()} "
                f"(largest layer '{node.name}': {node.counts.total:,} parameters)",
                node.origin.location,
                hint=instead,
            )
        ]
    )


def build_within_memory(
    compiled: Compiled, module: Any, mod: Backend, backend_name: str, graph: Graph | None = None
) -> tuple[Any, memory.Shortfall | None]:
    """The generated module's model, built for real when it fits, else abstractly; `graph`
    is the one it will run (the spec at a size, where the input's sizes are unknown)."""
    short = memory.shortfall(graph or compiled.graph)
    if short is None:
        return module.build_model(), None
    model = mod.build_abstract(module)
    if model is None:
        raise too_big(
            compiled,
            short,
            f"build with {backend_name}",
            "`archc check` counts it without building; `archc compile --no-verify` writes "
            "the file unbuilt; `--backend torch` verifies it on PyTorch's meta device",
        )
    return model, short


def verify_model(
    compiled: Compiled, model: Any, mod: Counting, what: str, backend_name: str
) -> Counts:
    """A built model must be the IR's network: its counts equal the IR's (and the spec's
    expect:), and each of its layers its IR node (`conform`: same op, attributes, names,
    nothing extra)."""
    got = mod.counts(model)
    want = compiled.graph.counts
    if got != want:
        per_layer = mod.layer_counts(model)
        rows = []
        for node in compiled.graph.nodes:
            theirs = per_layer.get(node.name)
            if theirs != node.counts:
                rows.append(
                    f"    {node.name}: IR {node.counts.as_dict()} vs {what} "
                    f"{theirs.as_dict() if theirs else 'missing'}"
                )
        raise VerificationError(
            [
                Diagnostic(
                    "E091",
                    f"{what} has {got.as_dict()} parameters but the IR has {want.as_dict()}",
                    detail="  per-layer differences:\n"
                    + "\n".join(rows or ["    (none by layer)"]),
                    hint="this is a bug in the backend if the spec is valid; please report it",
                )
            ]
        )
    try:
        conform.check(backend_name, compiled, model)
    except conform.ConformanceError as exc:
        raise VerificationError(exc.diagnostics) from None
    check_expect(compiled, got, what)
    return got


def live_model(
    backend_name: str,
    spec: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
) -> Any:
    """A live model of one backend from a spec, its counts verified against the IR."""
    mod = backend(backend_name)
    compiled = compile_spec(str(spec), overrides, variant=variant)
    model = mod.build(compiled)
    verify_model(compiled, model, mod, f"the {backend_name} model", backend_name)
    return model


def compile_to_file(
    spec: str | Path,
    backend_name: str,
    out_dir: str | Path = "generated",
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
    verify: bool = True,
    check: bool = False,
) -> Result:
    """Compile, render, verify (import + build + count), then atomically write the file.

    With check=True nothing is written: a file that differs raises VerificationError.
    """
    mod = backend(backend_name)
    compiled = compile_spec(spec, overrides, variant=variant, from_text=from_text)
    source = mod.render(compiled, out_dir)
    path = output_path(spec, backend_name, out_dir, variant)
    old = read_existing(path)
    if check:
        if old is not None and old != source:
            check_same_spec(path, old, spec_header(compiled, out_dir), spec, variant)
        if old != source:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        (old or "").splitlines(keepends=True),
                        source.splitlines(keepends=True),
                        str(path),
                        "regenerated",
                    )
                )[:40]
            )
            raise VerificationError(
                [
                    Diagnostic(
                        "E093",
                        f"{path} is {'missing' if old is None else 'stale'}",
                        hint=f"run: archc compile {spec} --backend {backend_name}"
                        + (f" -o {out_dir}" if str(out_dir) != "generated" else "")
                        + (f" --variant {variant}" if variant else "")
                        + "".join(
                            f" --set {k}={json.dumps(compiled.params[k], separators=(',', ':'))}"
                            for k in sorted(overrides or {})
                        ),
                        detail=diff,
                    )
                ]
            )
        return Result(path, compiled, source, False, None)
    counts = None
    abstract = None
    if verify:
        # unknown input sizes: the model (built for any size) runs at the first size of
        # archc.backends.sizes, and its outputs are compared with the spec's at that size
        (probe,) = sizes.runs(compiled, count=1)
        module = import_source(source, path.stem)
        model, abstract = build_within_memory(compiled, module, mod, backend_name, probe.graph)
        what = f"the generated {backend_name} model"
        counts = verify_model(compiled, model, mod, what, backend_name)
        want = [probe.graph.node(o).shape for o in probe.graph.outputs]
        # PyTorch's read-back (conform) ran the model on the probe's inputs: its outputs'
        # shapes, not a second forward pass
        ran = conform.forward_output_shapes(model, probe.graph)
        got = ran if ran is not None else mod.output_shapes(model, probe.graph)
        if got != want:
            raise VerificationError(
                [
                    Diagnostic(
                        "E094",
                        f"{what} computes outputs of shapes {got}, the IR says {want}",
                        hint="this is a bug in the backend; please report it",
                    )
                ]
            )
    remove_stale_temps(path)
    if old != source:
        if old is not None:  # verified first: a bad model is reported whatever is there
            check_same_spec(path, old, spec_header(compiled, out_dir), spec, variant)
        try:
            write_atomic(path, source)
        except OSError as exc:
            raise SpecError(
                [
                    Diagnostic(
                        "E095",
                        f"cannot write {path}: {exc.strerror}",
                        hint="choose a writable output folder with -o DIR",
                    )
                ]
            ) from None
    return Result(path, compiled, source, old != source, counts, abstract)
