"""The example plugin (plugins/archc-example-ops): `prelu` and `grn` against the frameworks'
own layers and transformers' ConvNeXt V2, whose Atto and Tiny configurations the plugin's spec
counts exactly and, with the weights copied, computes alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.compiler.api import compile_spec
from tests.plugin_install import EXAMPLE, example_plugin

SPEC = EXAMPLE / "specs" / "convnext_v2.yaml"
GENERATED = EXAMPLE / "generated"
transformers = pytest.importorskip("transformers")  # the dev extra installs it (constraints)

# transformers' ConvNextV2Config(depths=..., hidden_sizes=...) of the Atto and Tiny models
CONFIGS = {
    "atto": {"depths": [2, 2, 6, 2], "hidden_sizes": [40, 80, 160, 320]},
    "tiny": {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]},
}


@pytest.fixture(scope="module", autouse=True)
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with example_plugin(tmp_path_factory.mktemp("site")):
        yield


def _reference(variant: str, classes: int) -> Any:
    from transformers import (
        ConvNextV2Config,
        ConvNextV2ForImageClassification,
        ConvNextV2Model,
    )

    torch.manual_seed(0)
    if classes == 0:
        return ConvNextV2Model(ConvNextV2Config(**CONFIGS[variant])).eval()
    config = ConvNextV2Config(**CONFIGS[variant], num_labels=classes)
    return ConvNextV2ForImageClassification(config).eval()


@pytest.mark.parametrize("classes", [0, 1000])
@pytest.mark.parametrize("variant", sorted(CONFIGS))
def test_counts_equal_transformers(variant: str, classes: int) -> None:
    """classes 0 is ConvNextV2Model: embeddings, encoder and the pooler's final LayerNorm (the
    spec's `layernorm` after global average pooling); classes 1000 adds the classifier, as
    ConvNextV2ForImageClassification."""
    compiled = compile_spec(SPEC, {"classes": classes}, variant=variant)
    model = _reference(variant, classes)
    want = sum(p.numel() for p in model.parameters())
    assert compiled.graph.counts.total == want
    assert compiled.graph.counts.trainable == want


def _hf_key(name: str, key: str) -> tuple[str, str]:
    """The archc layer and PyTorch parameter an HF state-dict entry binds to: the layer names
    are the HF module paths with '_' for '.' (ConvNextV2ForImageClassification's are under
    `convnextv2.`, but its classifier's)."""
    path, _, param = name.rpartition(".")
    path = path.removeprefix("convnextv2.")
    return path.replace(".", "_"), param


def copy_weights(hf: Any, model: Any) -> int:
    """HF's weights into the generated PyTorch model: by name (`_hf_key`), GRN's (1, 1, 1, C)
    as (C,); every other tensor has the same shape in both."""
    copied = 0
    with torch.no_grad():
        for name, value in hf.state_dict().items():
            layer, param = _hf_key(name, "")
            module = model.get_submodule(model.keras_layers[layer])
            target = getattr(module, param)
            target.copy_(value.reshape(target.shape))
            copied += value.numel()
    return copied


def test_outputs_equal_transformers_with_weights_copied() -> None:
    """Atto at 32x32 with random weights in HF's model (GRN's gamma and beta too, which start
    at 0), copied into archc's PyTorch model and from it into the Keras model: the pooled
    features agree within 1e-5 of their largest value."""
    from archc.backends.keras import backend as keras_backend
    from archc.backends.proof.transfer import torch_to_keras
    from archc.backends.torch import backend as torch_backend

    compiled = compile_spec(SPEC, {"classes": 0, "input_shape": [32, 32, 3]}, variant="atto")
    hf = _reference("atto", 0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    ours = torch_backend.build(compiled).eval()
    assert copy_weights(hf, ours) == sum(p.numel() for p in ours.parameters())
    x = torch.randn(2, 3, 32, 32, generator=generator)
    with torch.no_grad():
        want = hf(pixel_values=x).pooler_output.numpy()
        got = ours(x).numpy()
    scale = float(np.abs(want).max())
    print(f"torch max|Δ| {np.abs(got - want).max():.3g} of max|y| {scale:.3g}")
    assert np.abs(got - want).max() <= 1e-5 * scale, np.abs(got - want).max()

    keras_model = keras_backend.build(compiled)
    torch_to_keras(ours, keras_model, compiled.graph)
    got_keras = np.asarray(keras_model(x.permute(0, 2, 3, 1).numpy(), training=False))
    print(f"keras max|Δ| {np.abs(got_keras - want).max():.3g}")
    assert np.abs(got_keras - want).max() <= 1e-5 * scale, np.abs(got_keras - want).max()


def test_grn_is_transformers_grn() -> None:
    from archc_example_ops.torch_helpers import GRN
    from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2GRN

    generator = torch.Generator().manual_seed(2)
    ref = ConvNextV2GRN(6)
    ours = GRN(6)
    assert not ours.weight.any() and not ours.bias.any()  # both start at 0
    with torch.no_grad():
        ref.weight.copy_(torch.randn(1, 1, 1, 6, generator=generator))
        ref.bias.copy_(torch.randn(1, 1, 1, 6, generator=generator))
        ours.weight.copy_(ref.weight.reshape(6))
        ours.bias.copy_(ref.bias.reshape(6))
        x = torch.randn(3, 5, 4, 6, generator=generator)  # HF's channels-last
        want = ref(x)
        got = ours(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # archc's channels-first
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_prelu_starts_at_keras_slope_and_is_keras_prelu() -> None:
    """Keras' PReLU starts at alpha 0 and PyTorch's nn.PReLU at 0.25: the plugin's module
    starts (and resets) at Keras' value; with a slope set, both give x or alpha * x."""
    import keras
    from archc_example_ops.torch_helpers import KerasPReLU

    assert float(torch.nn.PReLU(4).weight[0]) == 0.25  # why the plugin has a class
    layer = keras.layers.PReLU(shared_axes=[1, 2])
    x = np.random.default_rng(3).standard_normal((2, 5, 3, 4)).astype("float32")
    layer.build(x.shape)
    assert np.all(np.asarray(layer.alpha) == 0) and layer.alpha.shape == (1, 1, 4)
    module = KerasPReLU(4)
    assert torch.equal(module.weight.detach(), torch.zeros(4))
    alpha = np.array([0.1, -0.5, 2.0, 0.3], "float32")
    layer.alpha.assign(alpha.reshape(1, 1, 4))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(alpha))
        got = module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    want = np.where(x > 0, x, alpha * x)
    np.testing.assert_allclose(np.asarray(layer(x)), want, rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    module.reset_parameters()
    assert torch.equal(module.weight.detach(), torch.zeros(4))


PRELU_SPEC = """\
archc: 1
name: prelu_net
inputs:
  - {name: x, shape: [8, 6, 3]}
layers:
  - {op: conv2d, name: conv, filters: 4, kernel: 3, padding: same}
  - {op: prelu, name: act}
  - {op: grn, name: grn, epsilon: 1.0e-5}
  - {op: global_avg_pool2d, name: pool}
"""


def test_prelu_and_grn_compile_and_verify(tmp_path: Path, archc: Any) -> None:
    spec = tmp_path / "prelu_net.yaml"
    spec.write_text(PRELU_SPEC, encoding="utf-8")
    result = archc("check", spec)
    assert result.exit_code == 0, result.output
    assert "Total params: 124" in result.output  # conv 3*3*3*4 + 4, alpha 4, gamma+beta 8
    for args in (["verify", spec], ["verify", spec, "--train"]):
        result = archc(*args)
        assert result.exit_code == 0, (args, result.output)
    bad = spec.with_name("bad.yaml")
    bad.write_text(
        PRELU_SPEC.replace("  - {op: global_avg_pool2d, name: pool}\n", "").replace(
            "  - {op: prelu, name: act}\n", "  - {op: flatten}\n  - {op: prelu}\n"
        ),
        encoding="utf-8",
    )
    result = archc("check", bad)
    assert result.exit_code == 1 and "prelu needs an image" in result.output, result.output


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_generated_files_are_up_to_date(backend: str, archc: Any) -> None:
    """plugins/archc-example-ops/generated/ is what compile writes now (regenerate with
    `archc compile plugins/archc-example-ops/specs/convnext_v2.yaml --backend B -o
    plugins/archc-example-ops/generated`), the plugin's version recorded."""
    result = archc("compile", SPEC, "--backend", backend, "-o", GENERATED, "--check")
    assert result.exit_code == 0, result.output
    text = (GENERATED / f"convnext_v2_{backend}.py").read_text(encoding="utf-8")
    assert '"plugins": {"archc-example-ops": "0.1.0"},' in text
