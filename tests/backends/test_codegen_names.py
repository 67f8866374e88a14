"""Generated names never shadow what the generated module itself uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.compile import compile_to_file

SPEC = """archc: 1
name: {name}
inputs:
  - {{name: {input}, shape: [6, 5, 3]}}
layers:
  - {{op: conv2d, name: {layer}, filters: 4, kernel: 3, padding: same, strides: 2}}
  - {{op: activation, fn: relu, name: act}}
  - {{op: flatten, name: flat}}
"""


@pytest.mark.parametrize(
    ("name", "input", "layer"),
    [
        ("f", "x", "conv"),  # class F would shadow torch.nn.functional
        ("PARAMS", "SPEC", "INPUT_SHAPE"),
        ("nn", "torch", "math"),
        ("Tensor", "layers", "keras"),
        ("build_model", "regularizers", "F"),
    ],
)
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_generated_models_run_whatever_the_names(
    tmp_path: Path, backend: str, name: str, input: str, layer: str
) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC.format(name=name, input=input, layer=layer), encoding="utf-8")
    # verification imports the file, builds it, counts it and runs a forward pass
    result = compile_to_file(spec, backend, tmp_path / "out")
    assert result.counts == result.compiled.graph.counts
