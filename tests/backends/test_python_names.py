"""Spec names that Python reads as something else (keywords, constants, builtins, the names
generated code uses) still compile to models that import, build, count and run."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.compile import compile_to_file

SPEC = """archc: 1
name: {model}
params:
  {param}: {{type: int, default: 3, min: 1}}
inputs:
  - {{name: {input}, shape: [6, 5, 3]}}
layers:
  - {{op: conv2d, name: {layer}, filters: 4, kernel: 3, padding: same, strides: 2}}
  - {{op: flatten, name: flat}}
  - {{op: dense, name: fc, units: "${{{param}}}"}}
"""

MODELS = ["none", "None", '"true"', "True_", "none_", "float", "self", "nn", "F", "x", "keras"]
MODELS += ["layers"]
INPUTS = ["float", "x", "shape", "self", "inputs"]
LAYERS = ["x", "shape", "inputs", "training", "forward"]
PARAMS = ["float", "len", "x", "shape", "self", "layers"]

# every name at least once in each position, the rest paired with ordinary names
CASES = (
    [(m, "image", "conv", "width") for m in MODELS]
    + [("net", i, "conv", "width") for i in INPUTS]
    + [("net", "image", layer, "width") for layer in LAYERS]
    + [("net", "image", "conv", p) for p in PARAMS]
    + [("self", "x", "forward", "shape"), ("None", "inputs", "x", "float")]
)


@pytest.mark.parametrize(("model", "input", "layer", "param"), CASES)
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_names_python_reads_as_something_else(
    tmp_path: Path, backend: str, model: str, input: str, layer: str, param: str
) -> None:
    spec = tmp_path / "net.yaml"
    text = SPEC.format(model=model, input=input, layer=layer, param=param)
    spec.write_text(text, encoding="utf-8")
    # verification imports the file, builds the model, counts it and runs a forward pass
    result = compile_to_file(spec, backend, tmp_path / "out")
    assert result.counts == result.compiled.graph.counts
    assert result.compiled.params[param] == 3
    module_text = result.path.read_text(encoding="utf-8")
    assert "class None(" not in module_text and "def None(" not in module_text
