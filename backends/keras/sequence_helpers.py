"""Keras layers for sequences that keras.layers lacks (positional_embedding, class_token,
take, slice), copied by source into the generated Keras files that use them, like
keras_helpers' (a generated file imports only keras). Each is registered for `.keras` saving
and reloading (package "archc"), and names its weights as the IR does.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="archc")
class PositionalEmbedding(keras.layers.Layer):
    """A learned tensor of the input's shape, added: one vector per position (ViT, GPT).
    Weight `embeddings` (the input's shape, batch excluded); initial values N(0, 0.02)."""

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=tuple(input_shape[1:]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, inputs):
        return inputs + keras.ops.cast(self.embeddings, inputs.dtype)


@keras.saving.register_keras_serializable(package="archc")
class ClassToken(keras.layers.Layer):
    """A learned entry prepended along the first axis, (T, C) -> (T + 1, C) (ViT's class
    token). Weight `token` (1, *the input's other axes); initial values zero."""

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, *input_shape[2:]), initializer="zeros")

    def call(self, inputs):
        token = keras.ops.zeros_like(inputs[:, :1]) + keras.ops.cast(self.token, inputs.dtype)
        return keras.ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], steps, *input_shape[2:])


@keras.saving.register_keras_serializable(package="archc")
class Take(keras.layers.Layer):
    """x at one index of an axis (batch excluded, 0-based), the axis removed: x[:, 0] is
    Take(0, axis=0)."""

    def __init__(self, index, axis=0, **kwargs):
        super().__init__(**kwargs)
        self.index, self.axis = index, axis

    def call(self, inputs):
        axis = self.axis % (len(inputs.shape) - 1) + 1
        return inputs[(slice(None),) * axis + (self.index,)]

    def get_config(self):
        return {**super().get_config(), "index": self.index, "axis": self.axis}


@keras.saving.register_keras_serializable(package="archc")
class Slice(keras.layers.Layer):
    """x[start:stop] along one axis (batch excluded, 0-based; Python's rules)."""

    def __init__(self, start=0, stop=None, axis=0, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop, self.axis = start, stop, axis

    def call(self, inputs):
        axis = self.axis % (len(inputs.shape) - 1) + 1
        return inputs[(slice(None),) * axis + (slice(self.start, self.stop),)]

    def get_config(self):
        config = {"start": self.start, "stop": self.stop, "axis": self.axis}
        return {**super().get_config(), **config}
