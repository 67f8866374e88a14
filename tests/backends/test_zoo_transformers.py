"""The transformer specs against references built here from PyTorch's own modules (no
downloads): specs/vit.yaml against torchvision's VisionTransformer structure (nn.Conv2d patch
embedding, class token, position embedding, nn.TransformerEncoderLayer(norm_first=True,
activation="gelu", batch_first=True) per block, a final LayerNorm and the head),
specs/transformer_encoder.yaml against nn.TransformerEncoder for both norm placements and
both activations, specs/gpt.yaml by `archc verify` on token ids and by counts. Weights are
copied into the references by the attention layout rule (docs/ARCHITECTURE.md): the packed
in_proj_weight (3E, E) stacks the query, key and value kernels (E, H, D), each reshaped to
(E, H * D) and transposed. Large models are counted on PyTorch's meta device.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from archc.backends.keras import backend as keras_backend
from archc.backends.proof.transfer import keras_to_torch
from archc.backends.proof.verify import randomize_keras, verify
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from tests.conftest import SPECS

VIT = SPECS / "vit.yaml"
ENCODER = SPECS / "transformer_encoder.yaml"
GPT = SPECS / "gpt.yaml"
ARCHC = Path(sys.executable).parent / "archc"


def count(module: nn.Module) -> int:
    """Parameters, each once (a tied weight counts once)."""
    return sum(p.numel() for p in module.parameters())


# -- references -------------------------------------------------------------------------------
def encoder_layer(width: int, heads: int, mlp: int, act: str, norm_first: bool, eps: float):
    return nn.TransformerEncoderLayer(
        width,
        heads,
        mlp,
        dropout=0.0,
        activation=act,
        layer_norm_eps=eps,
        batch_first=True,
        norm_first=norm_first,
    )


class ReferenceViT(nn.Module):
    """torchvision's VisionTransformer, written with PyTorch's modules."""

    def __init__(
        self, image: int, patch: int, width: int, depth: int, heads: int, mlp: int, classes: int
    ):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, width, patch, stride=patch)
        tokens = (image // patch) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, width).normal_(std=0.02))
        self.layers = nn.ModuleList(
            encoder_layer(width, heads, mlp, "gelu", True, 1e-6) for _ in range(depth)
        )
        self.ln = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embedding
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x)[:, 0])


def copy_attention(keras_layer: Any, mha: nn.MultiheadAttention) -> None:
    """Keras' MultiHeadAttention weights into nn.MultiheadAttention's packed layout."""
    wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(w) for w in keras_layer.get_weights())
    e = wq.shape[0]
    with torch.no_grad():
        mha.in_proj_weight.copy_(
            torch.from_numpy(np.concatenate([w.reshape(e, -1).T for w in (wq, wk, wv)]))
        )
        mha.in_proj_bias.copy_(
            torch.from_numpy(np.concatenate([bq.ravel(), bk.ravel(), bv.ravel()]))
        )
        mha.out_proj.weight.copy_(torch.from_numpy(wo.reshape(-1, wo.shape[-1]).T.copy()))
        mha.out_proj.bias.copy_(torch.from_numpy(bo))


def copy_dense(keras_layer: Any, linear: nn.Linear) -> None:
    kernel, bias = keras_layer.get_weights()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias))


def copy_norm(keras_layer: Any, norm: nn.LayerNorm) -> None:
    gamma, beta = keras_layer.get_weights()
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(gamma))
        norm.bias.copy_(torch.from_numpy(beta))


def keras_model(compiled: Compiled, seed: int = 0) -> Any:
    model = keras_backend.build(compiled)
    randomize_keras(model, compiled.graph, seed)
    return model


# -- ViT --------------------------------------------------------------------------------------
VIT_SIZES = {  # variant -> (width, depth, heads, mlp)
    None: (768, 12, 12, 3072),
    "ti16": (192, 12, 3, 768),
    "s16": (384, 12, 6, 1536),
}


@pytest.mark.parametrize("variant", list(VIT_SIZES), ids=["b16", "ti16", "s16"])
def test_vit_counts_equal_the_reference(variant: str | None) -> None:
    """ViT-B/16 at 224 has 86,567,656 parameters (torchvision's vit_b_16 count, 1000
    classes); the reference, built on the meta device, has as many, and so has every size."""
    width, depth, heads, mlp = VIT_SIZES[variant]
    with torch.device("meta"):
        reference = ReferenceViT(224, 16, width, depth, heads, mlp, 1000)
    compiled = compile_spec(VIT, variant=variant)
    assert compiled.counts.total == compiled.counts.trainable == count(reference)
    if variant is None:
        assert count(reference) == 86_567_656


def test_vit_outputs_equal_the_reference() -> None:
    """ViT-Ti/16 (12 blocks) at 48x48: Keras' model with random weights, the generated
    PyTorch model (weights transferred by archc) and the reference (weights copied by the
    layout rule) compute the same logits."""
    compiled = compile_spec(VIT, {"image_size": 48, "classes": 10}, variant="ti16")
    km = keras_model(compiled)
    tm = torch_backend.build(compiled).eval()
    keras_to_torch(km, tm, compiled.graph)
    width, depth, heads, mlp = VIT_SIZES["ti16"]
    reference = ReferenceViT(48, 16, width, depth, heads, mlp, 10).eval()
    kernel, bias = km.get_layer("conv_proj").get_weights()
    with torch.no_grad():
        reference.conv_proj.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        reference.conv_proj.bias.copy_(torch.from_numpy(bias))
        (token,) = km.get_layer("class_token").get_weights()
        reference.class_token.copy_(torch.from_numpy(token[None]))
        (positions,) = km.get_layer("pos_embedding").get_weights()
        reference.pos_embedding.copy_(torch.from_numpy(positions[None]))
    for i, layer in enumerate(reference.layers):
        copy_norm(km.get_layer(f"encoder_layer_{i}_ln_1"), layer.norm1)
        copy_attention(km.get_layer(f"encoder_layer_{i}_self_attention"), layer.self_attn)
        copy_norm(km.get_layer(f"encoder_layer_{i}_ln_2"), layer.norm2)
        copy_dense(km.get_layer(f"encoder_layer_{i}_mlp_1"), layer.linear1)
        copy_dense(km.get_layer(f"encoder_layer_{i}_mlp_2"), layer.linear2)
    copy_norm(km.get_layer("encoder_ln"), reference.ln)
    copy_dense(km.get_layer("head"), reference.head)
    assert count(reference) == compiled.counts.total
    x = np.random.default_rng(1).standard_normal((2, 48, 48, 3)).astype(np.float32)
    want = np.asarray(km(x, training=False))
    with torch.no_grad():
        nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        ref, mine = reference(nchw).numpy(), tm(nchw).numpy()
    np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-5)


# -- transformer encoder ----------------------------------------------------------------------
SMALL = {"steps": 7, "width": 16, "heads": 4, "depth": 2, "mlp_ratio": 2.0}


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_transformer_encoder_equals_torchs(norm_first: bool, activation: str) -> None:
    params = {**SMALL, "norm_first": norm_first, "activation": activation}
    compiled = compile_spec(ENCODER, params)
    reference = nn.TransformerEncoder(
        encoder_layer(16, 4, 32, activation, norm_first, 1e-5), 2, enable_nested_tensor=False
    ).eval()
    assert count(reference) == compiled.counts.total
    km = keras_model(compiled)
    for i, layer in enumerate(reference.layers):
        copy_attention(km.get_layer(f"layers_{i}_self_attn"), layer.self_attn)
        copy_norm(km.get_layer(f"layers_{i}_norm1"), layer.norm1)
        copy_norm(km.get_layer(f"layers_{i}_norm2"), layer.norm2)
        copy_dense(km.get_layer(f"layers_{i}_linear1"), layer.linear1)
        copy_dense(km.get_layer(f"layers_{i}_linear2"), layer.linear2)
    x = np.random.default_rng(2).standard_normal((3, 7, 16)).astype(np.float32)
    want = np.asarray(km(x, training=False))
    with torch.no_grad():
        got = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    verify(compiled)


@pytest.mark.parametrize("variant", [None, "pre_norm_gelu", "base"])
def test_transformer_encoder_counts_equal_torchs(variant: str | None) -> None:
    compiled = compile_spec(ENCODER, variant=variant)
    p = compiled.params
    mlp = int(p["width"] * p["mlp_ratio"])
    with torch.device("meta"):
        layer = encoder_layer(p["width"], p["heads"], mlp, p["activation"], p["norm_first"], 1e-5)
        reference = nn.TransformerEncoder(layer, p["depth"], enable_nested_tensor=False)
    assert compiled.counts.total == count(reference)


# -- GPT --------------------------------------------------------------------------------------
class ReferenceGPT(nn.Module):
    """A GPT-2-shaped decoder from PyTorch's modules (for counting): token and position
    embeddings, pre-norm blocks (nn.TransformerEncoderLayer has GPT-2's block parameters:
    attention 4E^2 + 4E, MLP 8E^2 + 5E, two layer norms), a final norm and the head."""

    def __init__(self, vocab: int, context: int, width: int, depth: int, heads: int, tied: bool):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(
            encoder_layer(width, heads, 4 * width, "gelu", True, 1e-5) for _ in range(depth)
        )
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight


def test_gpt2_count_is_the_tied_count() -> None:
    """GPT-2 small has 124,439,808 parameters with its head tied to the token embedding, as
    the spec's head is (`apply: wte`, `reverse: true`); untied it would add vocab * width."""
    with torch.device("meta"):
        tied = ReferenceGPT(50257, 1024, 768, 12, 12, tied=True)
        untied = ReferenceGPT(50257, 1024, 768, 12, 12, tied=False)
    assert count(tied) == 124_439_808 == count(untied) - 50257 * 768
    compiled = compile_spec(GPT, variant="gpt2")
    assert compiled.counts.total == count(tied)


def test_gpt3_is_175_billion_and_compiles_on_the_meta_device(tmp_path: Path) -> None:
    """96 layers, width 12288, 96 heads, 2048 tokens, 50257 tokens in the vocabulary: per
    block 12 E^2 + 13 E, plus the embeddings and the final norm (the head is tied)."""
    e, depth, vocab, context = 12288, 96, 50257, 2048
    want = depth * (12 * e * e + 13 * e) + vocab * e + context * e + 2 * e
    assert compile_spec(GPT, variant="gpt3").counts.total == want == 174_604_259_328
    proc = subprocess.run(
        [ARCHC, "compile", GPT, "--variant", "gpt3", "--backend", "torch", "-o", tmp_path],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "meta device" in proc.stdout
    assert (tmp_path / "gpt_gpt3_torch.py").is_file()


def test_gpt_verifies_on_token_ids_and_is_causal() -> None:
    """`archc verify` (token ids below the vocabulary, every layer compared); and in both
    frameworks a change to the last token changes only the last position's logits."""
    compiled = compile_spec(GPT, {"depth": 2, "context": 16})
    report = verify(compiled)
    assert report.layers_checked > 10
    km = keras_model(compiled)
    tm = torch_backend.build(compiled).eval()
    keras_to_torch(km, tm, compiled.graph)
    ids = np.random.default_rng(3).integers(0, 1000, (1, 16)).astype(np.int32)
    other = ids.copy()
    other[0, -1] = (other[0, -1] + 1) % 1000
    for run in (
        lambda x: np.asarray(km(x, training=False)),
        lambda x: tm(torch.from_numpy(x)).detach().numpy(),
    ):
        a, b = run(ids), run(other)
        np.testing.assert_allclose(a[:, :-1], b[:, :-1], rtol=1e-5, atol=1e-5)
        assert np.abs(a[:, -1] - b[:, -1]).max() > 1e-3
