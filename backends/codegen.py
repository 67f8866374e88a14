"""Shared machinery for generated source: one Jinja2 environment, literals, calls, files."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from compiler import __version__
from compiler.api import Compiled

LINE_LENGTH = 100
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Code:
    """A value that is already Python source (e.g. `regularizers.L2(0.0001)`)."""

    text: str


def literal(value: Any) -> str:
    """Python source for a constant; spec strings only ever reach code through repr()."""
    if isinstance(value, Code):
        return value.text
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return pystr(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"no literal for the non-finite float {value!r}")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        items = ", ".join(literal(v) for v in value)
        if isinstance(value, tuple) and len(value) == 1:
            items += ","
        return f"({items})" if isinstance(value, tuple) else f"[{items}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for {type(value).__name__}")


def pystr(text: str) -> str:
    """repr() with the double quotes `ruff format` prefers (escaping stays repr's)."""
    r = repr(text)
    if r.startswith("'") and '"' not in text:
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


_NOTHING = object()


def call(
    func: str,
    args: Sequence[Any] = (),
    kwargs: Iterable[tuple[str, Any]] = (),
    *,
    indent: int = 4,
    prefix: str = "",
    then: Any = _NOTHING,
) -> str:
    """`prefix + func(args, k=v)` — then called on `then`, if given — laid out as `ruff format`
    lays it out: on one line if it fits; else the trailing call's argument split off; else the
    arguments on one indented line; else one argument a line with a trailing comma, where an
    argument too long for its line (a list, a tuple, a dict) is laid out the same way."""
    parts = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs]
    tail = "" if then is _NOTHING else f"({literal(then)})"
    one = f"{prefix}{func}({', '.join(parts)}){tail}"
    if indent + len(one) <= LINE_LENGTH or (not parts and not tail):
        return one
    pad, end = " " * (indent + 4), " " * indent
    joined = ", ".join(parts)
    head = f"{prefix}{func}({joined})("
    if tail and indent + len(head) <= LINE_LENGTH:  # ruff splits the last call first
        return f"{head}\n{pad}{_layout(then, indent + 4)}\n{end})"
    if len(pad) + len(joined) <= LINE_LENGTH:
        return f"{prefix}{func}(\n{pad}{joined}\n{end}){tail}"
    laid = [_layout(a, indent + 4) for a in args] + [
        f"{k}={_layout(v, indent + 4, head=k + '=')}" for k, v in kwargs
    ]
    body = "".join(f"{pad}{p},\n" for p in laid)
    return f"{prefix}{func}(\n{body}{end}){tail}"


def python_names(names: Iterable[str], reserved: Iterable[str]) -> dict[str, str]:
    """Map node names to local variable names that shadow nothing the module defines."""
    taken = set(reserved)
    out: dict[str, str] = {}
    for name in names:
        var = name
        while var in taken:
            var += "_"
        taken.add(var)
        out[name] = var
    return out


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
    """`var = {...}` with one key a line and a trailing comma (a layout ruff keeps); a value
    too long for its line is laid out the same way, one level deeper."""
    return f"{var} = {_layout(items, 0, force=True)}"


def _layout(value: Any, indent: int, force: bool = False, head: str = "") -> str:
    one = literal(value)
    if not force and (indent + len(head) + len(one) + 1 <= LINE_LENGTH or not value):
        return one
    if not isinstance(value, dict | list | tuple) or not value:
        return one  # a scalar that is too long: nothing shorter exists
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [
            f"{pad}{literal(k)}: {_layout(v, indent + 4, head=literal(k) + ': ')},"
            for k, v in value.items()
        ]
        opening, closing = "{", "}"
    else:
        items = [f"{pad}{_layout(v, indent + 4)}," for v in value]
        opening, closing = ("(", ")") if isinstance(value, tuple) else ("[", "]")
    return opening + "\n" + "\n".join(items) + "\n" + " " * indent + closing


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
