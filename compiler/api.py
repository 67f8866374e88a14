"""The Python API of the compiler: spec path (+ overrides) -> checked Graph and Summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostic, SpecError
from .expand import expand
from .infer import infer
from .ir import Counts, Graph
from .load import LoadedSpec, load
from .names import check_static
from .params import resolve
from .schema import Expect
from .summary import check_sizes


@dataclass(frozen=True)
class Compiled:
    """A spec compiled to a checked IR graph, with the values it was compiled with."""

    loaded: LoadedSpec
    params: dict[str, Any]
    graph: Graph
    expect: Expect | None
    expect_source: tuple[str | int, ...] | None
    variant: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # as given (CLI text or values)

    @property
    def counts(self) -> Counts:
        return self.graph.counts


def compile_spec(
    path: str | Path | LoadedSpec,
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
    fill: tuple[int, int] | None = None,
) -> Compiled:
    """Load, expand and infer a spec; raise SpecError listing every problem found.

    `overrides` maps parameter names to values (or to command-line strings when from_text).
    The spec's `expect:` applies when nothing is overridden; a variant's when it is chosen.
    `fill` (height, width) sizes the inputs declared with unknown sizes (see `at_size`).
    """
    loaded = path if isinstance(path, LoadedSpec) else load(path)
    problems = check_static(loaded)
    if problems:
        raise SpecError(problems)
    params = resolve(loaded, overrides, variant=variant, from_text=from_text)
    graph = infer(expand(loaded, params, fill))
    expect: Expect | None = None
    source: tuple[str | int, ...] | None = None
    if not overrides:
        if variant is not None:
            expect, source = loaded.spec.variants[variant].expect, ("variants", variant, "expect")
        else:
            expect, source = loaded.spec.expect, ("expect",)
    compiled = Compiled(loaded, params, graph, expect, source, variant, dict(overrides or {}))
    check_sizes(graph)  # before counts are compared, and formatted, with the spec's expect:
    check_expect(compiled, graph.counts, "the IR")
    return compiled


def unknown_sizes(graph: Graph) -> bool:
    """Whether an input's height or width is unknown (declared null): the model runs at any."""
    return any(None in (graph.node(n).shape or ()) for n in graph.inputs)


def at_size(compiled: Compiled, size: tuple[int, int]) -> Compiled:
    """The spec compiled again with its unknown input heights and widths set to `size`: the
    same network, every shape known (parameter counts never depend on the size; expressions
    reading in_shape or prev_shape see the sizes). Raises SpecError where the network refuses
    that size (too small, or branches that no longer meet)."""
    return compile_spec(compiled.loaded, compiled.params, variant=compiled.variant, fill=size)


def check_expect(compiled: Compiled, counts: Counts, what: str) -> None:
    """Compare counts with the spec's `expect:`; raise a located error on any difference."""
    if compiled.expect is None or compiled.expect_source is None:
        return
    diags = []
    for key, got in counts.as_dict().items():
        want = getattr(compiled.expect, key)
        if want is not None and want != got:
            diags.append(
                Diagnostic(
                    "E080",
                    f"expect.{key} is {want:,} but {what} has {got:,} ({got - want:+,})",
                    compiled.loaded.doc.loc((*compiled.expect_source, key)),
                    hint="fix the spec, or update 'expect:' if the change is intended",
                )
            )
    if diags:
        raise SpecError(diags)
