"""`archc verify --keras-backend jax|torch|tensorflow`: the generated Keras models on every
Keras backend, compared layer by layer with PyTorch as on TensorFlow.

Keras' backend is fixed when keras is first imported, and this test process has imported it
with TensorFlow; the runs on JAX and on Keras' torch backend are fresh processes. Every spec in
specs/ runs on JAX in one process (keras_backend_cases.py: the ImageNet-sized ones at a small
size, said there), with XLA's CPU optimisation level at 0: XLA compiles one small program per
weight shape as Keras initialises the variables, and the optimising compiler costs four times
as much there as the whole comparison.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archc.compiler.diagnostics import SpecError
from tests.backends.keras_backend_cases import CASES
from tests.conftest import ROOT, SEED, SPECS

FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_every_spec_has_a_case() -> None:
    assert sorted(CASES) == sorted(p.stem for p in SPECS.glob("*.yaml"))


def test_every_spec_verifies_on_keras_jax() -> None:
    pytest.importorskip("jax")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.backends.keras_backend_cases", "jax"],
        cwd=ROOT,
        env=_env(XLA_FLAGS=FAST_XLA),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [line["spec"] for line in lines] == sorted(CASES)
    failed = [line for line in lines if "error" in line]
    assert not failed, failed
    for line in lines:
        assert line["keras_backend"] == "jax", line
        assert line["layers_checked"] > 0, line


def test_seed_verifies_on_keras_torch_backend() -> None:
    """The CLI sets KERAS_BACKEND before keras is imported: the seed, on Keras' torch backend."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "archc",
            "verify",
            str(SEED),
            "--keras-backend",
            "torch",
            "--no-odd-input",
            "--json",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["keras_backend"] == "torch"
    assert report["layers_checked"] == 34  # every layer of the seed that PyTorch has a module of
    assert report["bound"]["max_abs_diff"] <= report["bound"]["limit"]


def test_another_backend_after_keras_is_imported_is_an_error(archc) -> None:
    """In this process keras runs on TensorFlow: asking for JAX is E115, exit 1, no traceback."""
    import keras

    from archc.backends.proof.verify import verify

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(SpecError) as info:
        verify(str(SEED), keras_backend="jax")
    (diag,) = info.value.diagnostics
    assert diag.code == "E115" and "'tensorflow'" in diag.message and "KERAS_BACKEND" in diag.hint
    result = archc("verify", SEED, "--keras-backend", "jax")
    assert result.exit_code == 1
    assert "error[E115]" in result.output and "Traceback" not in result.output


def test_training_is_refused_on_another_keras_backend() -> None:
    """verify --train takes Keras' gradients with tf.GradientTape: another backend is E115
    before anything runs (here keras is imported with TensorFlow, so the message says so)."""
    from archc.backends.proof.train_check import training_backend

    training_backend("tensorflow")  # no error
    with pytest.raises(SpecError) as info:
        training_backend("jax")
    assert info.value.diagnostics[0].code == "E115"


def _tensorflow_uses(path: os.PathLike[str] | str) -> list[str]:
    """Imports of tensorflow and `tf.` attribute uses in a Python file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "tensorflow"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tensorflow"):
            found.append(node.module or "")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "tf"
        ):
            found.append(f"tf.{node.attr} (line {node.lineno})")
    return found


def _keras_helper_files() -> list[Path]:
    """Every module Keras files copy layers from (archc's and plugins'), and the recurrent
    layers' module."""
    from archc.backends.helper_library import keras_modules, module_path

    files = [module_path(m) for m in keras_modules()]
    return [*files, ROOT / "backends" / "keras" / "recurrent.py"]


@pytest.mark.parametrize(
    "path",
    sorted(ROOT.glob("generated/*_keras.py")) + _keras_helper_files(),
    ids=lambda p: p.name,
)
def test_keras_sources_use_keras_ops_only(path) -> None:
    """Generated Keras files and the helper sources they copy never call TensorFlow."""
    assert _tensorflow_uses(path) == []


def test_the_tensorflow_check_finds_a_tensorflow_call(tmp_path: Path) -> None:
    path = tmp_path / "layer.py"
    path.write_text("import tensorflow as tf\n\ny = tf.nn.relu(1.0)\n", encoding="utf-8")
    assert _tensorflow_uses(path) == ["tensorflow", "tf.nn (line 3)"]
