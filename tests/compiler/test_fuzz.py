"""Mutation fuzzing: archc never ends in an internal error, whatever the spec says.

Valid specs are loaded, mutated by hypothesis (values replaced by other types, keys deleted,
misspelt or added, list items dropped, duplicated or swapped, expressions garbled) and
compiled. Every outcome must be a compiled graph or a SpecError with located diagnostics.
The CI profile runs a few hundred cases; HYPOTHESIS_PROFILE=fuzz runs thousands.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads
from tests.conftest import SPECS

settings.register_profile(  # derandomized: CI runs the same cases every time
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "ci"

SEEDS = [yaml.safe_load(p.read_text()) for p in sorted(SPECS.glob("*.yaml"))]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "same",
            "valid",
            "relu",
            "prev",
            "input",
            "${",
            "${}",
            "${1/0}",
            "${stage}",
            "${x.y}",
            "${[0] * 99}",
            "${10**10**10}",
            "${in_shape[-1]}",
            "${prev_shape}",
            "conv${i}",
            "__class__",
            "a b",
            "def",
            "é",
        ]
    ),
    st.text(max_size=8),
    st.lists(st.integers(-2, 64), max_size=4),
    st.dictionaries(st.sampled_from(["op", "block", "repeat", "name", "x"]), st.integers(0, 3)),
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    spec = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(spec)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent, key = _get(spec, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "rename", "add", "dup", "swap"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[str(key)[:-1] + draw(st.sampled_from(["", "s", "_", "x"]))] = parent.pop(key)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["when", "inputs", "name", "id", "zz", "op"]))] = draw(
                values
            )
        elif action == "dup" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif action == "swap" and isinstance(parent, list) and len(parent) > 1:
            other = draw(st.integers(0, len(parent) - 1))
            parent[key], parent[other] = parent[other], parent[key]
    return yaml.safe_dump(spec, sort_keys=False)


@settings(settings.get_profile(PROFILE))
@given(mutated_specs())
def test_mutated_specs_never_crash(text: str) -> None:
    try:
        compiled = compile_spec(loads(text, "fuzz.yaml"))
    except SpecError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.code.startswith("E") and d.message
        return
    assert compiled.graph.nodes
