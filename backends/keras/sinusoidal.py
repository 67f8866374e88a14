"""Keras emitter of sinusoidal_embedding (compiler/ops/sinusoidal.py): a layer of
keras/sinusoidal_helpers.py that the generated file carries."""

from __future__ import annotations

from pathlib import Path

from archc.backends.keras.ops import KERAS_LAYERS, KerasLayer

KERAS_LAYERS["sinusoidal_embedding"] = KerasLayer(
    "SinusoidalEmbedding",
    lambda a: [(k, src) for k in ("max_wavelength",) if (src := a(k)) is not None],
    custom=True,
    helpers=Path(__file__).with_name("sinusoidal_helpers.py"),
)
