"""`archc import torch`: an nn.Module traced into a channels-last spec, and the round trip
proven against the original.

The references are PyTorch's own: the original module's parameter counts (and torchvision's
published ResNet-18 count, 11,689,512), its state_dict and its outputs. The acceptance models
(tests/backends/torch_import_models.py, written with torch.nn: torchvision's ResNet-18,
nn.TransformerEncoder with 4 layers, an nn.LSTM tagger) go through every step of `prove`: the
generated Keras model, its weights moved from the original through the generated PyTorch
model and `archc weights`, computes the original's outputs. The layout and padding rules are
held cheaply: the generated PyTorch model with the original's state_dict moved in computes the
original's outputs (no Keras). A node archc has no op for is a located error.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.compiler.diagnostics import SpecError

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from torch import nn  # noqa: E402

from tests.backends import torch_import_models as models  # noqa: E402

MODELS = Path(models.__file__)


def _import(tmp_path: Path, factory: str, *shapes: tuple[int, ...]) -> tuple[Path, Any, Any]:
    from archc.backends.torch.importer import import_torch

    spec = tmp_path / f"{factory}.yaml"
    _, model, imported = import_torch(f"{MODELS}:{factory}", list(shapes), spec)
    return spec, model, imported


def _counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, floating-point buffers) as PyTorch holds them."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return params, buffers


def _prove(tmp_path: Path, factory: str, *shapes: tuple[int, ...]) -> tuple[Any, Any, Any]:
    from archc.backends.torch.importer import prove
    from archc.compiler.api import compile_spec

    spec, model, imported = _import(tmp_path, factory, *shapes)
    proof = prove(spec, model, imported, tmp_path / "out")
    assert [s.name for s in proof.steps] == ["check", "compile", "verify", "weights", "outputs"]
    assert proof.max_abs_output > 0
    assert proof.max_abs_diff <= 1e-5 * proof.max_abs_output
    return compile_spec(str(spec)).graph, model, spec.read_text()


def _same_as_original(tmp_path: Path, factory: str, shape: tuple[int, ...]) -> float:
    """max|Δ| between the original and the generated PyTorch model with the original's
    state_dict moved in, over max|y| (both NCHW)."""
    from archc.backends.torch import backend as torch_backend
    from archc.backends.torch.importer import moved_state
    from archc.compiler.api import compile_spec

    spec, model, imported = _import(tmp_path, factory, shape)
    generated = torch_backend.build(compile_spec(str(spec))).eval()
    generated.load_state_dict(moved_state(model, generated, imported), strict=True)
    g = torch.Generator().manual_seed(3)
    tokens = imported.token_inputs.get(0)
    x = (
        torch.randint(0, tokens, (2, *shape), generator=g)
        if tokens
        else torch.randn((2, *shape), generator=g)
    )
    with torch.no_grad():
        want, got = model.eval()(x), generated(x)
    assert want.shape == got.shape
    return float((want - got).abs().max() / want.abs().max())


# -- acceptance: counts exact, the generated Keras model equals the original ------------------


def test_resnet18_counts_equal_torchvisions(tmp_path: Path) -> None:
    """torchvision's resnet18 has 11,689,512 parameters; the spec imported from the one
    written here has as many trainable weights, and BatchNorm's running statistics as its
    non-trainable ones."""
    from archc.backends.torch.importer import convert, expected_counts, render
    from archc.compiler.api import compile_spec

    model = models.ResNet18()
    params, buffers = _counts(model)
    assert params == 11_689_512
    imported = convert(model, [(3, 64, 64)], "resnet18")
    spec = tmp_path / "resnet18.yaml"
    spec.write_text(render(imported, expected_counts(model, 0), "resnet18").text)
    graph = compile_spec(str(spec)).graph
    assert (graph.counts.trainable, graph.counts.non_trainable) == (params, buffers)
    names = {n.name for n in graph.nodes}
    assert {"conv1", "layer1_0_conv1", "layer4_1_bn2", "layer2_0_downsample_0", "fc"} <= names
    # the class count (the last linear layer's units) and the input shape are parameters
    other = compile_spec(str(spec), {"classes": 7, "input_shape": [96, 80, 3]}).graph
    assert other.node("fc").shape == (7,) and other.node("layer4_1_add").shape == (3, 3, 512)


def test_resnet18_round_trip_is_proven(tmp_path: Path) -> None:
    """ResNet-18 (width 8, 10 classes) at an odd size: the stem's 7x7/2 convolution with
    padding 3 and the 3x3/2 max pool with padding 1 (explicit zero pads), BasicBlocks with
    the 1x1/2 downsample, the shared nn.ReLU called twice per block, the adaptive pool and
    flatten as one global pool."""
    graph, model, text = _prove(tmp_path, "small_resnet18", (3, 33, 31))
    params, buffers = _counts(model)
    assert (graph.counts.trainable, graph.counts.non_trainable) == (params, buffers)
    ops = {n.name: n.op for n in graph.nodes}
    assert ops["conv1_pad"] == "zero_pad2d" and ops["maxpool_pad"] == "zero_pad2d"
    assert ops["avgpool"] == "global_avg_pool2d" and "flatten" not in ops.values()
    assert ops["layer1_0_add"] == "add"
    bn = graph.node("bn1").attrs
    assert bn.momentum == pytest.approx(1 - model.bn1.momentum) and bn.epsilon == model.bn1.eps
    assert "momentum: 0.9" in text


def test_transformer_encoder_round_trip_is_proven(tmp_path: Path) -> None:
    """nn.TransformerEncoder (4 post-norm layers, GELU, batch_first) and a linear head."""
    graph, model, _ = _prove(tmp_path, "encoder", (7, 16))
    assert graph.counts.total == _counts(model)[0]
    attention = [n for n in graph.nodes if n.op == "multi_head_attention"]
    assert [n.name for n in attention] == [f"encoder_layers_{i}_self_attn" for i in range(4)]
    assert attention[0].attrs.num_heads == 4 and attention[0].attrs.key_dim == 4
    norms = [n for n in graph.nodes if n.op == "layer_norm"]
    assert len(norms) == 8 and all(n.attrs.epsilon == 1e-5 for n in norms)


def test_lstm_tagger_round_trip_is_proven(tmp_path: Path) -> None:
    """Embedding, a 2-layer bidirectional nn.LSTM, a linear layer per step: Keras' LSTM holds
    one bias per direction (nn.LSTM's bias_ih + bias_hh), so the spec has 4 * units fewer
    parameters per direction and layer than the original, and computes the same."""
    graph, model, text = _prove(tmp_path, "tagger", (9,))
    units, layers, directions = 6, 2, 2
    assert graph.counts.total == _counts(model)[0] - 4 * units * layers * directions
    assert [n.name for n in graph.nodes if n.op == "lstm"] == ["lstm_l0", "lstm_l1"]
    assert "dtype: int" in text and "96 fewer parameters" in text


def test_functional_code_round_trip_is_proven(tmp_path: Path) -> None:
    """F.relu, x - c and c * x, torch.cat on dim 1 (axis -1), a gate product, an image
    flattened channels first (a permute before the flatten), an adaptive pool to 1 and
    flatten (a global pool), modules' and functions' activations, the softmax."""
    graph, model, _ = _prove(tmp_path, "mixed", (3, 15, 13))
    assert graph.counts.total == sum(_counts(model))
    ops = {n.name: n for n in graph.nodes}
    cats = [n for n in graph.nodes if n.op == "concat"]
    assert cats[0].attrs.axis == -1 and cats[0].shape == (8, 7, 12)
    assert any(n.op == "permute" and n.attrs.dims == (2, 0, 1) for n in graph.nodes)
    assert ops["stem_pad"].op == "zero_pad2d" and ops["stem"].attrs.padding == "valid"
    assert ops["a"].attrs.padding == "same" and ops["b"].attrs.padding == "same"
    assert ops["c"].attrs.padding == "same"
    assert [n.op for n in graph.nodes if n.op == "rescaling"] == ["rescaling"] * 2
    assert ops["bn"].attrs.momentum == pytest.approx(0.7)


# -- the layout and padding rules, held cheaply (no Keras) ------------------------------------


def test_flatten_of_an_image_keeps_pytorchs_order(tmp_path: Path) -> None:
    """x.view(N, -1) of a (N, C, H, W) tensor flattens channels first: the linear layer after
    it reads the original's weights as they are only if the spec flattens in that order."""
    assert _same_as_original(tmp_path, "FlatHead", (2, 6, 7)) < 1e-6


@pytest.mark.parametrize("size", [(2, 9, 9), (2, 10, 8)], ids=["odd", "even"])
def test_padded_pools_and_strided_convolution(tmp_path: Path, size: tuple[int, ...]) -> None:
    """PyTorch pads symmetrically; TF's `same` puts the extra pixel bottom/right, so a strided
    padded convolution or pool is an explicit zero pad; zeros are max pooling's -inf after a
    relu; average pooling counts the padding, as count_include_pad=True."""
    assert _same_as_original(tmp_path, "PaddedPools", size) < 1e-6


@pytest.mark.parametrize("factory", ["PreNorm", "CrossAttention"])
def test_attention_variants(tmp_path: Path, factory: str) -> None:
    """A pre-norm encoder with a final norm; attention with keys and values of other widths
    (nn.MultiheadAttention's separate q/k/v projections unpacked into Keras' kernels)."""
    assert _same_as_original(tmp_path, factory, (5, 8 if factory == "PreNorm" else 4)) < 1e-5


def test_gru_and_rnn(tmp_path: Path) -> None:
    """nn.GRU's two biases are Keras' GRU's (reset_after), counts exact; nn.RNN's two fold
    into one (3 parameters fewer)."""
    from archc.backends.torch.importer import import_torch
    from archc.compiler.api import compile_spec

    spec = tmp_path / "gru.yaml"
    _, model, _ = import_torch(f"{MODELS}:gru_tagger", [(6,)], spec)
    assert compile_spec(str(spec)).counts.total == _counts(model)[0] - 3
    assert _same_as_original(tmp_path, "gru_tagger", (6,)) < 1e-5


@pytest.mark.parametrize(("factory", "shape"), [("Masked", (4,)), ("sequential", (4,))])
def test_defaults_and_a_top_level_sequential(
    tmp_path: Path, factory: str, shape: tuple[int, ...]
) -> None:
    """forward(input, mask=None) is traced with mask at its default; a top-level
    nn.Sequential's layers 0, 1, ... are named layer_0, layer_1, ... (BatchNorm1d on vectors)."""
    assert _same_as_original(tmp_path, factory, shape) < 1e-6
    if factory == "sequential":
        text = (tmp_path / "sequential.yaml").read_text()
        assert "name: layer_0," in text and "op: batch_norm, name: layer_2" in text


@pytest.mark.parametrize(("factory", "shape"), [("Decoder", (3, 5, 4)), ("Readout", (7, 4))])
def test_upsampling_and_steps(tmp_path: Path, factory: str, shape: tuple[int, ...]) -> None:
    """nn.ConvTranspose2d (valid and same), nn.Upsample and F.interpolate; x[:, 0] and
    x[:, 1:4] of a sequence (take and slice)."""
    assert _same_as_original(tmp_path, factory, shape) < 1e-6


def test_a_model_that_is_one_torch_layer(tmp_path: Path) -> None:
    """A bare nn.TransformerEncoder (traced inside a wrapper: its own forward branches): its
    layers named as its state_dict names them (`layers.0.self_attn` -> layers_0_self_attn)."""
    assert _same_as_original(tmp_path, "bare_encoder", (5, 8)) < 1e-5
    text = (tmp_path / "bare_encoder.yaml").read_text()
    assert "name: layers_0_self_attn," in text and "name: layers_1_norm2" in text
    with pytest.raises(SpecError) as err:  # a tuple output: located at the model's output
        _import(tmp_path, "bare_lstm", (5, 4))
    assert "gives a tuple" in err.value.diagnostics[0].message


def test_a_frozen_module_is_a_frozen_layer(tmp_path: Path) -> None:
    """requires_grad False on a module's parameters: `trainable: false`, its weights counted
    as non-trainable (archc's rule for PyTorch: frozen parameters and float buffers)."""
    from archc.compiler.api import compile_spec

    spec, model, _ = _import(tmp_path, "frozen", (2, 6, 7))
    counts = compile_spec(str(spec)).counts
    frozen = sum(p.numel() for p in model.conv.parameters())
    assert (counts.trainable, counts.non_trainable) == (_counts(model)[0] - frozen, frozen)
    assert "name: conv, filters: 3, kernel: 3, trainable: false" in spec.read_text()


# -- refused, with a location -----------------------------------------------------------------


def _line(cls: Any, text: str) -> int:
    """The line of `text` in cls's source (the reference for the error's location)."""
    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.parametrize(
    ("factory", "shape", "code", "words", "line"),
    [
        ("custom", (4,), "E170", "scramble", ("Custom", "return scramble(x)")),
        ("Cumulative", (4,), "E170", "cumsum", ("Cumulative", "torch.cumsum")),
        ("SignedPool", (2, 8, 8), "E171", "may be negative", ("SignedPool", "self.pool(")),
        ("FinalState", (5, 4), "E171", "element 1", ("FinalState", "self.lstm(x)")),
        ("Shared", (4,), "E174", "more than once", ("Shared", "self.fc(self.fc(x))")),
        ("Branchy", (4,), "E174", "cannot trace", ("Branchy", "if y.sum() > 0")),
    ],
)
def test_unsupported_nodes_are_located_errors(
    tmp_path: Path, factory: str, shape: tuple[int, ...], code: str, words: str, line: Any
) -> None:
    with pytest.raises(SpecError) as err:
        _import(tmp_path, factory, shape)
    (d,) = err.value.diagnostics
    assert d.code == code and words in d.message and d.hint
    assert d.location is not None and Path(d.location.file) == MODELS
    assert d.location.line == _line(getattr(models, line[0]), line[1])
    assert not (tmp_path / f"{factory}.yaml").exists()


def test_cli_writes_and_refuses(tmp_path: Path, archc: Any) -> None:
    """`archc import torch`: exit 0 and the spec; a custom function is exit 1 with the
    node's name and line, nothing written; a factory that does not exist is exit 1."""
    out = tmp_path / "flat.yaml"
    ok = archc("import", "torch", f"{MODELS}:FlatHead", "--input-shape", "2x6x7", "-o", out)
    assert ok.exit_code == 0, ok.output
    assert "flat.yaml (written:" in ok.output and "op: permute" in out.read_text()
    bad = tmp_path / "custom.yaml"
    with pytest.raises(SystemExit) as exit_info:
        from archc.cli import cli

        cli.main(
            ["import", "torch", f"{MODELS}:custom", "--input-shape", "4", "-o", str(bad)],
            standalone_mode=False,
        )
    assert exit_info.value.code == 1 and not bad.exists()
    missing = archc("import", "torch", f"{MODELS}:nothing", "--input-shape", "4", "-o", bad)
    assert missing.exit_code == 1 and "has no 'nothing'" in missing.output


def test_cli_reports_the_node_on_stderr(tmp_path: Path, capsys: Any) -> None:
    from archc.cli import cli

    with pytest.raises(SystemExit):
        cli.main(
            [
                "import",
                "torch",
                f"{MODELS}:custom",
                "--input-shape",
                "4",
                "-o",
                str(tmp_path / "x"),
            ],
            standalone_mode=False,
        )
    err = capsys.readouterr().err
    line = _line(models.Custom, "return scramble(x)")
    assert f"{MODELS}:{line}:1: error[E170]: node 'scramble'" in err


def test_numpy_reference_for_the_flatten_permutation() -> None:
    """The permute the importer writes before a flatten, (H, W, C) -> (C, H, W), flattens an
    image in PyTorch's order (numpy as the reference)."""
    from archc.backends.torch.importer import logical

    chw = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    hwc = np.moveaxis(chw, 0, -1)
    assert hwc.shape == logical(chw.shape)
    np.testing.assert_array_equal(np.transpose(hwc, (2, 0, 1)).ravel(), chw.ravel())


def test_a_wrong_input_shape_is_located_in_the_model(tmp_path: Path) -> None:
    """FlatHead's linear layer takes 3 * 4 * 5 features: at 2x7x7 the model itself fails,
    at its line, with the hint to give the shape in PyTorch's layout."""
    with pytest.raises(SpecError) as err:
        _import(tmp_path, "FlatHead", (2, 7, 7))
    (d,) = err.value.diagnostics
    assert d.code == "E172" and "fails on inputs of shape [(2, 7, 7)]" in d.message
    assert "\n" not in d.message and "PyTorch's layout" in d.hint
    assert d.location is not None and Path(d.location.file) == MODELS
    assert d.location.line == _line(models.FlatHead, "return self.fc(")
