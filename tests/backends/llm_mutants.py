"""Mutants of the language-model rules for tests/backends/test_verify.py (`MUTANTS`): each
breaks one rule of rms_norm or grouped_query_attention in the PyTorch model, and `verify`
must catch it at the layer named. Entries as sequence_mutants.py's: name -> (input shape,
layers, the layer verify must name, how to break the PyTorch side).

Rules that live in a helper's body (the rotation, the repetition of key and value heads) are
broken where a wrong helper would break them: in the generated PyTorch source, which
`torch_backend.render` returns (the text replaced is asserted to be there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from archc.backends.torch import backend as torch_backend
from tests.backends.sequence_mutants import changed_binding, changed_module, emitter

Apply = Callable[[pytest.MonkeyPatch], None]

ROTATE_HALF = """\
    angles = torch.cat((angles, angles), dim=-1)  # (T, head_dim)
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    return x * angles.cos() + torch.cat((-x2, x1), dim=-1) * angles.sin()
"""
# GPT-J's convention (and the original RoFormer's): the pairs are neighbours (x0, x1), (x2,
# x3), ..., pair i turned by frequency i
INTERLEAVED = """\
    angles = angles.repeat_interleave(2, dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return x * angles.cos() + torch.stack((-x2, x1), dim=-1).flatten(-2) * angles.sin()
"""
REPEAT_KV = """\
        k = k.repeat_interleave(self.groups, dim=1)
        v = v.repeat_interleave(self.groups, dim=1)
"""
# the key and value heads tiled (0, 1, 0, 1), not repeated (0, 0, 1, 1): query head h reads
# head h % kv_heads instead of h // groups
TILED_KV = """\
        k = k.repeat(1, self.groups, 1, 1)
        v = v.repeat(1, self.groups, 1, 1)
"""


def edited_source(old: str, new: str) -> Apply:
    """The generated PyTorch source with `old` replaced by `new` (which must be there)."""
    render = torch_backend.render

    def apply(mp: pytest.MonkeyPatch) -> None:
        def mutated(compiled: Any, *args: Any, **kwargs: Any) -> str:
            source = render(compiled, *args, **kwargs)
            assert old in source, "the mutant's text is not in the generated source"
            return source.replace(old, new)

        mp.setattr(torch_backend, "render", mutated)

    return apply


def _eps_outside(ctx: Any, xs: list[str], mod: str) -> str:
    """x / (sqrt(mean(x^2)) + eps) * weight: the epsilon outside the square root."""
    x = xs[0]
    return f"{x} / ({x}.pow(2).mean(-1, keepdim=True).sqrt() + {mod}.eps) * {mod}.weight"


def _heads_and_dims_mixed(a: np.ndarray) -> np.ndarray:
    """(C, heads, head_dim) read as (C, head_dim, heads)."""
    return a.reshape(a.shape[0], a.shape[2], a.shape[1]).transpose(0, 2, 1).copy()


GQA = (
    "- op: grouped_query_attention\n"
    "  name: attn\n"
    "  head_dim: 4\n"
    "  num_query_heads: 4\n"
    "  num_key_value_heads: 2\n"
    "  causal: true\n"
    "  rope: true\n"
    "  rope_theta: 100.0"
)

LLM_MUTANTS: dict[str, tuple[Any, str, str, Apply]] = {
    "rms-norm-epsilon-outside-sqrt": (
        [5, 8],  # an epsilon large enough to matter (at 1e-6 the two differ by ~1e-6)
        "- {op: dense, name: fc, units: 8}\n- {op: rms_norm, name: norm, epsilon: 0.1}",
        "norm",
        emitter("rms_norm", forward=_eps_outside),
    ),
    "rms-norm-torch-default-epsilon": (
        [5, 8],  # nn.RMSNorm's own default: the dtype's machine epsilon, not Keras' 1e-6
        "- {op: dense, name: fc, units: 8}\n- {op: rms_norm, name: norm, epsilon: 0.1}",
        "norm",
        changed_module("rms_norm", lambda src: src.replace(", eps=0.1", "")),
    ),
    "rope-interleaved": ([6, 8], GQA, "attn", edited_source(ROTATE_HALF, INTERLEAVED)),
    "rope-theta-default": (
        [6, 8],
        GQA,
        "attn",
        changed_module(
            "grouped_query_attention", lambda src: src.replace("rope_theta=100.0", "rope_theta=1e4")
        ),
    ),
    "rope-left-out": (
        [6, 8],
        GQA,
        "attn",
        changed_module(
            "grouped_query_attention", lambda src: src.replace(", rope_theta=100.0", "")
        ),
    ),
    "gqa-heads-tiled": ([6, 8], GQA, "attn", edited_source(REPEAT_KV, TILED_KV)),
    "gqa-not-causal": (
        [6, 8],
        GQA,
        "attn",
        changed_module("grouped_query_attention", lambda src: src.replace(", causal=True", "")),
    ),
    "gqa-key-heads-and-dims-mixed": (
        [6, 8],
        GQA,
        "attn",
        changed_binding("grouped_query_attention", "key/kernel", _heads_and_dims_mixed),
    ),
}
