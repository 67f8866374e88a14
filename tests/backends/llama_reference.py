"""transformers' LlamaForCausalLM as the reference of specs/llama.yaml: its configuration
from the spec's parameters, and its weights moved into the spec's models.

The name mapping (transformers' parameter -> the spec's layer and IR weight, Keras' layout):

    model.embed_tokens.weight (V, C)                    embed_tokens  embeddings, as it is
    model.layers.{i}.input_layernorm.weight (C)         layers_{i}_input_layernorm  scale
    model.layers.{i}.self_attn.q_proj.weight (Hq*D, C)  layers_{i}_self_attn  query/kernel
        (C, Hq, D) = weight.T.reshape(C, Hq, D): row h * D + j is head h's unit j
    model.layers.{i}.self_attn.k_proj / v_proj (Hkv*D, C)  key/kernel, value/kernel
        (C, Hkv, D), the same way
    model.layers.{i}.self_attn.o_proj.weight (C, Hq*D)  attention_output/kernel
        (Hq, D, C) = weight.T.reshape(Hq, D, C)
    model.layers.{i}.post_attention_layernorm.weight    layers_{i}_post_attention_layernorm
    model.layers.{i}.mlp.{gate,up,down}_proj.weight     layers_{i}_mlp_{gate,up,down}_proj
        kernel = weight.T (a Dense kernel is (in, out), nn.Linear's weight (out, in))
    model.norm.weight                                   norm  scale
    lm_head.weight (V, C)                               lm_head  kernel = weight.T

No biases (attention_bias and mlp_bias false, as LLaMA's). transformers builds the model from
the configuration alone: nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def config(params: dict[str, Any]) -> Any:
    """LlamaConfig of the spec's parameters (vocab_size, context, width, depth, heads,
    kv_heads, intermediate, epsilon, rope_theta)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=params["vocab_size"],
        hidden_size=params["width"],
        intermediate_size=params["intermediate"],
        num_hidden_layers=params["depth"],
        num_attention_heads=params["heads"],
        num_key_value_heads=params["kv_heads"],
        max_position_embeddings=params["context"],
        rms_norm_eps=params["epsilon"],
        rope_theta=params["rope_theta"],
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        attention_dropout=0.0,
    )


def keras_arrays(state: dict[str, Any], params: dict[str, Any]) -> dict[str, list[np.ndarray]]:
    """The reference's state dict as the spec's layers' weights, in the IR's (Keras') order
    and layout."""

    def w(key: str) -> np.ndarray:
        return state[key].detach().float().numpy()

    c, hq, hkv = params["width"], params["heads"], params["kv_heads"]
    d = c // hq
    out = {"embed_tokens": [w("model.embed_tokens.weight")]}
    for i in range(params["depth"]):
        p, name = f"model.layers.{i}.", f"layers_{i}_"
        attn = p + "self_attn."
        out[name + "input_layernorm"] = [w(p + "input_layernorm.weight")]
        out[name + "self_attn"] = [
            w(attn + "q_proj.weight").T.reshape(c, hq, d),
            w(attn + "k_proj.weight").T.reshape(c, hkv, d),
            w(attn + "v_proj.weight").T.reshape(c, hkv, d),
            w(attn + "o_proj.weight").T.reshape(hq, d, c),
        ]
        out[name + "post_attention_layernorm"] = [w(p + "post_attention_layernorm.weight")]
        for proj in ("gate", "up", "down"):
            out[f"{name}mlp_{proj}_proj"] = [w(f"{p}mlp.{proj}_proj.weight").T]
    out["norm"] = [w("model.norm.weight")]
    out["lm_head"] = [w("lm_head.weight").T]
    return out


def load_keras(keras_model: Any, arrays: dict[str, list[np.ndarray]]) -> None:
    """Every layer with weights gets the reference's (and no layer is left out)."""
    with_weights = {layer.name for layer in keras_model.layers if layer.weights}
    assert with_weights == set(arrays), sorted(with_weights ^ set(arrays))
    for name, values in arrays.items():
        keras_model.get_layer(name).set_weights(values)
