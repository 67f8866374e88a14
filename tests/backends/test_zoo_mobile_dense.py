"""Reference zoo: specs/mobilenet_v2.yaml and specs/densenet121.yaml are keras.applications'
MobileNetV2 (with its width multipliers) and DenseNet121, exactly.

Per spec: `archc check --json` gives the issue's counts, and every MobileNetV2 alpha variant
gives keras.applications' own count; the archc Keras model has the reference's layer names,
in order, and once the reference's randomised weights and BN statistics are copied in by layer
name it computes the reference's outputs (MobileNetV2 also at alpha 1.4 and at an odd,
non-square size); and Keras == PyTorch layer by layer (`verify`).
References are built offline (weights=None) and independently of archc: their weights are
randomised by their own variable names. Nothing here measures time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.backends.keras import backend as keras_backend
from archc.backends.proof.verify import verify
from archc.compiler.api import compile_spec
from archc.compiler.ir import Counts
from archc.compiler.load import load
from tests.conftest import ROOT, RUFF, SPECS
from tests.zoo import keras_counts, taps

TABLE = {  # the table: total / trainable / non-trainable
    "mobilenet_v2": Counts(3_538_984, 3_504_872, 34_112),
    "densenet121": Counts(8_062_504, 7_978_856, 83_648),
}
ALPHAS = {"alpha_0.5": 0.5, "alpha_0.75": 0.75, "alpha_1.4": 1.4}
SIZE = (224, 224, 3)
ODD = (97, 75, 3)  # odd, non-square: every strided MobileNetV2 pad is correct_pad's (1, 1) case
FIDELITY = [  # spec, variant, input shape
    ("mobilenet_v2", None, SIZE),
    ("mobilenet_v2", "alpha_1.4", SIZE),
    ("mobilenet_v2", None, ODD),
    ("densenet121", None, SIZE),
]
FEATURES = {"mobilenet_v2": "out_relu", "densenet121": "relu"}  # the last layer before pooling
BATCH = 2
ATOL = RTOL = 1e-5


def spec_path(spec: str) -> Path:
    return SPECS / f"{spec}.yaml"


def build_reference(spec: str, variant: str | None, shape: tuple[int, ...] = SIZE) -> Any:
    import keras

    keras.backend.clear_session()  # fresh auto-names: input_layer, zero_padding2d, ...
    common = {"include_top": True, "weights": None, "input_shape": shape, "classes": 1000}
    if spec == "mobilenet_v2":
        alpha = ALPHAS[variant] if variant else 1.0
        return keras.applications.MobileNetV2(alpha=alpha, **common)
    assert variant is None
    return keras.applications.DenseNet121(**common)


def randomize(model: Any, seed: int) -> None:
    """Random weights and BN statistics by variable name (positive variances, gamma near 1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            shape = tuple(int(d) for d in w.shape)
            name = w.name.rsplit("/", 1)[-1]
            if name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            elif name in ("beta", "moving_mean", "bias"):
                values.append(rng.normal(0.0, 0.2, shape))
            elif name in ("kernel", "depthwise_kernel"):
                fan_in = np.prod(shape[:2]) if name == "depthwise_kernel" else np.prod(shape[:-1])
                values.append(rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape))
            else:
                raise AssertionError(f"{layer.name}: unexpected weight {w.name}")
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])


def weighted(model: Any) -> set[str]:
    return {layer.name for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def reference() -> Any:
    """keras.applications models, each built once per module."""
    built: dict[tuple[str, str | None, tuple[int, ...]], Any] = {}

    def get(spec: str, variant: str | None = None, shape: tuple[int, ...] = SIZE) -> Any:
        if (spec, variant, shape) not in built:
            built[spec, variant, shape] = build_reference(spec, variant, shape)
        return built[spec, variant, shape]

    return get


# -- 1. counts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", sorted(TABLE))
def test_check_json_counts_equal_the_table(spec: str, archc: Any) -> None:
    result = archc("check", spec_path(spec), "--json")
    assert result.exit_code == 0, result.output  # the spec's own expect: holds too
    assert json.loads(result.output)["params"] == TABLE[spec].as_dict()
    assert load(spec_path(spec)).spec.expect.model_dump() == TABLE[spec].as_dict()


@pytest.mark.parametrize("variant", sorted(ALPHAS))
def test_mobilenet_alpha_variant_counts_equal_keras_applications(
    variant: str, archc: Any, reference: Any
) -> None:
    want = keras_counts(reference("mobilenet_v2", variant))
    result = archc("check", spec_path("mobilenet_v2"), "--variant", variant, "--json")
    assert result.exit_code == 0, result.output  # the variant's own expect: holds too
    assert json.loads(result.output)["params"] == want.as_dict()
    declared = load(spec_path("mobilenet_v2")).spec.variants[variant]
    assert declared.params == {"alpha": ALPHAS[variant]}
    assert declared.expect is not None and declared.expect.model_dump() == want.as_dict()
    overridden = compile_spec(spec_path("mobilenet_v2"), {"alpha": ALPHAS[variant]})
    assert overridden.counts == want


# -- 2. fidelity to keras.applications ------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "variant", "shape"),
    FIDELITY,
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v or "default",
)
def test_archc_keras_model_computes_what_keras_applications_computes(
    spec: str, variant: str | None, shape: tuple[int, ...], reference: Any
) -> None:
    ref = reference(spec, variant, shape)
    overrides = None if shape == SIZE else {"input_shape": list(shape)}
    ours = keras_backend.from_spec(spec_path(spec), overrides, variant=variant)
    assert weighted(ours) == weighted(ref)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in ref.layers]
    assert keras_counts(ours) == keras_counts(ref)
    if variant is None and shape == SIZE:
        assert keras_counts(ref) == TABLE[spec]

    randomize(ref, seed=1)
    for layer in ref.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(2).standard_normal((BATCH, *shape)).astype(np.float32)
    names = [FEATURES[spec], ref.layers[-1].name]
    for name, want, got in zip(names, taps(ref, names, x), taps(ours, names, x), strict=True):
        assert want.shape == got.shape
        diff = float(np.max(np.abs(got - want)))
        assert diff <= ATOL + RTOL * float(np.max(np.abs(want))), (name, diff)
    assert float(np.std(want)) > 0  # the output is not degenerate


# -- 3. Keras == PyTorch ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", sorted(TABLE))
def test_keras_and_pytorch_agree_layer_by_layer(spec: str) -> None:
    compiled = compile_spec(spec_path(spec))
    report = verify(compiled)  # raises on any count or output that differs
    # and it compared something: every convolution and BatchNorm, layer by layer
    weighted = [n for n in compiled.graph.nodes if n.op in ("conv2d", "depthwise_conv2d")]
    weighted += [n for n in compiled.graph.nodes if n.op == "batch_norm"]
    assert report.layers_checked >= len(weighted) > 100


# -- 4. generated files are lint- and format-clean -----------------------------------------------
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
@pytest.mark.parametrize(
    "path", [f"generated/{spec}_{b}.py" for spec in sorted(TABLE) for b in ("keras", "torch")]
)
def test_generated_file_passes_ruff(path: str, command: list[str]) -> None:
    proc = subprocess.run(
        [RUFF, *command, "--no-cache", path], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
