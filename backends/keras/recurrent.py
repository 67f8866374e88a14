"""Keras emitters of the recurrent ops (compiler/ops/recurrent.py): Keras' LSTM, GRU and
SimpleRNN, and with `bidirectional: true` the layer wrapped in Keras' Bidirectional:
`layers.Bidirectional(layers.LSTM(8, return_sequences=True), merge_mode="sum", name=...)`.

The wrapper is chosen where the item sets `bidirectional` (a Keras variant); an item that
sets it to false (or to an expression that is false) is refused at check (E121): one
direction is the item without the attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from archc.backends.keras.ops import KERAS_LAYERS, Args, Attr, KerasLayer

CLASSES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def _args(op: str) -> Callable[[Attr], Args]:
    def args(attr: Attr) -> Args:
        out: Args = [(None, attr("units") or "")]
        keys = ["return_sequences", "use_bias"] + (["activation"] if op == "simple_rnn" else [])
        return out + [(key, src) for key in keys if (src := attr(key)) is not None]

    return args


def _wrapped(op: str) -> Callable[[Attr], Args]:
    def args(attr: Attr) -> Args:
        inner = ", ".join(src if kw is None else f"{kw}={src}" for kw, src in _args(op)(attr))
        out: Args = [(None, f"layers.{CLASSES[op]}({inner})")]
        merge = attr("merge_mode")
        return out + ([("merge_mode", merge)] if merge is not None else [])

    return args


def _one_direction(attrs: Any, shapes: list[tuple[int, ...]]) -> tuple[str, str] | None:
    if attrs.bidirectional:
        return None
    return (
        "bidirectional is false here, but the item sets it: the Keras code wraps the layer "
        "in Bidirectional wherever the attribute is written",
        "leave `bidirectional` out for one direction (write it only as true)",
    )


RECURRENT_LAYERS: dict[str, KerasLayer] = {
    op: KerasLayer(
        cls,
        _args(op),
        variants=(
            ("bidirectional", KerasLayer("Bidirectional", _wrapped(op), wrong=_one_direction)),
        ),
    )
    for op, cls in CLASSES.items()
}
KERAS_LAYERS.update(RECURRENT_LAYERS)
