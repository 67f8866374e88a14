"""Shared machinery for generated source: one Jinja2 environment, literals, calls, files."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from compiler import __version__
from compiler.api import Compiled

from .pysrc import literal

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update({"literal": literal})
    return env


def header_context(
    compiled: Compiled, out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """What every generated file records: its spec (as a path relative to the file's own
    folder, so the text never depends on where archc ran), the spec's sha256, the archc
    version, the variant and overrides it was built with, and its counts."""
    graph = compiled.graph
    spec = Path(compiled.loaded.file)
    spec_path = spec.name
    if out_dir is not None:
        spec_path = Path(os.path.relpath(spec.resolve(), Path(out_dir).resolve())).as_posix()
    spec_header: dict[str, Any] = {
        "path": spec_path,
        "sha256": compiled.loaded.doc.sha256,
        "archc": __version__,
    }
    if compiled.variant is not None:
        spec_header["variant"] = compiled.variant
    if compiled.overrides:  # the checked values, whether given as text or from Python
        spec_header["overrides"] = {k: compiled.params[k] for k in sorted(compiled.overrides)}
    return {
        "spec_source": dict_source("SPEC", spec_header),
        "counts": graph.counts.as_dict(),
        "input_shape": graph.node(graph.inputs[0]).shape,
    }


def dict_source(var: str, items: dict[str, Any]) -> str:
    """`var = {...}`, one key a line (the trailing comma keeps ruff from joining them)."""
    body = "".join(f"    {literal(k)}: {literal(v)},\n" for k, v in items.items())
    return f"{var} = {{\n{body}}}"


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temp file in the same folder, fsync, and a rename; the file
    gets the usual permissions (mkstemp's are owner-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_counter = itertools.count()


def import_source(text: str, name: str) -> ModuleType:
    """Import generated source from a private temp file (never the destination)."""
    with tempfile.TemporaryDirectory(prefix="archc-") as tmp:
        path = Path(tmp) / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        mod_name = f"_archc_generated_{name}_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.pop(mod_name, None)
    return module


def helper_source(name: str) -> str:
    """The source of a helper that generated modules carry (py_helpers, torch_helpers)."""
    from . import py_helpers

    if hasattr(py_helpers, name):
        return inspect.getsource(getattr(py_helpers, name)).rstrip() + "\n"
    from . import torch_helpers

    return inspect.getsource(getattr(torch_helpers, name)).rstrip() + "\n"
