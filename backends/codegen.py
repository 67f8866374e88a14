"""Shared machinery for generated files: one Jinja2 environment, headers, helper sources,
atomic writes and importing generated source."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import itertools
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jinja2

from archc.compiler import __version__
from archc.compiler.api import Compiled
from archc.compiler.plugins import PLUGINS, used_by

from .helper_library import KERAS_MODULES, TORCH_MODULES, library, torch_library, torch_modules
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
    """What every generated file records (`spec_header`), and its counts."""
    graph = compiled.graph
    return {
        "spec_source": dict_source("SPEC", spec_header(compiled, out_dir)),
        "counts": graph.counts.as_dict(),
        "input_shape": graph.node(graph.inputs[0]).shape,
        "output_activation": output_activation(compiled),
    }


def input_axes(compiled: Compiled, channels_first: bool) -> str:
    """What INPUT_SHAPE's axes are, said beside it: images channels-last in Keras and
    channels-first in PyTorch; sequences (steps, channels) in both (docs/ARCHITECTURE.md)."""
    node = compiled.graph.node(compiled.graph.inputs[0])
    rank = len(node.shape or ())
    if node.attrs.dtype == "int":
        return "(steps,): token ids" if rank == 1 else ""
    if rank == 2:
        return "(steps, channels)" + (": channels last, not Conv1d's" if channels_first else "")
    image = "(channels, height, width)" if channels_first else "(height, width, channels)"
    return {1: "(features,)", 3: image}.get(rank, "")


def output_activation(compiled: Compiled) -> str | tuple[str, ...]:
    """The activation the output layer applies last ("linear": none), as a generated file's
    OUTPUT_ACTIVATION tells a training loop which loss fits (softmax: probabilities, linear:
    logits): one name, or one per output for a model of several."""
    graph = compiled.graph
    names = []
    for name in graph.outputs:
        node = graph.node(name)
        fn = getattr(node.attrs, "fn" if node.op == "activation" else "activation", None)
        names.append(fn if isinstance(fn, str) else "linear")
    return names[0] if len(names) == 1 else tuple(names)


def spec_header(
    compiled: Compiled, out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The file's SPEC: its spec (`recorded_path`), the spec's sha256, the archc version, the
    variant and overrides it was built with, and the plugins whose ops it uses (distribution:
    version; no key when it uses none)."""
    header: dict[str, Any] = {
        "path": recorded_path(compiled.loaded.file, out_dir),
        "sha256": compiled.loaded.doc.sha256,
        "archc": __version__,
    }
    if compiled.variant is not None:
        header["variant"] = compiled.variant
    if compiled.overrides:  # the checked values, whether given as text or from Python
        header["overrides"] = {k: compiled.params[k] for k in sorted(compiled.overrides)}
    plugins = used_by(spec_ops(compiled)) if PLUGINS else {}
    if plugins:
        header["plugins"] = plugins
    return header


def spec_ops(compiled: Compiled) -> list[str]:
    """Every op the spec's items name (those a `when:` leaves out of this graph too: the
    generated file holds them), and the graph's."""
    from .structure import OpStep, analyse, walk

    s = analyse(compiled)
    steps = walk(s.body) + [step for b in s.blocks.values() for step in walk(b.body)]
    ops = {st.op for st in steps if isinstance(st, OpStep)}
    return sorted(ops | {node.op for node in compiled.graph.nodes})


def recorded_path(spec_file: str, out_dir: str | os.PathLike[str] | None) -> str:
    """A spec file's path relative to the output folder, so that the text never depends on
    where archc ran. A spec read from something else than a regular file (/dev/stdin, a
    pipe) is recorded as given: its resolved path (/proc/<pid>/fd/pipe:[...]) changes from
    one run to the next."""
    spec = Path(spec_file)
    if out_dir is None:
        return spec.name
    try:
        regular = stat.S_ISREG(spec.stat().st_mode)
    except (OSError, ValueError):  # not on disk (a spec given as text): as before
        regular = True
    if not regular:
        return spec.as_posix()
    return Path(os.path.relpath(spec.resolve(), Path(out_dir).resolve())).as_posix()


_SPEC_ASSIGNMENT = re.compile(r"^SPEC = (\{\n.*?^\})$", re.M | re.S)


@dataclass(frozen=True)
class RecordedSpec:
    """A generated file's SPEC header, and the line that records the spec's path."""

    values: dict[str, Any]
    path_line: int  # 1-based
    path_col: int


def read_spec_header(text: str) -> RecordedSpec | None:
    """The SPEC that a generated file records (None when it has none)."""
    found = _SPEC_ASSIGNMENT.search(text)
    if found is None:
        return None
    try:
        values = ast.literal_eval(found[1])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(values, dict):
        return None
    line = text.count("\n", 0, found.start()) + 1
    col = 1
    for k, source_line in enumerate(found[1].split("\n")):
        if source_line.lstrip().startswith('"path"'):
            line += k
            col = len(source_line) - len(source_line.lstrip()) + 1
            break
    return RecordedSpec(values, line, col)


def dict_source(var: str, items: dict[str, Any]) -> str:
    """`var = {...}`, one key a line (the trailing comma keeps ruff from joining them)."""
    body = "".join(f"    {literal(k)}: {literal(v)},\n" for k, v in items.items())
    return f"{var} = {{\n{body}}}"


# Every file write_atomic replaced, in order: an interrupted `archc compile` says whether its
# file was already replaced when the signal came (archc/cli.py reads this).
WRITTEN: list[Path] = []
STALE_AFTER_S = 3600  # a temp file this old is stale whoever wrote it


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temp file in the same folder, fsync, and a rename; the file
    gets the usual permissions (mkstemp's are owner-only). The temp file's name,
    `.<name>.<pid>.<random>.tmp`, names its writer, so that one a killed process left behind
    can be recognised (remove_stale_temps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        WRITTEN.append(path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # renamed: the interruption came after the replace
            if not WRITTEN or WRITTEN[-1] is not path:
                WRITTEN.append(path)
        except OSError:
            pass
        raise


@contextlib.contextmanager
def atomic_file(
    path: Path, suffix: str, cannot_write: Callable[[Path, str], Exception]
) -> Iterator[Path]:
    """write_atomic for a file a library writes: a temp file next to path
    (`.<name>.<pid>.<random>.tmp<suffix>`, which remove_stale_temps recognises; some writers
    insist on their suffix) for the body to write; then fsync, the usual permissions and a
    rename over path, which WRITTEN records. On any error or interruption the temp file is
    removed and path is left as it was; an OSError becomes cannot_write(path, reason)."""
    if path.is_dir():
        raise cannot_write(path, "it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent
        )
    except OSError as exc:
        raise cannot_write(path, _reason(exc)) from None
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
            raise cannot_write(path, _reason(exc)) from None
        WRITTEN.append(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _reason(exc: OSError) -> str:
    """An OSError in a few words: its strerror, or its first line (a library's own)."""
    return exc.strerror or (str(exc).strip().split("\n")[0] or type(exc).__name__)[:300]


_TEMP = re.compile(r"\.(?:(?P<pid>[0-9]+)\.)?[^.]+\.tmp")


def remove_stale_temps(path: Path, now: float | None = None) -> list[Path]:
    """Remove the temp files of write_atomic(path) that no write will finish: their writer
    no longer runs (SIGKILL, a power cut), or they are over an hour old. Returns them."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    now = time.time() if now is None else now
    prefix = f".{path.name}"
    removed = []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        found = _TEMP.fullmatch(entry.name, len(prefix))
        if found is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        pid = found["pid"]
        old = now - info.st_mtime > STALE_AFTER_S
        if old or (pid is not None and not _running(int(pid))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's, or no PID at all
        return pid > 0
    return True


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


HELPER_MODULES = TORCH_MODULES  # archc's own; ops may add theirs (helper_library)
# the Keras layers generated Keras files may define (they share names with PyTorch helpers)
KERAS_HELPER_MODULES = KERAS_MODULES


def helper_source(name: str, modules: tuple[str | Path, ...] | None = None) -> str:
    """The source of a helper that generated modules carry: one of the PyTorch files'
    (`helper_library.torch_library`, ops' own helper modules included) or of `modules`
    (`KERAS_HELPER_MODULES`: the Keras layers), read from the file without importing it:
    rendering source needs no framework."""
    found = (torch_library() if modules is None else library(tuple(modules))).helpers.get(name)
    if found is None:
        raise KeyError(f"no helper '{name}' in {', '.join(map(str, modules or torch_modules()))}")
    return found.source
