"""Expansion keeps the spec's structure (the tree of block calls, repeats and conditions
beside the flat node list) and runs every op rule once per node."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from archc.compiler.api import compile_spec
from archc.compiler.ir import Expansion
from archc.compiler.ops import REGISTRY, load_all
from tests.conftest import SEED


def ops_of(tree: tuple[Expansion, ...]) -> list[Expansion]:
    return [e for top in tree for e in top.walk() if e.kind == "op"]


def test_the_seed_tree_has_its_stages_blocks_and_conditions() -> None:
    graph = compile_spec(SEED, {"num_stages": 3}).graph
    (stages,) = [e for e in graph.tree if e.kind == "repeat"]
    assert stages.label == "stage" and stages.item == ("layers", 3)
    assert [it.values for it in stages.children] == [(("stage", s),) for s in (1, 2, 3)]
    for s, iteration in enumerate(stages.children, start=1):
        (block,) = iteration.children
        assert block.kind == "block" and block.label == "preact_bottleneck"
        assert dict(block.values) == {"filters": [32, 32, 128], "stage": s}
        first_two = block.children[:2]  # `when: stage > 1`: BN-relu 'a' only after stage 1
        assert [e.taken for e in first_two] == [s > 1, s > 1]
        assert all(e.item[:2] == ("blocks", "preact_bottleneck") for e in block.children)
    final_conv = next(e for e in graph.tree if e.item == ("layers", 6))
    assert final_conv.kind == "op" and not final_conv.taken  # use_final_conv: false


def test_every_node_appears_once_in_the_tree_in_order() -> None:
    graph = compile_spec(SEED).graph
    taken = [e.node for e in ops_of(graph.tree) if e.taken]
    assert taken == [n.name for n in graph.nodes]
    for node in graph.nodes:
        assert node.origin.item  # and knows the spec item that produced it
    by_name = {e.node: e for e in ops_of(graph.tree) if e.taken}
    assert by_name["conv3b"].item == graph.node("conv3b").origin.item


def test_each_op_rule_runs_once_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    load_all()
    calls: dict[str, int] = {}
    for name, op in list(REGISTRY.items()):

        def counted(attrs: Any, ins: Any, _op: Any = op, _name: str = name) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _op.infer(attrs, ins)

        monkeypatch.setitem(REGISTRY, name, dataclasses.replace(op, infer=counted))
    graph = compile_spec(SEED).graph
    per_op: dict[str, int] = {}
    for node in graph.nodes:
        per_op[node.op] = per_op.get(node.op, 0) + 1
    assert calls == per_op  # 16 convolutions: 16 calls of conv2d's rule, not 32
    assert calls["conv2d"] == 16
