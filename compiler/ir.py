"""The intermediate representation: an immutable, topologically ordered graph of named nodes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from math import prod
from typing import Any

from .diagnostics import Location

Shape = tuple[int, ...]
# An image's height and width may be None: unknown until the model runs (an input declared
# `shape: [null, null, 3]`). Shapes stay typed as ints for the rules on known sizes; the
# op rules that accept unknown sizes (`OpDef.unknown_sizes`) test for None themselves.


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a node came from: its spec location and its expansion path."""

    location: Location | None
    path: tuple[str, ...] = ()
    item: tuple[str | int, ...] = ()  # the spec path of the item that produced the node

    def describe(self) -> str:
        return " > ".join(self.path)


@dataclass(frozen=True, slots=True)
class Weight:
    name: str
    shape: Shape
    trainable: bool

    @property
    def size(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    trainable: int
    non_trainable: int

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "trainable": self.trainable,
            "non_trainable": self.non_trainable,
        }


@dataclass(frozen=True, slots=True)
class Node:
    """One layer. `name` is its Keras layer name and its PyTorch attribute name."""

    name: str
    op: str
    attrs: Any
    inputs: tuple[str, ...]
    origin: Origin
    trainable: bool = True
    shape: Shape | None = None
    weights: tuple[Weight, ...] = ()
    flops: int | None = 0  # None: unknown (the layer sees an unknown height or width)
    macs: int | None = 0  # multiply-accumulates (OpDef.macs); None where flops are
    # the layer this node calls again (an `apply:` item): its weights are that node's, so
    # this node has none (counted once, as Keras and PyTorch count a shared layer), and it is
    # no Keras layer of its own (Keras' layer `shares` called again; PyTorch's module too)
    shares: str | None = None

    @property
    def layer(self) -> str:
        """The Keras layer (and PyTorch module) that computes this node."""
        return self.shares or self.name

    @property
    def counts(self) -> Counts:
        trainable = sum(w.size for w in self.weights if w.trainable and self.trainable)
        total = sum(w.size for w in self.weights)
        return Counts(total, trainable, total - trainable)


@dataclass(frozen=True, slots=True)
class Expansion:
    """One spec item as expansion walked it: the tree of block calls and repeats beside the
    flat node list (which stays the contract for shapes and counts).

    kind: "op" (produced `node`), "block" (a call; `values` are its resolved arguments),
    "repeat" (children are its iterations), "iteration" (`values` binds the loop variable).
    `taken` is False for an item whose `when` was false (it has no children).
    """

    kind: str
    item: tuple[str | int, ...]  # the spec path of the item
    label: str  # node name, block name or repeat label
    values: tuple[tuple[str, Any], ...] = ()
    taken: bool = True
    children: tuple[Expansion, ...] = ()
    node: str | None = None

    def walk(self) -> Iterator[Expansion]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Graph:
    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tree: tuple[Expansion, ...] = field(default=(), compare=False, repr=False)
    _index: dict[str, Node] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({n.name: n for n in self.nodes})

    def node(self, name: str) -> Node:
        return self._index[name]

    @property
    def counts(self) -> Counts:
        per = [n.counts for n in self.nodes]
        return Counts(
            sum(c.total for c in per),
            sum(c.trainable for c in per),
            sum(c.non_trainable for c in per),
        )

    @property
    def flops(self) -> int | None:
        """Every layer's FLOPs summed; None (unknown) when any layer's are: a partial sum
        would read as the whole network's."""
        return _known_sum([n.flops for n in self.nodes])

    @property
    def macs(self) -> int | None:
        """Every layer's multiply-accumulates summed; None when any layer's are unknown."""
        return _known_sum([n.macs for n in self.nodes])


def _known_sum(per: list[int | None]) -> int | None:
    return None if None in per else sum(f for f in per if f is not None)
