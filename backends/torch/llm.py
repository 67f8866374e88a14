"""PyTorch emitters of the language-model ops (compiler/ops/llm.py).

rms_norm is torch.nn.RMSNorm over the channels (the last dim of a vector or sequence; an
image's moved last and back): x * rsqrt(mean(x^2) + eps) * weight, Keras' formula, with the
spec's epsilon (Keras' default 1e-6 written out: nn.RMSNorm's own default is the dtype's
machine epsilon). grouped_query_attention is KerasGroupedQueryAttention
(torch/llm_helpers.py), whose parameters are Keras' weights, layout and all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archc.backends.torch.ops import TORCH_OPS, Binding, Ctx, TorchOp
from archc.compiler.ops.llm import ROPE_THETA

HELPERS = Path(__file__).with_name("llm_helpers.py")


def _rms_module(ctx: Ctx) -> str:
    return f"nn.RMSNorm({ctx.shape}[-1], eps={ctx.attr('epsilon') or '1e-06'})"


def _rms_forward(ctx: Ctx, xs: list[str], mod: str) -> str:
    if ctx.rank is not None and ctx.rank <= 2:  # vectors and sequences: channels last
        return f"{mod}({xs[0]})"
    if ctx.rank is None:
        last, first = ctx.helper("to_channels_last"), ctx.helper("from_channels_last")
        return f"{first}({mod}({last}({xs[0]})))"
    return f"{mod}({xs[0]}.movedim(1, -1)).movedim(-1, 1)"


def _rms_reads(m: Any) -> dict[str, Any]:
    return {"epsilon": m.eps}


def _gqa_module(ctx: Ctx) -> str:
    args = [f"{ctx.shape}[-1]"]
    args += [ctx.attr(k) or "" for k in ("head_dim", "num_query_heads", "num_key_value_heads")]
    args += [f"{k}={src}" for k in ("use_bias", "causal") if (src := ctx.attr(k)) is not None]
    rope = ctx.attr("rope")
    if rope is not None and rope != "False":  # written, so true (check refuses a false one)
        args.append(f"rope_theta={ctx.attr('rope_theta') or repr(ROPE_THETA)}")
    return f"{ctx.helper('KerasGroupedQueryAttention')}({', '.join(args)})"


def _gqa_reads(m: Any) -> dict[str, Any]:
    read = {
        "head_dim": m.head_dim,
        "num_query_heads": m.num_query_heads,
        "num_key_value_heads": m.num_key_value_heads,
        "use_bias": m.query_bias is not None,
        "causal": m.causal,
        "rope": m.rope_theta is not None,
    }
    if m.rope_theta is not None:  # the IR's null (10000) is not compared
        read["rope_theta"] = m.rope_theta
    return read


def _gqa_weights() -> dict[str, Binding]:
    """Keras' weights are the module's parameters, layout and all."""
    names = {"query": "query", "key": "key", "value": "value", "attention_output": "output"}
    return {
        f"{keras_name}/{part}": Binding(f"{torch_name}_{part}")
        for keras_name, torch_name in names.items()
        for part in ("kernel", "bias")
    }


LLM_OPS: dict[str, TorchOp] = {
    "rms_norm": TorchOp(
        _rms_forward,
        _rms_module,
        weights={"scale": Binding("weight")},
        reads=(("RMSNorm",), _rms_reads),
    ),
    "grouped_query_attention": TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        _gqa_module,
        weights=_gqa_weights(),
        helpers=HELPERS,
        reads=(("KerasGroupedQueryAttention",), _gqa_reads),
    ),
}
TORCH_OPS.update(LLM_OPS)
