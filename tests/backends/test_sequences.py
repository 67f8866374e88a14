"""Sequences (T, C) and vectors in both backends: the layout rule (PyTorch holds images
(N, C, H, W) and sequences (N, T, C)), the ops that work on any rank checked on sequences
against numpy formulas and between Keras and PyTorch, the 1-D ops, embeddings, class tokens,
take / slice / permute, integer token inputs, the Keras layers generated files define, and
generated transformers under torch.jit.script and torch.export.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.compile import compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.keras import sequence_helpers as keras_sequence_helpers
from archc.backends.proof.verify import (
    channels_first,
    channels_last,
    inputs_for,
    keras_layer_outputs,
    randomize_keras,
    torch_layer_outputs,
    verify,
)
from archc.backends.structure import generated_names
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import sequence_helpers as helpers
from archc.backends.torch.ops import torch_dims
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import SpecError
from tests.conftest import ROOT


def tiny(inputs: str, layers: str, outputs: list[str] | None = None) -> str:
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    text = f"archc: 1\nname: tiny\ninputs:\n{textwrap.indent(inputs.strip(), '  ')}\n"
    text += f"layers:\n{body}\n"
    return text + (f"outputs: {outputs}\n" if outputs else "")


@pytest.fixture
def spec(tmp_path: Path) -> Callable[..., Compiled]:
    def make(inputs: str, layers: str, outputs: list[str] | None = None) -> Compiled:
        path = tmp_path / "tiny.yaml"
        path.write_text(tiny(inputs, layers, outputs), encoding="utf-8")
        return compile_spec(path)

    return make


def both(compiled: Compiled, xs: list[np.ndarray]) -> tuple[dict, dict, Any, Any]:
    """Per-layer outputs (channels-last) of both backends with the same random weights."""
    graph = compiled.graph
    km, tm = keras_backend.build(compiled), torch_backend.build(compiled)
    randomize_keras(km, graph, 0)
    from archc.backends.proof.transfer import keras_to_torch

    keras_to_torch(km, tm, graph)
    return keras_layer_outputs(km, graph, xs), torch_layer_outputs(tm, graph, xs), km, tm


def randn(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def agree(k: dict, t: dict, name: str, want: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(k[name], want, rtol=1e-5, atol=atol, err_msg=f"keras {name}")
    np.testing.assert_allclose(t[name], want, rtol=1e-5, atol=atol, err_msg=f"torch {name}")


# -- the layout rule --------------------------------------------------------------------------
def test_layout_rule_holds_images_channels_first_and_sequences_as_they_are() -> None:
    assert torch_dims(1) == [1]
    assert torch_dims(2) == [1, 2]  # (N, T, C)
    assert torch_dims(3) == [2, 3, 1]  # (N, C, H, W): H -> 2, W -> 3, C -> 1
    assert torch_dims(4) == [2, 3, 4, 1]
    seq, image = randn(2, 5, 3), randn(2, 4, 5, 3)
    assert channels_first(seq) is seq and channels_last(seq) is seq
    assert channels_first(image).shape == (2, 3, 4, 5)


def test_a_sequence_model_takes_and_returns_n_t_c(spec: Callable[..., Compiled]) -> None:
    compiled = spec("- {name: x, shape: [7, 4]}", "- {op: dense, name: fc, units: 6}")
    module = torch_backend.import_source(torch_backend.render(compiled), "seq")  # type: ignore[attr-defined]
    assert module.INPUT_SHAPE == (7, 4)
    model = module.build_model().eval()
    with torch.no_grad():
        y = model(torch.randn(2, 7, 4))
    assert tuple(y.shape) == (2, 7, 6)
    source = torch_backend.render(compiled)
    assert "movedim" not in source  # nn.Linear takes (N, T, C) as it is
    assert "Takes channels-last input of shape" in source


# -- ops of any rank, on sequences -----------------------------------------------------------
def test_dense_layer_norm_softmax_and_gelu_on_a_sequence(spec: Callable[..., Compiled]) -> None:
    """Dense on the channels of each step, LayerNormalization per step over the channels
    (Keras' epsilon 1e-3), softmax over the channels, the exact GELU (erf), against numpy."""
    compiled = spec(
        "- {name: x, shape: [6, 5]}",
        """
        - {op: dense, name: fc, units: 4}
        - {op: layer_norm, name: ln}
        - {op: activation, name: soft, fn: softmax, inputs: ln}
        - {op: activation, name: gelu, fn: gelu, inputs: ln}
        """,
        outputs=["fc", "ln", "soft", "gelu"],
    )
    x = randn(3, 6, 5)
    k, t, km, _ = both(compiled, [x])
    kernel, bias = km.get_layer("fc").get_weights()
    fc = x @ kernel + bias
    agree(k, t, "fc", fc)
    gamma, beta = km.get_layer("ln").get_weights()
    mean, var = fc.mean(-1, keepdims=True), fc.var(-1, keepdims=True)
    ln = (fc - mean) / np.sqrt(var + 1e-3) * gamma + beta
    agree(k, t, "ln", ln, atol=1e-4)
    e = np.exp(ln - ln.max(-1, keepdims=True))
    agree(k, t, "soft", e / e.sum(-1, keepdims=True), atol=1e-4)
    erf = np.vectorize(math.erf)
    agree(k, t, "gelu", 0.5 * ln * (1 + erf(ln / np.sqrt(2))), atol=1e-4)
    tanh_gelu = 0.5 * ln * (1 + np.tanh(np.sqrt(2 / np.pi) * (ln + 0.044715 * ln**3)))
    assert np.abs(tanh_gelu - k["gelu"]).max() > 1e-5  # the approximation would show
    verify(compiled)


def test_broadcasting_concat_reshape_flatten_on_sequences(spec: Callable[..., Compiled]) -> None:
    """A (C,) vector and a (1, C) row broadcast over a (T, C) sequence (aligned on the
    right), concat on the steps and on the channels, a row-major reshape, flatten."""
    compiled = spec(
        "- {name: x, shape: [6, 4]}",
        """
        - {op: global_avg_pool1d, name: mean}
        - {op: subtract, name: centred, inputs: [x, mean]}
        - {op: global_max_pool1d, name: peak, keepdims: true, inputs: x}
        - {op: multiply, name: scaled, inputs: [peak, centred]}
        - {op: add, name: shifted, inputs: [mean, scaled]}
        - {op: concat, name: steps, axis: 0, inputs: [x, shifted]}
        - {op: concat, name: channels, inputs: [x, shifted]}
        - {op: reshape, name: folded, target_shape: [8, 6], inputs: channels}
        - {op: flatten, name: flat, inputs: steps}
        """,
        outputs=["shifted", "steps", "channels", "folded", "flat"],
    )
    x = randn(2, 6, 4)
    k, t, _, _ = both(compiled, [x])
    mean, peak = x.mean(1), x.max(1, keepdims=True)
    shifted = mean[:, None, :] + peak * (x - mean[:, None, :])
    agree(k, t, "shifted", shifted)
    agree(k, t, "steps", np.concatenate([x, shifted], axis=1))
    channels = np.concatenate([x, shifted], axis=2)
    agree(k, t, "channels", channels)
    agree(k, t, "folded", channels.reshape(2, 8, 6))
    agree(k, t, "flat", np.concatenate([x, shifted], axis=1).reshape(2, -1))
    verify(compiled)


def test_batch_norm_on_a_sequence_is_per_channel(spec: Callable[..., Compiled]) -> None:
    compiled = spec("- {name: x, shape: [5, 5]}", "- {op: batch_norm, name: bn}")
    x = randn(3, 5, 5)
    k, t, km, _ = both(compiled, [x])
    gamma, beta, mean, var = km.get_layer("bn").get_weights()
    agree(k, t, "bn", (x - mean) / np.sqrt(var + 1e-3) * gamma + beta, atol=1e-4)


def test_dropout_noise_shape_on_a_sequence_in_training(spec: Callable[..., Compiled]) -> None:
    """noise_shape [1, null] on (T, C): one mask value per channel, shared by every step, in
    both frameworks (PyTorch keeps a sequence's axes in Keras' order)."""
    compiled = spec(
        "- {name: x, shape: [9, 16]}",
        "- {op: dropout, name: drop, rate: 0.5, noise_shape: [1, null]}",
    )
    km, tm = keras_backend.build(compiled), torch_backend.build(compiled).train()
    ones = np.ones((64, 9, 16), np.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        outs = {"keras": np.asarray(km(ones, training=True)), "torch": tm(torch.ones(64, 9, 16))}
    for framework, y in outs.items():
        y = np.asarray(y)
        assert np.all(np.isclose(y, 0.0) | np.isclose(y, 2.0)), framework
        assert np.all(y == y[:, :1, :]), framework  # shared along the steps
        assert not np.all(y == y[:, :, :1]), framework  # drawn per channel


# -- 1-D convolution and pooling --------------------------------------------------------------
def tf_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    out = -(-n // s)
    pad = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
    return pad // 2, pad - pad // 2


def conv1d_numpy(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, s: int, pads: tuple) -> Any:
    x = np.pad(x, ((0, 0), pads, (0, 0)))
    k = kernel.shape[0]
    steps = (x.shape[1] - k) // s + 1
    out = [np.einsum("nkc,kcf->nf", x[:, i * s : i * s + k], kernel) for i in range(steps)]
    return np.stack(out, 1) + bias


def test_conv1d_and_pooling_follow_tensorflows_same(spec: Callable[..., Compiled]) -> None:
    """'same' at stride 2 on an even length pads one step at the end (TF's split); max
    pooling pads with -inf and average pooling does not count the padding."""
    compiled = spec(
        "- {name: x, shape: [8, 3]}",
        """
        - {op: conv1d, name: conv, filters: 4, kernel: 3, strides: 2, padding: same}
        - {op: max_pool1d, name: mp, pool: 3, strides: 2, padding: same, inputs: x}
        - {op: avg_pool1d, name: ap, pool: 3, strides: 2, padding: same, inputs: x}
        - {op: concat, name: cat, inputs: [conv, mp, ap]}
        """,
    )
    x = randn(2, 8, 3) - 3.0  # all negative: a zero in max pooling's padding would show
    k, t, km, _ = both(compiled, [x])
    assert tf_same(8, 3, 2) == (0, 1)
    kernel, bias = km.get_layer("conv").get_weights()
    agree(k, t, "conv", conv1d_numpy(x, kernel, bias, 2, (0, 1)))
    padded = np.pad(x, ((0, 0), (0, 1), (0, 0)), constant_values=-np.inf)
    agree(k, t, "mp", np.stack([padded[:, i : i + 3].max(1) for i in (0, 2, 4, 6)], 1))
    means = [x[:, i : i + 3].mean(1) for i in (0, 2, 4)] + [x[:, 6:8].mean(1)]
    agree(k, t, "ap", np.stack(means, 1))
    verify(compiled)


# -- embeddings, class tokens, positions, axes ------------------------------------------------
TOKENS = "- {name: ids, shape: [6], dtype: int}"


def test_embedding_looks_up_rows_and_positions_are_added(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        TOKENS,
        """
        - {op: embedding, name: embed, input_dim: 11, output_dim: 4}
        - {op: positional_embedding, name: pos}
        - {op: class_token, name: cls}
        - {op: take, name: first, index: 0}
        """,
        outputs=["embed", "pos", "first", "cls"],
    )
    ids = np.random.default_rng(0).integers(0, 11, (3, 6)).astype(np.int32)
    k, t, km, tm = both(compiled, [ids])
    (table,) = km.get_layer("embed").get_weights()
    (positions,) = km.get_layer("pos").get_weights()
    (token,) = km.get_layer("cls").get_weights()
    embedded = table[ids]
    agree(k, t, "embed", embedded)
    agree(k, t, "pos", embedded + positions)
    cls = np.concatenate([np.broadcast_to(token, (3, 1, 4)), embedded + positions], axis=1)
    agree(k, t, "cls", cls)
    agree(k, t, "first", cls[:, 0])
    assert tuple(tm.get_submodule("embed").weight.shape) == (11, 4)  # Keras' layout
    verify(compiled)


def test_take_slice_permute_on_sequences_and_images(spec: Callable[..., Compiled]) -> None:
    compiled = spec(
        "- {name: x, shape: [4, 5, 3]}",
        """
        - {op: take, name: row, index: -1}
        - {op: slice, name: cols, start: 1, stop: -1, axis: 0}
        - {op: permute, name: swapped, dims: [1, 0]}
        - {op: take, name: channel, index: 1, axis: -1, inputs: x}
        - {op: permute, name: rotated, dims: [2, 0, 1], inputs: x}
        - {op: slice, name: rows, start: 1, inputs: x}
        - {op: class_token, name: cls_rows, inputs: rows}
        - {op: positional_embedding, name: pos_image, inputs: cls_rows}
        """,
        outputs=["row", "cols", "swapped", "channel", "rotated", "pos_image"],
    )
    x = randn(2, 4, 5, 3)
    k, t, km, _ = both(compiled, [x])
    agree(k, t, "row", x[:, -1])
    agree(k, t, "cols", x[:, -1][:, 1:-1])
    agree(k, t, "swapped", x[:, -1][:, 1:-1].transpose(0, 2, 1))
    agree(k, t, "channel", x[..., 1])
    agree(k, t, "rotated", x.transpose(0, 3, 1, 2))
    (token,) = km.get_layer("cls_rows").get_weights()
    (positions,) = km.get_layer("pos_image").get_weights()
    rows = np.concatenate([np.broadcast_to(token, (2, 1, 5, 3)), x[:, 1:]], axis=1)
    agree(k, t, "pos_image", rows + positions)
    verify(compiled)


def test_axis_ops_with_attributes_from_expressions(tmp_path: Path) -> None:
    """Attributes given by parameters go through the runtime helpers (take_axis, ...)."""
    text = """\
    archc: 1
    name: axes
    params:
      axis: {type: int, default: 1}
      dims: {type: "list[int]", default: [2, 0, 1]}
    inputs:
      - {name: x, shape: [4, 5, 3]}
    layers:
      - {op: take, name: taken, index: "${axis}", axis: "${axis}"}
      - {op: slice, name: cut, start: "${axis}", axis: "${axis - 1}", inputs: x}
      - {op: permute, name: moved, dims: "${dims}", inputs: cut}
    outputs: [taken, moved]
    """
    path = tmp_path / "axes.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    compiled = compile_spec(path)
    source = torch_backend.render(compiled)
    assert "take_axis(" in source and "slice_axis(" in source and "permute_axes(" in source
    x = randn(2, 4, 5, 3)
    k, t, _, _ = both(compiled, [x])
    agree(k, t, "taken", x[:, :, 1])
    agree(k, t, "moved", x[:, 1:].transpose(0, 3, 1, 2))


# -- integer token inputs ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "layers", "message", "line"),
    [
        (
            TOKENS,
            "- {op: dense, name: fc, units: 3}",
            "dense 'fc' reads 'ids', an input of integer token ids",
            6,
        ),
        (
            "- {name: x, shape: [6]}",
            "- {op: embedding, name: embed, input_dim: 5, output_dim: 3}",
            "embedding 'embed' reads 'x', which is not an input of integer token ids",
            6,
        ),
    ],
    ids=["ids-into-dense", "floats-into-embedding"],
)
def test_token_ids_and_embeddings_go_together(
    spec: Callable[..., Compiled], inputs: str, layers: str, message: str, line: int
) -> None:
    with pytest.raises(SpecError) as info:
        spec(inputs, layers)
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.message) == ("E074", message)
    assert diag.location is not None and diag.location.line == line
    assert "dtype: int" in diag.hint


def test_an_unknown_dtype_is_a_located_error(spec: Callable[..., Compiled]) -> None:
    with pytest.raises(SpecError) as info:
        spec("- {name: x, shape: [6], dtype: int64}", "- {op: dense, name: fc, units: 3}")
    diag = info.value.diagnostics[0]
    assert diag.location is not None and diag.location.line == 4
    assert "int64" in diag.message or "dtype" in diag.message


def test_verify_feeds_token_ids_below_the_smallest_vocabulary(
    spec: Callable[..., Compiled],
) -> None:
    compiled = spec(
        TOKENS,
        """
        - {op: embedding, name: big, input_dim: 50, output_dim: 3}
        - {op: embedding, name: small, input_dim: 7, output_dim: 3, inputs: ids}
        - {op: add, name: both, inputs: [big, small]}
        """,
    )
    (ids,) = inputs_for(compiled.graph, 64, 0)
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() == 6
    verify(compiled)


# -- helpers of generated files ---------------------------------------------------------------
def test_sequence_helper_names_are_reserved() -> None:
    """A spec name equal to a class or function a generated file may define would shadow it."""
    for mod in (helpers, keras_sequence_helpers):
        defined = {
            name
            for name, value in vars(mod).items()
            if (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == mod.__name__
        }
        assert defined <= generated_names(), defined - generated_names()


def test_initial_values_are_keras(spec: Callable[..., Compiled]) -> None:
    """Embedding uniform in [-0.05, 0.05], positions N(0, 0.02), class token zero, attention
    kernels Glorot-uniform with the fans of the matrix a (C, H, D) kernel is (fan_in C,
    fan_out H * D), as Keras initialises them."""
    import keras

    compiled = spec(
        "- {name: ids, shape: [64], dtype: int}",
        """
        - {op: embedding, name: embed, input_dim: 500, output_dim: 32}
        - {op: positional_embedding, name: pos}
        - {op: class_token, name: cls}
        - {op: multi_head_attention, name: attn, num_heads: 4, key_dim: 16}
        """,
    )
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    tm, km = torch_backend.build(compiled), keras_backend.build(compiled)
    for framework, values in (
        ("torch", {n: p.detach().numpy() for n, p in tm.named_parameters()}),
        ("keras", {w.path.replace("/", "."): np.asarray(w) for w in km.weights}),
    ):
        table = next(v for n, v in values.items() if n.startswith("embed."))
        assert 0.045 < np.abs(table).max() <= 0.05, framework
        positions = next(v for n, v in values.items() if n.startswith("pos."))
        assert 0.015 < positions.std() < 0.025, framework
        token = next(v for n, v in values.items() if n.startswith("cls."))
        assert not token.any(), framework
        query = next(v for n, v in values.items() if n.startswith("attn.query") and v.ndim == 3)
        limit = math.sqrt(6 / (32 + 4 * 16))
        assert 0.9 * limit < np.abs(query).max() <= limit, framework


def test_keras_model_with_sequence_layers_saves_and_reloads(
    spec: Callable[..., Compiled], tmp_path: Path
) -> None:
    import keras

    compiled = spec(
        "- {name: x, shape: [6, 4]}",
        """
        - {op: class_token, name: cls}
        - {op: positional_embedding, name: pos}
        - {op: slice, name: cut, start: 1, stop: 5}
        - {op: take, name: first, index: 0}
        """,
    )
    km = keras_backend.build(compiled)
    randomize_keras(km, compiled.graph, 0)
    path = tmp_path / "seq.keras"
    km.save(path)
    again = keras.saving.load_model(path)
    x = randn(2, 6, 4)
    assert [type(again.get_layer(n)).__name__ for n in ("cls", "pos", "cut", "first")] == [
        "ClassToken",
        "PositionalEmbedding",
        "Slice",
        "Take",
    ]
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(km(x)))


@pytest.mark.parametrize(
    ("spec_name", "params"),
    [
        ("vit", {"image_size": 32, "width": 24, "heads": 3, "mlp_dim": 48, "depth": 2}),
        ("gpt", {"depth": 2}),
    ],
)
def test_generated_transformers_script_and_export(
    spec_name: str, params: dict, tmp_path: Path
) -> None:
    """torch.jit.script and torch.export.export take the generated transformers and compute
    what they compute (attention, class token, positions, token ids)."""
    spec = ROOT / "specs" / f"{spec_name}.yaml"
    result = compile_to_file(spec, "torch", tmp_path, params, verify=False)
    loader = importlib.util.spec_from_file_location(f"_seq_{spec_name}", result.path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)  # from its file: TorchScript reads the source
    model = module.build_model(**params).eval()
    shape = result.compiled.graph.node(result.compiled.graph.inputs[0]).shape
    tokens = spec_name == "gpt"
    x = torch.randint(0, 1000, (2, *shape)) if tokens else torch.randn(2, 3, *shape[:2])
    with torch.no_grad():
        want = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), want, rtol=1e-5, atol=1e-6)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), want, rtol=1e-5, atol=1e-6)


def test_helpers_compute_the_shapes_the_ir_infers() -> None:
    """steps_out (Keras' rule for 1-D windows) and same_pads_1d (TF's split)."""
    for n in range(1, 12):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                assert helpers.steps_out(n, k, s, "same") == math.ceil(n / s)
                if k <= n:
                    assert helpers.steps_out(n, k, s) == (n - k) // s + 1
                assert helpers.same_pads_1d(n, k, s) == tf_same(n, k, s)
