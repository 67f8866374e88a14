"""Backends are typed objects in a registry, loaded (with their framework) on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from archc.backends import compile as compile_mod
from archc.backends.compile import Backend, ModuleBackend, backend, compile_to_file, register
from archc.compiler.diagnostics import SpecError
from tests.conftest import ROOT

SPEC = """archc: 1
name: net
inputs:
  - {name: image, shape: [6, 5, 3]}
layers:
  - {op: conv2d, name: conv, filters: 4, kernel: 3}
  - {op: flatten, name: flat}
"""


@pytest.mark.parametrize("name", ["keras", "torch"])
def test_backends_by_name(name: str) -> None:
    b: Backend = backend(name)
    assert b.name == name
    assert backend(name) is b  # loaded once
    for method in ("render", "build", "counts", "layer_counts", "output_shapes"):
        assert callable(getattr(b, method))


def test_an_unknown_backend_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        backend("jax")
    (d,) = caught.value.diagnostics
    assert d.code == "E090" and d.hint == "backends: keras, torch"


def test_the_registry_imports_no_backend_until_one_is_asked_for() -> None:
    code = (
        "import sys\n"
        "from archc.backends.compile import REGISTRY, backend\n"
        "def heavy():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'torch') or m.endswith('.backend'))\n"
        "print('BEFORE', sorted(REGISTRY), heavy())\n"
        "backend('torch')\n"
        "print('AFTER', 'archc.backends.torch.backend' in heavy(),"
        " 'archc.backends.keras.backend' in heavy())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "BEFORE ['keras', 'torch'] []" in out
    assert "AFTER True False" in out


def test_a_registered_backend_compiles_like_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archc.backends.torch import backend as torch_backend

    monkeypatch.setattr(compile_mod, "REGISTRY", dict(compile_mod.REGISTRY))
    monkeypatch.setattr(compile_mod, "_loaded", {})
    asked = []

    def load() -> Backend:
        asked.append("pt")
        return ModuleBackend("pt", torch_backend)

    register("pt", load)
    assert asked == []
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    result = compile_to_file(spec, "pt", tmp_path)
    assert result.path == tmp_path / "net_pt.py"
    assert result.counts == result.compiled.graph.counts
    assert asked == ["pt"]
    with pytest.raises(SpecError, match="backends: keras, pt, torch"):
        backend("tf")
