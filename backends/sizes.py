"""Sizes to run a model at whose input height and width are unknown (`shape: [null, null, 3]`).

The generated models take any size; proving them needs concrete ones. `verify` runs the one
generated model at two sizes (a module that baked in the first size fails at the second),
`compile` checks the output shapes at the first. Unless sizes are given (`--input-size`),
they are the first two of `CANDIDATES` that the network accepts: the spec is compiled at each
(`archc.compiler.api.at_size`), and a size is skipped where that fails (too small, or branches that
no longer meet, such as a U-Net's skips at a size not divisible by 2^depth). The candidates
are multiples of 16 and 32, square first, then not square (so a height/width mix-up shows).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from archc.compiler.api import Compiled, at_size, unknown_sizes
from archc.compiler.diagnostics import Diagnostic, SpecError

CANDIDATES: tuple[tuple[int, int], ...] = (
    (64, 64),
    (96, 80),
    (96, 64),
    (128, 96),
    (128, 128),
    (192, 128),
    (256, 192),
    (256, 256),
    (384, 256),
    (512, 384),
    (512, 512),
)
ODD_CANDIDATES: tuple[tuple[int, int], ...] = ((65, 63), (67, 61), (33, 31), (129, 127))
RUNS = 2  # sizes verify runs at


def parse_size(text: str) -> tuple[int, int]:
    """'64x48' (height x width) -> (64, 48); ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None or min(int(m[1]), int(m[2])) < 1 or max(len(m[1]), len(m[2])) > 6:
        raise ValueError(f"{text!r} is not HEIGHTxWIDTH (positive integers, e.g. 64x48)")
    return int(m[1]), int(m[2])


def text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def input_size(compiled: Compiled) -> tuple[int, int] | None:
    """The (height, width) of the first input, where both are known."""
    shape = compiled.graph.node(compiled.graph.inputs[0]).shape or ()
    if len(shape) != 3 or None in shape[:2]:
        return None
    return shape[0], shape[1]


def runs(
    compiled: Compiled, requested: Sequence[tuple[int, int]] = (), count: int = RUNS
) -> list[Compiled]:
    """The spec compiled at the sizes to run it at: `compiled` itself where its sizes are
    known; else each requested size (E099 where the network refuses one), or the first
    `count` candidates the network accepts (E099 where none is)."""
    if not unknown_sizes(compiled.graph):
        if requested:
            node = compiled.graph.node(compiled.graph.inputs[0])
            raise SpecError(
                [
                    Diagnostic(
                        "E099",
                        f"--input-size is for inputs of unknown height and width (null); "
                        f"'{node.name}' has the shape {node.shape}",
                        node.origin.location,
                        hint="leave --input-size out, or declare the input's height and width "
                        "null (shape: [null, null, 3])",
                    )
                ]
            )
        return [compiled]
    if requested:
        return [_at(compiled, size) for size in requested]
    found: list[Compiled] = []
    first: SpecError | None = None
    for size in CANDIDATES:
        try:
            found.append(at_size(compiled, size))
        except SpecError as exc:
            first = first or exc
            continue
        if len(found) == count:
            return found
    if found:
        return found
    assert first is not None
    diag = first.diagnostics[0]
    tried = ", ".join(map(text, CANDIDATES))
    raise SpecError(
        [
            Diagnostic(
                "E099",
                f"the input's height and width are unknown, and the network accepts none of the "
                f"sizes tried ({tried}); at {text(CANDIDATES[0])}: {diag.message}",
                diag.location,
                diag.path,
                "give sizes the network accepts: archc verify SPEC --input-size HxW",
            )
        ]
    )


def odd_run(compiled: Compiled) -> Compiled | None:
    """The spec at an odd, non-square size it accepts (where TF's 'same' padding differs
    from a symmetric one), for a spec of unknown sizes; None where it accepts none."""
    for size in ODD_CANDIDATES:
        try:
            return at_size(compiled, size)
        except SpecError:
            continue
    return None


def _at(compiled: Compiled, size: tuple[int, int]) -> Compiled:
    try:
        return at_size(compiled, size)
    except SpecError as exc:
        raise SpecError(
            [
                Diagnostic(
                    "E099",
                    f"at input size {text(size)}: {d.message}",
                    d.location,
                    d.path,
                    d.hint or "choose another --input-size",
                    d.related,
                )
                for d in exc.diagnostics
            ]
        ) from None
