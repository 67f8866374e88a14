"""`archc export SPEC --onnx FILE`: every spec in specs/ (small by --set, to keep CI short)
exports, and the file, run here by ONNX Runtime at a batch size and input size the command did
not use, computes what the PyTorch model computes with the same (random) weights; what cannot
export is a located error naming the layer (exit 1), and nothing is written on any failure.

The reference is the PyTorch model itself (built here from the generated module, its state
dict randomised here, BatchNorm statistics included); the bound is the command's,
1e-7 + 1e-5·max|y|, which the float32 rounding of either runtime stays far below on any CPU
(docs/ARCHITECTURE.md, "ONNX export")."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import safetensors.torch
import torch

from archc.backends import export
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from archc.compiler.ops.attention import padding_masks
from tests.conftest import SPECS

# spec -> --set overrides: every spec, small (few blocks, narrow, small inputs)
SMALL: dict[str, dict[str, str]] = {
    "bert": {"vocab_size": "50", "steps": "8", "width": "16", "depth": "1", "intermediate": "24"},
    "convnext": {
        "input_shape": "[32,32,3]",
        "depths": "[1,1,1,1]",
        "projection_dims": "[8,16,24,32]",
        "classes": "5",
    },
    "densenet121": {
        "input_shape": "[32,32,3]",
        "blocks": "[1,1,1,1]",
        "growth_rate": "4",
        "classes": "5",
    },
    "efficientnet": {
        "resolution": "32",
        "width_coefficient": "0.25",
        "depth_coefficient": "0.1",
        "classes": "5",
    },
    "efficientnet_v2": {
        "resolution": "32",
        "width_coefficient": "0.25",
        "repeats": "[1,1,1,1,1,1]",
        "classes": "5",
    },
    "gpt": {"vocab_size": "50", "context": "8", "width": "16", "depth": "1", "heads": "2"},
    "llama": {
        "vocab_size": "50",
        "context": "8",
        "width": "16",
        "depth": "1",
        "heads": "4",
        "kv_heads": "2",
        "intermediate": "24",
    },
    "lstm": {"steps": "7", "vocabulary": "30", "width": "6", "units": "5", "tags": "4"},
    "inception_resnet_v2": {"input_shape": "[75,75,3]", "repeats": "[1,1,1]", "classes": "5"},
    "mobilenet": {
        "input_shape": "[32,32,3]",
        "alpha": "0.25",
        "repeats": "[1,1,1,1,1]",
        "classes": "5",
    },
    "mobilenet_v2": {
        "input_shape": "[32,32,3]",
        "alpha": "0.35",
        "repeats": "[1,1,1,1,1,1,1]",
        "classes": "5",
    },
    "mobilenet_v3": {  # three blocks: squeeze-excite, hard_swish, both kernel sizes
        "input_shape": "[32,32,3]",
        "model_type": "small",
        "expansions": "[1,4,3]",
        "filters": "[16,24,24]",
        "kernels": "[3,5,3]",
        "strides": "[2,2,1]",
        "se": "[1,0,1]",
        "activations": '["relu","hard_swish","hard_swish"]',
        "last_point_ch": "64",
        "classes": "5",
    },
    "resnet50": {"input_shape": "[32,32,3]", "blocks": "[1,1,1,1]", "classes": "5"},
    "resnet50v2": {"input_shape": "[32,32,3]", "blocks": "[1,1,1,1]", "classes": "5"},
    "resnet_preact": {"num_stages": "2"},
    "transformer_encoder": {
        "steps": "7",
        "width": "16",
        "heads": "4",
        "depth": "1",
        "mlp_ratio": "2.0",
    },
    "unet": {"depth": "1", "filters": "4"},
    "vit": {
        "image_size": "32",
        "patch_size": "8",
        "width": "16",
        "depth": "1",
        "heads": "2",
        "mlp_dim": "32",
        "classes": "5",
    },
}
OTHER_BATCH = 5  # the command checks batch 3 and 1
OTHER_SIZE = (40, 24)  # for unknown sizes: the command checks 64x64 and 96x80


def test_every_spec_has_a_small_case() -> None:
    assert sorted(SMALL) == sorted(p.stem for p in SPECS.glob("*.yaml"))


def sets(overrides: dict[str, str]) -> list[str]:
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def randomised(model: Any, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict of the model with every bias, scale and BatchNorm statistic drawn at
    random (kernels keep their initial values), so that no parameter is 0 or 1 by default."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
            continue
        if key.endswith("running_var"):
            new = rng.uniform(0.5, 1.5, value.shape)
        elif "bias" in key or key.endswith("running_mean"):
            new = rng.normal(0.0, 0.2, value.shape)
        elif value.dim() <= 1:  # scales: BatchNorm and LayerNorm gamma, layer scale
            new = rng.uniform(0.5, 1.5, value.shape)
        else:
            new = value.numpy() + rng.normal(0.0, 0.01, value.shape)
        state[key] = torch.from_numpy(np.asarray(new, dtype=np.float32)).contiguous()
    return state


def feeds(graph: Any, batch: int, seed: int) -> list[np.ndarray]:
    """Inputs as the PyTorch model takes them: NCHW images, int64 token ids, right-padded
    padding masks (1 for a token, at least one a row)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in graph.inputs:
        node = graph.node(name)
        shape = tuple(node.shape or ())
        if name in padding_masks(graph):
            lengths = rng.integers(1, shape[-1] + 1, (batch, 1))
            out.append((np.arange(shape[-1]) < lengths).astype(np.int64))
        elif node.attrs.dtype == "int":
            vocab = min(n.attrs.input_dim for n in graph.nodes if name in n.inputs)
            out.append(rng.integers(0, vocab, (batch, *shape)).astype(np.int64))
        else:
            nchw = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
            out.append(rng.standard_normal((batch, *nchw)).astype(np.float32))
    return out


@pytest.mark.parametrize("name", sorted(SMALL))
def test_spec_exports_and_onnx_runtime_equals_pytorch(name: str, archc, tmp_path: Path) -> None:
    spec = SPECS / f"{name}.yaml"
    overrides = SMALL[name]
    compiled = compile_spec(str(spec), overrides, from_text=True)
    model = torch_backend.build(compiled).eval()
    state = randomised(model)
    model.load_state_dict(state, strict=True)
    weights = tmp_path / "w.safetensors"
    safetensors.torch.save_file(state, str(weights))
    target = tmp_path / "model.onnx"

    result = archc(
        "export", spec, "--onnx", target, "--weights", weights, "--json", *sets(overrides)
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {r["batch"] for r in report["runs"]} == {3, 1}  # two batch sizes, both checked
    assert all(r["max_abs_diff"] <= r["limit"] for r in report["runs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "w.safetensors"]

    notes = [p.value for n in onnx.load(str(target)).graph.node for p in n.metadata_props]
    assert not [v for v in notes if "/tmp" in v or "site-packages" in v]  # no local paths

    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (first, *_) = session.get_inputs()
    open_sizes = None in (compiled.graph.node(compiled.graph.inputs[0]).shape or ())
    assert first.shape[0] == "batch"
    if open_sizes:
        assert first.shape[2:] == ["height", "width"]
        graph = compile_spec(str(spec), overrides, from_text=True, fill=OTHER_SIZE).graph
    else:
        assert all(isinstance(d, int) for d in first.shape[1:])
        graph = compiled.graph
    xs = feeds(graph, OTHER_BATCH, seed=7)
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs, strict=True)})
    with torch.no_grad():
        want = model(*(torch.from_numpy(x) for x in xs))
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        ref = w.numpy()
        assert g.shape == ref.shape
        bound = 1e-7 + 1e-5 * float(np.max(np.abs(ref)))
        assert float(np.max(np.abs(g - ref))) <= bound


# -- failures ----------------------------------------------------------------------------------
TINY = """archc: 1
name: tiny
inputs: [{name: x, shape: [6]}]
layers:
  - {op: dense, units: 4, name: d1}
  - {op: dense, units: 3, name: d2}
"""


def tiny(tmp_path: Path) -> tuple[Path, str]:
    """The spec file, and where its layer 'd2' is (line:col of its item)."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY, encoding="utf-8")
    line = TINY.splitlines().index("  - {op: dense, units: 3, name: d2}") + 1
    return spec, f"{spec}:{line}:"


def with_layer_forward(monkeypatch: pytest.MonkeyPatch, layer: str, forward: Any) -> None:
    """Built models run `forward` in place of the module of `layer`."""
    build = torch_backend.build

    def patched(compiled: Any) -> Any:
        model = build(compiled)
        model.get_submodule(model.keras_layers[layer]).forward = forward
        return model

    monkeypatch.setattr(torch_backend, "build", patched)


def assert_nothing_written(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep  # no temp file either


def test_a_layer_torch_export_cannot_trace_is_located(archc, tmp_path, monkeypatch) -> None:
    spec, where = tiny(tmp_path)

    def data_dependent(x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x  # a branch on values: no graph can hold it

    with_layer_forward(monkeypatch, "d2", data_dependent)
    result = archc("export", spec, "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 1, result.output
    assert where in result.output
    assert "error[E192]: cannot export layer 'd2' (dense) to ONNX" in result.output
    assert "torch.export cannot trace it" in result.output
    assert "Traceback" not in result.output
    assert "def forward" not in result.output  # torch.export's partial graph stays quiet
    assert_nothing_written(tmp_path, {"tiny.yaml"})


@torch.library.custom_op("archc_export_test::doubled", mutates_args=())
def doubled(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@doubled.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def test_a_layer_without_an_onnx_translation_is_located(archc, tmp_path, monkeypatch) -> None:
    spec, where = tiny(tmp_path)
    with_layer_forward(monkeypatch, "d2", doubled)  # traces, but ONNX has no such function
    result = archc("export", spec, "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 1, result.output
    assert where in result.output
    assert "error[E192]: cannot export layer 'd2' (dense) to ONNX" in result.output
    assert "cannot translate it" in result.output
    assert "archc_export_test.doubled" in result.output
    assert_nothing_written(tmp_path, {"tiny.yaml"})


def test_a_file_that_computes_another_function_is_refused_and_not_written(
    archc, tmp_path, monkeypatch
) -> None:
    # the file is translated from the model, then the model changes: ONNX Runtime runs the
    # old weights, PyTorch the new ones, and the check must see it
    spec, where = tiny(tmp_path)
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the old file")
    translate = export._translate

    def then_changed(program: Any, model: Any, compiled: Any) -> Any:
        onnx_program = translate(program, model, compiled)
        with torch.no_grad():
            model.get_submodule(model.keras_layers["d2"]).bias.add_(0.5)
        return onnx_program

    monkeypatch.setattr(export, "_translate", then_changed)
    result = archc("export", spec, "--onnx", target)
    assert result.exit_code == 1, result.output
    assert where in result.output
    assert "error[E194]: ONNX Runtime and PyTorch disagree at output 'd2'" in result.output
    assert target.read_bytes() == b"the old file"
    assert_nothing_written(tmp_path, {"tiny.yaml", "m.onnx"})


def test_a_batch_fixed_at_trace_time_fails_the_second_batch(archc, tmp_path, monkeypatch) -> None:
    # without a dynamic batch the file runs only at the traced batch (2): the check's other
    # batch size (1) must fail, not pass
    spec, _ = tiny(tmp_path)
    monkeypatch.setattr(export, "_dynamic_shapes", lambda compiled: None)
    result = archc("export", spec, "--onnx", tmp_path / "m.onnx", "--batch", "2")
    assert result.exit_code == 1, result.output
    assert "error[E193]: ONNX Runtime fails at input [1, 6]" in result.output
    assert_nothing_written(tmp_path, {"tiny.yaml"})


def test_the_onnx_extra_missing_is_an_error_with_the_install(archc, tmp_path, monkeypatch) -> None:
    spec, _ = tiny(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    result = archc("export", spec, "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 1, result.output
    assert "error[E190]" in result.output and "onnxruntime" in result.output
    assert ".[onnx]" in result.output
    assert_nothing_written(tmp_path, {"tiny.yaml"})


def test_keras_weights_are_a_usage_error(archc, tmp_path) -> None:
    spec, _ = tiny(tmp_path)
    result = archc("export", spec, "--onnx", tmp_path / "m.onnx", "--weights", "w.weights.h5")
    assert result.exit_code == 2, result.output
    assert "not a PyTorch state dict" in result.output
