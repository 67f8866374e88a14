"""No spec string can inject code into generated source.

Hostile strings go everywhere a spec or its path can carry text. Each attempt must either be
refused as a spec error, or produce a generated file whose syntax tree holds only the calls,
names and constants a generated model may contain (every string constant is accounted for).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from archc.backends.compile import compile_to_file
from archc.compiler.diagnostics import SpecError

PAYLOADS = [
    'x"); import os; os.system("echo pwned"); ("',
    "x'''; import os #",
    'x"""\nimport os\n"""',
    "x\\\nimport os",
    "${'a' + chr(10)}",
    "__import__('os').system('echo pwned')",
    "conv\nimport os",
    "{{ 7 * 7 }}",
]

BASE = """archc: 1
name: {name}
inputs:
  - {{name: {input}, shape: [9, 7, 3]}}
layers:
  - {{op: conv2d, name: {layer}, filters: 4, kernel: 3, padding: {padding}}}
  - {{op: activation, fn: {fn}}}
  - {{op: flatten}}
"""
SAFE = {"name": "net", "input": "image", "layer": "conv", "padding": "same", "fn": "relu"}

ALLOWED_CALL_ROOTS = {
    "keras",
    "layers",
    "regularizers",
    "nn",
    "F",
    "torch",
    "math",
    "self",
    "super",
}
# builtins the generated code and its helpers call, the helpers themselves (copied from
# backends/py_helpers.py and backends/torch/helpers.py), and the sandbox's functions
ALLOWED_CALL_NAMES = {
    *("super", "isinstance", "hasattr", "getattr", "float", "int", "str", "bool", "len"),
    *("tuple", "range", "zip", "max", "min", "sum", "abs", "round", "ValueError"),
    *("keras_layer", "pair", "window_shape", "same_pads", "torch_pads", "zero_pad_shape"),
    *("reshape_shape", "torch_dim", "concat_shape", "activate", "make_divisible"),
    *("keras_reset_", "spec_initializers_"),  # Keras' initial values, module by module
}
ALLOWED_IMPORTS = {"keras", "torch", "torch.nn.functional", "math"}
FRAMEWORK_STRINGS = {"same", "valid", "relu", "-inf", "keras_name", "l2", "linear", "softmax"}
FRAMEWORK_STRINGS |= {"initializers"}  # the attribute spec_initializers_ reads
HEADER_KEYS = {"path", "sha256", "archc", "total", "trainable", "non_trainable"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def audit(source: str, expected_strings: set[str]) -> None:
    """Only expected imports, calls and string constants may appear."""
    tree = ast.parse(source)
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    local = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)} | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }  # method calls on the file's own variables (tensors, modules) are fine
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS
        elif isinstance(node, ast.ImportFrom):
            assert node.module in ALLOWED_IMPORTS
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                assert node.func.id in ALLOWED_CALL_NAMES | classes, ast.unparse(node)
            else:
                assert _root(node.func) in ALLOWED_CALL_ROOTS | local, ast.unparse(node)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            assert node.value in expected_strings | FRAMEWORK_STRINGS | HEADER_KEYS, node.value
        assert not isinstance(node, ast.Global | ast.Nonlocal | ast.Lambda | ast.AsyncFunctionDef)


def _compile_all(spec: Path, out: Path) -> list[Path]:
    return [compile_to_file(spec, b, out, verify=False).path for b in ("keras", "torch")]


@pytest.mark.parametrize("field", ["name", "input", "layer", "padding", "fn"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_strings_are_refused(tmp_path: Path, field: str, payload: str) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(BASE.format(**{**SAFE, field: _quote(payload)}), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        _compile_all(spec, tmp_path / "out")
    assert info.value.diagnostics
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if "/" not in p])
def test_hostile_spec_paths_reach_code_only_as_constants(tmp_path: Path, payload: str) -> None:
    folder = tmp_path / payload.replace("\\", "_")
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f"{payload.replace(chr(92), '_')}.yaml"
    spec.write_text(BASE.format(**SAFE), encoding="utf-8")
    for path in _compile_all(spec, tmp_path / "out"):
        assert path.parent == tmp_path / "out"
        assert path.name.isascii() and path.stem.replace("_", "").isalnum()
        source = path.read_text(encoding="utf-8")
        header = ast.literal_eval(source.split("SPEC = ", 1)[1].split("\n}\n", 1)[0] + "\n}")
        assert header["path"].endswith(spec.name)
        audit(source, {"net", "image", "conv", "activation_1", "flatten_1", *header.values()})


def test_audit_catches_an_injected_call() -> None:
    with pytest.raises(AssertionError):
        audit('import os\nos.system("x")\n', set())
    with pytest.raises(AssertionError):
        audit('x = "unexpected"\n', set())
