"""specs/llama.yaml and the language-model ops (rms_norm, grouped_query_attention with
rotary position embedding) against transformers' LLaMA (built from a configuration, nothing
downloaded) and against their formulas; mutants of each rule caught by `verify`."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.codegen import import_source
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.train_check import verify_training
from archc.backends.proof.transfer import keras_to_torch
from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from tests.backends import llama_reference as ref
from tests.conftest import ROOT, SPECS

LLAMA = SPECS / "llama.yaml"


def params(compiled: Compiled) -> dict[str, Any]:
    return dict(compiled.params)


def reference_logits(compiled: Compiled, ids: np.ndarray, seed: int = 0) -> tuple[Any, Any]:
    """transformers' model with random weights (seeded), and its logits for `ids`."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(ref.config(params(compiled))).eval()
    with torch.no_grad():  # random norms too: a wrong scale layout cannot hide behind ones
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    with torch.no_grad():
        logits = model(torch.from_numpy(ids).long()).logits.numpy()
    return model, logits


def test_small_llama_logits_equal_transformers_in_both_frameworks() -> None:
    compiled = compile_spec(LLAMA)
    p = params(compiled)
    ids = np.random.default_rng(1).integers(0, p["vocab_size"], (2, p["context"]))
    model, want = reference_logits(compiled, ids)
    assert np.abs(want).max() > 0.1  # logits that say something
    km = keras_backend.build(compiled)
    ref.load_keras(km, ref.keras_arrays(model.state_dict(), p))
    tm = torch_backend.build(compiled).eval()
    keras_to_torch(km, tm, compiled.graph)
    got_keras = np.asarray(km(ids.astype(np.int32), training=False))
    with torch.no_grad():
        got_torch = tm(torch.from_numpy(ids)).numpy()
    assert want.shape == (2, p["context"], p["vocab_size"])
    np.testing.assert_allclose(got_torch, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_keras, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("variant", "published"),
    [(None, 106_816), ("tinyllama", 1_100_048_384), ("llama2_7b", 6_738_415_616)],
)
def test_variant_counts_equal_transformers_and_the_meta_model(
    variant: str | None, published: int
) -> None:
    """`archc check`'s count (no framework) = transformers' model on the meta device = the
    published count (the small default's: transformers') = the generated PyTorch model built
    on the meta device."""
    from transformers import LlamaForCausalLM

    compiled = compile_spec(LLAMA, variant=variant)
    with torch.device("meta"):
        reference = LlamaForCausalLM(ref.config(params(compiled)))
    want = sum(p.numel() for p in reference.parameters())
    assert compiled.counts.total == want == published
    assert compiled.counts.non_trainable == 0
    module = import_source(torch_backend.render(compiled), f"llama_{variant or 'small'}_torch")
    model = torch_backend.build_abstract(module)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert torch_backend.counts(model) == compiled.counts


def test_verify_and_training_steps_pass() -> None:
    compiled = compile_spec(LLAMA)
    assert verify(compiled).layers_checked == 13
    report = verify_training(compiled, steps=2)
    assert len(report.losses) == 2 and report.arrays_checked > 2 * 2 * 20


def test_llama2_7b_compiles_for_pytorch_on_the_meta_device(tmp_path: Path) -> None:
    """`archc compile --backend torch` of a model larger than memory (an address-space limit
    of 16 GiB here, whatever the machine) verifies counts and output shapes on the meta
    device, allocating no weights."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))

    archc = Path(sys.executable).parent / "archc"
    args = [archc, "compile", LLAMA, "--variant", "llama2_7b", "--backend", "torch"]
    proc = subprocess.run(
        [*map(str, args), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=limit,
    )
    assert proc.returncode == 0, proc.stderr
    assert "6,738,415,616 params" in proc.stdout and "meta device" in proc.stdout
    assert (tmp_path / "llama_llama2_7b_torch.py").is_file()


# -- rms_norm: LLaMA's formula, the epsilon inside the square root ---------------------------
def test_rms_norm_is_llamas_in_both_frameworks() -> None:
    """Keras' RMSNormalization and nn.RMSNorm (what the op is in each) equal transformers'
    LlamaRMSNorm and x * rsqrt(mean(x^2) + eps) * w, with an epsilon large enough that its
    place shows: outside the square root the numbers differ by far more than the tolerance."""
    import keras
    from torch import nn
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    eps = 0.5
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 5, 8)) * rng.uniform(0.2, 2.0, (2, 5, 1))).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    ms = (x.astype(np.float64) ** 2).mean(-1, keepdims=True)
    want = x / np.sqrt(ms + eps) * w
    outside = x / (np.sqrt(ms) + eps) * w
    assert np.abs(want - outside).max() > 0.05  # the test can tell the two apart

    llama = LlamaRMSNorm(8, eps=eps)
    ours = nn.RMSNorm(8, eps=eps)
    with torch.no_grad():
        llama.weight.copy_(torch.from_numpy(w))
        ours.weight.copy_(torch.from_numpy(w))
        got = [m(torch.from_numpy(x)).numpy() for m in (llama, ours)]
    layer = keras.layers.RMSNormalization(epsilon=eps)
    layer.build(x.shape)
    layer.set_weights([w])
    got.append(np.asarray(layer(x)))
    for each in got:
        np.testing.assert_allclose(each, want, rtol=0, atol=1e-5)


def test_rms_norm_default_epsilon_is_keras_and_written_out_for_pytorch() -> None:
    """The op's default is Keras' (1e-6, LlamaConfig's too); nn.RMSNorm's own default would
    be float32's machine epsilon, so the generated module always names it."""
    import keras

    compiled = compile_spec(loads_spec("- {op: rms_norm, name: norm}", [5, 8]))
    assert compiled.graph.node("norm").attrs.epsilon == keras.layers.RMSNormalization().epsilon
    assert "nn.RMSNorm(shape[-1], eps=1e-06)" in torch_backend.render(compiled)
    model = torch_backend.build(compiled)
    assert model.get_submodule(model.keras_layers["norm"]).eps == 1e-6


# -- grouped_query_attention: refusals ----------------------------------------------------
def loads_spec(layers: str, shape: list[int]) -> Any:
    from archc.compiler.load import loads

    text = f"archc: 1\nname: t\ninputs:\n  - {{name: x, shape: {shape}}}\nlayers:\n  {layers}\n"
    return loads(text, "t.yaml")


@pytest.mark.parametrize(
    ("attrs", "shape", "message"),
    [
        (
            "head_dim: 2, num_query_heads: 3, num_key_value_heads: 2",
            [5, 8],
            "num_query_heads 3 is not a multiple of num_key_value_heads 2",
        ),
        (
            "head_dim: 3, num_query_heads: 2, num_key_value_heads: 1, rope: true",
            [5, 8],
            "head_dim is 3 (odd)",
        ),
        (
            "head_dim: 2, num_query_heads: 2, num_key_value_heads: 1, rope_theta: 100.0",
            [5, 8],
            "rope_theta is given but rope is false",
        ),
        (
            "head_dim: 2, num_query_heads: 2, num_key_value_heads: 1",
            [4, 5, 8],
            "the input must be a sequence (steps, channels)",
        ),
    ],
)
def test_what_attention_cannot_do_is_a_located_error(
    attrs: str, shape: list[int], message: str
) -> None:
    from archc.compiler.diagnostics import SpecError

    with pytest.raises(SpecError) as info:
        compile_spec(loads_spec(f"- {{op: grouped_query_attention, name: a, {attrs}}}", shape))
    (diag,) = info.value.diagnostics
    assert diag.code == "E070" and message in diag.message, diag.message
    assert diag.location is not None and diag.location.line == 6
    assert diag.hint


def test_rope_false_written_is_refused_at_check(archc: Any, tmp_path: Path) -> None:
    """`rope` chooses the rotary Keras layer where it is written; false there is refused (as
    `bidirectional: false`), not compiled into a layer that rotates."""
    spec = tmp_path / "rope_false.yaml"
    layer = "- {op: grouped_query_attention, name: a, head_dim: 2, num_query_heads: 2, "
    spec.write_text(
        "archc: 1\nname: t\ninputs:\n  - {name: x, shape: [5, 8]}\nlayers:\n  "
        + layer
        + "num_key_value_heads: 1, rope: false}\n",
        encoding="utf-8",
    )
    result = archc("check", spec)
    assert result.exit_code == 1
    assert "rope_false.yaml:6:5: error[E121]" in result.stderr
    assert "leave `rope` out" in result.stderr


def test_weights_files_move_between_the_frameworks(tmp_path: Path) -> None:
    """A Keras weights file of the LLaMA model (GroupQueryAttention and its rotary subclass
    keep their projections under `_query_dense` .. `_output_dense`) converts to a PyTorch file
    and back, every array equal."""
    from safetensors.torch import load_file

    from archc.backends.proof.weights import convert

    compiled = compile_spec(LLAMA, {"depth": 1})
    km = keras_backend.build(compiled)
    rng = np.random.default_rng(0)
    for w in km.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    km.save_weights(tmp_path / "llama.weights.h5")
    convert(LLAMA, tmp_path / "llama.weights.h5", tmp_path / "llama.safetensors", {"depth": 1})
    tm = torch_backend.build(compiled)
    tm.load_state_dict(load_file(tmp_path / "llama.safetensors"))
    want = torch_backend.build(compiled)
    keras_to_torch(km, want, compiled.graph)
    for key, value in want.state_dict().items():
        assert torch.equal(tm.state_dict()[key], value), key
    convert(LLAMA, tmp_path / "llama.safetensors", tmp_path / "back.weights.h5", {"depth": 1})
    back = keras_backend.build(compiled)
    back.load_weights(tmp_path / "back.weights.h5")
    for a, b in zip(km.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_keras_model_saves_and_loads_with_its_rotary_layer(tmp_path: Path) -> None:
    """RotaryGroupedQueryAttention is registered for `.keras` files and keeps rope_theta in
    its configuration: the loaded model computes the same logits."""
    import keras

    compiled = compile_spec(LLAMA, {"depth": 1, "rope_theta": 500.0})
    km = keras_backend.build(compiled)
    rng = np.random.default_rng(0)
    for w in km.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.1)
    km.save(tmp_path / "llama.keras")
    loaded = keras.models.load_model(tmp_path / "llama.keras")
    assert loaded.get_layer("layers_0_self_attn").rope_theta == 500.0
    ids = rng.integers(0, 256, (2, 16)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(km(ids)))


JAX_CHECK = """
import numpy as np
import keras
from archc.backends.keras import backend as keras_backend
from archc.compiler.api import compile_spec
from tests.backends import llama_reference as ref
from tests.backends.test_llama import LLAMA, params, reference_logits

assert keras.backend.backend() == "jax"
compiled = compile_spec(LLAMA)
p = params(compiled)
ids = np.random.default_rng(1).integers(0, p["vocab_size"], (2, p["context"]))
model, want = reference_logits(compiled, ids)
km = keras_backend.build(compiled)
ref.load_keras(km, ref.keras_arrays(model.state_dict(), p))
got = np.asarray(km(ids.astype(np.int32), training=False))
print("max", float(np.abs(got - want).max()))
"""


def test_the_keras_model_equals_transformers_on_the_jax_backend() -> None:
    """The rotary layer uses keras.ops only: on Keras' JAX backend (chosen before Keras is
    imported, so in a fresh interpreter) the logits are transformers' too."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", JAX_CHECK],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split("max")[-1]) <= 1e-4


# -- a Keras (TensorFlow) bug archc check refuses: E121 --------------------------------------
def gqa_spec(steps: int, heads: int, kv_heads: int, bias: bool = True) -> Any:
    return loads_spec(
        f"- {{op: grouped_query_attention, name: a, head_dim: 1, num_query_heads: {heads}, "
        f"num_key_value_heads: {kv_heads}, use_bias: {str(bias).lower()}}}",
        [steps, 8],
    )


@pytest.mark.parametrize(
    ("steps", "heads", "kv_heads", "what"),
    [(3, 3, 3, "query"), (2, 4, 2, "key and value")],
)
def test_check_refuses_what_keras_would_compute_wrongly(
    steps: int, heads: int, kv_heads: int, what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keras' GroupQueryAttention adds a head size 1 projection's (heads, 1) bias along the
    steps where there are as many steps as heads (its EinsumDense, as MultiHeadAttention's):
    `archc check` refuses it at the item; without the refusal, verify finds Keras' numbers
    wrong at that layer."""
    from dataclasses import replace

    from archc.backends.compile import VerificationError, check_generation
    from archc.backends.keras import ops as keras_ops
    from archc.compiler.diagnostics import SpecError

    compiled = compile_spec(gqa_spec(steps, heads, kv_heads))
    with pytest.raises(SpecError) as info:
        check_generation(compiled)
    (diag,) = info.value.diagnostics
    assert diag.code == "E121" and f"the {what} projection's bias" in diag.message
    assert diag.location is not None and diag.location.line == 6
    layer = keras_ops.KERAS_LAYERS["grouped_query_attention"]
    monkeypatch.setitem(
        keras_ops.KERAS_LAYERS, "grouped_query_attention", replace(layer, wrong=None)
    )
    with pytest.raises(VerificationError) as failed:
        verify(compiled)
    (diag,) = failed.value.diagnostics
    assert diag.code == "E110" and "'a'" in diag.message


@pytest.mark.parametrize(("steps", "bias"), [(4, True), (3, False)])
def test_head_size_1_elsewhere_is_accepted_and_agrees(steps: int, bias: bool) -> None:
    verify(compile_spec(gqa_spec(steps, 3, 3, bias)))


def test_rope_and_its_base_may_be_parameters(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "archc: 1\nname: p\nparams:\n  use_rope: {type: bool, default: true}\n"
        "  theta: {type: float, default: 500.0}\ninputs:\n  - {name: x, shape: [6, 8]}\n"
        "layers:\n  - {op: grouped_query_attention, name: a, head_dim: 4, num_query_heads: 2, "
        'num_key_value_heads: 1, rope: "${use_rope}", rope_theta: "${theta}", causal: true}\n',
        encoding="utf-8",
    )
    compiled = compile_spec(spec)
    assert verify(compiled).layers_checked == 1
    module = torch_backend.build(compiled).get_submodule("a")
    assert module.rope_theta == 500.0
