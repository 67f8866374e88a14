"""The Keras layer keras.layers lacks, copied by source into the generated Keras files that use
it (a generated file imports only keras)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="archc_example_ops")
class GRN(keras.layers.Layer):
    """ConvNeXt V2's global response normalization of a channels-last image:
    gamma * (x * Nx) + beta + x, where Gx is the L2 norm of each channel over height and width
    and Nx = Gx / (mean of Gx over the channels + epsilon); gamma and beta start at zero."""

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        gx = keras.ops.sqrt(keras.ops.sum(keras.ops.square(inputs), axis=(1, 2), keepdims=True))
        nx = gx / (keras.ops.mean(gx, axis=-1, keepdims=True) + self.epsilon)
        return self.gamma * (inputs * nx) + self.beta + inputs

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
