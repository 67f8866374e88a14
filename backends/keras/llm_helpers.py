"""Keras layers for language models that keras.layers lacks, copied by source into the
generated Keras files that use them (a generated file imports only keras); registered for
`.keras` saving (package "archc").

RotaryGroupedQueryAttention is Keras' own GroupQueryAttention (its projections, weights,
configuration and attention computation) with rotary position embedding applied to the
queries and keys after their projections, in the rotate-half convention of LLaMA: for
position t and frequency i = 0 .. head_dim / 2 - 1, angle t * rope_theta^(-2i / head_dim),
the pair (x_i, x_{i + head_dim / 2}) is rotated by that angle.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="archc")
class RotaryGroupedQueryAttention(keras.layers.GroupQueryAttention):
    """keras.layers.GroupQueryAttention with rotary position embedding of the queries and
    keys (`rotate`, base rope_theta); weights and layout are Keras' layer's."""

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, rope_theta=10000.0, **kw):
        super().__init__(head_dim, num_query_heads, num_key_value_heads, **kw)
        self.rope_theta = float(rope_theta)

    def rotate(self, x):
        """x (batch, steps, heads, head_dim) with each position's rotation applied: x * cos +
        rotate_half(x) * sin, rotate_half(x) = (-x2, x1) for x's halves x1, x2 (LLaMA's)."""
        ops = keras.ops
        dim = x.shape[-1]
        exponents = ops.arange(0, dim, 2, dtype="float32") / dim
        inv_freq = ops.cast(1.0 / ops.power(self.rope_theta, exponents), x.dtype)
        positions = ops.arange(ops.shape(x)[1], dtype=x.dtype)
        angles = positions[:, None] * inv_freq[None, :]
        angles = ops.concatenate([angles, angles], axis=-1)[:, None, :]  # (steps, 1, head_dim)
        x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
        rotated = ops.concatenate([-x2, x1], axis=-1)
        return x * ops.cos(angles) + rotated * ops.sin(angles)

    def call(self, query, value, key=None, training=None, use_causal_mask=False):
        key = value if key is None else key
        q = self.rotate(self._query_dense(query))
        k = self.rotate(self._key_dense(key))
        v = self._value_dense(value)
        k = keras.ops.repeat(k, self.num_repeats, axis=2)  # query head h reads head h // groups
        v = keras.ops.repeat(v, self.num_repeats, axis=2)
        causal = {"use_causal_mask": True} if use_causal_mask else {}
        y, _ = self._compute_attention(q, k, v, training=training, **causal)
        return self._output_dense(y)

    def get_config(self):
        return {**super().get_config(), "rope_theta": self.rope_theta}
