"""Reference zoo: specs/efficientnet.yaml, specs/efficientnet_v2.yaml and specs/convnext.yaml
are keras.applications' EfficientNetB0-B7, EfficientNetV2B0 / V2S and ConvNeXtTiny / Small /
Base, exactly.

Per spec and variant: `archc check --json` gives keras.applications' counts (the table below,
each entry checked against a keras.applications model built offline with weights=None, except
B7: its count is checked, its reference is not built, to keep the suite's runtime modest), and
the compiled graph has the reference's weight-bearing layers, by name, in order, with their
weight shapes. For the default models (and EfficientNetB0 at an odd, non-square size,
EfficientNetV2S at 96x96): the archc Keras model has every layer of the reference, by name, in
order (ConvNeXt: plus its residual adds, which keras computes with `+`, no layer), and once the
reference's randomised weights, BN statistics, Normalization statistics and LayerScale gammas
are copied in by layer name, it computes the reference's outputs; and Keras == PyTorch layer
by layer (`verify`).

References are independent of archc: their weights are randomised by their own variable names.
keras.applications wraps ConvNeXt's stem and each downsampling pair in a Sequential model; the
layers inside are compared (archc has them inline, without the wrappers). Nothing here measures
time.
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

# keras.applications' counts, total / trainable / non-trainable (weights=None, Keras 3.15);
# None is the spec's default (the first variant's model)
REFERENCE: dict[str, dict[str | None, tuple[str, Counts]]] = {
    "efficientnet": {
        None: ("EfficientNetB0", Counts(5_330_571, 5_288_548, 42_023)),
        "b0": ("EfficientNetB0", Counts(5_330_571, 5_288_548, 42_023)),
        "b1": ("EfficientNetB1", Counts(7_856_239, 7_794_184, 62_055)),
        "b2": ("EfficientNetB2", Counts(9_177_569, 9_109_994, 67_575)),
        "b3": ("EfficientNetB3", Counts(12_320_535, 12_233_232, 87_303)),
        "b4": ("EfficientNetB4", Counts(19_466_823, 19_341_616, 125_207)),
        "b5": ("EfficientNetB5", Counts(30_562_527, 30_389_784, 172_743)),
        "b6": ("EfficientNetB6", Counts(43_265_143, 43_040_704, 224_439)),
        "b7": ("EfficientNetB7", Counts(66_658_687, 66_347_960, 310_727)),
    },
    "efficientnet_v2": {
        None: ("EfficientNetV2B0", Counts(7_200_312, 7_139_704, 60_608)),
        "b0": ("EfficientNetV2B0", Counts(7_200_312, 7_139_704, 60_608)),
        "s": ("EfficientNetV2S", Counts(21_612_360, 21_458_488, 153_872)),
    },
    "convnext": {
        None: ("ConvNeXtTiny", Counts(28_589_128, 28_589_128, 0)),
        "tiny": ("ConvNeXtTiny", Counts(28_589_128, 28_589_128, 0)),
        "small": ("ConvNeXtSmall", Counts(50_223_688, 50_223_688, 0)),
        "base": ("ConvNeXtBase", Counts(88_591_464, 88_591_464, 0)),
    },
}
CASES = [(spec, variant) for spec, table in REFERENCE.items() for variant in table]
NOT_BUILT = {("efficientnet", "b7")}  # counted, never built here (the largest)
ODD = (97, 75, 3)  # odd, non-square: every strided EfficientNet pad is correct_pad's odd case
FIDELITY = [  # spec, variant, input shape (None: the variant's default size)
    ("efficientnet", None, None),
    ("efficientnet", None, ODD),
    ("efficientnet_v2", None, None),
    ("efficientnet_v2", "s", (96, 96, 3)),  # S's [-1, 1] rescaling and stage table, small
    ("convnext", None, None),
]
FEATURES = {  # a layer near the end whose output is compared too (ConvNeXt: after pooling)
    "efficientnet": "top_activation",
    "efficientnet_v2": "top_activation",
    "convnext": "convnext_tiny_head_gap",
}
BATCH = 2
ATOL = RTOL = 1e-5


def spec_path(spec: str) -> Path:
    return SPECS / f"{spec}.yaml"


def build_reference(spec: str, variant: str | None, shape: tuple[int, ...] | None) -> Any:
    import keras

    keras.backend.clear_session()  # fresh auto-names: input_layer, rescaling, normalization
    build = getattr(keras.applications, REFERENCE[spec][variant][0])
    extra = {} if shape is None else {"input_shape": shape}
    return build(include_top=True, weights=None, classes=1000, **extra)


def leaves(model: Any) -> list[Any]:
    """The model's layers, with nested models (ConvNeXt's Sequential blocks) opened."""
    import keras

    out = []
    for layer in model.layers:
        out += leaves(layer) if isinstance(layer, keras.Model) else [layer]
    return out


def weight_shapes(model: Any) -> dict[str, list[tuple[int, ...]]]:
    """Weight-bearing layers, in order: name -> the shapes of its weights, in Keras' order."""
    return {
        layer.name: [tuple(int(d) for d in w.shape) for w in layer.weights]
        for layer in leaves(model)
        if layer.weights
    }


def randomize(model: Any, seed: int) -> None:
    """Random weights and statistics by variable name (positive variances, scales near 1)."""
    rng = np.random.default_rng(seed)
    for layer in leaves(model):
        values = []
        for w in layer.weights:
            shape = tuple(int(d) for d in w.shape)
            name = w.path.rsplit("/", 1)[-1]
            if type(layer).__name__ == "LayerScale":  # its gamma, unnamed in keras.applications
                name = "gamma"
            if name in ("gamma", "moving_variance", "variance"):
                value = rng.uniform(0.5, 1.5, shape)
            elif name in ("beta", "moving_mean", "bias", "mean"):
                value = rng.normal(0.0, 0.2, shape)
            elif name in ("kernel", "depthwise_kernel"):
                fan_in = np.prod(shape[:2]) if name == "depthwise_kernel" else np.prod(shape[:-1])
                value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            elif name == "count":  # Normalization's sample count: no effect on outputs
                value = np.full(shape, 1000)
            else:
                raise AssertionError(f"{layer.name}: unexpected weight {w.path}")
            values.append(np.asarray(value).astype(w.dtype))
        if values:
            layer.set_weights(values)
            refresh(layer)


def refresh(layer: Any) -> None:
    """Keras' Normalization computes from tensors it derives from its weights when it is
    built or loaded; set_weights alone leaves them stale."""
    if type(layer).__name__ == "Normalization" and layer.weights:
        layer.finalize_state()


@pytest.fixture(scope="module")
def reference() -> Any:
    """keras.applications models, each built once per module."""
    built: dict[tuple[str, str | None, tuple[int, ...] | None], Any] = {}

    def get(spec: str, variant: str | None = None, shape: tuple[int, ...] | None = None) -> Any:
        if (spec, variant, shape) not in built:
            built[spec, variant, shape] = build_reference(spec, variant, shape)
        return built[spec, variant, shape]

    return get


def case_id(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return value or "default"


# -- 1. counts and layer names, every variant ----------------------------------------------------
@pytest.mark.parametrize(("spec", "variant"), CASES, ids=case_id)
def test_check_json_counts_equal_keras_applications(
    spec: str, variant: str | None, archc: Any
) -> None:
    want = REFERENCE[spec][variant][1]
    args = ["--variant", variant] if variant else []
    result = archc("check", spec_path(spec), *args, "--json")
    assert result.exit_code == 0, result.output  # the spec's / variant's own expect: holds too
    assert json.loads(result.output)["params"] == want.as_dict()
    loaded = load(spec_path(spec)).spec
    declared = loaded.variants[variant].expect if variant else loaded.expect
    assert declared is not None and declared.model_dump() == want.as_dict()


@pytest.mark.parametrize(
    ("spec", "variant"), [c for c in CASES if c not in NOT_BUILT and c[1]], ids=case_id
)
def test_graph_has_keras_applications_weight_layers_and_counts(
    spec: str, variant: str, reference: Any
) -> None:
    ref = reference(spec, variant)
    assert keras_counts(ref) == REFERENCE[spec][variant][1]  # the table is keras.applications'
    compiled = compile_spec(spec_path(spec), variant=variant)
    ours = {n.name: [tuple(w.shape) for w in n.weights] for n in compiled.graph.nodes if n.weights}
    want = weight_shapes(ref)
    assert list(ours) == list(want)  # names, in keras' order
    assert ours == want  # and weight shapes


def test_every_variant_is_tested() -> None:
    for spec, table in REFERENCE.items():
        assert set(load(spec_path(spec)).spec.variants) == {v for v in table if v}


# -- 2. fidelity to keras.applications ------------------------------------------------------------
@pytest.mark.parametrize(("spec", "variant", "shape"), FIDELITY, ids=case_id)
def test_archc_keras_model_computes_what_keras_applications_computes(
    spec: str, variant: str | None, shape: tuple[int, ...] | None, reference: Any
) -> None:
    ref = reference(spec, variant, shape)
    overrides = None if shape is None else {"input_shape": list(shape)}
    ours = keras_backend.from_spec(spec_path(spec), overrides, variant=variant)
    assert weight_shapes(ours) == weight_shapes(ref)
    assert list(weight_shapes(ours)) == list(weight_shapes(ref))  # in keras' order
    assert keras_counts(ours) == keras_counts(ref)
    if shape is None:
        assert keras_counts(ref) == REFERENCE[spec][variant][1]
    ours_names = [layer.name for layer in ours.layers]
    if spec == "convnext":  # every layer keras has inside and outside its Sequential blocks,
        # in keras' order; plus the residual adds, which keras computes with `+` (no layer)
        assert [n for n in ours_names if not n.endswith("_add")] == [x.name for x in leaves(ref)]
        extra = {type(ours.get_layer(n)).__name__ for n in ours_names if n.endswith("_add")}
        assert extra == {"Add"}
    else:  # every layer, as keras names it, in keras' order
        assert ours_names == [layer.name for layer in ref.layers]

    randomize(ref, seed=1)
    for layer in leaves(ref):
        if layer.weights:
            mine = ours.get_layer(layer.name)
            mine.set_weights(layer.get_weights())
            refresh(mine)
    x = np.random.default_rng(2).uniform(0.0, 255.0, (BATCH, *ref.input_shape[1:]))
    x = x.astype(np.float32)  # all three preprocess [0, 255] pixels themselves
    names = [FEATURES[spec], ref.layers[-1].name]
    for name, want, got in zip(names, taps(ref, names, x), taps(ours, names, x), strict=True):
        assert want.shape == got.shape
        diff = float(np.max(np.abs(got - want)))
        assert diff <= ATOL + RTOL * float(np.max(np.abs(want))), (name, diff)
    assert float(np.std(want)) > 0  # the output is not degenerate


# -- 3. Keras == PyTorch ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", sorted(REFERENCE))
def test_keras_and_pytorch_agree_layer_by_layer(spec: str) -> None:
    compiled = compile_spec(spec_path(spec))
    report = verify(compiled)  # raises on any count or output that differs
    # and it compared something: every layer with weights, layer by layer, except those whose
    # Keras output no PyTorch module computes alone, checked through the layers after them:
    # the squeeze-excite convs (activation applied after the module) and ConvNeXt's pointwise
    # Dense layers (applied to channels-last views)
    weighted = {n.name: n for n in compiled.graph.nodes if n.weights}
    unchecked = set(weighted) - {name for name, _, _ in report.rows}
    for name in unchecked:
        node = weighted[name]
        assert node.attrs.activation != "linear" or node.op == "dense", name
    assert report.layers_checked >= len(weighted) - len(unchecked) > 50


# -- 4. generated files are lint- and format-clean -----------------------------------------------
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
@pytest.mark.parametrize(
    "path", [f"generated/{spec}_{b}.py" for spec in sorted(REFERENCE) for b in ("keras", "torch")]
)
def test_generated_file_passes_ruff(path: str, command: list[str]) -> None:
    proc = subprocess.run(
        [RUFF, *command, "--no-cache", path], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
