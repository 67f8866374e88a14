"""ONNX export of the generated PyTorch model (`archc export SPEC --onnx FILE`), proven by
running the file.

The model is the generated module, imported and built (its initial values, or a state dict
given with `weights`). `torch.export` traces it with a dynamic batch, and a dynamic height and
width where the spec leaves them open (null); torch's ONNX exporter (onnxscript) translates
the trace. The file is written to a temp file beside the target, checked by `onnx.checker`,
then run by ONNX Runtime against the PyTorch model on seeded batches of two sizes (so that a
batch fixed at trace time fails), at two input sizes where the spec leaves them open; only
then does it replace the target. What cannot be traced or translated is a located error
naming the Keras layer (the innermost tagged module that was running, or that the failing
graph node came from).

Needs the `onnx` extra (onnx, onnxscript, onnxruntime); compiler/ never imports this.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archc.backends.proof.verify import channels_first, inputs_for
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import Diagnostic, Location, SpecError, short_repr
from archc.compiler.ir import Counts, Graph

from . import memory, sizes
from .compile import too_big

# ONNX Runtime and PyTorch run the same graph in float32 with different kernels: an output
# may differ by atol + RTOL·max|its PyTorch value| (docs/ARCHITECTURE.md, "ONNX export"):
# 1e-5 relative, and an absolute floor of about one float32 step at 1 for outputs near 0.
ATOL = 1e-7
RTOL = 1e-5
TRACE_BATCH = 2  # torch.export specialises a size of 0 or 1: trace at 2, run at others
ONNX_LIMIT = 2**31 - 1  # bytes: protobuf's limit on one serialised message (the whole file)
PACKAGES = ("onnx", "onnxscript", "onnxruntime")


@dataclass
class Run:
    """One ONNX Runtime run against PyTorch."""

    batch: int
    shape: tuple[int, ...]  # the first input's, as PyTorch takes it (NCHW)
    output: str  # the output where the difference is largest
    max_abs_diff: float
    limit: float  # atol + rtol·max|y| (y: that output's PyTorch value)

    def as_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "input_shape": list(self.shape),
            "output": self.output,
            "max_abs_diff": self.max_abs_diff,
            "limit": self.limit,
        }


@dataclass
class Exported:
    """What export_onnx wrote and measured."""

    path: Path
    counts: Counts
    opset: int
    inputs: list[tuple[str, list[int | str], str]]  # name, dims (str: dynamic), element type
    outputs: list[tuple[str, list[int | str], str]]
    atol: float = ATOL
    runs: list[Run] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max((r.max_abs_diff for r in self.runs), default=0.0)

    def worst(self) -> Run:
        """The run closest to its bound."""
        return max(self.runs, key=lambda r: r.max_abs_diff / r.limit if r.limit else 0.0)

    def agreement(self) -> str:
        run = self.worst()
        value = max(0.0, (run.limit - self.atol) / RTOL)
        return (
            f"max|Δ| = {self.max_abs_diff:.3g} (bound {run.limit:.3g} = atol {self.atol:g} + "
            f"rtol {RTOL:g}·max|y| {value:.3g} at '{run.output}', batch {run.batch})"
        )

    def as_json(self) -> dict[str, Any]:
        def io_json(items: list[tuple[str, list[int | str], str]]) -> list[dict[str, Any]]:
            return [{"name": n, "shape": dims, "type": t} for n, dims, t in items]

        return {
            "path": str(self.path),
            "counts": self.counts.as_dict(),
            "opset": self.opset,
            "inputs": io_json(self.inputs),
            "outputs": io_json(self.outputs),
            "max_abs_diff": self.max_abs_diff,
            "atol": self.atol,
            "rtol": RTOL,
            "runs": [r.as_json() for r in self.runs],
        }


def export_onnx(
    spec: str | Compiled,
    target: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
    atol: float = ATOL,
    batch: int = 3,
    seed: int = 0,
    input_sizes: Sequence[tuple[int, int]] = (),
    weights: str | os.PathLike[str] | None = None,
) -> Exported:
    """Export the spec's generated PyTorch model to `target` (ONNX), run the file with ONNX
    Runtime against PyTorch, and replace `target` only when they agree; raise SpecError
    (located diagnostics) otherwise, leaving `target` as it was.

    The model has Keras' initial values (drawn from `seed`), or the state dict in `weights`
    (.safetensors or .pt, as `archc weights` writes; archc.backends.proof.weights.FormatError
    for another kind of file). The check's batches are `batch` and 1 (2 where batch is 1),
    drawn from `seed`; where the input's height and width are unknown, at two sizes
    (`input_sizes`)."""
    if not 0 <= atol < float("inf"):
        raise ValueError(f"atol must be a finite, non-negative number, got {atol!r}")
    _require()
    compiled = (
        spec
        if isinstance(spec, Compiled)
        else compile_spec(spec, overrides, variant=variant, from_text=from_text)
    )
    path = Path(target)
    runs = sizes.runs(compiled, input_sizes)  # [compiled] where every size is known
    biggest = max(batch, TRACE_BATCH)
    short = next((s for r in runs if (s := memory.shortfall(r.graph, biggest, models=2))), None)
    if short is not None:
        raise too_big(
            compiled,
            short,
            "export (the PyTorch model and ONNX Runtime's copy, with values)",
            "export a smaller variant (fewer or narrower layers)",
        )
    _check_file_size(compiled)
    model = _model(compiled, seed, weights)
    program = _translate(_trace(model, runs[0].graph, compiled), model, compiled)
    with _atomic(path) as tmp:
        with _quiet():
            program.save(str(tmp))
        exported = _finish(tmp, path, compiled)
        exported.atol = atol
        session = _session(tmp, model, compiled)
        checks = (batch, 1 if batch != 1 else TRACE_BATCH)  # two batch sizes
        for k, run in enumerate(runs):
            for b in checks:
                exported.runs.append(
                    _check(session, tmp, model, compiled, run.graph, b, seed + k, atol)
                )
    exported.path = path
    return exported


def _model(compiled: Compiled, seed: int, weights: str | os.PathLike[str] | None) -> Any:
    """The generated model in inference mode: initial values drawn from `seed` (the caller's
    random state is left alone), or the weights file's state dict."""
    import torch

    from archc.backends.proof import weights as files

    fmt = None
    if weights is not None:
        fmt = files.file_format(weights)
        if fmt is None or fmt.framework != "torch":
            raise files.FormatError(
                f"--weights {short_repr(str(weights))}: not a PyTorch state dict",
                "give the generated PyTorch model's weights as .safetensors or .pt (archc "
                "weights converts a Keras file: --to NAME.safetensors)",
            )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch_backend.build(compiled)
    if weights is not None and fmt is not None:
        graph = compiled.graph
        path = Path(weights)
        described = files._described(compiled)
        state = files.read_torch(
            path,
            fmt,
            files.size_limits(graph),
            described,
            lambda found: files.check_torch(found, model, graph, path, described),
        )
        model.load_state_dict(state, strict=True)
    return model.eval()


# -- what is needed ---------------------------------------------------------------------------
def _require() -> None:
    missing = []
    for name in PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SpecError(
            [
                Diagnostic(
                    "E190",
                    f"ONNX export needs {', '.join(PACKAGES)}; not installed: {', '.join(missing)}",
                    hint="install archc's onnx extra: pip install -e '.[onnx]' (or "
                    "pip install 'archc[onnx]')",
                )
            ]
        )


def _check_file_size(compiled: Compiled) -> None:
    """One ONNX file holds at most 2 GiB (protobuf): refuse a model whose float32 weights
    alone are more, at its largest layer."""
    graph = compiled.graph
    needed = 4 * graph.counts.total
    if needed <= ONNX_LIMIT:
        return
    node = max(graph.nodes, key=lambda n: n.counts.total)
    raise SpecError(
        [
            Diagnostic(
                "E191",
                f"the model's float32 weights ({needed / 2**30:.1f} GiB, {graph.counts.total:,} "
                f"parameters) exceed the 2 GiB one ONNX file can hold (largest layer "
                f"'{node.name}': {node.counts.total:,} parameters)",
                node.origin.location,
                node.origin.describe(),
                hint="export a smaller variant; archc writes the weights inside the one file",
            )
        ]
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress lines and partial graphs (printed to the standard output and
    error), warnings and log records stay out of archc's output; errors still raise."""
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


# -- tracing and translating ------------------------------------------------------------------
def _examples(graph: Graph, batch: int, seed: int) -> tuple[Any, ...]:
    """A seeded batch for every input as the PyTorch model takes it (NCHW images, int64 ids)."""
    import torch

    xs = []
    for array in inputs_for(graph, batch, seed):
        x = torch.from_numpy(channels_first(array).copy())
        xs.append(x.long() if not x.is_floating_point() else x)
    return tuple(xs)


def _dynamic_shapes(compiled: Compiled) -> tuple[dict[int, Any], ...]:
    """Axis -> torch.export dimension, per input: the batch (one dimension for all inputs),
    and the height and width that the spec leaves open (NCHW axes 2 and 3; their constraints,
    such as a U-Net's divisibility, are the network's: torch.export finds them)."""
    from torch.export import Dim

    batch = Dim("batch")
    out = []
    for name in compiled.graph.inputs:
        shape = compiled.graph.node(name).shape or ()
        axes: dict[int, Any] = {0: batch}
        if len(shape) == 3:  # an image, channels-last in the IR
            for axis, size in zip((2, 3), shape[:2], strict=True):
                if size is None:
                    axes[axis] = Dim.AUTO
        out.append(axes)
    return tuple(out)


def _trace(model: Any, graph: Graph, compiled: Compiled) -> Any:
    """torch.export's program of the model (at a batch of TRACE_BATCH, `graph`'s sizes); a
    located error naming the layer that was running where tracing fails."""
    import torch

    running: list[str] = []
    handles = []
    for name, module_path in model.keras_layers.items():
        module = model.get_submodule(module_path)

        def enter(module: Any, args: Any, name: str = name) -> None:
            running.append(name)

        def leave(module: Any, args: Any, out: Any) -> None:
            running.pop()

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        with _quiet():
            return torch.export.export(
                model,
                _examples(graph, TRACE_BATCH, 0),
                dynamic_shapes=_dynamic_shapes(compiled),
                strict=False,
            )
    except Exception as exc:
        raise _cannot_export(
            compiled, running[-1] if running else None, exc, "torch.export cannot trace"
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _translate(program: Any, model: Any, compiled: Compiled) -> Any:
    """The ONNX program of torch.export's program; a located error naming the layer whose
    graph node has no ONNX translation."""
    import torch

    graph = compiled.graph
    try:
        with _quiet():
            return torch.onnx.export(
                program,
                (),
                dynamo=True,
                verbose=False,
                input_names=list(graph.inputs),
                output_names=list(graph.outputs),
                external_data=False,
            )
    except Exception as exc:
        layer = _layer_of_fx_node(_failing_fx_node(exc), model)
        raise _cannot_export(
            compiled, layer, exc, "torch's ONNX exporter cannot translate"
        ) from None


def _failing_fx_node(exc: BaseException) -> Any | None:
    """The graph node the exporter was translating when it failed: the innermost frame, in
    the exception or its causes, whose local `node` is a torch.fx node."""
    import torch

    found = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            node = tb.tb_frame.f_locals.get("node")
            if isinstance(node, torch.fx.Node) and node.meta.get("nn_module_stack"):
                found = node
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return found


def _layer_of_fx_node(node: Any | None, model: Any) -> str | None:
    """The Keras layer whose module the node was traced in (the innermost tagged one)."""
    if node is None:
        return None
    paths = {path: name for name, path in model.keras_layers.items()}
    stack = node.meta.get("nn_module_stack") or {}
    for module_path, _cls in reversed(list(stack.values())):
        name = paths.get(_module_path(module_path))
        if name is not None:
            return name
    return None


def _module_path(traced: str) -> str:
    """A module path as torch.export records it ('h.0.h_attn', or 'L__self___h_0' forms in
    older versions, or with `._modules[...]`) -> get_submodule's path."""
    path = re.sub(r"\._modules\[['\"]([^'\"]+)['\"]\]", r".\1", traced)
    return path.removeprefix("L['self'].").removeprefix("L__self__.")


def _cannot_export(compiled: Compiled, layer: str | None, exc: BaseException, what: str) -> Any:
    """E192: a layer that cannot go to ONNX, located at its spec item where one is known."""
    graph = compiled.graph
    reason = _first_line(exc)
    code_line = _generated_line(exc, compiled)
    detail = f"  generated code: {code_line}" if code_line else ""
    if layer is not None:
        node = graph.node(layer)
        return SpecError(
            [
                Diagnostic(
                    "E192",
                    f"cannot export layer '{node.name}' ({node.op}) to ONNX: {what} it: {reason}",
                    node.origin.location,
                    node.origin.describe(),
                    hint="this op's PyTorch code has no ONNX form here; compile and use the "
                    "PyTorch model, or write the layer with ops that export",
                    detail=detail,
                )
            ]
        )
    return SpecError(
        [
            Diagnostic(
                "E192",
                f"cannot export the model '{graph.name}' to ONNX: {what} it, outside every "
                f"layer's module (the model's own forward): {reason}",
                Location(compiled.loaded.file, 1, 1),
                hint="the generated code computes something between layers that has no ONNX "
                "form; this is a bug in the PyTorch backend if the spec is valid",
                detail=detail,
            )
        ]
    )


def _first_line(exc: BaseException) -> str:
    """The innermost message worth showing: the deepest cause's first line."""
    current: BaseException = exc
    seen: set[int] = set()
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    text = str(current).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(current).__name__}: {line}" if line else type(current).__name__


def _generated_line(exc: BaseException, compiled: Compiled) -> str:
    """The last line of the generated module that ran before the error ('line N: code'; the
    module was imported from a temp file, so the code is rendered again to show it)."""
    found = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for frame in traceback.extract_tb(current.__traceback__):
            if Path(frame.filename).name == f"{compiled.graph.name}_torch.py" and frame.lineno:
                found = frame
        current = current.__cause__ or current.__context__
    if found is None or found.lineno is None:
        return ""
    lines = torch_backend.render(compiled).splitlines()
    code = lines[found.lineno - 1].strip() if found.lineno <= len(lines) else ""
    return f"line {found.lineno}, in {found.name}: {code}"


# -- the file ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temp file next to path for the body to write and check, renamed over path when it is
    done; on any error path is left as it was (codegen.atomic_file)."""
    from .codegen import atomic_file

    with atomic_file(path, "", _cannot_write) as tmp:
        yield tmp


def _cannot_write(path: Path, reason: str) -> SpecError:
    return SpecError(
        [Diagnostic("E195", f"cannot write {path}: {reason}", hint="choose a writable --onnx")]
    )


def _finish(tmp: Path, path: Path, compiled: Compiled) -> Exported:
    """Name the dynamic dimensions (batch; height and width, `<input>_height` where several
    inputs have them) in the file, check it with onnx.checker, and describe it."""
    import onnx

    model = onnx.load(str(tmp))
    names: dict[str, str] = {}
    several = sum(1 for n in compiled.graph.inputs if None in (compiled.graph.node(n).shape or ()))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if not dim.dim_param:
                continue
            if axis == 0:
                names.setdefault(dim.dim_param, "batch")
            elif axis in (2, 3):
                word = "height" if axis == 2 else "width"
                names.setdefault(dim.dim_param, f"{value.name}_{word}" if several > 1 else word)
    if names:
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
        values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
        for value in values:
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param:
                    dim.dim_param = pattern.sub(lambda m: names[m[1]], dim.dim_param)
    for node in [*model.graph.node, *(n for f in model.functions for n in f.node)]:
        # the exporter's stack traces name this machine's temp files and environment
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise _runtime_failed(
            compiled, None, None, exc, "", "onnx.checker refuses the file"
        ) from None
    onnx.save_model(model, str(tmp))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def described(values: Any) -> list[tuple[str, list[int | str], str]]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            dims: list[int | str] = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            out.append(
                (value.name, dims, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name)
            )
        return out

    return Exported(
        path,
        compiled.graph.counts,
        opset,
        described(model.graph.input),
        described(model.graph.output),
    )


# -- the check --------------------------------------------------------------------------------
def _session(tmp: Path, model: Any, compiled: Compiled) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise _runtime_failed(compiled, model, tmp, exc, "cannot load the exported file") from None


def _check(
    session: Any,
    tmp: Path,
    model: Any,
    compiled: Compiled,
    graph: Graph,
    batch: int,
    seed: int,
    atol: float,
) -> Run:
    """Run ONNX Runtime and PyTorch on one seeded batch of `graph`'s sizes; compare every
    output (E194 where one differs by more than atol + rtol·max|y|)."""
    import torch

    xs = _examples(graph, batch, seed)
    shape = tuple(xs[0].shape)
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), xs, strict=True)}
    try:
        got = session.run(None, feeds)
    except Exception as exc:
        what = f"fails at input {list(shape)}"
        raise _runtime_failed(compiled, model, tmp, exc, what) from None
    with torch.no_grad():
        want = model(*xs)
    want = want if isinstance(want, tuple) else (want,)
    worst: Run | None = None
    for name, g, w in zip(graph.outputs, got, want, strict=True):
        ref = w.numpy()
        diff, limit = _compare(np.asarray(g), ref, atol)
        if diff > limit:
            node = graph.node(name)
            raise SpecError(
                [
                    Diagnostic(
                        "E194",
                        f"ONNX Runtime and PyTorch disagree at output '{name}' ({node.op}): "
                        f"max|Δ| = {diff:.3g} > {limit:.3g} (batch {batch}, input "
                        f"{list(shape)})",
                        node.origin.location,
                        node.origin.describe(),
                        hint="the exported file computes another function than the PyTorch "
                        "model; nothing was written",
                    )
                ]
            )
        if worst is None or diff > worst.max_abs_diff:
            worst = Run(batch, shape, name, diff, limit)
    assert worst is not None
    return worst


def _compare(a: np.ndarray, b: np.ndarray, atol: float) -> tuple[float, float]:
    """(max|a - b|, allowed: atol + RTOL·max|b|) over the finite values; shapes that differ,
    or a non-finite value in one only, are never allowed."""
    if a.shape != b.shape:
        return float("inf"), 0.0
    finite = np.isfinite(a) & np.isfinite(b)
    same = np.where(np.isnan(a), np.isnan(b), a == b)
    if not np.all(finite | same):
        return float("inf"), 0.0
    a, b = a[finite].astype(np.float64), b[finite].astype(np.float64)
    if not a.size:
        return 0.0, atol
    return float(np.max(np.abs(a - b))), atol + RTOL * float(np.max(np.abs(b)))


def _runtime_failed(
    compiled: Compiled,
    model: Any,
    tmp: Path | None,
    exc: BaseException,
    what: str,
    who: str = "ONNX Runtime",
) -> SpecError:
    """E193: ONNX Runtime refuses the file or fails running it, located at the layer of the
    ONNX node it names where the file says which module made that node."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    layer = None
    found = re.search(r"node(?:_name)?[\s:(]*'?([\w./:-]+)", message, flags=re.I)
    if found and tmp is not None and model is not None:
        layer = _layer_of_onnx_node(tmp, found[1], model)
    node = compiled.graph.node(layer) if layer is not None else None
    return SpecError(
        [
            Diagnostic(
                "E193",
                f"{who}{' ' + what if what else ''}"
                + (f" (layer '{node.name}', {node.op})" if node is not None else "")
                + f": {message}",
                node.origin.location if node is not None else None,
                node.origin.describe() if node is not None else "",
                hint="a dimension that torch.export fixed, or an operator this ONNX Runtime "
                "lacks; nothing was written",
            )
        ]
    )


def _layer_of_onnx_node(tmp: Path, node_name: str, model: Any) -> str | None:
    """The Keras layer whose module made the ONNX node (the exporter's name scopes)."""
    import ast

    import onnx

    paths = {path: name for name, path in model.keras_layers.items()}
    for node in onnx.load(str(tmp), load_external_data=False).graph.node:
        if node.name != node_name:
            continue
        props = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))
        except (ValueError, SyntaxError):
            return None
        for scope in reversed(scopes):
            if isinstance(scope, str) and scope in paths:
                return paths[scope]
    return None
