"""A generated Keras model trains under `keras.distribution.DataParallel` on Keras' JAX backend.

Two host devices (XLA_FLAGS=--xla_force_host_platform_device_count=2) in a fresh process (the
backend and the device count are fixed at import): the generated seed (two stages at 16x16,
L2 on) takes one SGD step with `fit`'s own step (`train_on_batch`) on one device, then again
from the same weights with DataParallel over both devices (the batch split between them). The
loss and every weight and moving statistic after the step must agree: JAX computes the
BatchNorm statistics and the gradient means over the whole (sharded) batch, so nothing but the
summation order differs. float64 (JAX_ENABLE_X64, Keras floatx). Measured: the first stage
agrees to the last bit; from the second stage on, weights differ by up to ~4e-9 after the step
(a gradient difference near 2^-28, as if one cross-device reduction ran in float32; not traced
further), so the tolerance is 1e-8 + 1e-6·max|w| per array, still five orders of magnitude
below what a wrong reduction gives (a summed instead of averaged gradient doubles the update,
~1e-3 here; per-device BatchNorm statistics differ by ~1e-2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("jax")

SCRIPT = """
import json
import keras
import numpy as np
from generated.resnet_preact_keras import build_model

keras.config.set_floatx("float64")
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 16, 16, 3)).astype(np.float32).astype(np.float64)
y = np.eye(5)[rng.integers(0, 5, 8)]

def step(start):
    model = build_model(input_shape=(16, 16, 3), num_stages=2, reg=1e-3)
    if start is not None:
        model.set_weights(start)
    begin = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    loss = float(model.train_on_batch(x, y))
    return model, begin, loss, model.get_weights()

_, start, loss1, after1 = step(None)
devices = keras.distribution.list_devices()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
model, _, loss2, after2 = step(start)
sharding = model.trainable_variables[0].value.sharding
worst = max(
    float(np.max(np.abs(a - b)) / (1e-8 + 1e-6 * np.max(np.abs(a))))
    for a, b in zip(after1, after2, strict=True)
)
moved = sum(not np.array_equal(a, s) for a, s in zip(after1, start, strict=True))
print(json.dumps({
    "devices": len(devices),
    "mesh_devices": len(sharding.mesh.devices.flat),
    "losses": [loss1, loss2],
    "worst": worst,
    "moved": moved,
    "arrays": len(after1),
}))
"""


def test_data_parallel_step_equals_one_device() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(
        PYTHONPATH=str(ROOT),
        KERAS_BACKEND="jax",
        JAX_ENABLE_X64="1",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2 and out["mesh_devices"] == 2  # really two devices
    one, two = out["losses"]
    assert abs(one - two) <= 1e-6 * abs(one)
    assert out["worst"] <= 1.0, out  # every weight and moving statistic
    # every array changed in the step (kernels, BatchNorm's and the moving statistics), so the
    # comparison is not of the starting values
    assert out["moved"] == out["arrays"], out
