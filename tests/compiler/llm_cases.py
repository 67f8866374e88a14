"""Shape and count cases of the language-model ops (rms_norm, grouped_query_attention) for
tests/compiler/test_ops.py (`CASES`), from formulas written out here: RMSNorm one scale per
channel; grouped-query attention's Keras kernels (C, Hq, D) for the queries, (C, Hkv, D) for
the keys and values, (Hq, D, C) for the output, biases (heads, D) and (C)."""

from __future__ import annotations

from typing import Any


def gqa_weights(
    c: int, d: int, hq: int, hkv: int, bias: bool = True
) -> tuple[tuple[str, tuple[int, ...], bool], ...]:
    ws = []
    for name, kernel, b in (
        ("query", (c, hq, d), (hq, d)),
        ("key", (c, hkv, d), (hkv, d)),
        ("value", (c, hkv, d), (hkv, d)),
        ("attention_output", (hq, d, c), (c,)),
    ):
        ws.append((f"{name}/kernel", kernel, True))
        if bias:
            ws.append((f"{name}/bias", b, True))
    return tuple(ws)


def gqa_params(c: int, d: int, hq: int, hkv: int, bias: bool = True) -> int:
    b = int(bias)
    return c * hq * d + 2 * c * hkv * d + hq * d * c + b * (hq * d + 2 * hkv * d + c)


def llm_cases(case: Any) -> dict[str, list[Any]]:
    Case = case
    return {
        "rms_norm": [
            Case(
                "sequence", "op: rms_norm", ((5, 8),), (5, 8), 8, weights=(("scale", (8,), True),)
            ),
            Case(
                "image-epsilon",
                "op: rms_norm, epsilon: 0.001",
                ((3, 4, 6),),
                (3, 4, 6),
                6,
                weights=(("scale", (6,), True),),
                attrs={"epsilon": 0.001},
            ),
        ],
        "grouped_query_attention": [
            Case(
                "grouped",
                "op: grouped_query_attention, head_dim: 3, num_query_heads: 4, "
                "num_key_value_heads: 2",
                ((5, 8),),
                (5, 8),
                gqa_params(8, 3, 4, 2),
                weights=gqa_weights(8, 3, 4, 2),
            ),
            Case(
                "rope-causal-no-bias",
                "op: grouped_query_attention, head_dim: 4, num_query_heads: 6, "
                "num_key_value_heads: 1, use_bias: false, causal: true, rope: true, "
                "rope_theta: 500000",
                ((7, 10),),
                (7, 10),
                gqa_params(10, 4, 6, 1, bias=False),
                weights=gqa_weights(10, 4, 6, 1, bias=False),
                attrs={"rope": True, "rope_theta": 500000.0, "causal": True},
            ),
        ],
    }
