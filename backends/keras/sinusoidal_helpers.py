"""The Keras layer of sinusoidal_embedding (compiler/ops/sinusoidal.py), which keras.layers
lacks, copied by source into the generated Keras files that use it (a generated file imports
only keras); registered for `.keras` saving (package "archc")."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="archc")
class SinusoidalEmbedding(keras.layers.Layer):
    """The original Transformer's fixed position encodings added to a (steps, channels)
    sequence: channel j of position p is sin (j even) or cos (j odd) of
    p / max_wavelength ** (2 * (j // 2) / channels). No weights: the table is computed once,
    in float64 with Python's math (the same numbers on every backend), then cast."""

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def build(self, input_shape):
        import math  # the generated file imports keras alone

        steps, channels = input_shape[1], input_shape[2]
        rows = []
        for p in range(steps):
            angles = [p / self.max_wavelength ** (2 * (j // 2) / channels) for j in range(channels)]
            rows.append([math.cos(a) if j % 2 else math.sin(a) for j, a in enumerate(angles)])
        self.table = keras.ops.convert_to_tensor(rows, dtype=self.compute_dtype)

    def call(self, inputs):
        return inputs + keras.ops.cast(self.table, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}
