"""Keras emitters of the sequence and attention ops (compiler/ops/sequence.py, attention.py).

Most are Keras' own layers; positional_embedding, class_token, take and slice are small layers
of backends/keras/sequence_helpers.py that the generated file carries (`custom=True`).
multi_head_attention is Keras' MultiHeadAttention, called as Keras calls it:
`layer(query, value)`, `layer(query, value, key=key)`, or `layer(x, x)` for self-attention.
"""

from __future__ import annotations

import ast
from typing import Any

from archc.backends.keras.ops import KERAS_LAYERS, Args, Attr, KerasLayer


def _kw(attr: Attr, *pairs: tuple[str, str]) -> Args:
    return [(kw, src) for key, kw in pairs if (src := attr(key)) is not None]


def _pos(attr: Attr, *keys: str) -> Args:
    return [(None, src) for key in keys if (src := attr(key)) is not None]


def _conv1d(attr: Attr) -> Args:
    return [
        *_pos(attr, "filters", "kernel"),
        *_kw(
            attr,
            ("strides", "strides"),
            ("padding", "padding"),
            ("dilation", "dilation_rate"),
            ("groups", "groups"),
            ("use_bias", "use_bias"),
            ("activation", "activation"),
        ),
    ]


def _pool1d(attr: Attr) -> Args:
    return [*_pos(attr, "pool"), *_kw(attr, ("strides", "strides"), ("padding", "padding"))]


def keras_dims(src: str) -> str:
    """A permutation of the IR's axes (0-based, batch excluded) as Keras' Permute dims (from 1)."""
    tree = ast.parse(src, mode="eval").body
    if isinstance(tree, ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, int) for e in tree.elts
    ):
        values = [e.value + 1 for e in tree.elts]  # type: ignore[attr-defined]
        return "(" + "".join(f"{v}, " for v in values) + ")"
    return f"tuple(d + 1 for d in {src})"


def _attention(attr: Attr) -> Args:
    return _kw(
        attr,
        ("num_heads", "num_heads"),
        ("key_dim", "key_dim"),
        ("value_dim", "value_dim"),
        ("use_bias", "use_bias"),
        ("output_dim", "output_shape"),
        ("dropout", "dropout"),
    )


def masked(attr: Attr) -> bool:
    """Whether the layer's last input is a padding mask (`padding_mask`, as written: an
    expression is taken as true; the compiler saw its value with the inputs it was given)."""
    return attr("padding_mask") not in (None, "False")


def _attention_call(attr: Attr, ins: list[str]) -> str:
    mask = ins[-1] if masked(attr) else None
    ins = ins[:-1] if masked(attr) else ins
    query = ins[0]
    value = ins[1] if len(ins) > 1 else query
    args = [query, value] + ([f"key={ins[2]}"] if len(ins) > 2 else [])
    if mask is not None:  # Keras' mask of the value's (and key's) steps, True where attended
        args.append(f"value_mask={mask}")
    causal = attr("causal")
    if causal is not None and causal != "False":
        args.append(f"use_causal_mask={causal}")
    return ", ".join(args)


def _attention_wrong(attrs: Any, shapes: list[tuple[int, ...]]) -> tuple[str, str] | None:
    """Keras 3's TensorFlow `ops.add` (which EinsumDense adds its bias with) treats a bias that
    squeezes to one axis of length n as tf.nn.bias_add's channels-first bias when n equals
    x.shape[1]: it adds it along axis 1, not by numpy's broadcasting. A projection with head
    size 1 has a (heads, 1) bias for (batch, steps, heads, 1) projections, so where a sequence
    has as many steps as there are heads Keras adds the bias per step, not per head."""
    heads = attrs.num_heads
    if not attrs.use_bias:
        return None
    if getattr(attrs, "padding_mask", False):
        shapes = shapes[:-1]
    query = shapes[0]
    value = shapes[1] if len(shapes) > 1 else query
    key = shapes[2] if len(shapes) > 2 else value
    value_dim = attrs.value_dim or attrs.key_dim
    for what, size, steps in (
        ("query", attrs.key_dim, query[0]),
        ("key", attrs.key_dim, key[0]),
        ("value", value_dim, value[0]),
    ):
        if heads > 1 and size == 1 and steps == heads:
            why = (
                f"Keras (TensorFlow) adds the {what} projection's bias along the wrong axis "
                f"here: head size 1 with {heads} heads over {steps} steps (its ops.add takes "
                f"the ({heads}, 1) bias for a channels-first one), so Keras' numbers would be "
                "wrong"
            )
            return (
                why,
                "use a head size (key_dim, value_dim) of 2 or more, or another number of heads",
            )
    return None


SEQUENCE_LAYERS: dict[str, KerasLayer] = {
    "conv1d": KerasLayer("Conv1D", _conv1d, "kernel_regularizer"),
    "max_pool1d": KerasLayer("MaxPooling1D", _pool1d),
    "avg_pool1d": KerasLayer("AveragePooling1D", _pool1d),
    "global_avg_pool1d": KerasLayer(
        "GlobalAveragePooling1D", lambda a: _kw(a, ("keepdims", "keepdims"))
    ),
    "global_max_pool1d": KerasLayer(
        "GlobalMaxPooling1D", lambda a: _kw(a, ("keepdims", "keepdims"))
    ),
    "embedding": KerasLayer("Embedding", lambda a: _pos(a, "input_dim", "output_dim")),
    "positional_embedding": KerasLayer("PositionalEmbedding", lambda a: [], custom=True),
    "class_token": KerasLayer("ClassToken", lambda a: [], custom=True),
    "take": KerasLayer(
        "Take", lambda a: [*_pos(a, "index"), *_kw(a, ("axis", "axis"))], custom=True
    ),
    "slice": KerasLayer(
        "Slice",
        lambda a: _kw(a, ("start", "start"), ("stop", "stop"), ("axis", "axis")),
        custom=True,
    ),
    "permute": KerasLayer("Permute", lambda a: [(None, keras_dims(a("dims") or "()"))]),
    "multi_head_attention": KerasLayer(
        "MultiHeadAttention", _attention, call=_attention_call, wrong=_attention_wrong
    ),
}
KERAS_LAYERS.update(SEQUENCE_LAYERS)
