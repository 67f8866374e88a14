"""`archc verify --dtype bfloat16|float16`: both models under their framework's mixed precision
(Keras' mixed_<dtype> policy at build, torch.autocast at run), compared at rtol = 32·u
(u = 2^-8 for bfloat16, 2^-11 for float16; docs/ARCHITECTURE.md "Mixed precision").

ResNet50 and the ViT run at a small input size (and the ViT with two encoder layers): the
tolerance is relative per layer, and the full sizes cost minutes on two CPU cores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from archc.backends.compile import VerificationError
from tests.conftest import SEED, SPECS

pytest.importorskip("torch")
pytest.importorskip("keras")


def test_seed_bfloat16_from_the_cli(archc) -> None:
    import keras

    result = archc("verify", SEED, "--dtype", "bfloat16", "--no-odd-input", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dtype"] == "bfloat16"
    bound = report["bound"]
    assert bound["rtol"] == 32 * 2.0**-8
    assert bound["max_abs_diff"] <= bound["limit"]
    # the models really computed in bfloat16: the difference is far above float32's bound
    assert bound["max_abs_diff"] > 1e-5 + 1e-5 * bound["max_abs_value"]
    assert keras.config.dtype_policy().name == "float32"  # the global policy put back


def test_models_compute_in_the_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras' layers compute in bfloat16 with float32 variables; the torch model runs under
    autocast (a convolution's output is bfloat16)."""
    import torch

    import archc.backends.proof.verify as verify_module

    seen: dict[str, Any] = {}
    outputs = verify_module.torch_layer_outputs

    def spy(model: Any, graph: Any, xs: Any, dtype: str = "float32") -> Any:
        def record(module: Any, args: Any, out: Any) -> None:
            seen["torch"] = out.dtype

        hook = model.get_submodule(model.keras_layers["conv0"]).register_forward_hook(record)
        try:
            return outputs(model, graph, xs, dtype)
        finally:
            hook.remove()

    keras_to_torch = verify_module.keras_to_torch

    def spy_transfer(km: Any, tm: Any, graph: Any) -> None:
        layer = km.get_layer("conv0")
        seen["keras"] = (layer.compute_dtype, layer.kernel.dtype)
        keras_to_torch(km, tm, graph)

    monkeypatch.setattr(verify_module, "torch_layer_outputs", spy)
    monkeypatch.setattr(verify_module, "keras_to_torch", spy_transfer)
    verify_module.verify(str(SEED), dtype="bfloat16", odd_input=False, batch=1)
    assert seen == {"keras": ("bfloat16", "float32"), "torch": torch.bfloat16}


@pytest.mark.parametrize(
    "stem, variant, overrides",
    [
        ("resnet50", None, {"input_shape": [32, 32, 3], "classes": 10}),
        ("vit", "ti16", {"image_size": 32, "patch_size": 8, "depth": 2, "classes": 10}),
    ],
)
def test_bfloat16_resnet50_and_vit(stem: str, variant: str | None, overrides: dict) -> None:
    from archc.backends.proof.verify import verify

    report = verify(
        str(SPECS / f"{stem}.yaml"),
        overrides,
        variant=variant,
        dtype="bfloat16",
        odd_input=False,
        batch=2,
    )
    assert report.dtype == "bfloat16" and report.layers_checked > 10


def test_seed_float16() -> None:
    """float16 on the CPU: torch's autocast supports it there (PyTorch 2.4 and later)."""
    from archc.backends.proof.verify import verify

    report = verify(str(SEED), dtype="float16", odd_input=False, batch=2)
    assert report.rtol == 32 * 2.0**-11 and report.layers_checked == 34


def test_a_wrong_weight_is_still_caught_in_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    """The looser bound still fails a real difference: one convolution's kernel off by 30%
    (bfloat16's bound, 32·2^-8 = 12.5% of a layer's largest value, lets a 10% error pass)."""
    import torch

    import archc.backends.proof.verify as verify_module

    keras_to_torch = verify_module.keras_to_torch

    def wrong(km: Any, tm: Any, graph: Any) -> None:
        keras_to_torch(km, tm, graph)
        with torch.no_grad():
            tm.get_submodule(tm.keras_layers["conv2b"]).weight.mul_(1.3)

    monkeypatch.setattr(verify_module, "keras_to_torch", wrong)
    with pytest.raises(VerificationError) as info:
        verify_module.verify(str(SEED), dtype="bfloat16", odd_input=False, batch=2)
    (diag,) = info.value.diagnostics
    assert diag.code == "E110"  # at conv2b or the BatchNorm that reads it (conv2b is linear)
    assert "'conv2b'" in diag.message or "'bn2c'" in diag.message
