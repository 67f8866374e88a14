"""Reference zoo: specs/mobilenet.yaml, specs/mobilenet_v3.yaml and
specs/inception_resnet_v2.yaml are keras.applications' MobileNet (v1, with its width
multipliers), MobileNetV3Large / MobileNetV3Small (with alpha 0.75 and minimalistic) and
InceptionResNetV2, exactly.

Per spec: `archc check --json` gives the issue's counts, and every variant gives
keras.applications' own count; the archc Keras model has the reference's weight-bearing layers
(names and weight shapes; MobileNet and InceptionResNetV2 every layer name, in order, and
InceptionResNetV2's residual sums as one layer each, with keras' scale), and once the
reference's randomised weights and BN statistics are copied in by layer name it computes the
reference's outputs (MobileNetV3 Large also at an odd, non-square size, and Small); and
Keras == PyTorch layer by layer (`verify`, the default models only).
References are built offline (weights=None) and independently of archc: their weights are
randomised by their own variable names. Nothing here measures time.

InceptionResNetV2 is compared at 75x75 (the smallest input keras.applications accepts), not
at its default 299x299, to keep the suite's runtime modest: its layers, names, weights and
counts do not depend on the input size (archc's counts are checked at 299).
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

TABLE = {  # the issue's table (keras.applications' counts): total / trainable / non-trainable
    "mobilenet": Counts(4_253_864, 4_231_976, 21_888),
    "mobilenet_v3": Counts(5_507_432, 5_483_032, 24_400),
    "inception_resnet_v2": Counts(55_873_736, 55_813_192, 60_544),
}
SMALL = Counts(2_554_968, 2_542_856, 12_112)  # the MobileNetV3Small
# spec -> variant -> (the variant's parameters in the spec, keras.applications' arguments)
VARIANTS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "mobilenet": {
        "alpha_0.25": ({"alpha": 0.25}, {"alpha": 0.25}),
        "alpha_0.5": ({"alpha": 0.5}, {"alpha": 0.5}),
        "alpha_0.75": ({"alpha": 0.75}, {"alpha": 0.75}),
    },
    "mobilenet_v3": {
        "small": ({"model_type": "small"}, {"small": True}),
        "large_0.75": ({"alpha": 0.75}, {"alpha": 0.75}),
        "small_0.75": ({"model_type": "small", "alpha": 0.75}, {"small": True, "alpha": 0.75}),
        "large_minimalistic": ({"minimalistic": True}, {"minimalistic": True}),
        "small_minimalistic": (
            {"model_type": "small", "minimalistic": True},
            {"small": True, "minimalistic": True},
        ),
    },
}
SIZE = {"mobilenet": (224, 224, 3), "mobilenet_v3": (224, 224, 3)}
SIZE["inception_resnet_v2"] = (299, 299, 3)
SMALLEST = (75, 75, 3)  # InceptionResNetV2's smallest input: fidelity and verify run here
ODD = (97, 75, 3)  # odd, non-square: MobileNetV3's strided pads are correct_pad's odd case
FIDELITY = [  # spec, variant, input shape
    ("mobilenet", None, SIZE["mobilenet"]),
    ("mobilenet_v3", None, SIZE["mobilenet_v3"]),
    ("mobilenet_v3", "small", SIZE["mobilenet_v3"]),
    ("mobilenet_v3", None, ODD),
    ("inception_resnet_v2", None, SMALLEST),
]
VERIFY = {"mobilenet": None, "mobilenet_v3": None, "inception_resnet_v2": SMALLEST}
TAPS = {  # the last layer before pooling (MobileNetV3: its BN; keras' activation is unnamed)
    # and the logits before the softmax, where the model has them as a layer
    "mobilenet": ["conv_pw_13_relu", "conv_preds"],
    "mobilenet_v3": ["conv_1_bn", "logits"],
    "inception_resnet_v2": ["conv_7b_ac"],
}
BATCH = 2
ATOL = RTOL = 1e-5


def spec_path(spec: str) -> Path:
    return SPECS / f"{spec}.yaml"


def build_reference(spec: str, variant: str | None, shape: tuple[int, ...]) -> Any:
    import keras

    keras.backend.clear_session()  # fresh auto-names: input_layer, conv2d, conv2d_1, ...
    common = {"include_top": True, "weights": None, "input_shape": shape, "classes": 1000}
    args = dict(VARIANTS[spec][variant][1]) if variant else {}
    if spec == "mobilenet":
        return keras.applications.MobileNet(**args, **common)
    if spec == "mobilenet_v3":
        apps = keras.applications
        build = apps.MobileNetV3Small if args.pop("small", False) else apps.MobileNetV3Large
        return build(**args, **common)
    assert spec == "inception_resnet_v2" and variant is None
    return keras.applications.InceptionResNetV2(**common)


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


def weight_shapes(model: Any) -> dict[str, list[tuple[int, ...]]]:
    """Weight-bearing layers: name -> the shapes of its weights, in Keras' order."""
    return {
        layer.name: [tuple(int(d) for d in w.shape) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def sample(spec: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(2)
    if spec == "mobilenet_v3":  # the model rescales [0, 255] to [-1, 1] itself
        return rng.uniform(0.0, 255.0, (BATCH, *shape)).astype(np.float32)
    return rng.standard_normal((BATCH, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> Any:
    """keras.applications models, each built once per module."""
    built: dict[tuple[str, str | None, tuple[int, ...]], Any] = {}

    def get(spec: str, variant: str | None = None, shape: tuple[int, ...] | None = None) -> Any:
        key = (spec, variant, shape or SIZE[spec])
        if key not in built:
            built[key] = build_reference(*key)
        return built[key]

    return get


# -- 1. counts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", sorted(TABLE))
def test_check_json_counts_equal_the_table(spec: str, archc: Any) -> None:
    result = archc("check", spec_path(spec), "--json")
    assert result.exit_code == 0, result.output  # the spec's own expect: holds too
    assert json.loads(result.output)["params"] == TABLE[spec].as_dict()
    assert load(spec_path(spec)).spec.expect.model_dump() == TABLE[spec].as_dict()


def test_mobilenet_v3_small_counts_equal_the_table(archc: Any) -> None:
    result = archc("check", spec_path("mobilenet_v3"), "--variant", "small", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["params"] == SMALL.as_dict()


@pytest.mark.parametrize("spec", sorted(TABLE))
def test_default_counts_equal_keras_applications(spec: str, reference: Any) -> None:
    # the table is keras.applications' (InceptionResNetV2 counted on the model the fidelity
    # test uses: its counts do not depend on the input size)
    shape = SMALLEST if spec == "inception_resnet_v2" else None
    assert keras_counts(reference(spec, None, shape)) == TABLE[spec]


@pytest.mark.parametrize(
    ("spec", "variant"), [(s, v) for s in sorted(VARIANTS) for v in sorted(VARIANTS[s])]
)
def test_variant_counts_equal_keras_applications(
    spec: str, variant: str, archc: Any, reference: Any
) -> None:
    want = keras_counts(reference(spec, variant))
    if (spec, variant) == ("mobilenet_v3", "small"):
        assert want == SMALL
    result = archc("check", spec_path(spec), "--variant", variant, "--json")
    assert result.exit_code == 0, result.output  # the variant's own expect: holds too
    assert json.loads(result.output)["params"] == want.as_dict()
    params = VARIANTS[spec][variant][0]
    declared = load(spec_path(spec)).spec.variants[variant]
    assert declared.params == params
    assert declared.expect is not None and declared.expect.model_dump() == want.as_dict()
    assert compile_spec(spec_path(spec), params).counts == want


def test_every_variant_is_tested() -> None:
    for spec in TABLE:
        assert set(load(spec_path(spec)).spec.variants) == set(VARIANTS.get(spec, {}))


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
    overrides = None if shape == SIZE[spec] else {"input_shape": list(shape)}
    ours = keras_backend.from_spec(spec_path(spec), overrides, variant=variant)
    assert weight_shapes(ours) == weight_shapes(ref)  # names and weight shapes
    assert keras_counts(ours) == keras_counts(ref)
    ours_names = [layer.name for layer in ours.layers]
    ref_names = [layer.name for layer in ref.layers]
    if spec == "mobilenet_v3":  # weight-bearing layers in keras' order
        assert [n for n in ours_names if n in weight_shapes(ours)] == [
            n for n in ref_names if n in weight_shapes(ref)
        ]
    else:  # every layer is named as keras names it (auto-numbered ones too), in the same order
        assert ours_names == ref_names
    if spec == "inception_resnet_v2":  # each residual sum is one layer with keras' scale
        residuals = [layer for layer in ref.layers if type(layer).__name__ == "CustomScaleLayer"]
        assert len(residuals) == 40
        for layer in residuals:
            mine = ours.get_layer(layer.name)
            assert (type(mine).__name__, mine.scales) == ("ScaledAdd", (1.0, layer.scale))

    randomize(ref, seed=1)
    for layer in ref.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
    x = sample(spec, shape)
    names = [*TAPS[spec], ref.layers[-1].name]
    for name, want, got in zip(names, taps(ref, names, x), taps(ours, names, x), strict=True):
        assert want.shape == got.shape
        diff = float(np.max(np.abs(got - want)))
        assert diff <= ATOL + RTOL * float(np.max(np.abs(want))), (name, diff)
        assert float(np.std(want)) > 0  # not degenerate


# -- 3. Keras == PyTorch ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", sorted(TABLE))
def test_keras_and_pytorch_agree_layer_by_layer(spec: str) -> None:
    shape = VERIFY[spec]
    overrides = None if shape is None else {"input_shape": list(shape)}
    compiled = compile_spec(spec_path(spec), overrides)
    report = verify(compiled)  # raises on any count or output that differs
    # and it compared something: every convolution and BatchNorm, layer by layer
    weighted = [n for n in compiled.graph.nodes if n.op in ("conv2d", "depthwise_conv2d")]
    weighted += [n for n in compiled.graph.nodes if n.op == "batch_norm"]
    assert report.layers_checked >= len(weighted) > 50


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
