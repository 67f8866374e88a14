"""specs/gpt.yaml against Hugging Face transformers' GPT-2 (a test-only dependency: models are
built from config objects, offline; nothing is downloaded).

- Counts: `GPT2LMHeadModel(GPT2Config())`, built on PyTorch's meta device, has the --variant
  gpt2 count (124,439,808: its head is tied to the token embedding, counted once).
- Logits: a small GPT2Config's random weights moved into the generated PyTorch model by the
  name mapping below (`hf_to_archc`), and from it into the generated Keras model, give
  transformers' logits.

The name mapping, transformers' GPT-2 -> the generated model's Keras layers (`i` a block):

| transformers                       | archc (Keras layer: weight)                              |
| ---------------------------------- | -------------------------------------------------------- |
| transformer.wte.weight (V, E)      | wte: embeddings (V, E), also the head (lm_head is tied)  |
| transformer.wpe.weight (P, E)      | wpe: embeddings (context, E), the first `context` rows   |
| h.i.ln_1, h.i.ln_2, ln_f           | h{i}_ln_1, h{i}_ln_2, ln_f: gamma, beta                  |
| h.i.attn.c_attn (E, 3E), bias (3E) | h{i}_attn: query/key/value kernels (E, H, E/H), biases   |
|                                    | (H, E/H): the columns [0, E), [E, 2E), [2E, 3E), split   |
|                                    | per head                                                 |
| h.i.attn.c_proj (E, E), bias (E)   | h{i}_attn: output kernel (H, E/H, E), bias (E)           |
| h.i.mlp.c_fc (E, 4E), c_proj (4E,E)| h{i}_mlp_c_fc, h{i}_mlp_c_proj: kernel (in, out), bias   |

GPT-2's Conv1D stores its weight as (in, out), Keras' Dense kernel layout; nn.Linear's is
(out, in), so the generated PyTorch model takes it transposed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.keras import backend as keras_backend
from archc.backends.proof.transfer import torch_to_keras
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import Compiled, compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads
from tests.conftest import SPECS

transformers = pytest.importorskip("transformers")

GPT = SPECS / "gpt.yaml"
SMALL = {"vocab_size": 101, "n_positions": 16, "n_embd": 64, "n_layer": 2, "n_head": 4}


def small_spec(**config: Any) -> Compiled:
    c = {**SMALL, **config}
    return compile_spec(
        GPT,
        {
            "vocab_size": c["vocab_size"],
            "context": c["n_positions"],
            "width": c["n_embd"],
            "depth": c["n_layer"],
            "heads": c["n_head"],
            "dropout": 0.0,
            "gelu_approximate": True,
        },
    )


def hf_model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**SMALL)
    model = transformers.GPT2LMHeadModel(config).eval()
    # layer norms away from 1 and 0, biases away from 0, matrices larger than GPT-2's
    # initial 0.02 (the MLP's GELU then sees values where its approximations differ)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)
    return model


def hf_to_archc(hf: Any, tm: Any, depth: int, heads: int) -> None:
    """Copy transformers' GPT-2 weights into the generated PyTorch model (the table above)."""
    sd = {k: v.detach() for k, v in hf.state_dict().items()}

    def module(name: str) -> Any:
        return tm.get_submodule(tm.keras_layers[name])

    with torch.no_grad():
        module("wte").weight.copy_(sd["transformer.wte.weight"])
        wpe = module("wpe").weight
        wpe.copy_(sd["transformer.wpe.weight"][: wpe.shape[0]])
        for i in range(depth):
            h = f"transformer.h.{i}."
            for ours, theirs in ((f"h{i}_ln_1", "ln_1"), (f"h{i}_ln_2", "ln_2")):
                module(ours).weight.copy_(sd[h + theirs + ".weight"])
                module(ours).bias.copy_(sd[h + theirs + ".bias"])
            attn = module(f"h{i}_attn")
            w, b = sd[h + "attn.c_attn.weight"], sd[h + "attn.c_attn.bias"]  # (E, 3E), (3E)
            e = w.shape[0]
            for k, part in enumerate(("query", "key", "value")):
                cols = slice(k * e, (k + 1) * e)
                getattr(attn, f"{part}_kernel").copy_(w[:, cols].reshape(e, heads, e // heads))
                getattr(attn, f"{part}_bias").copy_(b[cols].reshape(heads, e // heads))
            attn.output_kernel.copy_(sd[h + "attn.c_proj.weight"].reshape(heads, e // heads, e))
            attn.output_bias.copy_(sd[h + "attn.c_proj.bias"])
            for ours, theirs in (
                (f"h{i}_mlp_c_fc", "mlp.c_fc"),
                (f"h{i}_mlp_c_proj", "mlp.c_proj"),
            ):
                module(ours).weight.copy_(sd[h + theirs + ".weight"].T)  # Conv1D: (in, out)
                module(ours).bias.copy_(sd[h + theirs + ".bias"])
        module("ln_f").weight.copy_(sd["transformer.ln_f.weight"])
        module("ln_f").bias.copy_(sd["transformer.ln_f.bias"])


def test_gpt2_small_counts_as_transformers_counts_it() -> None:
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    assert hf.lm_head.weight is hf.transformer.wte.weight  # tied
    want = sum(p.numel() for p in hf.parameters())
    assert want == 124_439_808
    counts = compile_spec(GPT, variant="gpt2").graph.counts
    assert counts.total == counts.trainable == want


def test_an_untied_head_would_be_caught_by_the_count() -> None:
    """The mutant: the head as a layer of its own adds vocab * width, which the count above
    (and the variant's expect:) refuses."""
    text = GPT.read_text()
    untied = text.replace(
        "{apply: wte, name: lm_head, reverse: true}",
        '{op: dense, name: lm_head, units: "${vocab_size}", use_bias: false}',
    )
    assert untied != text
    with pytest.raises(SpecError) as info:
        compile_spec(loads(untied), variant="gpt2")
    assert info.value.diagnostics[0].code == "E080"
    assert f"(+{50257 * 768:,})" in info.value.diagnostics[0].message


@pytest.mark.parametrize("seed", [0, 1])
def test_logits_equal_transformers_with_its_weights_moved(seed: int) -> None:
    c = small_spec()
    hf = hf_model(seed)
    tm = torch_backend.build(c).eval()
    hf_to_archc(hf, tm, SMALL["n_layer"], SMALL["n_head"])
    ids = np.random.default_rng(seed).integers(0, SMALL["vocab_size"], (3, 16))
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.numpy()
        got = tm(torch.from_numpy(ids)).numpy()
    assert np.abs(want).max() > 0.1  # logits worth comparing
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    km = keras_backend.build(c)
    torch_to_keras(tm, km, c.graph)
    keras_logits = np.asarray(km(ids.astype(np.int32), training=False))
    np.testing.assert_allclose(keras_logits, want, rtol=0, atol=1e-4)


def test_the_exact_gelu_is_not_gpt2s() -> None:
    """The tanh approximation matters at this tolerance: with the exact GELU the logits
    differ from transformers' (so the test above holds the approximation)."""
    c = compile_spec(
        GPT,
        {"vocab_size": 101, "context": 16, "width": 64, "depth": 2, "heads": 4, "dropout": 0.0},
    )
    hf = hf_model(0)
    tm = torch_backend.build(c).eval()
    hf_to_archc(hf, tm, SMALL["n_layer"], SMALL["n_head"])
    ids = np.random.default_rng(0).integers(0, SMALL["vocab_size"], (3, 16))
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.numpy()
        got = tm(torch.from_numpy(ids)).numpy()
    assert np.abs(got - want).max() > 1e-4  # the tolerance the test above holds
