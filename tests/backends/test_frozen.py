"""`trainable: false` means what Keras means, in both backends: frozen weights add no L2
penalty, and a frozen BatchNorm keeps using its moving statistics while training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archc.backends.keras import backend as keras_backend
from archc.backends.proof.transfer import keras_to_torch
from archc.backends.proof.verify import channels_first, randomize_keras
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from archc.compiler.load import loads

SPEC = """archc: 1
name: frozen
inputs:
  - {name: x, shape: [6, 5, 3]}
layers:
  - {op: conv2d, name: c1, filters: 4, kernel: 3, kernel_l2: 0.1, trainable: false}
  - {op: batch_norm, name: bn, trainable: false}
  - {op: conv2d, name: c2, filters: 4, kernel: 1, kernel_l2: 0.1}
  - {op: flatten, name: flat}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    path = Path(tmp_path_factory.mktemp("frozen")) / "frozen.yaml"
    path.write_text(SPEC, encoding="utf-8")
    compiled = compile_spec(path)
    km = keras_backend.build(compiled)
    randomize_keras(km, compiled.graph, seed=4)
    tm = torch_backend.build(compiled)  # the generated module, imported
    keras_to_torch(km, tm, compiled.graph)
    return km, tm


def test_frozen_layers_add_no_l2_penalty(models: tuple[object, object]) -> None:
    km, tm = models
    want = float(sum(np.asarray(loss) for loss in km.losses))  # type: ignore[attr-defined]
    c2 = np.asarray(km.get_layer("c2").get_weights()[0])  # type: ignore[attr-defined]
    assert want == pytest.approx(0.1 * float(np.sum(c2.astype(np.float64) ** 2)), rel=1e-5)
    got = float(tm.regularization_loss().detach())  # type: ignore[attr-defined]
    assert got == pytest.approx(want, rel=1e-5)


def test_frozen_batch_norm_uses_moving_statistics_in_training(
    models: tuple[object, object],
) -> None:
    import torch

    km, tm = models
    x = np.random.default_rng(0).standard_normal((4, 6, 5, 3)).astype(np.float32)
    want = np.asarray(km(x, training=True))  # type: ignore[operator]
    for model in (tm,):
        model.train()  # type: ignore[attr-defined]
        before = model.get_submodule("bn").running_mean.clone()  # type: ignore[attr-defined]
        with torch.no_grad():
            got = model(torch.from_numpy(channels_first(x).copy())).numpy()  # type: ignore[operator]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(model.get_submodule("bn").running_mean, before)  # type: ignore[attr-defined]


def test_trainable_batch_norm_still_trains() -> None:
    text = SPEC.replace(
        "{op: batch_norm, name: bn, trainable: false}", "{op: batch_norm, name: bn}"
    )
    model = torch_backend.build(compile_spec(loads(text)))
    model.train()
    assert model.get_submodule("bn").training
