"""Recurrent layers over sequences (steps, channels): lstm, gru, simple_rnn.

Keras' layers and weights (per direction, in this order; `u` units, `in` input channels):

    lstm        kernel (in, 4u)  recurrent_kernel (u, 4u)  bias (4u)     gates i, f, c, o
    gru         kernel (in, 3u)  recurrent_kernel (u, 3u)  bias (2, 3u)  gates z, r, h
    simple_rnn  kernel (in, u)   recurrent_kernel (u, u)   bias (u)

(biases only with use_bias). The gru is Keras' `reset_after=True` GRU (Keras 3's default,
the rule nn.GRU computes): its bias holds the input bias in row 0 and the recurrent one in
row 1. With `bidirectional: true` the layer is Keras' `Bidirectional` wrapper: a second layer
reads the sequence backwards, its weights follow the first's (`forward/...`, then
`backward/...`) and `merge_mode` combines the two outputs (concat: 2u channels). The output is
the last step's (u) or, with `return_sequences`, every step's (T, u): the backward layer's
sequence is put back in the input's order, as Keras and PyTorch both do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..ir import Shape, Weight
from . import ATTRS_CONFIG, Bool, FlopRule, OpDef, PosInt, ShapeRule, WeightRule, register
from .sequence import sequence

MergeMode = Literal["concat", "sum", "mul", "ave"]

BIDIRECTIONAL = (
    "true: Keras' Bidirectional wrapper, a second layer reading the sequence backwards "
    "(leave it out for one direction)"
)
MERGE = "how the two directions' outputs combine (bidirectional only): concat, sum, mul, ave"

# the gates' weight blocks per op: Keras packs them along the last axis of each matrix
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


@dataclass(frozen=True, slots=True)
class RecurrentAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    units: PosInt
    return_sequences: Bool = False  # every step's output (T, units), not the last step's
    use_bias: Bool = True
    bidirectional: Bool | None = field(default=None, metadata={"doc": BIDIRECTIONAL})
    merge_mode: MergeMode = field(default="concat", metadata={"doc": MERGE})


@dataclass(frozen=True, slots=True)
class SimpleRNNAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    units: PosInt
    return_sequences: Bool = False
    use_bias: Bool = True
    bidirectional: Bool | None = field(default=None, metadata={"doc": BIDIRECTIONAL})
    merge_mode: MergeMode = field(default="concat", metadata={"doc": MERGE})
    activation: Literal["tanh", "relu"] = "tanh"  # the two PyTorch's nn.RNN computes


Attrs = RecurrentAttrs | SimpleRNNAttrs


def _infer(op: str) -> ShapeRule:
    def infer(a: Attrs, ins: list[Shape]) -> tuple[Attrs, Shape]:
        steps, _ = sequence(ins[0], op)
        width = 2 * a.units if a.bidirectional and a.merge_mode == "concat" else a.units
        return a, ((steps, width) if a.return_sequences else (width,))

    return infer


def _weights(op: str) -> WeightRule:
    def weights(a: Attrs, ins: list[Shape], out: Shape) -> list[Weight]:
        g, u, c = GATES[op], a.units, ins[0][1]
        bias = (2, g * u) if op == "gru" else (g * u,)
        one = [Weight("kernel", (c, g * u), True), Weight("recurrent_kernel", (u, g * u), True)]
        if a.use_bias:
            one.append(Weight("bias", bias, True))
        if not a.bidirectional:
            return one
        return [
            Weight(f"{direction}/{w.name}", w.shape, True)
            for direction in ("forward", "backward")
            for w in one
        ]

    return weights


def _macs(op: str) -> FlopRule:
    def macs(a: Attrs, ins: list[Shape], out: Shape) -> int:
        """Every step multiplies the input by the kernel and the state by the recurrent
        kernel, in each direction (the last step's output alone costs as much)."""
        steps, c = ins[0]
        g, u = GATES[op], a.units
        return (2 if a.bidirectional else 1) * steps * g * u * (c + u)

    return macs


def _flops(op: str) -> FlopRule:
    def flops(a: Attrs, ins: list[Shape], out: Shape) -> int:
        """2 per multiply-add, the biases, and the gates' element-wise work (about 3 per
        gate value: the sum, the activation, the product)."""
        steps = ins[0][0]
        g, u = GATES[op], a.units
        dirs = 2 if a.bidirectional else 1
        bias = (2 if op == "gru" else 1) * g * u if a.use_bias else 0
        return 2 * _macs(op)(a, ins, out) + dirs * steps * (bias + 3 * g * u)

    return flops


def _titled(title: str) -> Callable[[Attrs], str]:
    """The Keras layer: the recurrent layer, or the Bidirectional wrapping it."""
    return lambda a: "Bidirectional" if a.bidirectional else title


for _op, _title, _attrs, _doc in (
    ("lstm", "LSTM", RecurrentAttrs, "Keras' LSTM (gates i, f, c, o; one bias)"),
    ("gru", "GRU", RecurrentAttrs, "Keras' GRU with reset_after (gates z, r, h; bias (2, 3u))"),
    ("simple_rnn", "SimpleRNN", SimpleRNNAttrs, "Keras' SimpleRNN (tanh or relu)"),
):
    register(
        OpDef(
            _op,
            _title,
            _attrs,
            _infer(_op),
            _weights(_op),
            _flops(_op),
            macs=_macs(_op),
            doc=f"{_doc} over a (steps, channels) sequence: the last step's output, or every "
            "step's with return_sequences; bidirectional: Keras' Bidirectional wrapper",
            titled=_titled(_title),
        )
    )
