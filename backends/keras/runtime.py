"""Which Keras backend (JAX, PyTorch or TensorFlow) runs the generated Keras models.

Keras 3 reads its backend once, from KERAS_BACKEND, when `keras` is first imported; a process
cannot switch afterwards. `use(name)` therefore sets the variable before the first import
(the backends import keras lazily, inside functions, so importing `backends` does not), and
where keras is already imported with another backend it is a clear error (E115), never a
model silently verified on the wrong backend.

The generated Keras files use `keras.ops` only (no TensorFlow call), so the same file runs on
each backend; `archc verify --keras-backend` proves it layer by layer.
"""

from __future__ import annotations

import os
import sys

from archc.compiler.diagnostics import Diagnostic, SpecError

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


def active() -> str | None:
    """The backend of the keras already imported in this process (None: not imported yet)."""
    keras = sys.modules.get("keras")
    backend = getattr(keras, "backend", None)
    return None if backend is None else str(backend.backend())


def use(name: str | None) -> str:
    """Make `name` Keras' backend for this process (None: whichever keras has or will pick);
    returns the backend that will run. Raises SpecError E115 when keras is already imported
    with another backend, or for a name Keras has no backend of."""
    if name is not None and name not in KERAS_BACKENDS:
        raise SpecError(
            [
                Diagnostic(
                    "E115",
                    f"unknown Keras backend '{name}'",
                    hint="use one of " + ", ".join(KERAS_BACKENDS),
                )
            ]
        )
    current = active()
    if current is None:
        if name is not None:
            os.environ["KERAS_BACKEND"] = name
        return name or os.environ.get("KERAS_BACKEND", "tensorflow")
    if name is not None and current != name:
        raise SpecError(
            [
                Diagnostic(
                    "E115",
                    f"Keras is already imported in this process with its '{current}' backend; "
                    f"it cannot switch to '{name}'",
                    hint=f"run in a fresh process with KERAS_BACKEND={name} set before keras "
                    "is imported (the `archc verify --keras-backend` command does this)",
                )
            ]
        )
    return current
