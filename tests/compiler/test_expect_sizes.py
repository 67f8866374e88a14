"""A spec's `expect:` is compared with counts only once the sizes are known to be ones a model
can have: absurd counts are a located error (E081), never a crash while formatting them."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError


@pytest.mark.parametrize(
    "dims",
    [[2**32, 2**32, 4], [4 * 10**18] * 250],  # flattened: 2**66, and over 4300 digits
    ids=["past-64-bits", "past-printing"],
)
@pytest.mark.parametrize("command", ["check", "compile"])
def test_expect_with_absurd_counts_is_a_located_error(
    archc, tmp_path: Path, dims: list[int], command: str
) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        f"archc: 1\nname: net\ninputs:\n  - {{name: image, shape: {dims}}}\n"
        "layers:\n  - {op: flatten, name: flat}\n  - {op: dense, units: 2}\n"
        "expect: {total: 10}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as caught:
        compile_spec(spec)
    assert [d.code for d in caught.value.diagnostics] == ["E081"]

    args = ["--backend", "torch", "-o", tmp_path / "out"] if command == "compile" else []
    result = archc(command, spec, *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0] == (
        f"{spec}:6:5: error[E081]: layer 'flat': output size too large (more than 64 bits)"
    )
    assert not (tmp_path / "out").exists()
