"""Parameters may be null: a parameter declared with `default: null` is null unless given
(`--set name=null` too), so one spec offers an open or a fixed input size; the generated
build_model / constructor takes `int | None`. A parameter with another default stays
non-null (tests/compiler/broken/null_param_*.yaml hold the errors)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.proof.verify import verify
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError

SPEC = """\
archc: 1
name: open_size
params:
  size: {type: int, default: null, doc: "height and width (null: any)"}
  width: {type: int, default: 4}
inputs:
  - {name: x, shape: ["${size}", "${size}", 3]}
layers:
  - {op: conv2d, name: c, filters: "${width}", kernel: 3, strides: 2, padding: same}
  - {op: global_avg_pool2d, name: g}
variants:
  fixed: {params: {size: 24}}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "open_size.yaml"
    path.write_text(SPEC)
    return path


def test_a_null_default_leaves_the_size_open_and_a_value_fixes_it(spec: Path) -> None:
    open_ = compile_spec(spec)
    assert open_.params["size"] is None
    assert open_.graph.node("x").shape == (None, None, 3)
    fixed = compile_spec(spec, {"size": 24})
    assert fixed.graph.node("c").shape == (12, 12, 4)  # 'same', stride 2: ceil(24 / 2)
    assert compile_spec(spec, variant="fixed").graph.node("x").shape == (24, 24, 3)
    # on the command line: a number, or null again
    assert compile_spec(spec, {"size": "null"}, from_text=True).params["size"] is None
    assert compile_spec(spec, {"size": "20"}, from_text=True).params["size"] == 20


def test_null_is_refused_for_a_parameter_with_another_default(spec: Path) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(spec, {"width": "null"}, from_text=True)
    diag = info.value.diagnostics[0]
    assert (diag.code, diag.message) == ("E023", "--set width=null: expected int, got null")
    assert "default: null" in diag.hint


def test_the_open_spec_verifies_at_two_sizes(spec: Path) -> None:
    report = verify(str(spec))
    assert len(report.sizes) == 2


def _load(path: Path) -> Any:
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_generated_files_take_a_size_or_none(spec: Path, tmp_path: Path, archc: Any) -> None:
    for backend in ("keras", "torch"):
        result = archc("compile", spec, "--backend", backend, "-o", tmp_path)
        assert result.exit_code == 0, result.output
    torch_mod = _load(tmp_path / "open_size_torch.py")
    keras_mod = _load(tmp_path / "open_size_keras.py")
    source = (tmp_path / "open_size_torch.py").read_text()
    assert "size: int | None = None" in source
    assert "size: int | None = None" in (tmp_path / "open_size_keras.py").read_text()
    assert keras_mod.build_model().input_shape == (None, None, None, 3)
    assert keras_mod.build_model(size=24).input_shape == (None, 24, 24, 3)
    x = np.random.default_rng(0).standard_normal((2, 3, 20, 20)).astype(np.float32)
    for model in (torch_mod.build_model(), torch_mod.build_model(size=20)):
        assert tuple(model(torch.from_numpy(x)).shape) == (2, 4)
