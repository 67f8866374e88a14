"""transformers' BertModel as the reference of specs/bert.yaml: its configuration for a spec's
parameters, and its weights moved to the spec's layers (Keras names and layouts, in Keras'
get_weights() order), from which `archc.backends.proof.transfer` moves them on to PyTorch.

The name mapping (i: the encoder layer; W.T: an nn.Linear's weight transposed to Keras'
(in, out) kernel; E the width, H the heads, D = E // H):

    word_embeddings            embeddings.word_embeddings.weight
    position_embeddings        embeddings.position_embeddings.weight[:steps] (one row per step)
    token_type_embeddings      embeddings.token_type_embeddings.weight
    embeddings_layer_norm      embeddings.LayerNorm.weight, .bias (gamma, beta)
    layer_i_attention          encoder.layer.i.attention.self.{query,key,value}: W.T as
                               (E, H, D), bias as (H, D) (unit h * D + j is head h's j-th);
                               then attention.output.dense: W.T as (H, D, E), bias (E,)
    layer_i_attention_layer_norm   encoder.layer.i.attention.output.LayerNorm
    layer_i_intermediate       encoder.layer.i.intermediate.dense (W.T, bias)
    layer_i_output             encoder.layer.i.output.dense (W.T, bias)
    layer_i_output_layer_norm  encoder.layer.i.output.LayerNorm
    pooler                     pooler.dense (W.T, bias)

Inputs are the same three tensors in both: input_ids, token_type_ids and attention_mask (1 a
token, 0 padding); outputs last_hidden_state and pooler_output.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def config(params: dict[str, Any]) -> Any:
    """BertConfig of a spec's parameters (max_position_embeddings = steps)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=params["vocab_size"],
        type_vocab_size=params["type_vocab_size"],
        max_position_embeddings=params["steps"],
        hidden_size=params["width"],
        num_hidden_layers=params["depth"],
        num_attention_heads=params["heads"],
        intermediate_size=params["intermediate"],
        hidden_dropout_prob=params["dropout"],
        attention_probs_dropout_prob=params["attention_dropout"],
        layer_norm_eps=params["epsilon"],
        hidden_act="gelu",
    )


def keras_weights(model: Any, steps: int) -> dict[str, list[np.ndarray]]:
    """BertModel's weights as the spec's layers hold them: Keras layer name -> arrays."""
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    e = model.config.hidden_size
    h = model.config.num_attention_heads
    d = e // h

    def linear(prefix: str) -> list[np.ndarray]:
        return [sd[f"{prefix}.weight"].T, sd[f"{prefix}.bias"]]

    def norm(prefix: str) -> list[np.ndarray]:
        return [sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]]

    out = {
        "word_embeddings": [sd["embeddings.word_embeddings.weight"]],
        "position_embeddings": [sd["embeddings.position_embeddings.weight"][:steps]],
        "token_type_embeddings": [sd["embeddings.token_type_embeddings.weight"]],
        "embeddings_layer_norm": norm("embeddings.LayerNorm"),
        "pooler": linear("pooler.dense"),
    }
    for i in range(model.config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        attention = []
        for part in ("query", "key", "value"):
            kernel, bias = linear(f"{p}.attention.self.{part}")
            attention += [kernel.reshape(e, h, d), bias.reshape(h, d)]
        kernel, bias = linear(f"{p}.attention.output.dense")
        attention += [kernel.reshape(h, d, e), bias]
        out[f"layer_{i}_attention"] = attention
        out[f"layer_{i}_attention_layer_norm"] = norm(f"{p}.attention.output.LayerNorm")
        out[f"layer_{i}_intermediate"] = linear(f"{p}.intermediate.dense")
        out[f"layer_{i}_output"] = linear(f"{p}.output.dense")
        out[f"layer_{i}_output_layer_norm"] = norm(f"{p}.output.LayerNorm")
    return out


def load_keras(keras_model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    """Every weighted layer of the generated Keras model set from `weights` (all used)."""
    layers = [layer for layer in keras_model.layers if layer.weights]
    assert sorted(layer.name for layer in layers) == sorted(weights)
    for layer in layers:
        dtype = layer.weights[0].dtype
        layer.set_weights([np.asarray(w, dtype) for w in weights[layer.name]])
