"""Helpers the zoo tests share: counts by Keras' own rule, and layer outputs of a Keras model."""

from __future__ import annotations

from typing import Any

import numpy as np

from archc.compiler.ir import Counts


def keras_counts(model: Any) -> Counts:
    """Counts straight from Keras' trainable_weights / non_trainable_weights."""
    t = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    n = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return Counts(t + n, t, n)


def taps(model: Any, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    """The outputs of the named layers of a Keras model, in inference mode."""
    import keras

    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    return [keras.ops.convert_to_numpy(y) for y in probe(x, training=False)]
