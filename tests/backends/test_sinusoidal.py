"""sinusoidal_embedding: the original Transformer's fixed position encodings, in Keras' layer
and the PyTorch module the generated files carry, against the formula written out with numpy
and against transformers' own table (XLM's and DistilBERT's create_sinusoidal_embeddings);
no weights in either framework; `verify` on specs that use it and the mutants it catches
(sines then cosines, as Marian and fairseq lay them out; another frequency exponent)."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.compile import VerificationError
from archc.backends.proof.verify import verify
from archc.backends.torch import ops as torch_ops
from archc.backends.torch.sinusoidal_helpers import SinusoidalEmbedding
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError


def formula(steps: int, channels: int, wavelength: float = 10000.0) -> np.ndarray:
    """PE[p, 2i] = sin(p / W^(2i/C)), PE[p, 2i + 1] = cos(p / W^(2i/C)), float64."""
    p = np.arange(steps)[:, None]
    i = np.arange(channels)[None, :] // 2
    angle = p / wavelength ** (2 * i / channels)
    return np.where(np.arange(channels) % 2 == 0, np.sin(angle), np.cos(angle))


def keras_table(steps: int, channels: int, **kwargs: Any) -> np.ndarray:
    from archc.backends.keras.sinusoidal_helpers import SinusoidalEmbedding as KerasSinusoidal

    x = np.zeros((2, steps, channels), np.float32)
    return np.asarray(KerasSinusoidal(**kwargs)(x))[1]


def torch_table(steps: int, channels: int, **kwargs: Any) -> np.ndarray:
    module = SinusoidalEmbedding((steps, channels), **kwargs)
    return module(torch.zeros(2, steps, channels)).numpy()[1]


@pytest.mark.parametrize(("steps", "channels"), [(50, 16), (7, 5), (512, 768)])
def test_the_table_is_the_formula_in_both_frameworks(steps: int, channels: int) -> None:
    want = formula(steps, channels).astype(np.float32)  # each value rounded once
    np.testing.assert_array_equal(torch_table(steps, channels), want)
    np.testing.assert_allclose(keras_table(steps, channels), want, rtol=0, atol=1e-7)


def test_the_table_is_transformers_own() -> None:
    from transformers.models.xlm.modeling_xlm import create_sinusoidal_embeddings

    steps, channels = 64, 32
    out = torch.empty(steps, channels)
    create_sinusoidal_embeddings(steps, channels, out)
    np.testing.assert_allclose(torch_table(steps, channels), out.numpy(), rtol=0, atol=1e-7)
    # and sines-then-cosines (Marian's, fairseq's layout) is not it
    split = np.concatenate([out.numpy()[:, 0::2], out.numpy()[:, 1::2]], axis=1)
    assert np.max(np.abs(torch_table(steps, channels) - split)) > 0.5


def test_another_wavelength() -> None:
    got = torch_table(9, 6, max_wavelength=20.0)
    np.testing.assert_allclose(got, formula(9, 6, 20.0), rtol=0, atol=1e-7)
    assert np.max(np.abs(got - formula(9, 6))) > 0.1


def test_no_weights_in_either_framework() -> None:
    module = SinusoidalEmbedding((4, 6))
    assert not list(module.parameters()) and not list(module.buffers())
    assert module.state_dict() == {}
    from archc.backends.keras.sinusoidal_helpers import SinusoidalEmbedding as KerasSinusoidal

    layer = KerasSinusoidal()
    layer(np.zeros((1, 4, 6), np.float32))
    assert layer.weights == [] and layer.count_params() == 0


def test_the_module_moves_with_its_input_dtype() -> None:
    # float64 (verify --train): the float64 table itself, not a float32 copy
    got = SinusoidalEmbedding((5, 4))(torch.zeros(1, 5, 4, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy()[0], formula(5, 4), rtol=0, atol=1e-15)


SPEC = """\
archc: 1
name: sinusoidal
inputs:
  - {name: tokens, shape: [12], dtype: int}
layers:
  - {op: embedding, name: emb, input_dim: 20, output_dim: 8, inputs: [tokens]}
  - {op: sinusoidal_embedding, name: pos}
  - {op: dense, name: head, units: 3}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_spec_verifies_and_trains(tmp_path: Path) -> None:
    from archc.backends.proof.train_check import verify_training

    report = verify(str(write(tmp_path, SPEC)))
    assert report.ir.total == 20 * 8 + 8 * 3 + 3 and report.layers_checked == 3
    assert verify_training(str(write(tmp_path, SPEC))).arrays_checked > 0


def _sines_then_cosines(ctx: Any, xs: list[str], mod: str) -> str:
    table = f"{mod}.table.to({xs[0]}.dtype)"
    return f"{xs[0]} + torch.cat([{table}[:, 0::2], {table}[:, 1::2]], -1)"


def _exponent_j_over_c(ctx: Any, xs: list[str], mod: str) -> str:
    # every channel its own frequency, W^(j/C), instead of pairs sharing W^(2i/C)
    steps, channels = f"{xs[0]}.shape[1]", f"{xs[0]}.shape[2]"
    p = f"torch.arange({steps}, dtype=torch.float64)[:, None]"
    j = f"torch.arange({channels}, dtype=torch.float64)"
    angle = f"{p} / {mod}.max_wavelength ** ({j} / {channels})"
    even = f"(torch.arange({channels}) % 2 == 0)"
    return f"{xs[0]} + torch.where({even}, torch.sin({angle}), torch.cos({angle})).float()"


@pytest.mark.parametrize("forward", [_sines_then_cosines, _exponent_j_over_c])
def test_a_broken_table_is_caught_by_verify(
    forward: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SPEC)
    op = torch_ops.TORCH_OPS["sinusoidal_embedding"]
    monkeypatch.setitem(torch_ops.TORCH_OPS, "sinusoidal_embedding", replace(op, forward=forward))
    with pytest.raises(VerificationError) as info:
        verify(str(path))
    diag = info.value.diagnostics[0]  # the mutant has no module: named as a suspect
    assert "'pos'" in diag.message or "'pos'" in diag.hint


def test_an_image_is_refused_at_check(tmp_path: Path) -> None:
    text = (
        "archc: 1\nname: bad\ninputs:\n  - {name: x, shape: [4, 4, 3]}\n"
        "layers:\n  - {op: sinusoidal_embedding, name: pos}\n"
    )
    with pytest.raises(SpecError) as info:
        compile_spec(write(tmp_path, text))
    diag = info.value.diagnostics[0]
    assert "sinusoidal_embedding needs a sequence (steps, channels), got shape" in diag.message
    assert diag.location is not None and diag.hint


def test_distilberts_sinusoidal_embeddings_are_a_spec_of_them(tmp_path: Path) -> None:
    # transformers' DistilBERT with sinusoidal_pos_embds: word embedding + the fixed table,
    # then a layer norm (epsilon 1e-12); the same from a spec with DistilBERT's weights, in
    # both generated models
    from transformers import DistilBertConfig, DistilBertModel

    from archc.backends.keras import backend as keras_backend
    from archc.backends.proof import transfer
    from archc.backends.torch import backend as torch_backend

    config = DistilBertConfig(
        sinusoidal_pos_embds=True,
        max_position_embeddings=32,
        dim=16,
        hidden_dim=32,
        n_layers=1,
        n_heads=2,
        vocab_size=50,
    )
    torch.manual_seed(0)
    reference = DistilBertModel(config).embeddings.eval()
    with torch.no_grad():  # layer norm off its initial 1 and 0
        reference.LayerNorm.weight.add_(torch.randn(16) * 0.1)
        reference.LayerNorm.bias.add_(torch.randn(16) * 0.1)
    text = """\
    archc: 1
    name: distilbert_embeddings
    inputs:
      - {name: input_ids, shape: [20], dtype: int}
    layers:
      - {op: embedding, name: word_embeddings, input_dim: 50, output_dim: 16}
      - {op: sinusoidal_embedding, name: position_embeddings}
      - {op: layer_norm, name: layer_norm, epsilon: 1.0e-12}
    """
    compiled = compile_spec(write(tmp_path, text))
    km = keras_backend.build(compiled)
    km.get_layer("word_embeddings").set_weights([reference.word_embeddings.weight.detach().numpy()])
    norm = reference.LayerNorm
    km.get_layer("layer_norm").set_weights(
        [norm.weight.detach().numpy(), norm.bias.detach().numpy()]
    )
    tm = torch_backend.build(compiled).eval()
    transfer.keras_to_torch(km, tm, compiled.graph)
    ids = np.random.default_rng(0).integers(0, 50, (3, 20)).astype(np.int32)
    with torch.no_grad():
        want = reference(torch.from_numpy(ids).long()).numpy()
        got_torch = tm(torch.from_numpy(ids)).numpy()
    got_keras = np.asarray(km(ids, training=False))
    for got in (got_keras, got_torch):
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
