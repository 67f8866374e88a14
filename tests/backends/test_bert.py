"""specs/bert.yaml against transformers' BertModel: BERT-base's and BERT-large's counts (no
framework in archc check), and the small default with BertModel's weights moved in
(tests/backends/bert_reference.py): the same last hidden state and pooled output, in both
generated models, with a padding mask where half the batch is padded and two segments.

Bounds. In float32 both sides round every product and sum (unit roundoff u = 6e-8) in their
own order: reductions of 16 to 128 terms and two layers, each ending in a layer norm that
keeps the size of the values (max|y| about 4 here), move outputs by a few u per op. Measured:
max|Δ| / max|y| <= 5e-7 (Keras and PyTorch against BertModel), so 1e-5 · max|y| leaves 20x
and is still far below what a rule difference does (an inverted or lost mask moves the padded
sequences by O(1); GELU's tanh approximation by 1e-4 of max|y|). In float64 (u = 1.1e-16)
PyTorch's model agrees with BertModel to 4e-16 of max|y|, Keras' to 2e-9: TensorFlow's exact
GELU is 5e-9 off the formula in float64 (measured against math.erf; its erf alone is exact to
u), so the float64 bound is 1e-7 · max|y|, 50x over that, and still sees layer norm's epsilon
(BERT's 1e-12 against PyTorch's default 1e-5: about 1e-5 of max|y|).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.keras import backend as keras_backend
from archc.backends.proof import transfer
from archc.backends.proof.train_check import _keras_float64, verify_training
from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from tests.backends import bert_reference
from tests.conftest import SPECS

BERT = SPECS / "bert.yaml"
BATCH, PADDED = 4, (9, 3)  # the last two sequences hold 9 and 3 tokens of 16


def test_bert_base_and_large_counts_equal_bertmodels(archc: Any) -> None:
    from transformers import BertConfig, BertModel

    for variant, config in (
        ("base", BertConfig()),
        (
            "large",
            BertConfig(
                hidden_size=1024,
                num_hidden_layers=24,
                num_attention_heads=16,
                intermediate_size=4096,
            ),
        ),
    ):
        with torch.device("meta"):
            want = sum(p.numel() for p in BertModel(config).parameters())  # pooler included
        result = archc("check", BERT, "--variant", variant)
        assert result.exit_code == 0, result.output
        assert f"Total params: {want:,}" in result.output
    assert want == 335_141_888


def batch(vocab: int, steps: int) -> dict[str, np.ndarray]:
    """Token ids, two segments (the second from the middle of the tokens) and a padding mask
    where half the batch is padded (right-padded, as BERT's tokenizers pad)."""
    rng = np.random.default_rng(0)
    lengths = np.array([steps, steps, *PADDED])
    mask = (np.arange(steps) < lengths[:, None]).astype(np.int32)
    types = (np.arange(steps) >= lengths[:, None] // 2).astype(np.int32) * mask
    ids = rng.integers(1, vocab, (BATCH, steps)).astype(np.int32) * mask  # padding: id 0
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def reference(params: dict[str, Any], dtype: torch.dtype) -> Any:
    """A BertModel of the spec's parameters with random weights (biases and layer norms
    moved off their initial 0 and 1, so that a weight moved to the wrong place shows)."""
    from transformers import BertModel

    torch.manual_seed(0)
    model = BertModel(bert_reference.config(params)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.to(dtype)


def hf_outputs(model: Any, xs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v).long() for k, v in xs.items()})
    return [out.last_hidden_state.numpy(), out.pooler_output.numpy()]


def generated_outputs(
    compiled: Any, weights: dict[str, Any], xs: dict[str, np.ndarray], float64: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The generated Keras model with BertModel's weights, and the PyTorch one with the same
    weights moved on by transfer; their outputs on the batch (inference)."""
    km = _keras_float64(compiled) if float64 else keras_backend.build(compiled)
    bert_reference.load_keras(km, weights)
    tm = torch_backend.build(compiled)
    tm = tm.double() if float64 else tm
    transfer.keras_to_torch(km, tm, compiled.graph)
    args = [xs[n] for n in compiled.graph.inputs]
    keras_ys = [np.asarray(y) for y in km(args, training=False)]
    with torch.no_grad():
        torch_ys = [y.numpy() for y in tm.eval()(*(torch.from_numpy(a) for a in args))]
    return keras_ys, torch_ys


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(("float64", "bound"), [(False, 1e-5), (True, 1e-7)])
def test_small_bert_equals_bertmodel_with_its_weights(float64: bool, bound: float) -> None:
    compiled = compile_spec(BERT)
    params = dict(compiled.params)
    assert compiled.graph.inputs == ("input_ids", "token_type_ids", "attention_mask")
    model = reference(params, torch.float64 if float64 else torch.float32)
    xs = batch(params["vocab_size"], params["steps"])
    want = hf_outputs(model, xs)
    weights = bert_reference.keras_weights(model, params["steps"])
    keras_ys, torch_ys = generated_outputs(compiled, weights, xs, float64)
    for ys in (keras_ys, torch_ys):
        assert [y.shape for y in ys] == [w.shape for w in want]
        for y, w in zip(ys, want, strict=True):
            assert relative(y, w) <= bound, relative(y, w)
    # the mask matters to the reference: unmasked, the padded half differs by far more
    unmasked = hf_outputs(model, {**xs, "attention_mask": np.ones_like(xs["attention_mask"])})
    assert relative(unmasked[0][2:, :2], want[0][2:, :2]) > 1000 * bound
    assert relative(unmasked[0][:2], want[0][:2]) <= bound  # the unpadded half does not


def test_another_layer_norm_epsilon_is_seen_in_float64(tmp_path: Path) -> None:
    # PyTorch's default epsilon (1e-5) instead of BERT's 1e-12: above the float64 bound
    compiled = compile_spec(BERT, {"epsilon": 1e-5})
    params = dict(compiled.params)
    model = reference({**params, "epsilon": 1e-12}, torch.float64)
    xs = batch(params["vocab_size"], params["steps"])
    want = hf_outputs(model, xs)
    weights = bert_reference.keras_weights(model, params["steps"])
    keras_ys, torch_ys = generated_outputs(compiled, weights, xs, True)
    assert relative(keras_ys[0], want[0]) > 10 * 1e-7, relative(keras_ys[0], want[0])
    assert relative(torch_ys[0], want[0]) > 10 * 1e-7, relative(torch_ys[0], want[0])


def test_the_generated_bert_scripts_and_exports() -> None:
    # TorchScript compiles an encoder layer of the committed file (the masked attention's
    # forward; a model of two outputs is annotated tuple[Tensor, ...], which TorchScript does
    # not take), and torch.export the whole model: three inputs, two outputs
    import generated.bert_torch as mod

    torch.manual_seed(0)
    tm = mod.build_model().eval()
    xs = batch(101, 16)
    args = tuple(torch.from_numpy(xs[n]) for n in ("input_ids", "token_type_ids", "attention_mask"))
    x = torch.randn(BATCH, 16, 64)
    with torch.no_grad():
        layer = tm.encoder[0]
        torch.testing.assert_close(torch.jit.script(layer)(x, args[2]), layer(x, args[2]))
        want = tm(*args)
        got = torch.export.export(tm, args).module()(*args)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_bert_verifies_per_layer_and_trains() -> None:
    # both generated models, per layer, on right-padded masks; then SGD steps in float64 with
    # every dropout (hidden and attention probabilities) off in both
    from transformers import BertModel

    report = verify(str(BERT))
    params = dict(compile_spec(BERT).params)
    with torch.device("meta"):
        model = BertModel(bert_reference.config(params))
    assert report.ir.total == sum(p.numel() for p in model.parameters())
    assert report.layers_checked >= 18
    train = verify_training(str(BERT))
    assert "layer_0_attention" in train.dropout_off and train.arrays_checked > 200
