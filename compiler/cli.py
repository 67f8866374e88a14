"""The `archc` command line. Exit codes: 0 ok, 1 spec or verification error, 2 usage, 3 bug."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import click

from . import __version__
from .diagnostics import SpecError

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3

# Backends are looked up by name at run time, so `archc check` never imports a framework.
BACKENDS = {"keras": "backends.keras_backend", "torch": "backends.torch_backend"}


def parse_sets(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def report(exc: SpecError, as_json: bool = False) -> None:
    for d in exc.diagnostics:
        click.echo(d.format(), err=True)
    n = len(exc.diagnostics)
    click.echo(f"{n} error{'s' if n != 1 else ''}", err=True)
    if as_json:
        click.echo(json.dumps({"errors": [d.to_json() for d in exc.diagnostics]}, indent=2))


def run_guarded(fn: Callable[[], int | None], as_json: bool = False) -> None:
    """Run a command body: spec errors exit 1 with diagnostics, anything else is a bug (3)."""
    try:
        code = fn() or EXIT_OK
    except SpecError as exc:
        report(exc, as_json)
        code = EXIT_SPEC
    except (click.ClickException, click.exceptions.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in archc, not in your spec; please report it with the spec "
            "that triggers it (set ARCHC_DEBUG=1 for the traceback).",
            err=True,
        )
        if os.environ.get("ARCHC_DEBUG"):
            traceback.print_exc()
        code = EXIT_BUG
    sys.exit(code)


set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a spec parameter."
)
variant_option = click.option("--variant", default=None, help="Use a named scale variant.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
        from .api import compile_spec
        from .summary import table, to_json

        compiled = compile_spec(spec, overrides, variant=variant, from_text=True)
        if as_json:
            click.echo(json.dumps(to_json(compiled.graph), indent=2))
        else:
            click.echo(f'Model: "{compiled.graph.name}"')
            click.echo(table(compiled.graph))
            if compiled.expect is not None:
                click.echo("expect: ok (counts equal the spec's expect:)")
        return EXIT_OK

    run_guarded(body, as_json)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the spec format."""

    def body() -> int:
        from .schema import json_schema

        click.echo(json.dumps(json_schema(), indent=2, sort_keys=True))
        return EXIT_OK

    run_guarded(body)


def _backend(name: str) -> Any:
    import importlib

    return importlib.import_module(BACKENDS[name])


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="archc")


if __name__ == "__main__":  # pragma: no cover
    main()
