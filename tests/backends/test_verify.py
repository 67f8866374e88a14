"""Cross-backend proof: every Keras<->PyTorch rule (docs/ARCHITECTURE.md), transfer, `archc verify`.

Each rule gets a tiny spec (odd, non-square sizes) that `archc.backends.proof.verify.verify` must
pass, and where the rule is about something random inputs might not exercise (negative values
under max-pool padding, say) a targeted input too. Mutants of the PyTorch lowering that break one
rule each must make `verify` fail and name the first diverging layer, so a passing `verify`
means something. Nothing here measures time.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import typing
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archc.backends.compile import VerificationError
from archc.backends.keras import backend as keras_backend
from archc.backends.proof import conform, transfer
from archc.backends.proof.verify import (
    channels_first,
    channels_last,
    keras_layer_outputs,
    randomize_keras,
    softmax_logits,
    torch_layer_outputs,
    verify,
)
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import ops as torch_ops
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.ir import Counts, Graph
from archc.compiler.load import loads
from archc.compiler.ops import Activation
from tests.backends.llm_mutants import LLM_MUTANTS
from tests.backends.sequence_mutants import SEQUENCE_MUTANTS
from tests.conftest import SEED

SEED_COUNTS = Counts(96_133, 93_957, 2_176)


# -- helpers ----------------------------------------------------------------------------------
def tiny(
    shape: list[int], layers: str, outputs: list[str] | None = None, y: list[int] | None = None
) -> str:
    """A spec with input x of `shape` (and a second input y, when given)."""
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    second = f"  - {{name: y, shape: {y}}}\n" if y else ""
    text = f"archc: 1\nname: tiny\ninputs:\n  - {{name: x, shape: {shape}}}\n{second}"
    text += f"layers:\n{body}\n"
    return text + (f"outputs: {outputs}\n" if outputs else "")


@pytest.fixture
def spec(tmp_path: Path) -> Callable[..., Compiled]:
    """Write a tiny spec to a file and compile it (generated sources need a spec file)."""

    def make(
        shape: list[int], layers: str, outputs: list[str] | None = None, y: list[int] | None = None
    ) -> Compiled:
        path = tmp_path / "tiny.yaml"
        path.write_text(tiny(shape, layers, outputs, y), encoding="utf-8")
        return compile_spec(path)

    return make


def paired(compiled: Compiled, seed: int = 0) -> tuple[Any, Any]:
    """A Keras model with random weights and BN statistics, and a PyTorch model holding the
    same values (transferred by name)."""
    graph = compiled.graph
    km = keras_backend.build(compiled)
    tm = torch_backend.build(compiled)
    randomize_keras(km, graph, seed)
    assert transfer.keras_to_torch(km, tm, graph) == sum(len(n.weights) for n in graph.nodes)
    return km, tm


def both_outputs(compiled: Compiled, xs: list[np.ndarray], seed: int = 0) -> tuple[dict, dict, Any]:
    """Per-layer outputs (channels-last numpy) of both backends on the given inputs."""
    graph = compiled.graph
    km, tm = paired(compiled, seed)
    return keras_layer_outputs(km, graph, xs), torch_layer_outputs(tm, graph, xs), tm


def assert_agree(a: np.ndarray, b: np.ndarray, atol: float = 1e-5) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


def randn(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tf_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' split, written out independently of the compiler."""
    out = -(-n // s)
    pad = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
    return pad // 2, pad - pad // 2


def checked(compiled: Compiled) -> Any:
    """verify() raises on any disagreement (counts or numbers); passing is the assertion."""
    return verify(compiled)


# -- the rules table, one rule at a time ------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "pads"),
    [
        ([8, 10, 3], 3, 2, ((0, 1), (0, 1))),  # even sizes: the extra pixel goes bottom/right
        ([9, 11, 3], 4, 2, ((1, 2), (1, 2))),  # odd sizes, even kernel: asymmetric too
        ([9, 8, 3], 3, [2, 3], ((1, 1), (0, 1))),  # non-square strides
    ],
    ids=["even", "odd", "strides-2x3"],
)
def test_same_padding_uses_tensorflows_split(
    spec: Callable[..., Compiled], shape: list[int], kernel: int, strides: Any, pads: Any
) -> None:
    compiled = spec(
        shape,
        f"""
        - {{op: conv2d, name: conv, filters: 4, kernel: {kernel}, strides: {strides},
            padding: same}}
        - {{op: max_pool2d, name: mp, pool: {kernel}, strides: {strides}, padding: same,
            inputs: x}}
        - {{op: avg_pool2d, name: ap, pool: {kernel}, strides: {strides}, padding: same,
            inputs: x}}
        - {{op: concat, name: cat, inputs: [conv, mp, ap]}}
        """,
    )
    s = strides if isinstance(strides, list) else [strides, strides]
    assert pads == (tf_same(shape[0], kernel, s[0]), tf_same(shape[1], kernel, s[1]))
    for name in ("conv", "mp", "ap"):
        assert compiled.graph.node(name).attrs.pads == pads, name
    conv = torch_backend.build(compiled).get_submodule("conv")
    assert conv.padding == (0, 0)  # the split is applied by F.pad, not by the module
    checked(compiled)


def test_symmetric_padding_would_not_match_keras(spec: Callable[..., Compiled]) -> None:
    """Control: PyTorch's `padding=1` (the usual port of 'same') is off by a pixel when TF pads
    (0, 1), so the rule above is needed; same shapes, different numbers."""
    conv = "- {op: conv2d, name: conv, filters: 4, kernel: 3, strides: 2, padding: same}"
    compiled = spec([8, 10, 3], conv)
    x = randn(2, 8, 10, 3)
    k_out, t_out, tm = both_outputs(compiled, [x])
    assert_agree(k_out["conv"], t_out["conv"])
    conv = tm.get_submodule("conv")
    with torch.no_grad():
        naive = F.conv2d(torch.from_numpy(channels_first(x)), conv.weight, conv.bias, 2, 1)
    naive_nhwc = channels_last(naive.numpy())
    assert naive_nhwc.shape == k_out["conv"].shape
    assert np.abs(naive_nhwc - k_out["conv"]).max() > 1e-2


def test_dilated_convolution(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [11, 9, 3],
        """
        - {op: conv2d, name: same, filters: 4, kernel: 3, dilation: [2, 3], padding: same}
        - {op: conv2d, name: valid, filters: 3, kernel: [2, 3], dilation: 2}
        - {op: depthwise_conv2d, name: dw, kernel: 2, dilation: [1, 2], padding: same}
        """,
    )
    assert compiled.graph.node("same").attrs.pads == (tf_same(11, 3, 1, 2), tf_same(9, 3, 1, 3))
    assert compiled.graph.node("same").attrs.pads == ((2, 2), (3, 3))
    assert compiled.graph.node("dw").attrs.pads == ((0, 1), (1, 1))
    assert compiled.graph.node("valid").shape == (9, 5, 3)
    assert torch_backend.build(compiled).get_submodule("valid").dilation == (2, 2)
    checked(compiled)


def test_strides_with_dilation_are_rejected_at_compile_time() -> None:
    text = tiny(
        [9, 9, 3], "- {op: conv2d, name: c, filters: 2, kernel: 3, strides: 2, dilation: 2}"
    )
    with pytest.raises(SpecError, match="not supported"):
        compile_spec(loads(text))


def test_grouped_convolution(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [7, 9, 6],
        """
        - {op: conv2d, name: g3, filters: 9, kernel: 3, groups: 3, strides: 2, padding: same}
        - {op: conv2d, name: g9, filters: 9, kernel: [1, 2], groups: 9}
        """,
    )
    assert compiled.graph.node("g3").weights[0].shape == (3, 3, 2, 9)
    assert torch_backend.build(compiled).get_submodule("g3").groups == 3
    checked(compiled)


def test_depthwise_with_depth_multiplier_two(spec: Callable[..., Compiled]) -> None:
    """(kh, kw, C, M) -> Conv2d(C, C*M, groups=C); output channel c*M + m is input channel c's
    m-th filter, as in Keras."""
    compiled = spec(
        [7, 10, 3],
        "- {op: depthwise_conv2d, name: dw, kernel: 3, strides: 2, padding: same, "
        "depth_multiplier: 2}",
    )
    km, tm = paired(compiled)
    kernel = km.get_layer("dw").get_weights()[0]
    assert kernel.shape == (3, 3, 3, 2)
    weight = tm.get_submodule("dw").weight.detach().numpy()
    assert weight.shape == (6, 1, 3, 3) and tm.get_submodule("dw").groups == 3
    for c in range(3):
        for m in range(2):
            np.testing.assert_array_equal(weight[c * 2 + m, 0], kernel[:, :, c, m])
    checked(compiled)


def test_depthwise_with_unequal_strides_is_rejected() -> None:
    """TensorFlow's depthwise kernel takes equal strides only: archc says so at compile time
    (with the location), rather than emitting a Keras model that fails to build."""
    text = tiny([6, 8, 2], "- {op: depthwise_conv2d, name: dw, kernel: 2, strides: [1, 2]}")
    with pytest.raises(SpecError, match="strides") as info:
        compile_spec(loads(text))
    assert info.value.diagnostics[0].location is not None


def test_batch_norm_epsilon_and_momentum(spec: Callable[..., Compiled]) -> None:
    """A large epsilon makes the difference with PyTorch's 1e-5 obvious; momentum 0.9 maps to
    PyTorch's 0.1 (the weight of the new batch, not of the old statistics)."""
    compiled = spec(
        [5, 7, 4],
        """
        - {op: batch_norm, name: bn, epsilon: 0.1, momentum: 0.9}
        - {op: flatten, name: flat}
        - {op: batch_norm, name: bn_flat, epsilon: 0.01}
        """,
    )
    tm = torch_backend.build(compiled)
    assert tm.get_submodule("bn").eps == 0.1
    assert tm.get_submodule("bn").momentum == pytest.approx(0.1)
    assert tm.get_submodule("bn_flat").eps == 0.01
    assert tm.get_submodule("bn_flat").momentum == pytest.approx(0.01)
    checked(compiled)


def test_batch_norm_momentum_in_a_training_step(spec: Callable[..., Compiled]) -> None:
    """One training-mode step moves both statistics as Keras does: momentum 0.9 keeps 0.9 of
    the old value, and the variance moves towards the biased batch variance (PyTorch's own
    BatchNorm would use the unbiased one, n / (n - 1) larger)."""
    compiled = spec([3, 5, 4], "- {op: batch_norm, name: bn, epsilon: 0.1, momentum: 0.9}")
    km, tm = paired(compiled)
    old_var = km.get_layer("bn").get_weights()[3]
    x = randn(2, 3, 5, 4)
    km(x, training=True)
    tm.train()
    tm(torch.from_numpy(channels_first(x).copy()))
    _, _, mean, var = km.get_layer("bn").get_weights()
    bn = tm.get_submodule("bn")
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    biased = x.reshape(-1, 4).var(axis=0)  # numpy's var is the biased one
    np.testing.assert_allclose(var, 0.9 * old_var + 0.1 * biased, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5)


@pytest.mark.parametrize("batch", [2, 64])
def test_batch_norm_statistics_agree_after_five_training_steps(
    spec: Callable[..., Compiled], batch: int
) -> None:
    """The red-team's case: BN (momentum 0.5) then flatten on a [4, 4, 3] input; five
    training-mode forwards in both frameworks leave the same moving statistics (<= 1e-6) and
    the same inference outputs."""
    compiled = spec(
        [4, 4, 3], "- {op: batch_norm, name: bn, momentum: 0.5}\n- {op: flatten, name: flat}"
    )
    km, tm = paired(compiled)
    tm.train()
    for step in range(5):
        x = randn(batch, 4, 4, 3, seed=10 + step) * 3.0 + 1.0
        km(x, training=True)
        tm(torch.from_numpy(channels_first(x).copy()))
    _, _, mean, var = km.get_layer("bn").get_weights()
    bn = tm.get_submodule("bn")
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=0, atol=1e-6 * max(1, var.max()))
    tm.eval()
    x = randn(3, 4, 4, 3, seed=99)
    with torch.no_grad():
        got = tm(torch.from_numpy(channels_first(x).copy())).numpy()
    assert_agree(np.asarray(km(x, training=False)), got)


def test_flatten_is_channels_last_so_dense_weights_transfer(
    spec: Callable[..., Compiled],
) -> None:
    compiled = spec(
        [3, 5, 4],
        """
        - {op: conv2d, name: conv, filters: 3, kernel: 1}
        - {op: flatten, name: flat}
        - {op: dense, name: fc, units: 7}
        """,
    )
    checked(compiled)
    # control: flattening the NCHW tensor as it is gives the same shape, other numbers
    x = randn(2, 3, 5, 4)
    k_out, t_out, tm = both_outputs(compiled, [x])
    with torch.no_grad():
        conv = torch.from_numpy(channels_first(k_out["conv"]).copy())
        naive = tm.get_submodule("fc")(conv.flatten(1)).numpy()
    assert naive.shape == k_out["fc"].shape
    assert np.abs(naive - k_out["fc"]).max() > 1e-2
    assert_agree(t_out["fc"], k_out["fc"])


def test_avg_pool_same_does_not_count_padding(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [8, 7, 3],
        """
        - {op: avg_pool2d, name: s1, pool: 3, strides: 1, padding: same}
        - {op: avg_pool2d, name: s2, pool: [2, 3], strides: 2, padding: same, inputs: x}
        """,
        outputs=["s1", "s2"],
    )
    checked(compiled)
    # on all-ones input every window averages to exactly 1: nothing counts the padding
    ones = np.ones((2, 8, 7, 3), np.float32)
    k_out, t_out, _ = both_outputs(compiled, [ones])
    for name in ("s1", "s2"):
        np.testing.assert_allclose(k_out[name], 1.0, rtol=0, atol=1e-6)
        np.testing.assert_allclose(t_out[name], 1.0, rtol=0, atol=1e-6)
    # control: PyTorch's default divisor counts the zero padding
    naive = F.avg_pool2d(torch.ones(2, 3, 8, 7), 3, 1, 1, count_include_pad=True)
    assert naive.min().item() < 0.5


def test_max_pool_same_pads_with_minus_infinity(spec: Callable[..., Compiled]) -> None:
    """With every input negative, zero padding would put zeros at the borders."""
    compiled = spec(
        [8, 7, 3],
        """
        - {op: max_pool2d, name: p3, pool: 3, strides: 2, padding: same}
        - {op: max_pool2d, name: p2, pool: 2, strides: 1, padding: same, inputs: x}
        """,
        outputs=["p3", "p2"],
    )
    checked(compiled)
    x = -np.abs(randn(2, 8, 7, 3)) - 0.5
    k_out, t_out, _ = both_outputs(compiled, [x])
    for name in ("p3", "p2"):
        assert k_out[name].max() < 0
        np.testing.assert_array_equal(t_out[name], k_out[name])
    (top, bottom), (left, right) = compiled.graph.node("p2").attrs.pads
    padded = F.pad(torch.from_numpy(channels_first(x)), (left, right, top, bottom))
    zero_padded = F.max_pool2d(padded, 2, 1)
    assert zero_padded.max().item() == 0.0  # the control: zeros leak in


def test_concat_on_channels(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [5, 7, 3],
        """
        - {op: conv2d, name: a, filters: 2, kernel: 1}
        - {op: conv2d, name: b, filters: 5, kernel: 3, padding: same, inputs: x}
        - {op: concat, name: cat, inputs: [x, a, b]}
        - {op: activation, name: soft, fn: softmax}
        """,
    )
    assert compiled.graph.node("cat").shape == (5, 7, 10)
    checked(compiled)


def test_concat_on_negative_spatial_axes(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [5, 7, 3],
        """
        - {op: conv2d, name: narrow, filters: 3, kernel: [1, 3]}
        - {op: concat, name: cat_w, axis: -2, inputs: [x, narrow]}
        - {op: conv2d, name: short, filters: 3, kernel: [2, 1]}
        - {op: concat, name: cat_h, axis: -3, inputs: [cat_w, short]}
        """,
    )
    assert compiled.graph.node("cat_w").shape == (5, 12, 3)
    assert compiled.graph.node("cat_h").shape == (9, 12, 3)
    checked(compiled)


@pytest.mark.parametrize("axis", [0, 1])
def test_concat_on_non_negative_spatial_axes(spec: Callable[..., Compiled], axis: int) -> None:
    """Logical axes exclude the batch: axis 0 is the height (Keras axis 1, PyTorch dim 2)."""
    compiled = spec(
        [5, 7, 3],
        f"""
        - {{op: zero_pad2d, name: padded, padding: [[{1 - axis}, 0], [{axis}, 0]]}}
        - {{op: concat, name: cat, axis: {axis}, inputs: [x, padded]}}
        """,
    )
    assert compiled.graph.node("cat").shape == ((11, 7, 3) if axis == 0 else (5, 15, 3))
    checked(compiled)


def test_concat_on_a_rank_two_tensor(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [4, 3, 2],
        """
        - {op: reshape, name: seq, target_shape: [6, 4]}
        - {op: dense, name: proj, units: 4}
        - {op: concat, name: rows, axis: -2, inputs: [seq, proj]}
        - {op: concat, name: cols, inputs: [rows, rows]}
        """,
    )
    assert compiled.graph.node("cols").shape == (12, 8)
    checked(compiled)


def test_reshape_is_row_major_over_channels_last(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [4, 6, 3],
        """
        - {op: conv2d, name: conv, filters: 4, kernel: 1}
        - {op: reshape, name: image, target_shape: [8, 3, 4]}
        - {op: conv2d, name: conv2, filters: 2, kernel: [3, 2]}
        - {op: reshape, name: seq, target_shape: [-1, 6]}
        - {op: dense, name: fc, units: 3}
        - {op: reshape, name: flat, target_shape: [-1]}
        """,
    )
    assert compiled.graph.node("seq").shape == (4, 6)
    checked(compiled)


def test_dense_on_a_rank_three_input(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [5, 3, 4],
        """
        - {op: dense, name: fc1, units: 6, activation: relu}
        - {op: dense, name: fc2, units: 3, activation: softmax}
        """,
        outputs=["fc1", "fc2"],  # outputs are compared (per-pixel dense layers have no tap)
    )
    assert compiled.graph.node("fc2").shape == (5, 3, 3)
    report = checked(compiled)
    assert report.layers_checked == 2


CONVNEXT_BLOCK = """
- {op: conv2d, name: dw, filters: 6, kernel: 7, padding: same, groups: 6}
- {op: layer_norm, name: ln, epsilon: 1.0e-6}
- {op: dense, name: pw1, units: 24}
- {op: activation, name: gelu, fn: gelu}
- {op: dense, name: pw2, units: 6}
- {op: layer_scale, name: scale, init_value: 1.0e-6}
- {op: add, name: residual, inputs: [x, scale]}
"""


def test_dense_and_layer_norm_on_an_image_are_channels_last(
    spec: Callable[..., Compiled],
) -> None:
    """ConvNeXt's block applies LayerNormalization and Dense (its pointwise MLP) to (H, W, C)
    tensors: per pixel, over the channels. PyTorch holds the channels in dim 1, so both go
    over dim 1 (movedim to channels-last and back), with Keras' (in, out) kernel as Linear's
    (out, in) weight. Checked on a (5, 7, 6) input against numpy from Keras' weights."""
    compiled = spec([5, 7, 6], CONVNEXT_BLOCK, outputs=["ln", "pw1", "pw2", "residual"])
    assert compiled.graph.node("pw1").shape == (5, 7, 24)
    x = randn(2, 5, 7, 6)
    km, tm = paired(compiled)
    k_out = keras_layer_outputs(km, compiled.graph, [x])
    t_out = torch_layer_outputs(tm, compiled.graph, [x])
    w = {name: km.get_layer(name).get_weights() for name in ("ln", "pw1", "pw2", "scale")}
    state = tm.state_dict()
    np.testing.assert_array_equal(state["pw1.weight"].numpy(), w["pw1"][0].T)
    np.testing.assert_array_equal(state["pw2.weight"].numpy(), w["pw2"][0].T)
    h = np.asarray(km.get_layer("dw")(x), np.float64)  # numpy from here on
    mean, var = h.mean(axis=-1, keepdims=True), h.var(axis=-1, keepdims=True)
    ln = (h - mean) / np.sqrt(var + 1e-6) * w["ln"][0] + w["ln"][1]
    pw1 = ln @ w["pw1"][0] + w["pw1"][1]
    erf = np.vectorize(math.erf)
    gelu = 0.5 * pw1 * (1.0 + erf(pw1 / math.sqrt(2.0)))
    pw2 = gelu @ w["pw2"][0] + w["pw2"][1]
    want = {"ln": ln, "pw1": pw1, "pw2": pw2, "residual": x + pw2 * w["scale"][0]}
    for name, value in want.items():
        np.testing.assert_allclose(k_out[name], value, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(t_out[name], value, rtol=1e-4, atol=1e-4, err_msg=name)
    checked(compiled)


def transposed_conv(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], padding: str):
    """A transposed convolution written out: every input pixel scatters kernel * value to
    (i * s + a, j * s + b), channels-last, Keras' kernel (kh, kw, out, in); 'same' keeps
    n * s of the result, dropping (k - s) // 2 first (TF's split); 'valid' keeps
    (n - 1) * s + max(k, s) (zeros past the full result)."""
    n, h, w, _ = x.shape
    kh, kw, out, _ = kernel.shape
    (sh, sw) = strides
    full = np.zeros((n, (h - 1) * sh + max(kh, sh), (w - 1) * sw + max(kw, sw), out))
    for i in range(h):
        for j in range(w):
            contrib = np.einsum("nc,abfc->nabf", x[:, i, j].astype(np.float64), kernel)
            full[:, i * sh : i * sh + kh, j * sw : j * sw + kw] += contrib
    if padding == "valid":
        return full
    top, left = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
    return full[:, top : top + h * sh, left : left + w * sw]


@pytest.mark.parametrize(
    ("kernel", "strides", "padding"),
    [
        (3, 2, "same"),  # k - s odd: TF crops 0 at the top, 1 at the bottom
        (4, 2, "same"),  # k - s even
        (5, 2, "same"),
        (2, 3, "same"),  # s > k: nothing to crop, the last s - k rows are the bias
        ([3, 4], [1, 3], "same"),
        (3, 2, "valid"),
        (4, 1, "valid"),
        ([1, 2], 3, "valid"),
    ],
)
def test_conv_transpose_against_a_formula_and_keras(
    spec: Callable[..., Compiled], kernel: Any, strides: Any, padding: str
) -> None:
    """Keras' Conv2DTranspose (output n * s for 'same', (n - 1) * s + max(k, s) for 'valid')
    and KerasConvTranspose2d against the transposed convolution written out in numpy, with
    Keras' (kh, kw, out, in) kernel as ConvTranspose2d's (in, out, kh, kw); odd, non-square
    input."""
    compiled = spec(
        [5, 7, 3],
        f"- {{op: conv2d_transpose, name: up, filters: 4, kernel: {kernel}, "
        f"strides: {strides}, padding: {padding}}}",
    )
    x = randn(2, 5, 7, 3)
    km, tm = paired(compiled)
    k_kernel, k_bias = km.get_layer("up").get_weights()
    np.testing.assert_array_equal(
        tm.get_submodule("up").weight.detach().numpy(), k_kernel.transpose(3, 2, 0, 1)
    )
    s = strides if isinstance(strides, list) else [strides, strides]
    want = transposed_conv(x, k_kernel, (s[0], s[1]), padding) + k_bias
    assert compiled.graph.node("up").shape == want.shape[1:]
    k_out = keras_layer_outputs(km, compiled.graph, [x])["up"]
    t_out = torch_layer_outputs(tm, compiled.graph, [x])["up"]
    np.testing.assert_allclose(k_out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t_out, want, rtol=1e-5, atol=1e-5)
    checked(compiled)


def test_conv_transpose_starts_from_keras_initial_values(spec: Callable[..., Compiled]) -> None:
    """Glorot-uniform with Keras' fans of its (kh, kw, out, in) kernel: fan_in = kh*kw*out,
    fan_out = kh*kw*in (PyTorch's of (in, out, kh, kw) are the same); zero bias."""
    compiled = spec([5, 7, 3], "- {op: conv2d_transpose, name: up, filters: 8, kernel: [3, 2]}")
    torch.manual_seed(0)
    up = torch_backend.build(compiled).get_submodule("up")
    limit = math.sqrt(6.0 / (3 * 2 * 8 + 3 * 2 * 3))
    weight = up.weight.detach().numpy()
    assert weight.shape == (3, 8, 3, 2)
    assert np.abs(weight).max() <= limit and np.abs(weight).max() > 0.9 * limit
    assert not up.bias.detach().numpy().any()


MODERN_OPS = """
- {op: normalization, name: stored}
- {op: normalization, name: fixed, mean: [1.0, 2.0, 3.0], variance: [4.0, 1.0, 0.25]}
- {op: conv2d_transpose, name: up, filters: 6, kernel: 3, strides: 2, padding: same}
- {op: layer_norm, name: ln, epsilon: 1.0e-6}
- {op: dense, name: pw, units: 6}
- {op: layer_scale, name: scale}
- {op: stochastic_depth, name: drop_path, rate: 0.1}
- {op: dropout, name: drop, rate: 0.2, noise_shape: [1, 1, null]}
"""


def test_new_helpers_script_and_export(spec: Callable[..., Compiled], tmp_path: Path) -> None:
    """The helpers these ops copy into generated files work with torch.jit.script and
    torch.export.export (as the zoo's do) and compute what the module computes."""
    import importlib.util

    compiled = spec([5, 7, 3], MODERN_OPS)
    path = tmp_path / "modern_ops_torch.py"  # on disk: TorchScript reads the source
    path.write_text(torch_backend.render(compiled), encoding="utf-8")
    found = importlib.util.spec_from_file_location("_modern_ops_torch", path)
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.build_model().eval()
    x = torch.randn(2, 3, 5, 7)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want, rtol=1e-5, atol=1e-6)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), want, rtol=1e-5, atol=1e-6)
    checked(compiled)


def shared_axes(y: np.ndarray) -> tuple[bool, ...]:
    """Per non-batch axis of a channels-last array: is it constant along that axis?"""
    return tuple(bool(np.all(y == y.take([0], axis=a))) for a in range(1, y.ndim))


def training_outputs(compiled: Compiled, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-layer model's output in training mode, in Keras and PyTorch (channels-last)."""
    km = keras_backend.build(compiled)
    tm = torch_backend.build(compiled).train()
    torch.manual_seed(0)
    with torch.no_grad():
        t = tm(torch.from_numpy(channels_first(x).copy())).numpy()
    return np.asarray(km(x, training=True)), channels_last(t)


def check_dropout_masks(compiled: Compiled, rate: float, shared: tuple[bool, ...]) -> None:
    """On all-ones input, a training-mode output is the mask scaled by 1 / (1 - rate): every
    value is 0 or 1 / keep, about `rate` of them 0, one value along each shared axis (a
    noise_shape entry of 1) and different values along the others, in both frameworks."""
    shape = compiled.graph.node(compiled.graph.inputs[0]).shape
    # 1,024 samples: a per-sample mask's dropped fraction is then within 0.15 of the rate
    # but for 1 in 10^20 draws (std 0.016); 64 samples failed 1 run in ~30 (std 0.0625)
    ones = np.ones((1024, *shape), np.float32)
    for framework, y in zip(("keras", "torch"), training_outputs(compiled, ones), strict=True):
        keep = 1.0 - rate
        assert np.all(np.isclose(y, 0.0) | np.isclose(y, 1.0 / keep, rtol=1e-6)), framework
        assert abs(np.isclose(y, 0.0).mean() - rate) < 0.15, framework
        assert shared_axes(y) == shared, framework


NOISE_SHAPES = {  # noise_shape on a (5, 7, 4) input -> which axes share one mask value
    "per-sample": ("[1, 1, 1]", (True, True, True)),
    "per-channel": ("[1, 1, null]", (True, True, False)),
    "per-height-and-channel": ("[null, 1, 4]", (False, True, False)),
    "per-pixel": ("[5, 7, 1]", (False, False, True)),
}


@pytest.mark.parametrize("case", sorted(NOISE_SHAPES))
def test_dropout_noise_shape_in_training(spec: Callable[..., Compiled], case: str) -> None:
    """Keras' Dropout(rate, noise_shape=(None, *noise_shape)) and KerasDropout draw one mask
    of the same shape: the PyTorch mask's axes in NCHW order. At inference both are the
    identity (verify)."""
    noise, shared = NOISE_SHAPES[case]
    compiled = spec([5, 7, 4], f"- {{op: dropout, name: drop, rate: 0.5, noise_shape: {noise}}}")
    check_dropout_masks(compiled, 0.5, shared)
    checked(compiled)


def _dropout_mask_in_keras_order(ctx: Any) -> str:
    """KerasDropout handed noise_shape rotated the other way, so that its reordering cancels
    out: the channels-last mask laid over the NCHW tensor as it is."""
    noise = ctx.const("noise_shape")
    return f"{ctx.helper('KerasDropout')}({ctx.attr('rate')}, {(*noise[1:], noise[0])!r})"


def test_dropout_mask_in_keras_order_is_caught(
    spec: Callable[..., Compiled], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training-time mutant verify cannot see (it runs in inference mode): the test above
    catches it."""
    compiled = spec([5, 7, 4], "- {op: dropout, name: drop, rate: 0.5, noise_shape: [1, 1, null]}")
    check_dropout_masks(compiled, 0.5, (True, True, False))
    _emitter("dropout", module=_dropout_mask_in_keras_order)(monkeypatch)
    with pytest.raises(AssertionError, match="torch"):
        check_dropout_masks(compiled, 0.5, (True, True, False))


def test_stochastic_depth_drops_whole_samples(
    spec: Callable[..., Compiled], tmp_path: Path
) -> None:
    """Keras' Dropout(rate, noise_shape=(None, 1, 1, 1)) is ConvNeXt's StochasticDepth: each
    sample kept whole (scaled by 1 / keep) or dropped whole; KerasDropout with a noise shape
    of ones is the same in PyTorch. A block called on an image and on a vector (the
    generated code takes the rank from the tensor) does it at both ranks."""
    import keras

    compiled = spec([5, 7, 4], "- {op: stochastic_depth, name: drop_path, rate: 0.5}")
    check_dropout_masks(compiled, 0.5, (True, True, True))
    checked(compiled)
    text = tiny(
        [5, 7, 4],
        """
        - {block: drop, args: {tag: image}}
        - {op: global_avg_pool2d, name: pool}
        - {block: drop, args: {tag: vector}}
        """,
    )
    text += "blocks:\n  drop:\n    args: {tag: {type: str}}\n    body:\n"
    text += "      - {op: stochastic_depth, name: '${tag}_drop', rate: 0.5}\n"
    path = tmp_path / "blocks.yaml"
    path.write_text(text, encoding="utf-8")
    compiled = compile_spec(path)
    keras_source = keras_backend.render(compiled)
    assert "noise_shape=(None,) + (1,) * (len(inputs.shape) - 1)" in keras_source
    km, tm = keras_backend.build(compiled), torch_backend.build(compiled).train()
    probe = keras.Model(km.inputs, [km.get_layer("image_drop").output, km.output])
    ones = np.ones((64, 5, 7, 4), np.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        t_vector = tm(torch.from_numpy(channels_first(ones).copy())).numpy()
    k_image, k_vector = (np.asarray(y) for y in probe(ones, training=True))
    for y in (k_image, k_vector, t_vector):
        assert shared_axes(y) == (True,) * (y.ndim - 1)
        assert 0 < np.isclose(y, 0.0).mean() < 1
    checked(compiled)


def test_per_element_stochastic_depth_is_caught(
    spec: Callable[..., Compiled], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training-time mutant verify cannot see: per-element dropout (nn.Dropout) where whole
    samples must be dropped; the mask test above catches it."""
    compiled = spec([5, 7, 4], "- {op: stochastic_depth, name: drop_path, rate: 0.5}")
    _emitter("stochastic_depth", module=lambda ctx: f"nn.Dropout({ctx.attr('rate')})")(monkeypatch)
    with pytest.raises(AssertionError, match="torch"):
        check_dropout_masks(compiled, 0.5, (True, True, True))


def test_normalization_adapted_in_keras_moves_to_pytorch(spec: Callable[..., Compiled]) -> None:
    """Keras' own adapt() sets mean and variance from data; transferred by name, both compute
    (x - mean) / sqrt(variance) with numpy's statistics of the data; count (which Keras 3
    keeps for older saved models, adapt() leaves it) moves as it is; the round trip back to a
    fresh Keras model (which computes with copies made when its weights are set) is exact."""
    compiled = spec([5, 7, 3], "- {op: normalization, name: norm}")
    graph = compiled.graph
    km, tm = keras_backend.build(compiled), torch_backend.build(compiled).eval()
    data = randn(8, 5, 7, 3) * np.float32([1.0, 3.0, 0.5]) + np.float32([2.0, -1.0, 0.0])
    layer = km.get_layer("norm")
    layer.adapt(data)
    mean, variance, _ = layer.get_weights()
    layer.set_weights([mean, variance, np.int64(8 * 5 * 7)])
    assert transfer.keras_to_torch(km, tm, graph) == 3
    assert tm.get_submodule("norm").count.item() == 8 * 5 * 7
    flat = data.reshape(-1, 3).astype(np.float64)
    x = randn(2, 5, 7, 3, seed=2)
    want = (x - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0))
    with torch.no_grad():
        got = channels_last(tm(torch.from_numpy(channels_first(x).copy())).numpy())
    np.testing.assert_allclose(np.asarray(km(x, training=False)), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    back = keras_backend.build(compiled)
    assert transfer.torch_to_keras(tm, back, graph) == 3
    _assert_same_weights(km, back, graph)
    np.testing.assert_array_equal(np.asarray(back(x, training=False)), np.asarray(km(x)))
    checked(compiled)


def test_normalization_with_fixed_values(spec: Callable[..., Compiled]) -> None:
    """Fixed mean and variance are constants (no weights in either framework); a zero variance
    divides by Keras' epsilon, max(sqrt(0), 1e-7)."""
    compiled = spec(
        [5, 7, 3],
        """
        - {op: normalization, name: fixed, mean: [1.0, 2.0, -3.0], variance: [4.0, 0.0, 0.25]}
        - {op: normalization, name: numbers, mean: 0.5, variance: 9, inputs: x}
        """,
        outputs=["fixed", "numbers"],
    )
    assert compiled.graph.counts == Counts(0, 0, 0)
    x = randn(2, 5, 7, 3)
    k_out, t_out, tm = both_outputs(compiled, [x])
    assert not list(tm.parameters()) and not list(tm.buffers())
    std = np.maximum(np.sqrt([4.0, 0.0, 0.25]), 1e-7)
    want = {"fixed": (x - np.array([1.0, 2.0, -3.0])) / std, "numbers": (x - 0.5) / 3.0}
    for name in ("fixed", "numbers"):
        np.testing.assert_allclose(k_out[name], want[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(t_out[name], want[name], rtol=1e-5, atol=1e-5)
    checked(compiled)


def test_layer_scale_multiplies_each_channel_by_gamma(
    spec: Callable[..., Compiled], tmp_path: Path
) -> None:
    """ConvNeXt's LayerScale: both start with gamma = init_value (Keras' own initializer, and
    PyTorch's), compute x * gamma per channel with transferred values, and the Keras model
    (its class defined in the generated file) saves and reloads as .keras."""
    import keras

    compiled = spec([5, 7, 4], "- {op: layer_scale, name: scale, init_value: 0.001}")
    km, tm = keras_backend.build(compiled), torch_backend.build(compiled)
    fresh = np.full(4, 0.001, np.float32)
    np.testing.assert_array_equal(km.get_layer("scale").get_weights()[0], fresh)
    np.testing.assert_array_equal(tm.get_submodule("scale").weight.detach().numpy(), fresh)
    km, tm = paired(compiled)
    gamma = tm.get_submodule("scale").weight.detach().numpy()
    np.testing.assert_array_equal(gamma, km.get_layer("scale").get_weights()[0])
    assert np.ptp(gamma) > 0.1  # random, one value per channel
    x = randn(2, 5, 7, 4)
    with torch.no_grad():
        got = channels_last(tm(torch.from_numpy(channels_first(x).copy())).numpy())
    np.testing.assert_allclose(np.asarray(km(x)), x * gamma, rtol=1e-6)
    np.testing.assert_allclose(got, x * gamma, rtol=1e-6)
    path = tmp_path / "scale.keras"
    km.save(path)
    again = keras.saving.load_model(path)
    assert type(again.get_layer("scale")).__name__ == "LayerScale"
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(km(x)))
    checked(compiled)


@pytest.mark.parametrize("fn", typing.get_args(Activation))
def test_activation_follows_keras_definition(spec: Callable[..., Compiled], fn: str) -> None:
    """Every activation the spec language declares, across the kinks (-3, 0, 3): both
    backends compute Keras 3's definition as conform.activate writes it with numpy (Keras 2's
    hard_sigmoid was 0.2x + 0.5; PyTorch's leaky_relu slope defaults to 0.01). Keras' own
    layer agreeing holds those formulas, which compile's read-back uses, to Keras."""
    compiled = spec([1, 17, 2], f"- {{op: activation, name: act, fn: {fn}}}")
    line = np.linspace(-4.0, 4.0, 17, dtype=np.float32)
    x = np.stack([line, line[::-1] / 2], axis=-1).reshape(1, 1, 17, 2)
    k_out, t_out, _ = both_outputs(compiled, [x])
    want = conform.activate(fn, x.astype(np.float64), axis=-1)  # channels-last here
    np.testing.assert_allclose(k_out["act"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t_out["act"], want, rtol=1e-5, atol=1e-6)
    checked(compiled)


def test_global_max_pool_is_the_maximum_over_height_and_width(
    spec: Callable[..., Compiled],
) -> None:
    compiled = spec(
        [5, 7, 3],
        """
        - {op: global_max_pool2d, name: gmp}
        - {op: global_max_pool2d, name: keep, keepdims: true, inputs: x}
        """,
        outputs=["gmp", "keep"],
    )
    x = randn(2, 5, 7, 3) - 3.0  # all negative: a zero anywhere would show
    k_out, t_out, _ = both_outputs(compiled, [x])
    np.testing.assert_allclose(t_out["gmp"], x.max(axis=(1, 2)), rtol=0, atol=0)
    np.testing.assert_allclose(k_out["gmp"], x.max(axis=(1, 2)), rtol=0, atol=0)
    assert t_out["keep"].shape == (2, 1, 1, 3)
    checked(compiled)


def test_broadcasting_follows_keras(spec: Callable[..., Compiled]) -> None:
    """A squeeze-excite gate (1, 1, C), a per-channel vector (C,) and a per-column (W, C)
    input y against (H, W, C) images: Keras aligns shapes on the right (channels); PyTorch
    holds channels in dim 1, so a lower-rank value gets its size-1 axes after the channels."""
    compiled = spec(
        [5, 7, 4],
        """
        - {op: global_avg_pool2d, name: gate, keepdims: true, inputs: x}
        - {op: multiply, name: excite, inputs: [x, gate]}
        - {op: global_max_pool2d, name: vector, inputs: x}
        - {op: add, name: shifted, inputs: [vector, excite]}
        - {op: subtract, name: by_column, inputs: [shifted, y]}
        """,
        y=[7, 4],
    )
    assert compiled.graph.node("by_column").shape == (5, 7, 4)
    x, y = randn(2, 5, 7, 4), randn(2, 7, 4, seed=2)
    k_out, t_out, _ = both_outputs(compiled, [x, y])
    shifted = x.max(axis=(1, 2))[:, None, None, :] + x * x.mean(axis=(1, 2), keepdims=True)
    want = shifted - y[:, None, :, :]  # (W, C) aligns with (H, W, C) on the right
    np.testing.assert_allclose(k_out["by_column"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t_out["by_column"], want, rtol=1e-5, atol=1e-5)
    checked(compiled)


def test_layer_norm_normalises_each_pixel_over_its_channels(
    spec: Callable[..., Compiled],
) -> None:
    """Keras' LayerNormalization (axis -1, epsilon 1e-3) on an image: per pixel, over the
    channels; PyTorch holds channels in dim 1 (its own LayerNorm normalises the last dims)."""
    compiled = spec([3, 5, 4], "- {op: layer_norm, name: ln}")
    x = randn(2, 3, 5, 4) * 0.05  # small variance: epsilon 1e-3 against 1e-5 shows
    k_out, t_out, tm = both_outputs(compiled, [x])
    ln = tm.get_submodule("ln")
    gamma, beta = ln.weight.detach().numpy(), ln.bias.detach().numpy()
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(k_out["ln"], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t_out["ln"], want, rtol=1e-4, atol=1e-5)
    checked(compiled)


def test_upsampling_cropping_and_rescaling(spec: Callable[..., Compiled]) -> None:
    """Nearest upsampling repeats pixels; bilinear uses TF's half-pixel centres (PyTorch's
    align_corners=False); cropping removes rows and columns; rescaling is x * scale + offset.
    Checked against numpy and between the backends."""
    compiled = spec(
        [3, 4, 2],
        """
        - {op: upsample2d, name: nearest, size: [2, 3], inputs: x}
        - {op: upsample2d, name: bilinear, interpolation: bilinear, inputs: x}
        - {op: cropping2d, name: crop, cropping: [[1, 0], [2, 3]], inputs: bilinear}
        - {op: rescaling, name: scaled, scale: 0.5, offset: -1.0, inputs: crop}
        """,
        outputs=["nearest", "scaled"],
    )
    x = randn(2, 3, 4, 2)
    k_out, t_out, _ = both_outputs(compiled, [x])
    nearest = x.repeat(2, axis=1).repeat(3, axis=2)
    np.testing.assert_array_equal(t_out["nearest"], nearest)
    np.testing.assert_array_equal(k_out["nearest"], nearest)
    assert t_out["scaled"].shape == (2, 5, 3, 2)
    assert_agree(k_out["scaled"], t_out["scaled"])
    checked(compiled)


def test_separable_convolution_is_one_layer_with_keras_layouts(
    spec: Callable[..., Compiled],
) -> None:
    """One Keras SeparableConv2D layer (weights load by its name): the depthwise kernel
    (kh, kw, C, M) and pointwise kernel (1, 1, C*M, F) go to the two convolutions inside
    one PyTorch module; with TF 'same' padding at stride 2."""
    compiled = spec(
        [8, 7, 3],
        "- {op: separable_conv2d, name: sep, filters: 5, kernel: 3, strides: 2, "
        "padding: same, depth_multiplier: 2}",
    )
    km, tm = paired(compiled)
    depthwise, pointwise, bias = km.get_layer("sep").get_weights()
    sep = tm.get_submodule(tm.keras_layers["sep"])
    for c in range(3):
        for m in range(2):
            got = sep.depthwise.weight.detach().numpy()[c * 2 + m, 0]
            np.testing.assert_array_equal(got, depthwise[:, :, c, m])
    np.testing.assert_array_equal(
        sep.pointwise.weight.detach().numpy()[:, :, 0, 0], pointwise[0, 0].T
    )
    np.testing.assert_array_equal(sep.pointwise.bias.detach().numpy(), bias)
    checked(compiled)


def test_softmax_is_over_channels(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [3, 5, 4],
        """
        - {op: activation, name: image, fn: softmax}
        - {op: reshape, name: seq, target_shape: [15, 4]}
        - {op: activation, name: rows, fn: softmax}
        - {op: flatten, name: flat}
        - {op: activation, name: vector, fn: softmax}
        """,
        outputs=["image", "rows", "vector"],  # functional layers are compared as outputs
    )
    checked(compiled)
    x = randn(2, 3, 5, 4)
    k_out, t_out, _ = both_outputs(compiled, [x])
    np.testing.assert_allclose(t_out["image"].sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t_out["vector"].sum(axis=-1), 1.0, rtol=1e-5)
    assert_agree(t_out["image"], k_out["image"])


def test_global_pooling_with_and_without_keepdims(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [5, 7, 3],
        """
        - {op: global_avg_pool2d, name: keep, keepdims: true}
        - {op: conv2d, name: squeeze, filters: 2, kernel: 1}
        - {op: global_avg_pool2d, name: flat, inputs: x}
        - {op: dense, name: fc, units: 2}
        - {op: reshape, name: fc_image, target_shape: [1, 1, 2]}
        - {op: multiply, name: gate, inputs: [squeeze, fc_image]}
        """,
    )
    assert compiled.graph.node("keep").shape == (1, 1, 3)
    assert compiled.graph.node("flat").shape == (3,)
    checked(compiled)


def test_zero_pad_asymmetric(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [3, 5, 2],
        """
        - {op: zero_pad2d, name: pad, padding: [[0, 2], [3, 1]]}
        - {op: conv2d, name: conv, filters: 2, kernel: 2, strides: 2}
        """,
    )
    assert compiled.graph.node("pad").shape == (5, 9, 2)
    checked(compiled)
    x = randn(2, 3, 5, 2)
    k_out, t_out, _ = both_outputs(compiled, [x])
    np.testing.assert_array_equal(t_out["pad"][:, :3, 3:8], x)  # top 0, left 3
    np.testing.assert_array_equal(t_out["pad"], k_out["pad"])


def test_trainable_false_is_non_trainable_in_both(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [7, 5, 4],
        """
        - {op: conv2d, name: conv, filters: 6, kernel: 3, trainable: false}
        - {op: batch_norm, name: bn, trainable: false}
        - {op: depthwise_conv2d, name: dw, kernel: 1, depth_multiplier: 2, trainable: false}
        - {op: batch_norm, name: bn2}
        - {op: flatten, name: flat}
        - {op: dense, name: fc, units: 3, trainable: false}
        - {op: dense, name: head, units: 2}
        """,
    )
    frozen = (3 * 3 * 4 * 6 + 6) + 4 * 6 + (6 * 2 + 12) + (5 * 3 * 12 * 3 + 3)
    stats = 2 * 12
    trainable = 2 * 12 + (3 * 2 + 2)
    want = Counts(frozen + stats + trainable, trainable, frozen + stats)
    assert compiled.graph.counts == want
    report = checked(compiled)
    assert report.keras == report.torch == want


def test_l2_penalties_are_equal(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        [7, 5, 4],
        """
        - {op: conv2d, name: conv, filters: 6, kernel: 3, kernel_l2: 0.01}
        - {op: depthwise_conv2d, name: dw, kernel: 2, depth_multiplier: 2, kernel_l2: 0.001}
        - {op: conv2d, name: plain, filters: 2, kernel: 1}
        - {op: flatten, name: flat}
        - {op: dense, name: fc, units: 3, kernel_l2: 0.1}
        """,
    )
    import keras

    km, tm = paired(compiled)
    assert len(km.losses) == 3
    want = sum(float(keras.ops.convert_to_numpy(loss)) for loss in km.losses)
    assert tm.regularization_loss().item() == pytest.approx(want, rel=1e-5)
    checked(compiled)


# -- mutants: break one rule in an op's emitter, verify must catch it -------------------------
def _emitter(op: str, **changes: Any) -> Callable[[pytest.MonkeyPatch], None]:
    """Replace parts of one op's PyTorch emitter (module, forward or weight bindings)."""

    def apply(mp: pytest.MonkeyPatch) -> None:
        mp.setitem(torch_ops.TORCH_OPS, op, replace(torch_ops.TORCH_OPS[op], **changes))

    return apply


def _changed_module(op: str, edit: Callable[[str], str]) -> Callable[[pytest.MonkeyPatch], None]:
    original = torch_ops.TORCH_OPS[op].module
    assert original is not None
    return _emitter(op, module=lambda ctx: edit(original(ctx)))


def _symmetric_same(ctx: Any) -> str:
    """The classic port of 'same': PyTorch's symmetric `padding=k // 2`."""
    return f"nn.Conv2d({ctx.shape}[-1], {ctx.attr('filters')}, 3, stride=2, padding=1)"


def _channel_major_depthwise(a: np.ndarray) -> np.ndarray:
    kh, kw, c, m = a.shape  # (kh, kw, C, M) -> (M*C, 1, kh, kw): the wrong order
    return a.transpose(3, 2, 0, 1).reshape(m * c, 1, kh, kw)


_DW = torch_ops.TORCH_OPS["depthwise_conv2d"]

# name -> (input shape, layers, the layer verify must name, how to break the emitter)
MUTANTS = {
    "symmetric-same": (
        [8, 10, 3],  # even sizes: TF pads (0, 1)
        "- {op: conv2d, name: conv, filters: 3, kernel: 3, strides: 2, padding: same}",
        "conv",
        _emitter("conv2d", module=_symmetric_same),
    ),
    "bn-eps": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n- {op: batch_norm, name: bn}",
        "bn",
        _changed_module("batch_norm", lambda src: src.replace("eps=0.001", "eps=1e-05")),
    ),
    "flatten-nchw": (
        [7, 9, 3],
        "- {op: flatten, name: flat}\n- {op: dense, name: fc, units: 4}",
        "flat",
        _emitter("flatten", forward=lambda ctx, xs, mod: f"{xs[0]}.flatten(1)"),
    ),
    "max-pool-zeros": (
        [7, 9, 3],  # odd sizes, pool 2 stride 2: TF pads (0, 1)
        "- {op: max_pool2d, name: pool, pool: 2, strides: 2, padding: same}",
        "pool",
        _emitter(
            "max_pool2d",
            module=lambda ctx: "nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 2))",
        ),
    ),
    "avg-pool-counts-padding": (
        [7, 9, 3],
        "- {op: avg_pool2d, name: pool, pool: 3, strides: 2, padding: same}",
        "pool",
        _emitter(
            "avg_pool2d",
            module=lambda ctx: "nn.Sequential(nn.ZeroPad2d((1, 1, 1, 1)), nn.AvgPool2d(3, 2))",
        ),
    ),
    "softmax-on-width": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n"
        "- {op: activation, name: soft, fn: softmax}",
        "soft",
        _emitter("activation", forward=lambda ctx, xs, mod: f"F.softmax({xs[0]}, dim=-1)"),
    ),
    "leaky-relu-slope": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n"
        "- {op: activation, name: leaky, fn: leaky_relu}",
        "leaky",
        _emitter("activation", forward=lambda ctx, xs, mod: f"F.leaky_relu({xs[0]})"),
    ),
    "hard-sigmoid-keras2": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n"
        "- {op: activation, name: hard, fn: hard_sigmoid}",
        "hard",
        _emitter(
            "activation",
            forward=lambda ctx, xs, mod: f"torch.clamp(0.2 * {xs[0]} + 0.5, 0.0, 1.0)",
        ),
    ),
    "global-max-as-mean": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n- {op: global_max_pool2d, name: gmp}",
        "gmp",
        _emitter("global_max_pool2d", forward=lambda ctx, xs, mod: f"{xs[0]}.mean((2, 3))"),
    ),
    "broadcast-rank-at-the-end": (
        [5, 5, 3],  # square: axes put last still broadcast, across the wrong axis
        "- {op: conv2d, name: conv, filters: 3, kernel: 1, inputs: x}\n"
        "- {op: add, name: plus, inputs: [conv, y]}",
        "plus",
        _emitter(
            "add",  # a lower-rank input's new axes put last, not after the channels
            forward=lambda ctx, xs, mod: " + ".join(
                f"{x}.movedim(-1, 1)[..., None]" if r == 2 else x
                for x, r in zip(xs, ctx.in_ranks, strict=True)
            ),
        ),
    ),
    "add-scale-on-the-wrong-input": (  # more add mutants: tests/backends/test_scaled_add.py
        [7, 9, 3],
        "- {op: conv2d, name: up, filters: 3, kernel: 1}\n"
        "- {op: add, name: residual, inputs: [x, up], scales: [1, 0.17]}",
        "residual",
        _emitter("add", forward=lambda ctx, xs, mod: f"{xs[0]} * 0.17 + {xs[1]}"),
    ),
    "layer-norm-pytorch-eps": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n- {op: layer_norm, name: ln}",
        "ln",
        _changed_module("layer_norm", lambda src: src.replace("eps=0.001", "eps=1e-05")),
    ),
    "layer-norm-last-axis": (
        [7, 9, 4],  # PyTorch's LayerNorm over the last dim of NCHW: the width, not channels
        "- {op: conv2d, name: conv, filters: 9, kernel: 1}\n- {op: layer_norm, name: ln}",
        "ln",
        _emitter(
            "layer_norm",
            module=lambda ctx: f"nn.LayerNorm({ctx.shape}[-2], eps=0.001)",
        ),
    ),
    "bilinear-align-corners": (
        [3, 4, 2],
        "- {op: upsample2d, name: up, interpolation: bilinear}",
        "up",
        _emitter(
            "upsample2d",
            forward=lambda ctx, xs, mod: (
                f'F.interpolate({xs[0]}, scale_factor=2, mode="bilinear", align_corners=True)'
            ),
        ),
    ),
    "separable-pointwise-untransposed": (
        [7, 9, 3],
        "- {op: separable_conv2d, name: sep, filters: 3, kernel: 3}",
        "sep",
        _emitter(
            "separable_conv2d",
            weights={
                **torch_ops.TORCH_OPS["separable_conv2d"].weights,
                "pointwise_kernel": replace(
                    torch_ops.TORCH_OPS["separable_conv2d"].weights["pointwise_kernel"],
                    to_torch=lambda a: a.transpose(2, 3, 0, 1),  # (C*M, F) read as (F, C*M)
                ),
            },
        ),
    ),
    "dropout-at-inference": (
        [7, 9, 3],
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n"
        "- {op: dropout, name: drop, rate: 0.5, noise_shape: [1, 1, 1]}",
        "drop",
        _emitter("dropout", forward=lambda ctx, xs, mod: f"F.dropout({xs[0]}, 0.5, True)"),
    ),
    "normalization-epsilon-in-the-root": (
        [7, 9, 3],  # lowered as a frozen BatchNorm would be: sqrt(variance + 1e-3)
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n- {op: normalization, name: norm}",
        "norm",
        _emitter(
            "normalization",
            forward=lambda ctx, xs, mod: (
                f"({xs[0]} - {mod}.mean.view(-1, 1, 1)) / "
                f"({mod}.variance.view(-1, 1, 1) + 0.001).sqrt()"
            ),
        ),
    ),
    "layer-scale-on-the-last-dim": (
        [7, 3, 3],  # width == channels: PyTorch's last dim (the width) broadcasts silently
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n- {op: layer_scale, name: scale}",
        "scale",
        _emitter("layer_scale", forward=lambda ctx, xs, mod: f"{xs[0]} * {mod}.weight"),
    ),
    "stochastic-depth-scales-at-inference": (
        [7, 9, 3],  # the old dropout convention: kept values unscaled, x * keep at inference
        "- {op: conv2d, name: conv, filters: 3, kernel: 1}\n"
        "- {op: stochastic_depth, name: drop_path, rate: 0.2}",
        "drop_path",
        _emitter("stochastic_depth", forward=lambda ctx, xs, mod: f"{mod}({xs[0]}) * 0.8"),
    ),
    "dense-over-the-width": (
        [5, 4, 4],  # width == channels: Linear over the NCHW tensor's last dim runs silently
        "- {op: conv2d, name: conv, filters: 4, kernel: 1}\n- {op: dense, name: pw, units: 4}",
        "pw",
        _emitter("dense", forward=lambda ctx, xs, mod: f"{mod}({xs[0]})"),
    ),
    "dense-kernel-untransposed": (
        [5, 7, 4],  # a square kernel loads either way: (in, out) read as Linear's (out, in)
        "- {op: layer_norm, name: ln, epsilon: 1.0e-6}\n- {op: dense, name: pw, units: 4}",
        "pw",
        _emitter(
            "dense",
            weights={
                **torch_ops.TORCH_OPS["dense"].weights,
                "kernel": torch_ops.Binding("weight", lambda a: a, lambda a, shape: a),
            },
        ),
    ),
    "conv-transpose-pytorch-same": (
        [5, 7, 3],  # PyTorch's usual 'same' upsampling: padding=1, output_padding=1 crops the
        # top row where TF crops the bottom one (k - s = 1)
        "- {op: conv2d_transpose, name: up, filters: 4, kernel: 3, strides: 2, padding: same}",
        "up",
        _emitter(
            "conv2d_transpose",
            module=lambda ctx: (
                f"nn.ConvTranspose2d({ctx.shape}[-1], 4, 3, 2, padding=1, output_padding=1)"
            ),
        ),
    ),
    "conv-transpose-kernel-as-conv2d": (
        [5, 7, 4],  # in == out: Conv2D's (out, in) order loads silently, transposed
        "- {op: conv2d_transpose, name: up, filters: 4, kernel: 2, strides: 2}",
        "up",
        _emitter(
            "conv2d_transpose",
            weights={
                **torch_ops.TORCH_OPS["conv2d_transpose"].weights,
                "kernel": torch_ops.Binding(
                    "weight", lambda a: a.transpose(2, 3, 0, 1), lambda a, shape: a
                ),
            },
        ),
    ),
    "depthwise-layout": (
        [7, 9, 3],
        "- {op: depthwise_conv2d, name: dw, kernel: 3, depth_multiplier: 2}",
        "dw",
        _emitter(
            "depthwise_conv2d",
            weights={
                **_DW.weights,
                "depthwise_kernel": replace(
                    _DW.weights["depthwise_kernel"], to_torch=_channel_major_depthwise
                ),
            },
        ),
    ),
}
MUTANTS.update(SEQUENCE_MUTANTS)  # sequences and attention: tests/backends/sequence_mutants.py
MUTANTS.update(LLM_MUTANTS)  # rms_norm, grouped_query_attention: tests/backends/llm_mutants.py


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_a_broken_rule_is_caught_at_its_layer(
    mutant: str, spec: Callable[..., Compiled], monkeypatch: pytest.MonkeyPatch
) -> None:
    shape, layers, layer, apply = MUTANTS[mutant]
    compiled = spec(shape, layers, y=[5, 3] if mutant.startswith("broadcast") else None)
    checked(compiled)  # the real lowering passes ...
    apply(monkeypatch)
    with pytest.raises(VerificationError) as info:  # ... the mutant does not
        verify(compiled)
    diag = info.value.diagnostics[0]
    if diag.code == "E114":  # the built model read back differs from the IR: named there
        assert f"'{layer}'" in diag.message, diag.message
        return
    assert len(info.value.diagnostics) == 1 and diag.code == "E110"
    # the broken layer is named: where they first disagree, or (a layer PyTorch computes
    # without a module of its own) among the suspects right before it
    assert f"disagree first at layer '{layer}'" in diag.message or f"'{layer}'" in diag.hint


# -- weight transfer --------------------------------------------------------------------------
TRANSFER_LAYERS = """
- {op: conv2d, name: conv, filters: 6, kernel: [3, 2], strides: 2, padding: same}
- {op: batch_norm, name: bn}
- {op: conv2d, name: grouped, filters: 4, kernel: 3, groups: 2, use_bias: false}
- {op: depthwise_conv2d, name: dw, kernel: 2, depth_multiplier: 2}
- {op: batch_norm, name: frozen_bn, trainable: false}
- {op: dense, name: per_pixel, units: 5}
- {op: flatten, name: flat}
- {op: dense, name: fc, units: 3, use_bias: false}
"""


def _assert_same_weights(a: Any, b: Any, graph: Graph) -> None:
    for node in graph.nodes:
        if node.weights:
            wa, wb = a.get_layer(node.name).get_weights(), b.get_layer(node.name).get_weights()
            assert len(wa) == len(wb) == len(node.weights), node.name
            for w, x, y in zip(node.weights, wa, wb, strict=True):
                assert x.dtype == y.dtype, (node.name, w.name)
                np.testing.assert_array_equal(x, y, err_msg=f"{node.name}.{w.name}")


def test_transfer_layouts_follow_the_rules(spec: Callable[..., Compiled]) -> None:
    compiled = spec([9, 8, 4], TRANSFER_LAYERS)
    graph = compiled.graph
    km, tm = paired(compiled)
    state = {k: v.numpy() for k, v in tm.state_dict().items()}
    k = {n.name: km.get_layer(n.name).get_weights() for n in graph.nodes if n.weights}
    np.testing.assert_array_equal(state["conv.weight"], k["conv"][0].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state["grouped.weight"], k["grouped"][0].transpose(3, 2, 0, 1))
    kh, kw, c, m = k["dw"][0].shape
    np.testing.assert_array_equal(
        state["dw.weight"], k["dw"][0].reshape(kh, kw, c * m, 1).transpose(2, 3, 0, 1)
    )
    np.testing.assert_array_equal(state["fc.weight"], k["fc"][0].T)
    np.testing.assert_array_equal(state["per_pixel.weight"], k["per_pixel"][0].T)
    for bn in ("bn", "frozen_bn"):
        gamma, beta, mean, var = k[bn]
        pairs = {"weight": gamma, "bias": beta, "running_mean": mean, "running_var": var}
        for key, value in pairs.items():
            np.testing.assert_array_equal(state[f"{bn}.{key}"], value)


def test_keras_to_torch_to_keras_round_trip_is_exact(spec: Callable[..., Compiled]) -> None:
    compiled = spec([9, 8, 4], TRANSFER_LAYERS)
    graph = compiled.graph
    km, tm = paired(compiled, seed=3)
    back = keras_backend.build(compiled)
    assert transfer.torch_to_keras(tm, back, graph) == sum(len(n.weights) for n in graph.nodes)
    _assert_same_weights(km, back, graph)


def test_torch_to_keras_to_torch_round_trip_is_exact(spec: Callable[..., Compiled]) -> None:
    compiled = spec([9, 8, 4], TRANSFER_LAYERS)
    graph = compiled.graph
    torch.manual_seed(0)
    tm = torch_backend.build(compiled)
    with torch.no_grad():
        for name, buf in tm.named_buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5) if name.endswith("var") else buf.normal_()
    km = keras_backend.build(compiled)
    transfer.torch_to_keras(tm, km, graph)
    again = torch_backend.build(compiled)
    transfer.keras_to_torch(km, again, graph)
    for key, value in tm.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)


def test_seed_round_trip_is_exact() -> None:
    compiled = compile_spec(SEED)
    graph = compiled.graph
    km, tm = paired(compiled, seed=5)
    back = keras_backend.build(compiled)
    # 16 conv kernels, 5 conv biases (convNc), 16 BN x 4, dense kernel and bias
    assert transfer.torch_to_keras(tm, back, graph) == 16 + 5 + 16 * 4 + 2
    _assert_same_weights(km, back, graph)


# -- `archc verify` on the seed ---------------------------------------------------------------
def test_cli_verify_seed_json(archc) -> None:
    result = archc("verify", SEED, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"ir", "keras", "torch", "max_abs_diff", "layers_checked"} <= set(report)
    assert report["ir"] == report["keras"] == report["torch"] == SEED_COUNTS.as_dict()
    assert 0 <= report["max_abs_diff"] <= 1e-5
    # every layer with a module of its own (16 conv, 16 BN, the average pool) and the output
    assert report["layers_checked"] == 16 + 16 + 1 + 1
    assert report["first_diverging_layer"] is None
    bound = report["bound"]  # where max|Δ| is, the bound applied: atol + rtol·max|y|
    assert bound["max_abs_diff"] == report["max_abs_diff"] <= bound["limit"]
    assert bound["limit"] == pytest.approx(1e-5 + 1e-5 * bound["max_abs_value"])


def test_cli_verify_seed_text(archc) -> None:
    result = archc("verify", SEED)
    assert result.exit_code == 0, result.output
    assert "counts: IR = keras = torch = 96,133 (93,957 trainable, 2,176 non-trainable)" in (
        result.stdout
    )
    assert "34 layers agree" in result.stdout
    # the bound applied where max|Δ| is (atol + rtol·max|y|), not atol alone
    assert re.search(r"max\|Δ\| = \S+ at '\w+' \(its bound \S+ = atol 1e-05 \+ rtol", result.stdout)


SEED_MUTANTS = {
    # the classic port of conv0's 'same' at stride 2: PyTorch's symmetric padding=1
    "conv0": _changed_module(
        "conv2d",
        lambda src: src.replace("KerasConv2d(", "nn.Conv2d(").replace(
            "padding='same'", "padding=1"
        ),
    ),
    "bn0": _changed_module("batch_norm", lambda src: src.replace("eps=0.001", "eps=1e-05")),
}


@pytest.mark.parametrize("layer", sorted(SEED_MUTANTS))
def test_seed_mutant_fails_at_first_diverging_layer(
    layer: str, monkeypatch: pytest.MonkeyPatch, archc
) -> None:
    """conv0 padded symmetrically (PyTorch's `padding=1`), or every BN left at PyTorch's
    eps=1e-5: verify raises naming the layer, and the CLI exits 1. Both mutants change a
    module's own attributes, so the structural check (E114: the module read back against the
    IR) names them before any number is computed."""
    SEED_MUTANTS[layer](monkeypatch)
    with pytest.raises(VerificationError) as info:
        verify(str(SEED))
    diag, *_ = info.value.diagnostics  # the bn0 mutant changes every BN: one error each
    assert {d.code for d in info.value.diagnostics} == {"E114"}
    assert diag.message.startswith(f"module '{layer}' has ")
    assert diag.location is not None and diag.location.file.endswith("resnet_preact.yaml")

    result = archc("verify", SEED)
    assert result.exit_code == 1
    assert f"module '{layer}'" in result.stderr


def test_verify_a_spec_loaded_from_text() -> None:
    text = tiny([5, 7, 3], "- {op: conv2d, name: conv, filters: 2, kernel: 3}")
    checked(compile_spec(loads(text)))


def test_a_null_noise_shape_overrides_the_defaults_one(tmp_path: Path) -> None:
    """`noise_shape: null` on an item whose op's `defaults:` give one: per-element dropout in
    both frameworks (both renderers wrote `(None, *None)` / `KerasDropout(rate, None)` from
    the null, and compile exited 3)."""
    path = tmp_path / "null_noise.yaml"
    path.write_text(
        "archc: 1\nname: null_noise\ninputs:\n  - {name: x, shape: [5, 7, 4]}\n"
        "defaults:\n  dropout: {noise_shape: [1, 1, 1]}\n"
        "layers:\n  - {op: dropout, name: drop, rate: 0.5, noise_shape: null}\n"
    )
    compiled = compile_spec(str(path))
    check_dropout_masks(compiled, 0.5, (False, False, False))
    checked(compiled)


def test_a_softmaxs_bound_follows_the_logits_it_reads(spec: Callable[..., Compiled]) -> None:
    """softmax_logits gives max|z| of the logits: the fused softmax's (the Keras layer
    rebuilt linear, held here against numpy's x @ W + b) and the activation op's (its input)."""
    compiled = spec(
        [6],
        """
        - {op: rescaling, name: big, scale: 300.0}
        - {op: dense, name: fc, units: 4, activation: softmax}
        - {op: activation, name: soft, fn: softmax}
        """,
    )
    km = keras_backend.build(compiled)
    randomize_keras(km, compiled.graph, 0)
    x = randn(3, 6)
    outs = keras_layer_outputs(km, compiled.graph, [x])
    kernel, bias = km.get_layer("fc").get_weights()
    z = outs["big"].astype(np.float64) @ kernel + bias
    fc = compiled.graph.node("fc")
    assert softmax_logits(km, compiled.graph, fc, outs) == pytest.approx(np.abs(z).max(), 1e-5)
    assert np.abs(z).max() > 10  # logits larger than the probabilities' 1
    soft = compiled.graph.node("soft")
    assert softmax_logits(km, compiled.graph, soft, outs) == float(np.abs(outs["fc"]).max())
    assert softmax_logits(km, compiled.graph, compiled.graph.node("big"), outs) is None


def test_large_logits_still_catch_a_softmax_on_the_wrong_axis(
    spec: Callable[..., Compiled], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wider bound (RTOL·max|z|, z up to ~1e3 here) is far below what a wrong softmax
    changes (probabilities of order 1)."""
    compiled = spec(
        [4, 5, 3],
        """
        - {op: conv2d, name: conv, filters: 3, kernel: 1}
        - {op: rescaling, name: big, scale: 100.0}
        - {op: activation, name: soft, fn: softmax}
        """,
    )
    checked(compiled)
    _emitter("activation", forward=lambda ctx, xs, mod: f"F.softmax({xs[0]}, dim=-1)")(monkeypatch)
    monkeypatch.setattr(conform, "torch_forward_differences", lambda *a: [])  # verify's own
    with pytest.raises(VerificationError) as info:
        verify(compiled)
    diag = info.value.diagnostics[0]
    assert diag.code == "E110" and "'soft'" in diag.message, diag.message
