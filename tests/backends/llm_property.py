"""The property test's emitters (tests/backends/test_property.py, `EMITTERS`) for the
language-model ops: each draws a valid use of its op on the current node, or returns None."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Emit = Callable[[Any, str], "str | None"]


def rms_norm(b: Any, x: str) -> str | None:
    """On any rank (an image per pixel, as Keras' RMSNormalization over the last axis)."""
    attrs: dict[str, Any] = {}
    if b.flag(0.5):
        attrs["epsilon"] = b.pick([1e-6, 1e-3, 0.1])
    return b.add("rms_norm", [x], b.shapes[x], **b.trainable(attrs))


def grouped_query_attention(b: Any, x: str) -> str | None:
    shape = b.shapes[x]
    if len(shape) != 2:
        return None
    kv_heads = b.int(1, 3)
    heads = kv_heads * b.int(1, 3)
    rope = b.flag(0.6)
    head_dim = 2 * b.int(1, 3) if rope else b.int(1, 5)
    attrs: dict[str, Any] = {
        "head_dim": head_dim,
        "num_query_heads": heads,
        "num_key_value_heads": kv_heads,
    }
    if b.flag(0.4):
        attrs["use_bias"] = False
    if b.flag(0.5):
        attrs["causal"] = True
    if rope:
        attrs["rope"] = True
        if b.flag(0.5):
            attrs["rope_theta"] = b.pick([100.0, 10000.0, 500000.0])
    if math.prod(shape) * heads > 5000:
        return None
    # head size 1 with as many heads as steps: Keras adds the bias along the wrong axis, which
    # `archc check` refuses (E121, test_llama.py); valid specs only here
    biased = attrs.get("use_bias", True) and head_dim == 1
    if biased and any(h > 1 and h == shape[0] for h in (heads, kv_heads)):
        return None
    return b.add("grouped_query_attention", [x], shape, **b.trainable(attrs))


LLM_EMITTERS: dict[str, Emit] = {
    "rms_norm": rms_norm,
    "grouped_query_attention": grouped_query_attention,
}
LLM_WEIGHTS = {"grouped_query_attention": 2}
