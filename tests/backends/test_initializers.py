"""Initializers: the generated PyTorch models draw initial weights from the distribution Keras
draws them from, for every initializer and every layer kind that takes one.

Each weight is drawn many times over (tens of thousands of values) in Keras (the archc Keras
model's initial weights and the layer's own initializer object, called again) and in the
generated PyTorch model (reset_parameters, twice). Both samples are checked against Keras'
documented formula, written out here (VarianceScaling: variance scale / n with n Keras' fan_in,
fan_out or their mean of the Keras-layout kernel; truncated_normal cut at two standard
deviations, the deviation divided by 0.87962566103423978; uniform limit sqrt(3 * scale / n)):
mean, standard deviation, bounds; and against each other with a two-sample Kolmogorov-Smirnov
statistic. Mutants of the PyTorch helpers (fan_in for fan_out, PyTorch's depthwise fans, no
truncation, no correction, a wrong uniform limit, swapped fans) must fail the same checks.

Why the bounds hold: seeds are fixed, so every number here is deterministic; the tolerances are
what a correct draw passes with overwhelming probability, so that a failure is a wrong rule, not
bad luck. The mean is within 6 standard errors (std / sqrt(n)); the sample standard deviation
within 4% (its relative standard error is about 1 / sqrt(2n) < 0.6% for n >= 15,000, ~1% for the
uniform and truncated shapes' kurtosis); KS under the null exceeds c * sqrt((n + m) / (n m))
with probability about 2 exp(-2 c^2): c = 1.95 is 1e-3.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends import codegen
from archc.backends.keras import backend as keras_backend
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import render as torch_render
from archc.backends.torch.ops import TORCH_OPS
from archc.compiler.api import Compiled, compile_spec
from tests.conftest import ROOT, SPECS

TRUNCATED_STD = 0.87962566103423978  # std of a unit normal cut at +-2 (Keras' constant)
KS_C = 1.95  # P(KS > c * sqrt((n + m) / (n m))) ~ 2 exp(-2 c^2) = 1e-3 for equal laws

NAMED = {  # Keras' names as VarianceScaling (scale, mode, distribution) or a plain law
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


# -- the formula and the statistics, written out from Keras' documentation ---------------------
def keras_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras' compute_fans of a Keras-layout kernel (..., in, out); a vector: (n, n)."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def law(init: Any, shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """(mean, std, lowest, highest) of Keras' initializer `init` (a name or a spec mapping)
    for a weight of Keras shape `shape`."""
    if isinstance(init, str):
        if init in NAMED:
            scale, mode, dist = NAMED[init]
            init = {"class": "VarianceScaling", "scale": scale, "mode": mode, "distribution": dist}
        else:
            init = {
                "zeros": {"class": "Constant", "value": 0.0},
                "ones": {"class": "Constant", "value": 1.0},
                "random_normal": {"class": "RandomNormal"},
                "truncated_normal": {"class": "TruncatedNormal"},
                "random_uniform": {"class": "RandomUniform"},
            }[init]
    cls = init["class"]
    if cls == "Constant":
        v = float(init.get("value", 0.0))
        return v, 0.0, v, v
    if cls == "RandomNormal":
        return init.get("mean", 0.0), init.get("stddev", 0.05), -math.inf, math.inf
    if cls == "TruncatedNormal":  # stddev is the normal's before the cut at +-2 stddev
        mean, sd = init.get("mean", 0.0), init.get("stddev", 0.05)
        return mean, sd * TRUNCATED_STD, mean - 2 * sd, mean + 2 * sd
    if cls == "RandomUniform":
        lo, hi = init.get("minval", -0.05), init.get("maxval", 0.05)
        return (lo + hi) / 2, (hi - lo) / math.sqrt(12), lo, hi
    fan_in, fan_out = keras_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[
        init.get("mode", "fan_in")
    ]
    std = math.sqrt(init.get("scale", 1.0) / max(1.0, n))
    dist = init.get("distribution", "truncated_normal")
    if dist == "uniform":
        return 0.0, std, -math.sqrt(3) * std, math.sqrt(3) * std
    if dist == "untruncated_normal":
        return 0.0, std, -math.inf, math.inf
    bound = 2 * std / TRUNCATED_STD
    return 0.0, std, -bound, bound


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


def ks_bound(n: int, m: int) -> float:
    return KS_C * math.sqrt((n + m) / (n * m))


def check_law(sample: np.ndarray, want: tuple[float, float, float, float], what: str) -> None:
    """The sample's mean, standard deviation and range against the law's."""
    mean, std, lo, hi = want
    n = sample.size
    if std == 0.0:
        assert np.all(sample == mean), what
        return
    assert abs(sample.mean() - mean) <= 6 * std / math.sqrt(n), (what, sample.mean(), mean)
    assert abs(sample.std() / std - 1) <= 0.04, (what, sample.std(), std)
    assert sample.min() >= lo - 1e-6 * std and sample.max() <= hi + 1e-6 * std, (what, lo, hi)
    if math.isfinite(lo):  # and the range is reached: not a narrower law
        span = hi - lo
        assert sample.min() <= lo + 0.02 * span and sample.max() >= hi - 0.02 * span, what


def check_same(torch_sample: np.ndarray, keras_sample: np.ndarray, what: str) -> float:
    if np.all(keras_sample == keras_sample.flat[0]):
        assert np.all(torch_sample == keras_sample.flat[0]), what
        return 0.0
    ks = ks_statistic(torch_sample, keras_sample)
    assert ks <= ks_bound(torch_sample.size, keras_sample.size), (what, ks)
    return ks


# -- the models ---------------------------------------------------------------------------------
def spec_text(shape: list[int], layers: str, outputs: list[str]) -> str:
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    return (
        f"archc: 1\nname: inits\ninputs:\n  - {{name: x, shape: {shape}}}\n"
        f"layers:\n{body}\noutputs: {outputs}\n"
    )


def compiled_spec(tmp_path: Path, shape: list[int], layers: str, outputs: list[str]) -> Compiled:
    path = tmp_path / "inits.yaml"
    path.write_text(spec_text(shape, layers, outputs), encoding="utf-8")
    return compile_spec(path)


def torch_draws(compiled: Compiled, targets: list[tuple[str, str]], times: int = 2) -> dict:
    """(layer, Keras weight) -> the generated PyTorch model's initial values, `times` draws."""
    torch.manual_seed(0)
    model = torch_backend.build(compiled)
    out: dict[tuple[str, str], list[np.ndarray]] = {t: [] for t in targets}
    for draw in range(times):
        if draw:
            model.reset_parameters()
        state = model.state_dict()
        for layer, weight in targets:
            op = compiled.graph.node(layer).op
            key = f"{model.keras_layers[layer]}.{TORCH_OPS[op].weights[weight].key}"
            out[(layer, weight)].append(state[key].numpy().astype(np.float64).ravel())
    return {t: np.concatenate(v) for t, v in out.items()}


def module_draws(compiled: Compiled, targets: list[tuple[str, str]]) -> dict:
    """(layer, Keras weight) -> the initial values of the generated PyTorch model built on the
    meta device, allocated with `to_empty` and drawn by each module's own reset_parameters
    (the model's own left out), as FSDP materialises a model; twice."""
    torch.manual_seed(0)
    with torch.device("meta"):
        model = torch_backend.build(compiled)
    model.to_empty(device="cpu")
    out: dict[tuple[str, str], list[np.ndarray]] = {t: [] for t in targets}
    for _ in range(2):
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        state = model.state_dict()
        for layer, weight in targets:
            op = compiled.graph.node(layer).op
            key = f"{model.keras_layers[layer]}.{TORCH_OPS[op].weights[weight].key}"
            out[(layer, weight)].append(state[key].numpy().astype(np.float64).ravel())
    return {t: np.concatenate(v) for t, v in out.items()}


def keras_draws(compiled: Compiled, targets: list[tuple[str, str]]) -> dict:
    """(layer, Keras weight) -> the Keras model's initial values, then one more draw of the
    layer's own initializer object."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras_backend.build(compiled)
    out = {}
    for layer_name, weight in targets:
        layer = model.get_layer(layer_name)
        names = [w.name for w in compiled.graph.node(layer_name).weights]
        variable = layer.weights[names.index(weight)]  # Keras' order is the IR's
        keyword = "kernel" if weight == "kernel" else weight.removesuffix("_kernel")
        again = getattr(layer, f"{keyword}_initializer")(tuple(variable.shape))
        values = [np.asarray(variable.numpy()), np.asarray(again)]
        out[(layer_name, weight)] = np.concatenate([v.astype(np.float64).ravel() for v in values])
    return out


# -- every initializer, on conv2d kernels (fans differ: fan_in 5*5*16, fan_out 5*5*128) --------
CONFIGS: dict[str, Any] = {
    **{name: name for name in [*NAMED, "zeros", "ones"]},
    **{name: name for name in ("random_normal", "truncated_normal", "random_uniform")},
    "vs_fan_in_truncated": {"class": "VarianceScaling", "scale": 2.0, "mode": "fan_in"},
    "vs_fan_out_truncated": {
        "class": "VarianceScaling",
        "scale": 2.0,
        "mode": "fan_out",
        "distribution": "truncated_normal",
    },
    "vs_fan_out_untruncated": {
        "class": "VarianceScaling",
        "scale": 0.5,
        "mode": "fan_out",
        "distribution": "untruncated_normal",
    },
    "vs_fan_avg_uniform": {
        "class": "VarianceScaling",
        "scale": 3.0,
        "mode": "fan_avg",
        "distribution": "uniform",
    },
    "constant": {"class": "Constant", "value": 0.25},
    "normal": {"class": "RandomNormal", "mean": 0.1, "stddev": 0.2},
    "truncated": {"class": "TruncatedNormal", "mean": -0.1, "stddev": 0.3},
    "uniform": {"class": "RandomUniform", "minval": -0.3, "maxval": 0.1},
}


def _flow(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"


def conv_layers() -> str:
    return "\n".join(
        f"- {{op: conv2d, name: {name}, inputs: [x], filters: 128, kernel: 5, padding: same, "
        f"kernel_initializer: {_flow(init)}}}"
        for name, init in CONFIGS.items()
    )


# -- every layer kind: (layer, Keras weight) -> initializer, in one spec per kind ---------------
KINDS: dict[str, tuple[list[int], str, dict[tuple[str, str], Any]]] = {
    "depthwise_conv2d": (  # Keras (5, 5, 256, 4): fans 6400 / 100; PyTorch's 25 / 25600
        [6, 6, 256],
        """
        - {op: depthwise_conv2d, name: dw_out, inputs: [x], kernel: 5, depth_multiplier: 4,
           depthwise_initializer: {class: VarianceScaling, scale: 2.0, mode: fan_out}}
        - {op: depthwise_conv2d, name: dw_in, inputs: [x], kernel: 5, depth_multiplier: 4,
           depthwise_initializer: he_uniform, bias_initializer: random_normal}
        """,
        {
            ("dw_out", "depthwise_kernel"): CONFIGS["vs_fan_out_truncated"],
            ("dw_in", "depthwise_kernel"): "he_uniform",
        },
    ),
    "separable_conv2d": (  # depthwise (5, 5, 128, 4), pointwise (1, 1, 512, 256)
        [6, 6, 128],
        """
        - {op: separable_conv2d, name: sep, filters: 256, kernel: 5, depth_multiplier: 4,
           depthwise_initializer: lecun_uniform,
           pointwise_initializer: {class: VarianceScaling, scale: 2.0, mode: fan_out},
           bias_initializer: {class: Constant, value: 0.5}}
        """,
        {
            ("sep", "depthwise_kernel"): "lecun_uniform",
            ("sep", "pointwise_kernel"): CONFIGS["vs_fan_out_truncated"],
            ("sep", "bias"): {"class": "Constant", "value": 0.5},
        },
    ),
    "conv1d": (  # (5, 64, 256): fans 320 / 1280
        [12, 64],
        """
        - {op: conv1d, name: c1, filters: 256, kernel: 5,
           kernel_initializer: {class: VarianceScaling, scale: 2.0, mode: fan_avg}}
        """,
        {("c1", "kernel"): {"class": "VarianceScaling", "scale": 2.0, "mode": "fan_avg"}},
    ),
    "conv2d_transpose": (  # Keras (4, 4, 128, 32): fan_in 2048, fan_out 512
        [5, 5, 32],
        """
        - {op: conv2d_transpose, name: up_out, inputs: [x], filters: 128, kernel: 4,
           kernel_initializer: {class: VarianceScaling, mode: fan_out, distribution: uniform}}
        - {op: conv2d_transpose, name: up_in, inputs: [x], filters: 128, kernel: 4,
           kernel_initializer: he_normal}
        """,
        {
            ("up_out", "kernel"): {
                "class": "VarianceScaling",
                "mode": "fan_out",
                "distribution": "uniform",
            },
            ("up_in", "kernel"): "he_normal",
        },
    ),
    "dense": (  # (256, 512), and a bias of 16384 values (its fans: 16384 each)
        [256],
        """
        - {op: dense, name: fc, inputs: [x], units: 512,
           kernel_initializer: {class: VarianceScaling, scale: 0.3333333333333333,
                                mode: fan_out, distribution: uniform}}
        - {op: dense, name: wide, inputs: [x], units: 16384, bias_initializer: he_uniform}
        """,
        {
            ("fc", "kernel"): {
                "class": "VarianceScaling",
                "scale": 1 / 3,
                "mode": "fan_out",
                "distribution": "uniform",
            },
            ("wide", "bias"): "he_uniform",
        },
    ),
}
KINDS["conv2d"] = (
    [6, 6, 16],
    conv_layers(),
    {(name, "kernel"): init for name, init in CONFIGS.items()},
)


def kind_spec(tmp_path: Path, kind: str) -> Compiled:
    shape, layers, targets = KINDS[kind]
    outputs = sorted({layer for layer, _ in targets})
    return compiled_spec(tmp_path, shape, layers, outputs)


def keras_shape(compiled: Compiled, layer: str, weight: str) -> tuple[int, ...]:
    (w,) = [w for w in compiled.graph.node(layer).weights if w.name == weight]
    return w.shape


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pytorch_draws_what_keras_draws(tmp_path: Path, kind: str) -> None:
    compiled = kind_spec(tmp_path, kind)
    targets = KINDS[kind][2]
    keras_values = keras_draws(compiled, list(targets))
    torch_values = torch_draws(compiled, list(targets))
    for (layer, weight), init in targets.items():
        want = law(init, keras_shape(compiled, layer, weight))
        what = f"{kind} {layer}.{weight} {init}"
        check_law(keras_values[(layer, weight)], want, f"keras {what}")  # the formula is Keras'
        check_law(torch_values[(layer, weight)], want, f"torch {what}")
        ks = check_same(torch_values[(layer, weight)], keras_values[(layer, weight)], what)
        print(f"{what}: n={torch_values[(layer, weight)].size} std={want[1]:.5f} KS={ks:.4f}")


def test_defaults_are_untouched_where_a_layer_sets_only_one_initializer(tmp_path: Path) -> None:
    """A layer that gives one initializer keeps Keras' default for the other: `wide` gives
    its bias only (its kernel stays glorot_uniform), `fc` its kernel only (its bias zeros)."""
    compiled = kind_spec(tmp_path, "dense")
    values = torch_draws(compiled, [("wide", "kernel"), ("fc", "bias")], times=1)
    check_law(values[("wide", "kernel")], law("glorot_uniform", (256, 16384)), "wide.kernel")
    assert not values[("fc", "bias")].any()


DEFAULTS = {"bias": "zeros"}  # and glorot_uniform for every kernel: Keras' defaults


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_module_draws_its_own_keras_values(tmp_path: Path, kind: str) -> None:
    """Materialised as FSDP does it (meta device, to_empty, each module's reset_parameters),
    every weight of the spec's layers follows Keras' law: the initializers the spec gives and
    Keras' defaults where it gives none (random laws where a weight has the 15,000 values
    the bounds above assume; constants everywhere)."""
    compiled = kind_spec(tmp_path, kind)
    given = KINDS[kind][2]
    targets = {}
    for layer in sorted({layer for layer, _ in given}):
        node = compiled.graph.node(layer)
        for w in node.weights:
            keyword = "kernel" if w.name == "kernel" else w.name.removesuffix("_kernel")
            init = given.get((layer, w.name), getattr(node.attrs, f"{keyword}_initializer"))
            targets[(layer, w.name)] = init or DEFAULTS.get(w.name, "glorot_uniform")
    values = module_draws(compiled, list(targets))
    checked = 0
    for (layer, weight), init in targets.items():
        want = law(init, keras_shape(compiled, layer, weight))
        if want[1] == 0.0 or values[(layer, weight)].size >= 15_000:
            check_law(values[(layer, weight)], want, f"{kind} {layer}.{weight} {init}")
            checked += 1
    assert checked >= len(given)


GENERATED_TORCH = sorted(p.stem for p in (ROOT / "generated").glob("*_torch.py"))


@pytest.mark.parametrize("name", GENERATED_TORCH)
def test_generated_model_materialised_module_by_module_draws_as_built(name: str) -> None:
    """Every generated PyTorch model, built on the meta device, allocated with `to_empty` and
    drawn by each module's own reset_parameters (as FSDP materialises it; the model's own left
    out), has the initial values of the model built normally: constants (biases, BatchNorm's
    weights and statistics) equal, drawn tensors of 15,000 values or more the same standard
    deviation to 4% (two samples' relative standard error is under 0.9% there: over 4
    standard errors; PyTorch's Kaiming rule in place of Glorot's is 9% or more)."""
    import importlib

    module = importlib.import_module(f"generated.{name}")
    torch.manual_seed(0)
    want = module.build_model().state_dict()
    with torch.device("meta"):
        model = module.build_model()
    model.to_empty(device="cpu")
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    got = model.state_dict()
    assert sorted(got) == sorted(want)
    checked = 0
    for key, w in want.items():
        g = got[key]
        if not torch.is_floating_point(w) or torch.all(w == w.flatten()[0]):
            assert torch.equal(g, w), key
            checked += 1
        elif w.numel() >= 15_000:
            a, b = g.std().item(), w.std().item()
            assert abs(a - b) <= 0.04 * b, f"{key}: std {a:.4g} vs built {b:.4g}"
            checked += 1
    assert checked


# -- mutants: each breaks one rule of the PyTorch helpers; the checks above must fail ----------
MUTANTS: dict[str, tuple[str, str, str, str, tuple[str, str]]] = {
    # name: (helper, original text, mutated text, kind, the weight that must fail)
    "fan_in-for-fan_out": (
        "VarianceScaling",
        'elif self.mode == "fan_out":\n            n = float(fan_out)',
        'elif self.mode == "fan_out":\n            n = float(fan_in)',
        "conv2d",
        ("vs_fan_out_truncated", "kernel"),
    ),
    "untruncated-normal": (
        "VarianceScaling",
        "nn.init.trunc_normal_(tensor, 0.0, std, -2.0 * std, 2.0 * std)",
        "nn.init.normal_(tensor, 0.0, std * 0.87962566103423978)",
        "conv2d",
        ("he_normal", "kernel"),
    ),
    "truncation-without-correction": (
        "VarianceScaling",
        "std = math.sqrt(variance) / 0.87962566103423978",
        "std = math.sqrt(variance)",
        "conv2d",
        ("he_normal", "kernel"),
    ),
    "uniform-limit-sqrt-variance": (
        "VarianceScaling",
        "limit = math.sqrt(3.0 * variance)",
        "limit = math.sqrt(variance)",
        "conv2d",
        ("glorot_uniform", "kernel"),
    ),
    "pytorch-depthwise-fans": (  # the depthwise weight (C * M, 1, kh, kw) read as PyTorch does
        "keras_init_",
        "draw(depthwise.weight, window * channels, window * multiplier)",
        "draw(depthwise.weight, window, window * depthwise.out_channels)",
        "depthwise_conv2d",
        ("dw_out", "depthwise_kernel"),
    ),
    "swapped-fans": (  # a Keras (in, out) rule read off PyTorch's (out, in) weight
        "keras_init_",
        "draw(weight, window * weight.shape[1], window * weight.shape[0])",
        "draw(weight, window * weight.shape[0], window * weight.shape[1])",
        "conv2d_transpose",
        ("up_out", "kernel"),
    ),
    "truncated-normal-corrected": (  # TruncatedNormal's stddev is the normal's, uncorrected
        "TruncatedNormal",
        "nn.init.trunc_normal_(tensor, self.mean, self.stddev, low, high)",
        "nn.init.trunc_normal_(tensor, self.mean, self.stddev / 0.87962566103423978, low, high)",
        "conv2d",
        ("truncated", "kernel"),
    ),
    "he-as-glorot": (  # the name table (torch_render's, for a constant name): glorot's scale
        "_FAMILIES",
        '"he": (2.0, "fan_in")',
        '"he": (1.0, "fan_in")',
        "conv2d",
        ("he_uniform", "kernel"),
    ),
}


def mutated(helper: str, old: str, new: str) -> Callable[[str], str]:
    original = codegen.helper_source

    def source(name: str, *args: Any) -> str:
        text = original(name, *args)
        if name == helper:
            if old not in text:  # not an AssertionError: that would pass the test below
                raise LookupError(f"the mutant does not apply to {helper}")
            text = text.replace(old, new)
        return text

    return source


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mutant_is_caught(tmp_path: Path, mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    helper, old, new, kind, target = MUTANTS[mutant]
    compiled = kind_spec(tmp_path, kind)
    init = KINDS[kind][2][target]
    want = law(init, keras_shape(compiled, *target))
    check_law(torch_draws(compiled, [target])[target], want, "the rule")  # it holds ...
    if helper == "_FAMILIES":  # the renderer's table, not a helper's source
        monkeypatch.setitem(torch_render._FAMILIES, "he", (1.0, "fan_in"))
    else:
        monkeypatch.setattr(torch_render, "helper_source", mutated(helper, old, new))
    with pytest.raises(AssertionError) as caught:  # ... and the mutant breaks it
        check_law(torch_draws(compiled, [target])[target], want, mutant)
    assert mutant in str(caught.value)  # the check failed, nothing else


# -- EfficientNet: the initializers of keras.applications ----------------------------------------
EFFICIENTNETS = {"efficientnet": "EfficientNetB0", "efficientnet_v2": "EfficientNetV2B0"}


def _initializers(layer: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for key in ("kernel", "depthwise", "pointwise", "bias"):
        init = getattr(layer, f"{key}_initializer", None)
        if init is not None:
            out[key] = (type(init).__name__, init.get_config())
    return out


@pytest.mark.parametrize("spec", sorted(EFFICIENTNETS))
def test_efficientnet_initializers_are_keras_applications(spec: str) -> None:
    """Every layer with initializers has keras.applications' (class and get_config()), and
    the PyTorch model draws its top conv, a depthwise conv and the classifier as the
    reference's own layers are drawn."""
    import keras

    compiled = compile_spec(SPECS / f"{spec}.yaml", {"resolution": 64})
    keras.utils.set_random_seed(2)
    keras.backend.clear_session()
    reference = getattr(keras.applications, EFFICIENTNETS[spec])(
        include_top=True, weights=None, input_shape=(64, 64, 3)
    )
    ours = keras_backend.build(compiled)
    compared = 0
    for layer in reference.layers:
        want = _initializers(layer)
        if want:
            assert _initializers(ours.get_layer(layer.name)) == want, layer.name
            compared += 1
    assert compared > 50
    assert _initializers(ours.get_layer("predictions"))["kernel"][1]["mode"] == "fan_out"
    dw = "block6a_dwconv" if spec == "efficientnet" else "block6a_dwconv2"
    targets = [("top_conv", "kernel"), (dw, "depthwise_kernel"), ("predictions", "kernel")]
    torch_values = torch_draws(compiled, targets)
    for layer, weight in targets:
        names = [w.name for w in compiled.graph.node(layer).weights]
        variable = reference.get_layer(layer).weights[names.index(weight)]
        reference_values = np.asarray(variable.numpy(), np.float64).ravel()
        key = "kernel" if weight == "kernel" else "depthwise"
        init = getattr(reference.get_layer(layer), f"{key}_initializer").get_config()
        want = law({"class": "VarianceScaling", **init}, tuple(variable.shape))
        check_law(reference_values, want, f"keras.applications {layer}")
        check_law(torch_values[(layer, weight)], want, f"torch {layer}")
        check_same(torch_values[(layer, weight)], reference_values, layer)
