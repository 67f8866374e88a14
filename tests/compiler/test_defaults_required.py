"""`defaults:` may give an op's required attributes (every activation's `fn`, every conv's
`kernel`); an attribute neither the item nor its op's defaults give is still E011, at the
item, wherever it is (a block never called, a repeat's body)."""

from __future__ import annotations

from typing import Any

import pytest

from archc.backends.proof.verify import verify
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads

SPEC = """
archc: 1
name: net
inputs:
  - {name: image, shape: [8, 8, 3]}
defaults:
  activation: {fn: swish}
  conv2d: {kernel: 3, padding: same}
  dense: {units: 5}
layers:
  - {op: conv2d, name: c1, filters: 4}
  - {op: activation, name: a1}
  - {op: flatten, name: f}
  - {op: dense, name: fc}
"""


def test_defaults_give_required_attributes() -> None:
    compiled = compile_spec(loads(SPEC, "net.yaml"))
    graph = compiled.graph
    conv, act, dense = graph.node("c1"), graph.node("a1"), graph.node("fc")
    assert (conv.attrs.kernel, act.attrs.fn, dense.attrs.units) == ((3, 3), "swish", 5)
    # 3x3x3x4 + 4, then 8*8*4 inputs x 5 units + 5
    assert graph.counts.total == (3 * 3 * 3 * 4 + 4) + (8 * 8 * 4 * 5 + 5)
    verify(compiled)  # both generated models read them too


@pytest.mark.parametrize(
    ("layers", "blocks", "where"),
    [
        ("  - {op: dense, name: fc}\n", "", "net.yaml:6:5"),
        (
            "  - {op: flatten, name: f}\n",
            "blocks:\n  unused:\n    body:\n      - {op: dense, name: fc}\n",
            "net.yaml:8:9",
        ),
        (
            "  - repeat: 2\n    body:\n      - {op: conv2d, name: 'c${i}', filters: 2}\n",
            "",
            "net.yaml:8:9",
        ),
    ],
    ids=["layer", "block-never-called", "repeat-body"],
)
def test_a_required_attribute_given_nowhere_is_located(
    layers: str, blocks: str, where: str
) -> None:
    text = (
        "archc: 1\nname: net\ninputs:\n  - {name: image, shape: [8, 8, 3]}\n"
        + blocks
        + "layers:\n"
        + layers
    )
    with pytest.raises(SpecError) as info:
        compile_spec(loads(text, "net.yaml"))
    (diag,) = info.value.diagnostics
    assert diag.code == "E011"
    assert str(diag.location).startswith(where)
    assert "or give it in defaults:" in diag.hint


def test_the_json_schema_still_lists_them_as_required() -> None:
    from archc.compiler.schema import json_schema

    item: Any = json_schema()["$defs"]["DenseItem"]
    assert item["required"] == ["op", "units"]
