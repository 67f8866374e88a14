"""archc's models against the seed's own code (ported to Keras 3) and a hand-written twin."""

from __future__ import annotations

import numpy as np
import pytest

from archc.backends.keras import backend as keras_backend
from archc.backends.proof.transfer import keras_to_torch
from archc.backends.proof.verify import channels_first, inputs_for, randomize_keras
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from tests.conftest import SEED
from tests.reference_models import seed_keras3


@pytest.mark.parametrize(
    "overrides",
    [{}, {"use_final_conv": True}, {"num_stages": 8}, {"nb_classes": 10}, {"reg": 1e-4}],
    ids=["default", "final_conv", "8_stages", "10_classes", "reg"],
)
def test_archc_models_compute_what_the_seed_code_computes(overrides: dict[str, object]) -> None:
    import torch

    compiled = compile_spec(SEED, overrides)
    graph = compiled.graph
    reference = seed_keras3(**overrides)  # type: ignore[arg-type]
    ours = keras_backend.build(compiled)
    assert [layer.name for layer in reference.layers] == [layer.name for layer in ours.layers]
    assert keras_backend.counts(reference) == keras_backend.counts(ours) == graph.counts

    randomize_keras(reference, graph, seed=1)
    for layer in reference.layers:
        ours.get_layer(layer.name).set_weights(layer.get_weights())
    mine = torch_backend.build(compiled).eval()
    keras_to_torch(reference, mine, graph)

    (x,) = inputs_for(graph, batch=5, seed=2)
    want = np.asarray(reference(x, training=False))
    got_keras = np.asarray(ours(x, training=False))
    with torch.no_grad():
        got_torch = mine(torch.from_numpy(channels_first(x).copy())).numpy()
    np.testing.assert_allclose(got_keras, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_torch, want, rtol=1e-5, atol=1e-5)
    if overrides.get("reg"):
        assert float(sum(reference.losses)) == pytest.approx(
            float(mine.regularization_loss().detach()), rel=1e-5
        )
