"""specs/unet.yaml against a U-Net written by hand in Keras' layers API (counts, and outputs
with weights copied by name); unknown input sizes through both backends at two sizes (the
models are built once, for any size); mutants that bake in a size are caught.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.backends.codegen import helper_source
from archc.backends.compile import VerificationError, compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.train_check import verify_training
from archc.backends.proof.verify import randomize_keras, verify
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import render as torch_render_module
from archc.backends.torch.ops import TORCH_OPS, TorchOp
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.ir import Counts
from tests.conftest import ROOT, SEED, SPECS

SPEC = SPECS / "unet.yaml"
TINY = {"filters": 4, "depth": 2}  # the smallest U-Net worth running: seconds per check


# -- the reference: a U-Net written by hand (Keras layers API) and its counts by formula -------
def reference_unet(
    depth: int = 4,
    filters: int = 64,
    classes: int = 2,
    upsampling: str = "transpose",
    channels: int = 3,
) -> Any:
    import keras
    from keras import layers

    def double_conv(x: Any, prefix: str, f: int) -> Any:
        for i in (1, 2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"{prefix}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"{prefix}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
        return x

    image = keras.Input((None, None, channels), name="image")
    skips = []
    x = double_conv(image, "enc0", filters)
    for level in range(1, depth + 1):
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
        x = double_conv(x, f"enc{level}", filters * 2**level)
    for level in reversed(range(depth)):
        f = filters * 2**level
        if upsampling == "transpose":
            x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", name=f"dec{level}_upconv")(
                x
            )
        else:
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_upsample")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = double_conv(x, f"dec{level}", f)
    head = layers.Conv2D(classes, 1, activation="softmax", name="head")(x)
    return keras.Model(image, head, name="unet")


def keras_counts(model: Any) -> Counts:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return Counts(trainable + frozen, trainable, frozen)


def formula_counts(
    depth: int = 4, filters: int = 64, classes: int = 2, upsampling: str = "transpose"
) -> Counts:
    """Two 3x3 convs without bias and two BNs (gamma, beta trained; mean, variance not) per
    level; a 2x2 transposed conv with bias per decoder level; a 1x1 head with bias."""

    def double_conv(cin: int, f: int) -> tuple[int, int]:
        return 9 * cin * f + 9 * f * f + 8 * f, 4 * f

    total = frozen = 0
    cin = 3
    for level in range(depth + 1):
        t, n = double_conv(cin, filters * 2**level)
        total, frozen, cin = total + t, frozen + n, filters * 2**level
    for level in reversed(range(depth)):
        f = filters * 2**level
        if upsampling == "transpose":
            total += 2 * 2 * (2 * f) * f + f
            t, n = double_conv(f + f, f)
        else:
            t, n = double_conv(2 * f + f, f)  # the level below's channels, upsampled, + skip
        total, frozen = total + t, frozen + n
    total += filters * classes + classes
    return Counts(total, total - frozen, frozen)


# -- counts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [None, "bilinear", "small"])
def test_counts_equal_a_keras_unet_written_by_hand(variant: str | None) -> None:
    compiled = compile_spec(SPEC, variant=variant)
    reference = keras_counts(reference_unet(**compiled.params))
    assert compiled.counts == reference == formula_counts(**compiled.params)
    assert compiled.expect is not None  # the spec states them, and archc checked them
    assert (compiled.expect.total, compiled.expect.trainable) == (
        reference.total,
        reference.trainable,
    )


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_counts_of_every_depth_by_formula(depth: int, upsampling: str) -> None:
    params = {"depth": depth, "filters": 8, "classes": 5, "upsampling": upsampling}
    assert compile_spec(SPEC, params).counts == formula_counts(**params)


def test_default_is_the_classic_size() -> None:
    """64 filters, 4 poolings, transposed convolutions: 31,049,474 parameters by hand."""
    assert formula_counts() == Counts(31_049_474, 31_037_698, 11_776)


def test_shapes_are_unknown_until_run_and_known_at_a_size() -> None:
    from archc.compiler.api import at_size

    compiled = compile_spec(SPEC)
    assert compiled.graph.node("image").shape == (None, None, 3)
    assert compiled.graph.node("enc4_relu2").shape == (None, None, 1024)
    assert compiled.graph.node("head").shape == (None, None, 2)
    assert compiled.graph.flops is None
    sized = at_size(compiled, (64, 48)).graph
    assert sized.node("enc4_relu2").shape == (64 // 16, 48 // 16, 1024)
    assert sized.node("head").shape == (64, 48, 2)


# -- the generated Keras model is the hand-written one ----------------------------------------
def keras_outputs_agree(compiled: Compiled, sizes: list[tuple[int, int]]) -> float:
    """The generated Keras model with random weights; the reference gets them by name; the
    largest difference of their outputs at each size."""
    generated = keras_backend.build(compiled)
    randomize_keras(generated, compiled.graph, seed=3)
    reference = reference_unet(**compiled.params)
    copied = 0
    for layer in reference.layers:
        if layer.weights:
            layer.set_weights(generated.get_layer(layer.name).get_weights())
            copied += 1
    assert copied == sum(1 for n in compiled.graph.nodes if n.weights)
    worst = 0.0
    rng = np.random.default_rng(0)
    for h, w in sizes:
        x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
        a = np.asarray(generated(x, training=False))
        b = np.asarray(reference(x, training=False))
        assert a.shape == b.shape == (2, h, w, compiled.params["classes"])
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_generated_keras_model_computes_the_hand_written_unet(upsampling: str) -> None:
    compiled = compile_spec(SPEC, {"filters": 8, "depth": 3, "upsampling": upsampling})
    assert keras_outputs_agree(compiled, [(64, 64), (96, 80)]) <= 1e-5


# -- both backends at two sizes -----------------------------------------------------------------
@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_verify_runs_both_models_at_two_sizes(upsampling: str) -> None:
    report = verify(str(SPEC), {**TINY, "upsampling": upsampling}, odd_input=True)
    assert report.sizes == [(64, 64), (96, 80)]
    assert report.layers_checked > 0 and report.max_abs_diff <= 1e-5
    assert report.odd_input is not None and "skipped" in report.odd_input  # 2^depth divides


def test_verify_the_small_variant_and_its_expect() -> None:
    report = verify(str(SPEC), variant="small", odd_input=False)
    assert report.torch == report.keras == Counts(484_162, 482_754, 1_408)
    assert report.sizes == [(64, 64), (96, 80)]


def test_sizes_the_network_refuses_are_skipped(tmp_path: Path) -> None:
    """A skip over a 32x32 pooling needs sizes divisible by 32: 96x80 is not (80 -> 2 -> 64),
    so the second size is 96x64."""
    path = tmp_path / "skip32.yaml"
    path.write_text(
        "archc: 1\nname: skip32\ninputs: [{name: image, shape: [null, null, 2]}]\nlayers:\n"
        "  - {op: conv2d, filters: 3, kernel: 3, padding: same, id: full}\n"
        "  - {op: max_pool2d, pool: 32}\n"
        "  - {op: upsample2d, size: 32}\n"
        "  - {op: concat, inputs: [prev, full]}\n"
    )
    report = verify(str(path), odd_input=False)
    assert report.sizes == [(64, 64), (96, 64)]
    path.write_text(
        path.read_text().replace("pool: 32", "pool: 1024").replace("size: 32", "size: 1024")
    )
    with pytest.raises(SpecError) as info:  # every candidate is smaller than the pool
        verify(str(path), odd_input=False)
    (diag,) = info.value.diagnostics
    assert diag.code == "E099"
    assert "the network accepts none of the sizes tried" in diag.message


def test_cli_input_size(archc) -> None:
    sets = ["--set", "filters=4", "--set", "depth=2"]
    result = archc("verify", SPEC, *sets, "--input-size", "32x48", "--input-size", "20x12")
    assert result.exit_code == 0, result.output
    assert "sizes: the input's height and width are unknown; run at 32x48 and 20x12" in (
        result.stdout
    )
    data = json.loads(archc("verify", SPEC, *sets, "--input-size", "8x4", "--json").stdout)
    assert data["input_sizes"] == [[8, 4]]
    refused = archc("verify", SPEC, *sets, "--input-size", "30x30")
    assert refused.exit_code == 1
    # 30 -> 15 -> 7, upsampled to 14: the skip of 15 no longer meets, at the concat
    assert "error[E099]: at input size 30x30: concat 'dec1_concat'" in refused.stderr
    assert "unet.yaml:" in refused.stderr and "Traceback" not in refused.stderr
    bad = archc("verify", SPEC, *sets, "--input-size", "thirty")
    assert bad.exit_code == 2 and "is not HEIGHTxWIDTH" in bad.stderr
    fixed = archc("verify", SEED, "--input-size", "32x32")
    assert fixed.exit_code == 1
    assert "error[E099]: --input-size is for inputs of unknown height and width" in fixed.stderr


def test_generated_modules_take_any_size() -> None:
    """The committed files: the PyTorch constructor tracks channels only (its spatial sizes
    are None), so one built model runs at every size; so does the Keras model."""
    import torch

    from archc.backends.codegen import import_source

    torch_module = import_source((ROOT / "generated" / "unet_torch.py").read_text(), "unet_t")
    keras_module = import_source((ROOT / "generated" / "unet_keras.py").read_text(), "unet_k")
    assert torch_module.INPUT_SHAPE == (3, None, None)
    assert keras_module.INPUT_SHAPE == (None, None, 3)
    for upsampling in ("transpose", "bilinear"):
        tm = torch_module.build_model(**TINY, classes=3, upsampling=upsampling).eval()
        km = keras_module.build_model(**TINY, classes=3, upsampling=upsampling)
        for h, w in [(16, 16), (32, 48), (4, 12)]:
            with torch.no_grad():
                y = tm(torch.zeros(1, 3, h, w))
            assert tuple(y.shape) == (1, 3, h, w)
            assert tuple(km(np.zeros((1, h, w, 3), np.float32)).shape) == (1, h, w, 3)


def test_compile_checks_the_output_shapes_at_the_first_size(tmp_path: Path) -> None:
    for backend in ("keras", "torch"):
        result = compile_to_file(SPEC, backend, tmp_path, TINY)
        assert result.counts == compile_spec(SPEC, TINY).counts


def test_training_agrees_at_a_size() -> None:
    report = verify_training(str(SPEC), {"filters": 2, "depth": 1}, steps=1, input_size=(8, 12))
    assert report.arrays_checked > 0


# -- every op that accepts unknown sizes, in both backends, at two sizes and an odd one ---------
EVERY_OP = """archc: 1
name: any_size
inputs: [{name: image, shape: [null, null, 3]}]
layers:
  - {op: rescaling, scale: 0.5, offset: 0.1}
  - {op: normalization, mean: [0.1, 0.2, 0.3], variance: [1.0, 2.0, 0.5]}
  - {op: conv2d, filters: 8, kernel: 3, strides: 2, padding: same, name: stem}
  - {op: batch_norm}
  - {op: depthwise_conv2d, kernel: 3, padding: same, depth_multiplier: 2, activation: relu}
  - {op: separable_conv2d, filters: 8, kernel: 3, strides: 2, padding: same}
  - {op: avg_pool2d, pool: 3, strides: 2, padding: same, id: trunk}
  - {op: global_avg_pool2d, keepdims: true}
  - {op: dense, units: 8, activation: sigmoid}
  - {op: multiply, inputs: [trunk, prev]}
  - {op: zero_pad2d, padding: [[1, 2], [0, 1]]}
  - {op: cropping2d, cropping: [[1, 2], [0, 1]]}
  - {op: layer_norm}
  - {op: layer_scale, init_value: 0.5}
  - {op: conv2d_transpose, filters: 6, kernel: 3, strides: 2, padding: same}
  - {op: upsample2d, size: [1, 2], interpolation: bilinear}
  - {op: max_pool2d, pool: [1, 2], id: up}
  - {op: conv2d, filters: 6, kernel: 1, inputs: up, name: side}
  - {op: add, inputs: [up, side]}
  - {op: subtract, inputs: [prev, side]}
  - {op: concat, inputs: [prev, side]}
  - {op: activation, fn: relu}
  - {op: stochastic_depth, rate: 0.1}
  - {op: dropout, rate: 0.2}
  - {op: global_max_pool2d}
  - {op: dense, units: 3, activation: softmax}
"""


def test_every_op_that_accepts_unknown_sizes_verifies_at_two_sizes_and_an_odd_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "any_size.yaml"
    path.write_text(EVERY_OP)
    report = verify(str(path), odd_input=True)
    assert report.sizes == [(64, 64), (96, 80)]
    assert report.odd_input is not None and report.odd_input["shape"] == [65, 63, 3]
    ops = {n.op for n in compile_spec(path).graph.nodes}
    from archc.compiler.plugins import builtin_ops

    accepting = {name for name, op in builtin_ops().items() if op.unknown_sizes}
    assert accepting <= ops


# -- mutants: modules that keep the first size they saw ----------------------------------------
BAKED_TRANSPOSE = """
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, 0, self.output_padding, self.groups
        )
        if not hasattr(self, "first"):
            self.first = tuple(y.shape[2:])  # mutant: the size of the first call, kept
        (top, bottom), (left, right) = self.crops
        return y[:, :, top : self.first[0] - bottom, left : self.first[1] - right]
"""


def _baked_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    def mutated(name: str, *args: Any) -> str:
        source = helper_source(name, *args)
        if name != "KerasConvTranspose2d":
            return source
        head, _, _ = source.partition("    def forward(")
        return head.rstrip() + "\n" + BAKED_TRANSPOSE

    monkeypatch.setattr(torch_render_module, "helper_source", mutated)


def test_mutant_transposed_conv_keeping_its_first_size_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _baked_helper(monkeypatch)
    assert verify(str(SPEC), TINY, input_sizes=[(64, 64)], odd_input=False).sizes == [(64, 64)]
    with pytest.raises(VerificationError) as info:  # one size alone cannot tell
        verify(str(SPEC), TINY, odd_input=False)
    (diag,) = info.value.diagnostics
    assert diag.code in ("E110", "E112")
    assert "96x80" in diag.message


def test_mutant_upsampling_to_the_first_size_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """F.interpolate to the output size seen at 64x64 (what a constructor that knew the size
    would write): right at 64x64, wrong at 96x80."""

    def forward(ctx: Any, xs: list[str], mod: str) -> str:
        level = int(ctx.step.name[3])  # decoder level l upsamples to 64 / 2^l at 64x64
        size = (64 >> level, 64 >> level)
        return f'F.interpolate({xs[0]}, size={size}, mode="bilinear")'

    original = TORCH_OPS["upsample2d"]
    monkeypatch.setitem(TORCH_OPS, "upsample2d", TorchOp(forward, shape=original.shape))
    params = {**TINY, "upsampling": "bilinear"}
    verify(str(SPEC), params, input_sizes=[(64, 64)], odd_input=False)
    with pytest.raises(VerificationError) as info:
        verify(str(SPEC), params, odd_input=False)
    assert "96x80" in info.value.diagnostics[0].message


def test_mutant_shape_rule_without_unknown_sizes_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """window_shape as it was before sizes could be unknown: the constructor computes
    None // 2 and the model cannot be built."""
    old = """def window_shape(shape, channels, kernel, strides=1, padding="valid", dilation=1):
    out = []
    for size, k, s, d in zip(shape[:2], pair(kernel), pair(strides), pair(dilation), strict=True):
        out.append(-(-size // s) if padding == "same" else (size - (k - 1) * d - 1) // s + 1)
    return (*out, channels)
"""

    def mutated(name: str, *args: Any) -> str:
        return old if name == "window_shape" else helper_source(name, *args)

    monkeypatch.setattr(torch_render_module, "helper_source", mutated)
    with pytest.raises(TypeError):
        torch_backend.build(compile_spec(SPEC, TINY))
