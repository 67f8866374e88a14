"""Self-attention's packed in-projection (backends/torch/sequence_helpers.py): where query,
key and value are one tensor, the generated KerasMultiHeadAttention projects them with one
matrix product over its q/k/v kernels side by side (as nn.MultiheadAttention's in_proj_weight
does), while its parameters stay Keras' three kernels (names, shapes, state_dict, weights
files unchanged). Checked against nn.MultiheadAttention given the same weights (outputs and
gradients) and against the module's own separate projections (cross-attention's path); the
number of matrix products is counted (no timing)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from archc.backends.torch.sequence_helpers import KerasMultiHeadAttention

PRODUCTS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.Tensor.__rmatmul__,
    torch.mm,
    torch.Tensor.mm,
    torch.addmm,
    torch.Tensor.addmm,
    torch.bmm,
    torch.baddbmm,
    F.linear,
}


class CountProducts(TorchFunctionMode):
    """Counts the matrix products called (scaled_dot_product_attention is not one)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in PRODUCTS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _module(use_bias: bool = True, causal: bool = False, **kw: int) -> KerasMultiHeadAttention:
    torch.manual_seed(0)
    layer = KerasMultiHeadAttention(16, 4, 4, use_bias=use_bias, causal=causal, **kw)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.5, 0.5)  # biases too: zero biases would hide a misplaced one
    return layer


def _torch_mha(layer: KerasMultiHeadAttention, use_bias: bool) -> nn.MultiheadAttention:
    """nn.MultiheadAttention holding the layer's weights, in its packed layout (rows of
    in_proj_weight: q, k, v outputs; a (C, H, D) kernel is (C, H*D) transposed)."""
    mha = nn.MultiheadAttention(16, 4, bias=use_bias, batch_first=True)
    kernels = (layer.query_kernel, layer.key_kernel, layer.value_kernel)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([k.flatten(1).T for k in kernels]))
        mha.out_proj.weight.copy_(layer.output_kernel.flatten(0, 1).T)
        if use_bias:
            biases = (layer.query_bias, layer.key_bias, layer.value_bias)
            mha.in_proj_bias.copy_(torch.cat([b.flatten() for b in biases]))
            mha.out_proj.bias.copy_(layer.output_bias)
    return mha


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_is_one_in_projection_product(use_bias: bool, causal: bool) -> None:
    layer, x = _module(use_bias, causal), torch.randn(2, 5, 16)
    with CountProducts() as self_attention:
        layer(x)
    with CountProducts() as cross_attention:
        layer(x, x.clone())
    assert self_attention.count == 2  # the packed in-projection and the output projection
    assert cross_attention.count == 4  # q, k, v apart, and the output


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_packed_self_attention_equals_torchs_module(use_bias: bool, causal: bool) -> None:
    layer = _module(use_bias, causal)
    mha = _torch_mha(layer, use_bias)
    x = torch.randn(3, 6, 16)
    mask = nn.Transformer.generate_square_subsequent_mask(6) if causal else None
    ours = layer(x)
    theirs = mha(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # the gradients reach Keras' three kernels as torch's reach its packed rows
    target = torch.randn_like(ours)
    (ours * target).sum().backward()
    (theirs * target).sum().backward()
    assert mha.in_proj_weight.grad is not None
    rows = mha.in_proj_weight.grad.split(16)
    for kernel, grad in zip(
        (layer.query_kernel, layer.key_kernel, layer.value_kernel), rows, strict=True
    ):
        assert kernel.grad is not None
        torch.testing.assert_close(kernel.grad.flatten(1), grad.T, rtol=1e-5, atol=1e-5)
    if use_bias:
        assert mha.in_proj_bias.grad is not None and layer.query_bias.grad is not None
        torch.testing.assert_close(
            layer.query_bias.grad.flatten(), mha.in_proj_bias.grad[:16], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    "kw", [{}, {"value_dim": 3}, {"output_dim": 7}, {"value_dim": 5, "output_dim": 9}]
)
def test_packed_equals_the_separate_projections(kw: dict[str, int]) -> None:
    """Head sizes that nn.MultiheadAttention cannot hold (value size apart from key size, an
    output width of its own): the packed split against the separate projections."""
    layer = _module(**kw)
    x = torch.randn(2, 7, 16)
    mask = torch.ones(2, 7)
    mask[0, 5:] = 0
    torch.testing.assert_close(layer(x), layer(x, x.clone()), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        layer(x, mask=mask), layer(x, x.clone(), mask=mask), rtol=1e-6, atol=1e-6
    )


def test_the_parameters_stay_keras_kernels() -> None:
    """Packing happens at call time: the module's state is Keras' eight weights, as before."""
    layer = _module()
    shapes = {name: tuple(t.shape) for name, t in layer.state_dict().items()}
    assert shapes == {
        "query_kernel": (16, 4, 4),
        "query_bias": (4, 4),
        "key_kernel": (16, 4, 4),
        "key_bias": (4, 4),
        "value_kernel": (16, 4, 4),
        "value_bias": (4, 4),
        "output_kernel": (4, 4, 16),
        "output_bias": (16,),
    }
