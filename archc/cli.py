"""The `archc` command line. Exit codes: 0 ok, 1 spec or verification error (or output that
cannot be written: a full disk), 2 usage, 3 bug, 130 interrupted (SIGINT, Ctrl-C), 141 the
reader of the output went away (a closed pipe, `archc ops | head -1`: quietly, with the code
of a process that SIGPIPE stopped, as the shell reports for `yes | head -1`), 143 terminated
(SIGTERM, handled like Ctrl-C)."""

from __future__ import annotations

import os
import signal
import sys

# What each signal archc handles ends with: exit code (128 + the signal's number), and word.
SIGNALS: dict[int, tuple[int, str]] = {
    signal.SIGINT: (130, "interrupted"),
    signal.SIGTERM: (143, "terminated"),
}


def _leave_now(signum: int, frame: object) -> None:
    """A signal where nothing is half-done (imports, parsing, shutdown): exit at once."""
    code, word = SIGNALS.get(signum, (130, "interrupted"))
    for stream, text in ((sys.stdout, ""), (sys.stderr, f"{word}\n")):
        try:
            stream.write(text)
            stream.flush()
        except Exception:  # a closed or busy stream: leave anyway
            pass
    os._exit(code)


def _on_signals(handlers: Any) -> dict[int, Any] | None:
    """Install one handler for SIGINT and SIGTERM, or {signal: handler}; the previous ones
    (to pass back here), or None where none can be set."""
    if not isinstance(handlers, dict):
        handlers = dict.fromkeys(SIGNALS, handlers)
    previous: dict[int, Any] = {}
    try:
        for signum, handler in handlers.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                previous[signum] = signal.signal(signum, handler)
    except (ValueError, OSError):  # not the main thread
        return None
    return previous


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C raises KeyboardInterrupt, so that the same clean-ups run
    (temp files removed, the old file left in place)."""


def _terminate(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Terminated


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


# the signals received while a command body ran: a library may turn the KeyboardInterrupt
# into an error of its own (pydantic-core building a validator reports a SchemaError), which
# is still the user's Ctrl-C, not a bug
_received: list[int] = []


# Installed before anything else is imported, so that a signal during the imports is clean too.
_previous_handlers = _on_signals(_leave_now)

import atexit  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

import click  # noqa: E402

from archc.compiler import __version__  # noqa: E402
from archc.compiler.diagnostics import SpecError, printable, short_repr, shorten  # noqa: E402

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
EXIT_PIPE = 128 + getattr(signal, "SIGPIPE", 13)  # 141: the reader closed the pipe
MAX_SEED = 2**32 - 1  # numpy's classic seed range; the odd-size check uses seed + 1


class OutputError(Exception):
    """Writing the standard output failed (a closed pipe, a full disk): told apart from the
    other OSErrors of a command, which are archc's to explain."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def out(message: Any = "", nl: bool = True) -> None:
    """click.echo to the standard output; a failed write is OutputError."""
    try:
        click.echo(message, nl=nl)
    except OSError as exc:
        raise OutputError(exc) from exc


def output_failed(exc: BaseException) -> NoReturn:
    """Leave as Unix tools do when the output cannot be written: a closed pipe (the reader
    has what it wanted) quietly, exit 141; any other failure (ENOSPC, EIO) with one line,
    exit 1. The standard output is pointed at the null device first, so that the interpreter
    does not fail again flushing it at exit."""
    error = exc.error if isinstance(exc, OutputError) else exc
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # no file descriptor (an in-process runner)
        pass
    if isinstance(error, BrokenPipeError):
        sys.exit(EXIT_PIPE)
    reason = getattr(error, "strerror", None) or str(error)
    with contextlib.suppress(OSError):  # the error output fails too: the exit code says it
        click.echo(f"error: cannot write the output: {reason}", err=True)
    sys.exit(EXIT_SPEC)


def parse_sets(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--set expects KEY=VALUE, got {short_repr(item)}")
        out[key.strip()] = value.strip()
    return out


def report(exc: SpecError, as_json: bool = False) -> None:
    for d in exc.diagnostics:
        click.echo(d.format(), err=True)
    n = len(exc.diagnostics)
    click.echo(f"{n} error{'s' if n != 1 else ''}", err=True)
    if as_json:
        out(json.dumps({"errors": [d.to_json() for d in exc.diagnostics]}, indent=2))


def run_guarded(fn: Callable[[], int | None], as_json: bool = False) -> None:
    """Run a command body: spec errors exit 1 with diagnostics, and so does running out of
    memory (Python's or a framework's); anything else is a bug (3).

    Ctrl-C raises KeyboardInterrupt (and SIGTERM Terminated, one) only while the body runs,
    so that files being written are cleaned up; they exit 130 and 143, saying whether a file
    had already been replaced when the signal came."""
    mark = len(_written())
    _received.clear()
    previous = _on_signals({signal.SIGINT: _interrupt, signal.SIGTERM: _terminate})
    try:
        try:
            code = fn() or EXIT_OK
        finally:
            if previous is not None:
                _on_signals(previous)
    except SpecError as exc:
        report(exc, as_json)
        code = EXIT_SPEC
    except OutputError as exc:
        output_failed(exc)
    except (click.ClickException, click.exceptions.Exit):
        raise
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        code = _report_signal(signum, mark)
    except Exception as exc:  # MemoryError included
        if _received:  # the signal, wrapped by a library
            code = _report_signal(_received[-1], mark)
        elif out_of_memory(exc):
            click.echo(
                "error: out of memory building or running the model; for a very large model, "
                "compile with --no-verify",
                err=True,
            )
            code = EXIT_SPEC
        else:
            report_bug(exc)
            code = EXIT_BUG
    sys.exit(code)


def _report_signal(signum: int, mark: int) -> int:
    """Say which signal stopped the command and what had been written; its exit code."""
    code, word = SIGNALS[signum]
    written = _written()[mark:]
    if written:
        what = f"{', '.join(map(str, written))} {'was' if len(written) == 1 else 'were'}"
        click.echo(f"{word} ({what} written)", err=True)
    else:
        click.echo(f"{word} (nothing was written)", err=True)
    return code


def _written() -> list[Any]:
    """The files written so far (archc.backends.codegen.WRITTEN, where the backends are loaded)."""
    codegen = sys.modules.get("archc.backends.codegen")
    return list(getattr(codegen, "WRITTEN", []))


def report_bug(exc: BaseException) -> None:
    """An unexpected exception: say it is archc's bug (exit 3), the traceback on request."""
    click.echo(
        f"internal error: {type(exc).__name__}: {printable(shorten(str(exc)))}\n"
        "This is a bug in archc, not in your spec; please report it with the spec "
        "that triggers it (set ARCHC_DEBUG=1 for the traceback).",
        err=True,
    )
    if os.environ.get("ARCHC_DEBUG"):
        traceback.print_exc()


# Where the frameworks' allocators report running out of memory. They are recognised by
# class name, module and message, so that no framework is imported to tell (`archc check`
# never imports one).
FRAMEWORKS = {"torch", "tensorflow", "keras", "jax", "jaxlib", "numpy"}
OOM_CLASSES = {"OutOfMemoryError", "ResourceExhaustedError"}  # torch, tensorflow
OOM_MESSAGES = (
    "can't allocate memory",  # PyTorch's DefaultCPUAllocator (a plain RuntimeError)
    "cannot allocate memory",  # errno 12, as C++ allocators word it
    "out of memory",  # CUDA, and PyTorch's OutOfMemoryError
    "oom when allocating",  # TensorFlow
    "resource_exhausted",  # XLA (JAX)
    "unable to allocate",  # NumPy's _ArrayMemoryError (a MemoryError anyway)
)


def out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or a framework's allocation failure, also when library code
    re-raised it as another exception (its cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return True
        classes = type(current).__mro__
        if any(c.__name__ in OOM_CLASSES and _framework(c) for c in classes):
            return True
        if isinstance(current, RuntimeError) or any(_framework(c) for c in classes):
            message = str(current).lower()
            if any(m in message for m in OOM_MESSAGES):
                return True
        current = current.__cause__ or current.__context__
    return False


def _framework(cls: type) -> bool:
    return cls.__module__.split(".", 1)[0] in FRAMEWORKS


def _finite(value: float) -> float:
    if value != value or value == float("inf"):
        raise click.BadParameter("must be a finite number")
    return value


def _sizes(values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    from archc.backends.sizes import parse_size

    try:
        return tuple(parse_size(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a spec parameter."
)
variant_option = click.option("--variant", default=None, help="Use a named scale variant.")


def atol_option(default: float, help: str) -> Callable[[Any], Any]:
    return click.option(
        "--atol",
        type=click.FloatRange(min=0),
        callback=lambda ctx, param, value: _finite(value),
        default=default,
        show_default=True,
        help=help,
    )


def batch_option(help: str) -> Callable[[Any], Any]:
    return click.option(
        "--batch", type=click.IntRange(1, 64), default=3, show_default=True, help=help
    )


def seed_option(help: str) -> Callable[[Any], Any]:
    return click.option(
        "--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help=help
    )


def input_size_option(help: str) -> Callable[[Any], Any]:
    return click.option(
        "--input-size",
        "input_sizes",
        metavar="HxW",
        multiple=True,
        callback=lambda ctx, param, value: _sizes(value),
        help=help,
    )


class _Group(click.Group):
    """Lists each command with its whole first sentence (click cuts it to fit one line); help,
    version and usage text that cannot be written ends as a command's output does
    (output_failed), not with click's traceback or its exit 1 for a closed pipe."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)  # --help, --version
        except (OSError, OutputError) as exc:
            output_failed(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # a command's --help; its body (run_guarded)
        except (OSError, OutputError) as exc:
            output_failed(exc)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.short_help or cmd.get_short_help_str(limit=10**6)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archc")
def cli() -> None:
    """archc: compile a YAML architecture spec into verified Keras and PyTorch models."""


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@set_option
@variant_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def check(spec: str, sets: tuple[str, ...], variant: str | None, as_json: bool) -> None:
    """Validate SPEC, infer every shape and count every parameter (no framework needed)."""
    overrides = parse_sets(sets)

    def body() -> int:
        from archc.backends.compile import check_generation
        from archc.compiler.api import compile_spec
        from archc.compiler.summary import macs_line, table, to_json

        if _quick["own_process"]:
            gc.freeze()  # what the imports made lives until the exit: no collection scans it
            _quick["leave"] = True
        compiled = compile_spec(spec, overrides, variant=variant, from_text=True)
        check_generation(compiled)  # what a backend would refuse is refused here, located
        if as_json:
            out(json.dumps(to_json(compiled.graph), indent=2))
        else:
            text = table(compiled.graph)  # may refuse the graph: print nothing before that
            out(f'Model: "{compiled.graph.name}"')
            out(text)
            out(macs_line(compiled.graph))
            if compiled.expect is not None:
                out("expect: ok (counts equal the spec's expect:)")
        return EXIT_OK

    run_guarded(body, as_json)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the spec format."""

    def body() -> int:
        from archc.compiler.schema import json_schema

        out(json.dumps(json_schema(), indent=2, sort_keys=True))
        return EXIT_OK

    run_guarded(body)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the reference as JSON.")
def ops(name: str | None, as_json: bool) -> None:
    """List every op a spec can use, with its attributes (type, default) and what it does;
    NAME: one op in detail."""

    def body() -> int:
        from archc.compiler.diagnostics import did_you_mean
        from archc.compiler.schema import op_reference

        every = op_reference()
        chosen = [op for op in every if op.name == name] if name is not None else every
        if name is not None and not chosen:
            names = [op.name for op in every]
            hint = did_you_mean(name, names) or "ops: " + ", ".join(names)
            raise click.BadParameter(f"unknown op {short_repr(name)}; {hint}", param_hint="NAME")
        if as_json:
            one = name is not None
            out(
                json.dumps(
                    chosen[0].as_json() if one else {"ops": [o.as_json() for o in chosen]}, indent=2
                )
            )
        else:
            _print_ops(chosen, detail=name is not None)
        return EXIT_OK

    run_guarded(body)


def _print_ops(chosen: Sequence[Any], detail: bool) -> None:
    """`archc ops` as text: per op a heading, then one row per attribute (name, default or
    'required', type in words), wrapped to the terminal."""
    import shutil
    import textwrap

    from archc.compiler.schema import ITEM_KEYS

    width = min(max(shutil.get_terminal_size((100, 24)).columns, 60), 120)

    def table(rows: list[tuple[str, ...]], indent: int, cap: int = 16) -> None:
        """Columns as wide as their cells up to `cap`; a row with a longer cell starts its
        last column on the next line (as argparse does with long options)."""
        columns = range(len(rows[0]) - 1)
        widths = [max([len(r[k]) for r in rows if len(r[k]) <= cap] or [cap]) for k in columns]
        left = indent + sum(w + 2 for w in widths)
        for row in rows:
            lines = textwrap.wrap(row[-1], max(width - left, 20)) or [""]
            if any(len(c) > w for c, w in zip(row, widths, strict=False)):
                out(" " * indent + "  ".join(row[:-1]))
            else:
                cells = "".join(f"{c:<{w}}  " for c, w in zip(row, widths, strict=False))
                out(" " * indent + cells + lines.pop(0))
            for line in lines:
                out(" " * left + line)

    for i, op in enumerate(chosen):
        if i:
            out()
        head = f"{op.name}: {op.doc}" if op.doc else op.name
        out("\n".join(textwrap.wrap(head, width, subsequent_indent="    ")))
        out(f"    layer type {op.title}; inputs: {op.inputs}")
        if op.attributes:
            table([(a.name, a.default_text, a.meaning) for a in op.attributes], 4)
        else:
            out("    no attributes")
        if detail:
            out("    every op item also takes:")
            table(list(ITEM_KEYS.items()), 8)


@cli.command(name="compile")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    "backend_name",
    required=True,
    type=click.Choice(["keras", "torch"]),
    help="Framework of the generated code.",
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    default="generated",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for <spec stem>_<backend>.py.",
)
@set_option
@variant_option
@click.option("--no-verify", is_flag=True, help="Skip importing, building and counting.")
@click.option("--check", is_flag=True, help="Exit 1 if the file on disk is not up to date.")
def compile_cmd(
    spec: str,
    backend_name: str,
    out_dir: str,
    sets: tuple[str, ...],
    variant: str | None,
    no_verify: bool,
    check: bool,
) -> None:
    """Generate Python source for SPEC, verify its model's counts, then write it atomically."""
    overrides = parse_sets(sets)

    def body() -> int:
        # Backends are looked up by name at run time: `archc check` never imports them.
        from archc.backends.compile import compile_to_file

        result = compile_to_file(
            spec,
            backend_name,
            out_dir,
            overrides,
            variant=variant,
            from_text=True,
            verify=not no_verify,
            check=check,
        )
        c = result.compiled.graph.counts
        if check:
            out(f"{result.path} is up to date")
            return EXIT_OK
        state = "written" if result.changed else "unchanged"
        verified = (
            "not verified"
            if no_verify
            else f"verified: {backend_name} counts and output shapes equal the IR"
        )
        if result.abstract is not None:
            short = result.abstract.describe()
            verified += f" on PyTorch's meta device, without values: the model {short}"
        out(
            f"{result.path} ({state}; {c.total:,} params: {c.trainable:,} trainable, "
            f"{c.non_trainable:,} non-trainable; {verified})"
        )
        return EXIT_OK

    run_guarded(body)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@set_option
@variant_option
@atol_option(1e-5, "Absolute tolerance (plus 1e-5 relative to each layer's largest value).")
@batch_option("Samples in the random batch.")
@seed_option("Seed of the random weights and inputs.")
@click.option(
    "--odd-input/--no-odd-input",
    default=True,
    show_default=True,
    help="Also verify at an odd, non-square input size, where the spec allows one.",
)
@input_size_option(
    "For a spec whose input height and width are unknown (null): a size to run the "
    "models at (repeatable; default: the first two of 64x64, 96x80, 96x64, 128x96, ... that "
    "the network accepts)."
)
@click.option(
    "--train",
    is_flag=True,
    help="Also run the same SGD steps in both (BatchNorm in training mode, L2 on) and compare "
    "the loss, every gradient, updated weight and moving statistic.",
)
@click.option(
    "--steps",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="SGD steps of --train.",
)
@click.option(
    "--keras-backend",
    type=click.Choice(["jax", "tensorflow", "torch"]),
    default=None,
    help="Run the Keras model on this Keras backend (default: KERAS_BACKEND, else tensorflow).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="float32",
    show_default=True,
    help="Compute dtype: bfloat16/float16 run Keras' mixed_<dtype> policy and torch.autocast, "
    "compared at 32 x the dtype's unit roundoff relative.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    spec: str,
    sets: tuple[str, ...],
    variant: str | None,
    atol: float,
    batch: int,
    seed: int,
    odd_input: bool,
    input_sizes: tuple[tuple[int, int], ...],
    train: bool,
    steps: int,
    keras_backend: str | None,
    dtype: str,
    as_json: bool,
) -> None:
    """Prove that the Keras and PyTorch models of SPEC compute the same numbers."""
    overrides = parse_sets(sets)

    def body() -> int:
        from archc.backends.proof.train_check import training_backend, verify_training
        from archc.backends.proof.verify import verify as run_verify

        if train:
            training_backend(keras_backend)
        report = run_verify(
            spec,
            overrides,
            variant=variant,
            from_text=True,
            atol=atol,
            batch=batch,
            seed=seed,
            odd_input=odd_input,
            input_sizes=input_sizes,
            keras_backend=keras_backend,
            dtype=dtype,
        )
        trained = (
            verify_training(
                spec,
                overrides,
                variant=variant,
                from_text=True,
                steps=steps,
                seed=seed,
                input_size=input_sizes[0] if input_sizes else None,
            )
            if train
            else None
        )
        if as_json:
            as_dict = report.as_json()
            if trained is not None:
                as_dict["train"] = trained.as_json()
            out(json.dumps(as_dict, indent=2))
        else:
            c = report.ir
            out(
                f"counts: IR = keras = torch = {c.total:,} "
                f"({c.trainable:,} trainable, {c.non_trainable:,} non-trainable)"
            )
            out(f"outputs: {report.layers_checked} layers agree, {report.agreement()}")
            if report.sizes:
                shown = " and ".join(f"{h}x{w}" for h, w in report.sizes)
                out(f"sizes: the input's height and width are unknown; run at {shown}")
            odd = report.odd_input
            if odd and "shape" in odd:
                size = "x".join(map(str, odd["shape"]))
                out(
                    f"odd input {size}: {odd['layers_checked']} layers agree, "
                    f"max|Δ| = {odd['max_abs_diff']:.3g}"
                )
            elif odd:
                out(f"odd input: skipped ({odd['skipped']})")
            if trained is not None:
                off = trained.dropout_off
                out(
                    f"training: {trained.steps} SGD steps (BatchNorm in training mode, L2 on, "
                    f"float64): loss, gradients, weights and moving statistics agree "
                    f"({trained.arrays_checked} arrays, max|Δ| at "
                    f"{trained.max_rel_diff:.2g} of the tolerance)"
                    + (f"; dropout off in {', '.join(off)}" if off else "")
                )
            out(
                "models: the generated Keras and PyTorch modules, as compile writes them "
                f"(Keras on its {report.keras_backend} backend"
                + (f"; mixed precision, {dtype})" if dtype != "float32" else ")")
            )
        return EXIT_OK

    run_guarded(body, as_json)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--from",
    "source",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Weights to read: .weights.h5 or .keras (Keras), .safetensors or .pt (PyTorch).",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="File to write, in the other framework's format (replaced atomically).",
)
@set_option
@variant_option
def weights(
    spec: str, source: str, target: str, sets: tuple[str, ...], variant: str | None
) -> None:
    """Convert a weights file of SPEC's model between Keras and PyTorch, by layer name.

    The file must hold exactly the model's weights (same names and shapes)."""
    overrides = parse_sets(sets)

    def body() -> int:
        from archc.backends.proof.weights import FormatError, convert

        try:
            done = convert(spec, source, target, overrides, variant=variant, from_text=True)
        except FormatError as exc:
            raise click.UsageError(f"{exc.message}\n  hint: {exc.hint}") from None
        frameworks = {"keras": "Keras", "torch": "PyTorch"}
        out(
            f"{done.target} (written: {done.layers} layers, {done.arrays} arrays, "
            f"{frameworks[done.source_format.framework]} -> "
            f"{frameworks[done.target_format.framework]}, from {done.source})"
        )
        return EXIT_OK

    run_guarded(body)


@cli.group(name="import")
def import_cmd() -> None:
    """Bring an existing model in as a spec (one layer a line, every layer's name kept)."""


@import_cmd.command(name="keras")
@click.argument("model")
@click.option(
    "-o",
    "--out",
    "out_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Spec to write (replaced atomically).",
)
@click.option(
    "--flat",
    is_flag=True,
    help="One layer a line (default: repeated, numbered layers as blocks in repeats).",
)
@click.option(
    "--prove",
    is_flag=True,
    help="Then check, compile both, verify, move the model's weights into the generated "
    "PyTorch model and compare its outputs with the Keras model's.",
)
@click.option(
    "--out-dir",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the generated models of --prove (default: a temporary one).",
)
def import_keras_cmd(
    model: str, out_file: str, flat: bool, prove: bool, out_dir: str | None
) -> None:
    """Import MODEL (a .keras file, a model config .json, or keras.applications:NAME, built
    with weights=None) as a spec whose counts are the model's."""

    def body() -> int:
        import tempfile

        from archc.backends.importer import import_keras
        from archc.backends.importer import prove as run_proof

        written, keras_model = import_keras(model, out_file, flat=flat)
        found = ", ".join(f"{name} x{calls}" for name, calls in written.blocks)
        n = len(written.blocks)
        blocks = f", {n} block{'s' if n > 1 else ''}: {found}" if n else ""
        out(f"{out_file} (written: {written.layers} layers, {written.lines} lines{blocks})")
        if prove:
            with tempfile.TemporaryDirectory() as tmp:
                run_proof(
                    out_file,
                    keras_model,
                    out_dir or tmp,
                    report=lambda step: out(f"{step.name}: {step.result} ({step.seconds:.1f} s)"),
                )
        return EXIT_OK

    run_guarded(body)


def _torch_shapes(values: tuple[str, ...]) -> list[tuple[int, ...]]:
    from archc.backends.torch.importer import parse_shape

    try:
        return [parse_shape(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@import_cmd.command(name="torch")
@click.argument("factory", metavar="MODULE:FACTORY")
@click.option(
    "-o",
    "--out",
    "out_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Spec to write (replaced atomically).",
)
@click.option(
    "--input-shape",
    "input_shapes",
    required=True,
    multiple=True,
    metavar="SHAPE",
    callback=lambda ctx, param, value: _torch_shapes(value),
    help="The input's shape in PyTorch's layout without the batch: 3x224x224 (channels, "
    "height, width), 50 (token ids), 50x128 (steps, channels); once per input.",
)
@click.option(
    "--prove",
    is_flag=True,
    help="Then check, compile both, verify, move the model's state_dict into the generated "
    "models and compare the generated Keras model's outputs with the PyTorch model's.",
)
@click.option(
    "--out-dir",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the generated models of --prove (default: a temporary one).",
)
def import_torch_cmd(
    factory: str,
    out_file: str,
    input_shapes: list[tuple[int, ...]],
    prove: bool,
    out_dir: str | None,
) -> None:
    """Import an nn.Module (MODULE:FACTORY: a module or .py file, and a function or class
    that builds the model without arguments) traced with torch.fx, as a channels-last spec."""

    def body() -> int:
        import tempfile

        from archc.backends.torch.importer import import_torch
        from archc.backends.torch.importer import prove as run_proof

        written, model, imported = import_torch(factory, input_shapes, out_file)
        out(f"{out_file} (written: {written.layers} layers, {written.lines} lines)")
        if prove:
            with tempfile.TemporaryDirectory() as tmp:
                run_proof(
                    out_file,
                    model,
                    imported,
                    out_dir or tmp,
                    report=lambda step: out(f"{step.name}: {step.result} ({step.seconds:.1f} s)"),
                )
        return EXIT_OK

    run_guarded(body)


@cli.command(name="graph")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Picture to write (replaced atomically): .svg (laid out by Graphviz' dot), .html "
    "(one self-contained page, collapsible groups) or .dot (Graphviz source).",
)
@set_option
@variant_option
def graph_cmd(spec: str, out_file: str, sets: tuple[str, ...], variant: str | None) -> None:
    """Draw SPEC's network: blocks and repeats as groups, output shapes on the edges,
    parameters per layer (no framework needed)."""
    from .graph import FORMATS, suffix

    if suffix(out_file) is None:
        raise click.UsageError(
            f"cannot tell the picture's format from {short_repr(out_file)}: "
            f"the file name must end in {', '.join(FORMATS)}"
        )
    overrides = parse_sets(sets)

    def body() -> int:
        from archc.compiler.api import compile_spec

        from .graph import LayoutError, note_for, picture, write

        compiled = compile_spec(spec, overrides, variant=variant, from_text=True)
        graph = compiled.graph
        note = note_for(variant, [(k, compiled.params[k]) for k in sorted(compiled.overrides)])
        try:
            path = write(graph, out_file, note)
        except LayoutError as exc:
            click.echo(f"error: {exc}", err=True)
            return EXIT_SPEC
        c = graph.counts
        out(
            f"{path} (written: {len(graph.nodes)} layers, {len(picture(graph).groups)} groups, "
            f"{c.total:,} params)"
        )
        return EXIT_OK

    run_guarded(body)


@cli.command(name="export")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--onnx",
    "onnx_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="ONNX file to write from the generated PyTorch model (replaced atomically, once "
    "ONNX Runtime agrees with PyTorch).",
)
@set_option
@variant_option
@click.option(
    "--weights",
    "weights_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The model's weights: a PyTorch state dict (.safetensors or .pt, as `archc weights` "
    "writes); default: Keras' initial values, drawn from --seed.",
)
@atol_option(1e-7, "Absolute tolerance (plus 1e-5 relative to each output's largest value).")
@batch_option("Samples in the random batch (the check also runs batch 1).")
@seed_option("Seed of the initial values and the inputs.")
@input_size_option(
    "For a spec whose input height and width are unknown (null): a size to check the "
    "file at (repeatable; default: the two sizes verify runs at)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def export_cmd(
    spec: str,
    onnx_file: str,
    sets: tuple[str, ...],
    variant: str | None,
    weights_file: str | None,
    atol: float,
    batch: int,
    seed: int,
    input_sizes: tuple[tuple[int, int], ...],
    as_json: bool,
) -> None:
    """Export SPEC's PyTorch model to ONNX (dynamic batch, and height and width where the spec
    leaves them open), and prove the file with ONNX Runtime against PyTorch."""
    overrides = parse_sets(sets)

    def body() -> int:
        from archc.backends.export import export_onnx
        from archc.backends.proof.weights import FormatError

        try:
            done = export_onnx(
                spec,
                onnx_file,
                overrides,
                variant=variant,
                from_text=True,
                atol=atol,
                batch=batch,
                seed=seed,
                input_sizes=input_sizes,
                weights=weights_file,
            )
        except FormatError as exc:
            raise click.UsageError(f"{exc.message}\n  hint: {exc.hint}") from None
        if as_json:
            out(json.dumps(done.as_json(), indent=2))
            return EXIT_OK

        def shapes(items: Sequence[tuple[str, Sequence[Any], str]]) -> str:
            return ", ".join(f"{n} [{', '.join(map(str, dims))}] {t}" for n, dims, t in items)

        c = done.counts
        out(f"{done.path} (written: ONNX opset {done.opset}, {c.total:,} params)")
        out(f"inputs: {shapes(done.inputs)}")
        out(f"outputs: {shapes(done.outputs)}")
        ran = sorted({r.batch for r in done.runs}, reverse=True)
        at = sorted({tuple(r.shape[2:]) for r in done.runs if len(r.shape) == 4})
        where = ""
        if len(at) > 1:
            where = " at " + " and ".join("x".join(map(str, s)) for s in at)
        out(
            f"checked: ONNX Runtime = PyTorch at batch {' and '.join(map(str, ran))}{where}, "
            f"{done.agreement()}"
        )
        return EXIT_OK

    run_guarded(body, as_json)


def _unraisable(info: Any) -> None:
    """Ctrl-C that lands in a callback (a weakref's, a __del__) cannot propagate from there:
    deliver it again a moment later, from another thread, so that it interrupts the code that
    runs after the callback."""
    if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
        signum = signal.SIGTERM if issubclass(info.exc_type, Terminated) else signal.SIGINT
        again = threading.Timer(0.01, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
    else:
        sys.__unraisablehook__(info)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: Ctrl-C outside a command's body (while parsing arguments, or while
    the interpreter shuts down) exits 130 at once; inside it, see run_guarded."""
    _on_signals(_leave_now)
    sys.unraisablehook = _unraisable
    # atexit runs its callbacks last-registered first, so this one runs after every other
    # (framework clean-ups included); from then on the interpreter only frees memory, and it
    # would put back the default handler, under which Ctrl-C kills the process (-2).
    atexit.register(_on_signals, signal.SIG_IGN)
    _quick["own_process"] = argv is None
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="archc")
    except SystemExit as exc:
        if _quick["leave"]:
            _leave_quickly(exc.code)
        raise
    except OSError as exc:  # a usage error's message, to an error output that fails
        output_failed(exc)


# `archc check` run as the console script (main() without argv) leaves without tearing the
# interpreter down: its output is flushed and the exit handlers run as at any exit, but the
# objects the imports, the op registry, pydantic's validators and the compiled spec made are
# not freed one by one, which costs a check more CPU than its own validation of a small spec.
# A caller that passes argv (a test, a library) gets the SystemExit as before.
_quick = {"own_process": False, "leave": False}


def _leave_quickly(code: object) -> None:
    """Exit now with `code` after flushing the output and running the exit handlers; returns
    (the caller exits as usual) where that is not safe: another thread still runs, or the
    output cannot be flushed (the usual exit reports that)."""
    if not isinstance(code, int) or threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    atexit._run_exitfuncs()  # the last: the SIG_IGN main() registered first
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


# The module is defined (click's decorators ran under _leave_now too): put the signals back as
# they were, for a library that imports it; main() installs its own.
if _previous_handlers is not None:
    _on_signals(_previous_handlers)

if __name__ == "__main__":  # pragma: no cover
    main()
