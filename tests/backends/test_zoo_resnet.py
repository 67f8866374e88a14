"""Reference zoo: specs/resnet50v2.yaml and specs/resnet50.yaml are keras.applications'
ResNet50V2 / ResNet101V2 / ResNet50, layer for layer and name for name.

1. `archc check --json` gives keras.applications' parameter counts (variants and --set too).
2. Fidelity: the reference model (weights=None), with random weights and BN statistics, has
   the same weighted layer names as archc's Keras model; its weights copied by name, both
   compute the same numbers on every shared layer (the classifier logits included).
3. `archc.backends.proof.verify.verify`: archc's Keras and PyTorch models agree layer by layer.
"""

from __future__ import annotations

import importlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.backends.compile import compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.verify import verify
from archc.compiler.api import compile_spec
from tests.conftest import ROOT, RUFF

V2 = "specs/resnet50v2.yaml"
V1 = "specs/resnet50.yaml"
ATOL = RTOL = 1e-5
BATCH = 2

# keras.applications, include_top=True, 224x224x3, 1000 classes: (total, trainable, non-trainable).
RESNET50V2 = (25_613_800, 25_568_360, 45_440)
RESNET101V2 = (44_675_560, 44_577_896, 97_664)
RESNET50 = (25_636_712, 25_583_592, 53_120)
# Also measured with keras.applications (weights=None); checked here on the IR only.
RESNET152V2 = (60_380_648, 60_236_904, 143_744)
RESNET101 = (44_707_176, 44_601_832, 105_344)
RESNET152 = (60_419_944, 60_268_520, 151_424)


@dataclass(frozen=True)
class Row:
    id: str
    spec: str
    reference: str  # the keras.applications function
    counts: tuple[int, int, int]
    variant: str | None = None


ROWS = [
    Row("resnet50v2", V2, "ResNet50V2", RESNET50V2),
    Row("resnet101v2", V2, "ResNet101V2", RESNET101V2, variant="resnet101v2"),
    Row("resnet50", V1, "ResNet50", RESNET50),
]


def as_dict(counts: tuple[int, int, int]) -> dict[str, int]:
    return dict(zip(("total", "trainable", "non_trainable"), counts, strict=True))


# -- 1. counts, without a framework ------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "args", "counts"),
    [
        (V2, [], RESNET50V2),
        (V2, ["--variant", "resnet101v2"], RESNET101V2),
        (V2, ["--set", "depth=101"], RESNET101V2),
        (V2, ["--variant", "resnet152v2"], RESNET152V2),
        (V2, ["--set", "depth=152"], RESNET152V2),
        (V1, [], RESNET50),
        (V1, ["--variant", "resnet101"], RESNET101),
        (V1, ["--set", "depth=101"], RESNET101),
        (V1, ["--variant", "resnet152"], RESNET152),
    ],
    ids=[
        "50v2",
        "101v2-variant",
        "101v2-set",
        "152v2-variant",
        "152v2-set",
        "50",
        "101-variant",
        "101-set",
        "152-variant",
    ],
)
def test_check_counts_equal_keras_applications(
    spec: str, args: list[str], counts: tuple[int, int, int], archc: Callable[..., Any]
) -> None:
    result = archc("check", ROOT / spec, *args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["params"] == as_dict(counts)
    assert summary["input_shape"] == [224, 224, 3]
    if "--set" not in args:  # the spec's (or the variant's) own expect: says the same
        variant = args[1] if args else None
        expect = compile_spec(ROOT / spec, variant=variant).expect
        assert expect is not None and expect.model_dump() == as_dict(counts)


# -- 2. fidelity to keras.applications ----------------------------------------------------------
def randomize_reference(model: Any, seed: int) -> None:
    """Random weights and BN statistics on the reference's own layers (positive variances)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            kind = w.path.rsplit("/", 1)[-1]
            if kind in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.5, 1.5, shape))
            elif kind in ("beta", "moving_mean", "bias"):
                values.append(rng.normal(0.0, 0.2, shape))
            else:
                assert kind == "kernel", w.path
                values.append(rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape))
        layer.set_weights([v.astype(np.float32) for v in values])


def layer_outputs(model: Any, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    import keras

    probe = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])
    return dict(zip(names, (np.asarray(o) for o in probe(x, training=False)), strict=True))


def weighted_names(model: Any) -> set[str]:
    return {layer.name for layer in model.layers if layer.weights}


@pytest.fixture(params=ROWS, ids=[r.id for r in ROWS])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Row, Any, Any]]:
    """(row, the keras.applications model with random weights, archc's Keras model)."""
    import keras

    row: Row = request.param
    reference = getattr(keras.applications, row.reference)(weights=None)
    randomize_reference(reference, seed=1)
    ours = keras_backend.from_spec(ROOT / row.spec, variant=row.variant)
    yield row, reference, ours
    keras.backend.clear_session()


def test_same_network_as_keras_applications(pair: tuple[Row, Any, Any]) -> None:
    """Same weighted layers (names, weight shapes, counts); with the weights copied by name,
    every layer both models name (all but the input and v2's unnamed 1x1 shortcut pools)
    computes the same values, and so do the logits (a saturated softmax hides nothing)."""
    row, reference, ours = pair
    assert weighted_names(ours) == weighted_names(reference)
    for layer in reference.layers:
        if layer.weights:
            mine = ours.get_layer(layer.name)
            assert [tuple(w.shape) for w in mine.weights] == [
                tuple(w.shape) for w in layer.weights
            ], layer.name
            mine.set_weights(layer.get_weights())
    assert keras_backend.counts(reference).as_dict() == as_dict(row.counts)
    assert keras_backend.counts(ours).as_dict() == as_dict(row.counts)

    ours_names = {layer.name for layer in ours.layers}
    shared = [layer.name for layer in reference.layers[1:] if layer.name in ours_names]
    assert len(shared) >= len(reference.layers) - 1 - 3  # at most 3 unnamed pools in v2
    x = np.random.default_rng(2).standard_normal((BATCH, 224, 224, 3)).astype(np.float32)
    want = layer_outputs(reference, shared, x)
    got = layer_outputs(ours, shared, x)
    kernel, bias = (np.asarray(v) for v in reference.get_layer("predictions").weights)
    want["logits"] = want["avg_pool"] @ kernel + bias
    got["logits"] = got["avg_pool"] @ kernel + bias

    worst = 0.0
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        diff = float(np.max(np.abs(got[name] - w)))
        limit = ATOL + RTOL * float(np.max(np.abs(w)))
        assert diff <= limit, f"first mismatch at {name}: max|Δ| {diff:.3g} > {limit:.3g}"
        worst = max(worst, diff)
    print(f"fidelity {row.id}: {len(want)} outputs, max|Δ| = {worst:.3g}")


# -- 3. Keras == PyTorch, layer by layer ---------------------------------------------------------
@pytest.mark.parametrize(("spec", "counts"), [(V2, RESNET50V2), (V1, RESNET50)], ids=["v2", "v1"])
def test_keras_and_torch_agree_layer_by_layer(
    spec: str, counts: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    report = verify(spec, batch=BATCH, seed=3)  # raises on any count or output that differs
    # and it compared something: every convolution and BatchNorm, layer by layer
    graph = compile_spec(spec).graph
    weighted = [n for n in graph.nodes if n.op in ("conv2d", "batch_norm")]
    assert report.layers_checked >= len(weighted) > 100
    print(f"verify {spec}: {report.layers_checked} layers, max|Δ| = {report.max_abs_diff:.3g}")


def torch_counts(model: Any) -> Any:
    """trainable = parameters with requires_grad; non-trainable = frozen parameters plus
    floating-point buffers (BN statistics), never num_batches_tracked."""
    from archc.compiler.ir import Counts

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


# -- generated sources ----------------------------------------------------------------------------
GENERATED = [
    (spec, backend, counts)
    for spec, counts in ((V2, RESNET50V2), (V1, RESNET50))
    for backend in ("keras", "torch")
]


@pytest.mark.parametrize(
    ("spec", "backend", "counts"), GENERATED, ids=[f"{Path(s).stem}-{b}" for s, b, _ in GENERATED]
)
def test_generated_file_is_fresh_and_counted(
    spec: str, backend: str, counts: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = compile_to_file(spec, backend, "generated", check=True)
    module = importlib.import_module(f"generated.{result.path.stem}")
    assert as_dict(counts) == module.PARAMS
    # the committed file builds the network with these counts (by the framework's own rule)
    model = module.build_model()
    got = keras_backend.counts(model) if backend == "keras" else torch_counts(model)
    assert got.as_dict() == as_dict(counts)


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUFF), *args], cwd=ROOT, capture_output=True, text=True)


GENERATED_PATHS = [f"generated/{Path(s).stem}_{b}.py" for s, b, _ in GENERATED]


@pytest.mark.parametrize("path", GENERATED_PATHS, ids=[Path(p).stem for p in GENERATED_PATHS])
def test_generated_file_passes_ruff(path: str) -> None:
    lint = _ruff("check", "--no-cache", path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _ruff("format", "--check", "--no-cache", path)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
