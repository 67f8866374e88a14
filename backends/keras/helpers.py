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


@keras.saving.register_keras_serializable(package="archc")
class GELU(keras.layers.Layer):
    """keras.activations.gelu as a layer with its `approximate` argument (Activation("gelu")
    is the exact one): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) when approximate."""

    def __init__(self, approximate=False, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, inputs):
        return keras.activations.gelu(inputs, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@keras.saving.register_keras_serializable(package="archc")
class ScaledAdd(keras.layers.Layer):
    """inputs[0] * scales[0] + inputs[1] * scales[1] + ..., summed left to right, broadcasting
    as keras.layers.Add (an input of lower rank gets its new axes after the batch axis); a
    scale of 1 is not multiplied. scales (1, s) computes keras.applications'
    InceptionResNetV2 CustomScaleLayer(s): inputs[0] + inputs[1] * s. None: a plain sum."""

    def __init__(self, scales=None, **kwargs):
        super().__init__(**kwargs)
        self.scales = None if scales is None else tuple(float(s) for s in scales)

    def call(self, inputs):
        scales = (1.0,) * len(inputs) if self.scales is None else self.scales
        rank = max(len(x.shape) for x in inputs)
        total = None
        for x, scale in zip(inputs, scales, strict=True):
            for _ in range(rank - len(x.shape)):
                x = keras.ops.expand_dims(x, 1)
            term = x if scale == 1.0 else x * scale
            total = term if total is None else total + term
        return total

    def get_config(self):
        scales = None if self.scales is None else list(self.scales)
        return {**super().get_config(), "scales": scales}
