"""sinusoidal_embedding: the original Transformer's fixed position encodings, added to a
(steps, channels) sequence; no weights.

For position p and channel j of C, with i = j // 2 (so channels 2i and 2i + 1 share a
frequency) and W the longest wavelength (10000 in the paper):

    PE[p, j] = sin(p / W ** (2i / C))   for even j
    PE[p, j] = cos(p / W ** (2i / C))   for odd j

the layout of "Attention Is All You Need" and of transformers' XLM and DistilBERT
(`create_sinusoidal_embeddings`): interleaved, not sines then cosines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Annotated

from pydantic import Field

from ..ir import Shape
from . import ATTRS_CONFIG, Float, OpDef, ShapeError, register


@dataclass(frozen=True, slots=True)
class SinusoidalAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    max_wavelength: Annotated[Float, Field(gt=0)] = field(
        default=10000.0,
        metadata={"doc": "W: channel pair i has wavelength 2π · W ** (2i / channels)"},
    )


def _infer(a: SinusoidalAttrs, ins: list[Shape]) -> tuple[SinusoidalAttrs, Shape]:
    shape = ins[0]
    if len(shape) != 2:
        raise ShapeError(
            f"sinusoidal_embedding needs a sequence (steps, channels), got shape {shape}",
            hint="the encodings are one vector per step: reshape to [-1, channels] first",
        )
    return a, shape


register(
    OpDef(
        "sinusoidal_embedding",
        "SinusoidalEmbedding",
        SinusoidalAttrs,
        _infer,
        flops=lambda a, i, o: prod(o),
        doc="adds the original Transformer's fixed sine and cosine position encodings to a "
        "(steps, channels) sequence (no weights)",
    )
)
