"""Keras emitters of the language-model ops (compiler/ops/llm.py).

rms_norm is Keras' RMSNormalization. grouped_query_attention is Keras' GroupQueryAttention
(exported by keras.layers under that name; its class is GroupedQueryAttention), called as
Keras calls it, `layer(x, x, use_causal_mask=True)`; an item that sets `rope` becomes
RotaryGroupedQueryAttention, a subclass that the generated file defines
(keras/llm_helpers.py): the same weights, the queries and keys rotated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archc.backends.keras.ops import KERAS_LAYERS, Args, Attr, KerasLayer

HELPERS = Path(__file__).with_name("llm_helpers.py")


def _kw(attr: Attr, *pairs: tuple[str, str]) -> Args:
    return [(kw, src) for key, kw in pairs if (src := attr(key)) is not None]


def _gqa(attr: Attr) -> Args:
    return _kw(
        attr,
        ("head_dim", "head_dim"),
        ("num_query_heads", "num_query_heads"),
        ("num_key_value_heads", "num_key_value_heads"),
        ("use_bias", "use_bias"),
    )


def _rotary(attr: Attr) -> Args:
    return _gqa(attr) + _kw(attr, ("rope_theta", "rope_theta"))


def _call(attr: Attr, ins: list[str]) -> str:
    causal = attr("causal")
    extra = [f"use_causal_mask={causal}"] if causal is not None and causal != "False" else []
    return ", ".join([ins[0], ins[0], *extra])


def _bias_axis(attrs: Any, shapes: list[tuple[int, ...]]) -> tuple[str, str] | None:
    """Keras' TensorFlow bias bug (keras_sequence._attention_wrong): a projection with head
    size 1 has a (heads, 1) bias, which EinsumDense's ops.add takes for a channels-first one
    where the sequence has as many steps as that projection has heads."""
    if not attrs.use_bias or attrs.head_dim != 1:
        return None
    steps = shapes[0][0]
    for what, heads in (
        ("query", attrs.num_query_heads),
        ("key and value", attrs.num_key_value_heads),
    ):
        if heads > 1 and steps == heads:
            why = (
                f"Keras (TensorFlow) adds the {what} projection's bias along the wrong axis "
                f"here: head_dim 1 with {heads} heads over {steps} steps (its ops.add takes the "
                f"({heads}, 1) bias for a channels-first one), so Keras' numbers would be wrong"
            )
            return why, "use a head_dim of 2 or more, another number of heads, or no bias"
    return None


def _rotary_wrong(attrs: Any, shapes: list[tuple[int, ...]]) -> tuple[str, str] | None:
    return _no_rope(attrs, shapes) or _bias_axis(attrs, shapes)


def _no_rope(attrs: Any, shapes: list[tuple[int, ...]]) -> tuple[str, str] | None:
    if attrs.rope:
        return None
    return (
        "rope is false here, but the item sets it: the Keras code makes the rotary layer "
        "wherever the attribute is written",
        "leave `rope` out for attention without rotary position embedding (write it only as true)",
    )


LLM_LAYERS: dict[str, KerasLayer] = {
    "rms_norm": KerasLayer("RMSNormalization", lambda a: _kw(a, ("epsilon", "epsilon"))),
    "grouped_query_attention": KerasLayer(
        "GroupQueryAttention",
        _gqa,
        call=_call,
        class_name="GroupedQueryAttention",
        wrong=_bias_axis,
        variants=(
            (
                "rope",
                KerasLayer(
                    "RotaryGroupedQueryAttention",
                    _rotary,
                    custom=True,
                    helpers=HELPERS,
                    call=_call,
                    wrong=_rotary_wrong,
                ),
            ),
        ),
    ),
}
KERAS_LAYERS.update(LLM_LAYERS)
