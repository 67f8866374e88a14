"""Keras layers that keras.layers lacks, copied by source into the generated Keras files that
use them (a generated file imports only keras). Each is registered for `.keras` saving and
reloading, and names its weights as the IR does.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="archc")
class LayerScale(keras.layers.Layer):
    """ConvNeXt's LayerScale: x * gamma, one trainable value per channel (the last axis),
    starting at init_value."""

    def __init__(self, init_value=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}
