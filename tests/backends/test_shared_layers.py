"""Shared weights in the generated models: `apply:` calls the same Keras layer object and the
same PyTorch module again; `reverse: true` calls an embedding in reverse (Keras'
ReversibleEmbedding, PyTorch's F.linear on the embedding's weight: x @ E^T).

References are the frameworks' own: keras.Model.count_params() (variables deduplicated),
PyTorch's parameters() (each Parameter once), Keras' ReversibleEmbedding, and for gradients
the sum of the gradients two untied copies of a weight get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archc.backends.compile import VerificationError
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.train_check import verify_training
from archc.backends.proof.transfer import keras_to_torch, torch_to_keras
from archc.backends.proof.verify import randomize_keras, verify
from archc.backends.torch import backend as torch_backend
from archc.backends.torch import render as torch_render
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.load import loads
from tests.compiler.test_shared_layers import SIAMESE, TIED


def compiled(text: str) -> Compiled:
    return compile_spec(loads(text))


@pytest.mark.parametrize(("text", "want"), [(SIAMESE, 42 + 24), (TIED, 66 + 12)])
def test_keras_and_pytorch_count_a_shared_layer_once(text: str, want: int) -> None:
    c = compiled(text)
    km = keras_backend.build(c)
    tm = torch_backend.build(c)
    assert c.graph.counts.total == km.count_params() == want
    assert sum(p.numel() for p in tm.parameters()) == want
    assert len(tm.state_dict()) == len(km.weights)  # one entry per shared array


def test_each_call_of_a_shared_layer_is_compared() -> None:
    report = verify(compiled(SIAMESE))
    checked = {name for name, _, _ in report.rows}
    # fc1 and its call end in a relu (compared through the layers after them)
    assert {"fc2", "fc2_call1", "diff"} <= checked


def test_the_tied_head_verifies_and_trains_the_same() -> None:
    c = compiled(TIED)
    assert verify(c).layers_checked == 3
    report = verify_training(c)
    assert report.arrays_checked > 0


def test_the_siamese_model_trains_the_same() -> None:
    assert verify_training(compiled(SIAMESE)).arrays_checked > 0


def test_keras_code_calls_one_layer_object_twice() -> None:
    source = keras_backend.render(compiled(TIED))
    assert 'wte_layer = layers.ReversibleEmbedding(11, 6, name="wte")' in source
    assert "x = wte_layer(tokens)" in source and "x = wte_layer(x, reverse=True)" in source
    siamese = keras_backend.render(compiled(SIAMESE))
    assert "x = fc1_layer(right)" in siamese and "x = fc2_layer(x)" in siamese


def test_a_tied_head_is_the_keras_reversible_embedding() -> None:
    """The generated head against Keras' ReversibleEmbedding called in reverse, on the same
    weights, and against the formula x @ E^T."""
    import keras

    c = compiled(TIED)
    km = keras_backend.build(c)
    tm = torch_backend.build(c).eval()
    randomize_keras(km, c.graph, 1)
    keras_to_torch(km, tm, c.graph)
    x = np.random.default_rng(0).standard_normal((2, 8, 6)).astype(np.float32)
    layer = keras.layers.ReversibleEmbedding(11, 6)
    layer.build()
    layer.set_weights(km.get_layer("wte").get_weights())
    want = np.asarray(layer(x, reverse=True))
    e = km.get_layer("wte").get_weights()[0]
    np.testing.assert_allclose(want, x @ e.T, rtol=1e-5, atol=1e-5)
    import torch

    with torch.no_grad():
        got = tm.wte.weight.new_tensor(x) @ tm.wte.weight.T
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
        ln = tm.ln(torch.from_numpy(x))
        head = torch.nn.functional.linear(ln, tm.wte.weight)
    np.testing.assert_allclose(head.numpy(), ln.numpy() @ e.T, rtol=1e-5, atol=1e-5)


def test_the_gradient_of_a_tied_weight_sums_over_its_uses() -> None:
    """PyTorch's gradient of the embedding equals the sum of the gradients of two untied
    copies (one looked up, one the head's): the generated model shares one Parameter."""
    import torch

    c = compiled(TIED)
    tm = torch_backend.build(c).double().train()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 11, (3, 8)))
    tm(ids).square().mean().backward()
    e = tm.wte.weight.detach().clone()
    lookup, head = e.clone().requires_grad_(), e.clone().requires_grad_()
    x = torch.nn.functional.embedding(ids, lookup)
    x = torch.nn.functional.layer_norm(x, (6,), tm.ln.weight.detach(), tm.ln.bias.detach(), 1e-3)
    torch.nn.functional.linear(x, head).square().mean().backward()
    assert lookup.grad is not None and head.grad is not None
    assert tm.wte.weight.grad is not None
    want = lookup.grad + head.grad
    torch.testing.assert_close(tm.wte.weight.grad, want, rtol=1e-12, atol=1e-12)
    assert float((head.grad - want).abs().max()) > 1e-6  # both uses contribute


def test_weights_files_hold_a_shared_weight_once(tmp_path: Path) -> None:
    import torch

    from archc.backends.proof.weights import convert

    spec = tmp_path / "tied.yaml"
    spec.write_text(TIED)
    c = compile_spec(str(spec))
    km = keras_backend.build(c)
    randomize_keras(km, c.graph, 2)
    h5 = tmp_path / "tied.weights.h5"
    km.save_weights(h5)
    pt = tmp_path / "tied.safetensors"
    convert(spec, h5, pt)
    from safetensors.torch import load_file

    state = load_file(pt)
    assert sorted(state) == ["ln.bias", "ln.weight", "wte.weight"]
    np.testing.assert_array_equal(state["wte.weight"].numpy(), km.get_layer("wte").get_weights()[0])
    back = tmp_path / "back.weights.h5"
    convert(spec, pt, back)
    other = keras_backend.build(c)
    other.load_weights(back)
    x = np.random.default_rng(0).integers(0, 11, (2, 8)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(other(x)), np.asarray(km(x)))
    tm = torch_backend.build(c).eval()
    tm.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = tm(torch.from_numpy(x.astype(np.int64))).numpy()
    np.testing.assert_allclose(got, np.asarray(km(x)), rtol=1e-5, atol=1e-5)


# -- mutants: a broken rule must be caught ----------------------------------------------------
def test_a_missing_transpose_is_caught_by_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head reading the embedding as an (in, out) kernel (no transpose): with a square
    embedding the shapes still fit, and verify names the head."""
    square = TIED.replace("input_dim: 11, output_dim: 6", "input_dim: 6, output_dim: 6")
    verify(compiled(square))  # the rule as it is
    monkeypatch.setattr(torch_render, "REVERSE", "F.linear({x}, {module}.weight.T)")
    with pytest.raises(VerificationError) as info:
        verify(compiled(square))
    assert "'head'" in str(info.value.diagnostics[0].message)


def test_pytorch_and_keras_moved_weights_agree_both_ways() -> None:
    c = compiled(SIAMESE)
    km = keras_backend.build(c)
    tm = torch_backend.build(c)
    randomize_keras(km, c.graph, 3)
    keras_to_torch(km, tm, c.graph)
    other = keras_backend.build(c)
    torch_to_keras(tm, other, c.graph)
    for a, b in zip(km.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


SHARED = Path(__file__).parent / "shared_layers.yaml"


def test_layers_called_again_in_blocks_and_repeats_verify_and_train() -> None:
    c = compile_spec(SHARED)
    report = verify(c)
    checked = [name for name, _, _ in report.rows]
    for again in ("attn_again", "pre_again", "norm_again", "fc0_again", "fc1_again", "d1_again"):
        assert again in checked  # each call of a shared layer compared on its own
    assert "d0_again" not in checked  # its `when` is false
    assert verify_training(c).arrays_checked > 0


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        # a layer of the level around the block: not this function's variable
        (
            ('      - {apply: fc, name: "fc${i}_again"}', '      - {apply: attn, name: "x${i}"}'),
            "'attn' is not a layer made before this item in this block",
        ),
        # a conditional layer called again unconditionally
        (
            (
                "  - {op: multi_head_attention, name: attn,",
                "  - {when: true, op: multi_head_attention, name: attn,",
            ),
            "exists only when its condition holds",
        ),
    ],
)
def test_what_generated_code_cannot_call_again_is_e120(edit: tuple[str, str], words: str) -> None:
    from archc.backends.compile import check_generation
    from archc.compiler.diagnostics import SpecError

    text = SHARED.read_text()
    assert edit[0] in text
    c = compile_spec(loads(text.replace(edit[0], edit[1])))
    with pytest.raises(SpecError) as info:
        check_generation(c)
    (diag,) = info.value.diagnostics
    assert diag.code == "E120" and words in diag.message, diag.message
    assert diag.location is not None


BLOCK_INPUTS = Path(__file__).parent / "block_inputs.yaml"


def test_a_block_of_two_inputs_verifies_and_trains() -> None:
    c = compile_spec(BLOCK_INPUTS)
    assert verify(c).layers_checked >= 6
    assert verify_training(c).arrays_checked > 0
    keras_source = keras_backend.render(c)
    assert "def cross(inputs, mem, *, i: int):" in keras_source
    assert "x = cross(x, memory, i=0)" in keras_source
    torch_source = torch_backend.render(c)
    assert "def forward(self, inputs: Tensor, mem: Tensor) -> Tensor:" in torch_source
    assert "x = layer(x, memory)" in torch_source  # in the repeat: memory from around it


NESTED = """
archc: 1
name: nested
inputs:
  - {name: x, shape: [6, 8]}
  - {name: memory, shape: [6, 8]}
blocks:
  cross:
    inputs: [q, mem]
    body:
      - {op: dense, name: d1, units: 8}
      - {apply: d1}
      - repeat: 1
        body:
          - {op: dense, name: inner, units: 8, id: q}
          - {op: add, name: sum_inner, inputs: [q, mem]}
      - {op: add, name: sum_outer, inputs: [q, prev]}
layers:
  - {block: cross, inputs: [x, memory]}
"""


def test_an_input_name_shadowed_by_an_id_inside_a_repeat_means_the_id_there_only() -> None:
    """In the repeat, `q` is the id set there; after it, the block's first input again (as
    the compiler's scopes say: an iteration's ids are its own)."""
    c = compiled(NESTED)
    assert c.graph.node("sum_inner").inputs == ("inner", "memory")
    assert c.graph.node("sum_outer").inputs == ("x", "sum_inner")
    verify(c)  # each framework's model is the IR's (conform), and they agree
    source = keras_backend.render(c)
    assert 'layers.Add(name="sum_inner")([q, mem])' in source  # the id
    assert 'layers.Add(name="sum_outer")([inputs, x])' in source  # the block's input
