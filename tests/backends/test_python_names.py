"""Spec names that Python reads as something else (keywords, constants, builtins, the names
generated code uses) still compile to models that import, build, count and run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archc.backends.compile import compile_to_file
from archc.compiler.diagnostics import SpecError

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


# `true` and `false` are constants in expressions (generated Python reads them as True and
# False), so nothing a spec names may be called so: were a parameter `false` = 1 allowed, the
# compiler would read 1 and both generated models False, and verify would pass.
CONSTANT_NAMED = {
    "parameter in a conditional": (
        'params:\n  "false": {type: int, default: 1}\n',
        "{op: conv2d, name: c, filters: 4, kernel: 1,"
        " activation: \"${'relu' if false else 'linear'}\"}",
    ),
    "parameter in arithmetic": (
        'params:\n  "false": {type: int, default: 1}\n',
        '{op: rescaling, name: r, scale: "${false * 2}"}',
    ),
    "parameter in when": (
        'params:\n  "true": {type: int, default: 0}\n',
        '{op: dense, name: d, units: 2, when: "${true}"}',
    ),
    "block argument": (
        'blocks:\n  unit:\n    args:\n      "false": {type: int, default: 2}\n'
        '    body:\n      - {op: conv2d, name: c, filters: "${false * 2}", kernel: 1}\n',
        "{block: unit}",
    ),
}


@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("case", CONSTANT_NAMED, ids=list(CONSTANT_NAMED))
def test_names_that_expressions_read_as_constants_are_refused(
    tmp_path: Path, backend: str, case: str
) -> None:
    declarations, item = CONSTANT_NAMED[case]
    spec = tmp_path / "net.yaml"
    text = (
        f"archc: 1\nname: net\n{declarations}inputs:\n  - {{name: image, shape: [6, 5, 3]}}\n"
        f"layers:\n  - {item}\n"
    )
    spec.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        compile_to_file(spec, backend, tmp_path / "out")
    [diagnostic] = info.value.diagnostics
    assert diagnostic.code == "E026"
    # located at the declaration: the one line that quotes the name as a key
    [line] = [n for n, row in enumerate(text.splitlines(), 1) if re.search(r'"(true|false)":', row)]
    assert diagnostic.location is not None and diagnostic.location.line == line
    assert "constant" in diagnostic.message and diagnostic.hint
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
