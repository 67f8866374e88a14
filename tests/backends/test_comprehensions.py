"""List comprehensions, chr and ord in specs: the compiler evaluates them, and both generated
models evaluate them again as Python for every `build_model(**params)`.

Expected counts come from `reference_counts`, the network written out by hand with the usual
conv/dense formulas (k*k*in*out + out, in*out + out); the names from the naming rule the spec
states (EfficientNet's 'block1a', 'block2b', ...).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest

from archc.backends.codegen import import_source
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from archc.compiler.ir import Counts
from archc.compiler.load import loads

SPEC = """
archc: 1
name: comprehensions
params:
  widths: {type: "list[int]", default: [4, 6, 8]}
  repeats: {type: "list[int]", default: [1, 2]}
  depth: {type: float, default: 1.0}
inputs:
  - {name: image, shape: [9, 9, 3]}
layers:
  - op: conv2d
    name: stem
    filters: "${sum([w // 2 for w in widths])}"
    kernel: 3
  - repeat: "${len(repeats)}"
    var: s
    body:
      - repeat: "${ceil(depth * repeats[s])}"
        var: i
        body:
          - op: conv2d
            name: "${'block' + str(s + 1) + chr(ord('a') + i)}"
            filters: "${[w for w in widths if w > widths[0]][s]}"
            kernel: 1
  - {op: global_avg_pool2d, name: pool}
  - op: dense
    name: head
    units: "${len([c for c in 'abc' if c != 'b']) + len([s for s in repeats])}"
"""


def reference(widths: list[int], repeats: list[int], depth: float) -> tuple[Counts, list[str]]:
    """Parameters and conv names of the network, written out without archc."""
    stem = sum(w // 2 for w in widths)
    total = 3 * 3 * 3 * stem + stem
    names = []
    channels = stem
    wide = [w for w in widths if w > widths[0]]
    for s, r in enumerate(repeats):
        for i in range(math.ceil(depth * r)):
            total += channels * wide[s] + wide[s]
            channels = wide[s]
            names.append(f"block{s + 1}{'abcdefghij'[i]}")
    units = 2 + len(repeats)
    total += channels * units + units
    return Counts(total, total, 0), names


CASES: list[dict[str, Any]] = [
    {},
    {"depth": 1.5},
    {"widths": [2, 5, 7, 9], "repeats": [3, 1, 2], "depth": 1.0},
]


def defaults(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"widths": [4, 6, 8], "repeats": [1, 2], "depth": 1.0} | overrides


@pytest.fixture(scope="module")
def compiled() -> Any:
    with tempfile.TemporaryDirectory(prefix="archc-comp-") as folder:
        path = Path(folder) / "comprehensions.yaml"
        path.write_text(SPEC, encoding="utf-8")
        yield compile_spec(loads(SPEC, str(path)))


@pytest.mark.parametrize("overrides", CASES, ids=["default", "depth", "widths"])
def test_the_compiler_evaluates_comprehensions(overrides: dict[str, Any]) -> None:
    graph = compile_spec(loads(SPEC, "comprehensions.yaml"), overrides).graph
    counts, names = reference(**defaults(overrides))
    assert graph.counts == counts
    convs = [n.name for n in graph.nodes if n.op == "conv2d"][1:]
    assert convs == names


@pytest.mark.parametrize("backend", [keras_backend, torch_backend], ids=["keras", "torch"])
def test_generated_code_evaluates_them_for_every_argument(compiled: Any, backend: Any) -> None:
    source = backend.render(compiled)
    assert "tuple([w for w in widths if w > widths[0]])" in source.replace("\n", "")
    module = import_source(source, f"comprehensions_{backend.__name__.rsplit('.', 1)[1]}")
    for overrides in CASES:
        counts, _ = reference(**defaults(overrides))
        assert backend.counts(module.build_model(**overrides)) == counts, overrides


def test_keras_layer_names_follow_the_rule(compiled: Any) -> None:
    module = import_source(keras_backend.render(compiled), "comprehensions_names")
    model = module.build_model(depth=1.5)
    _, names = reference(**defaults({"depth": 1.5}))
    assert [la.name for la in model.layers if la.name.startswith("block")] == names


def test_both_backends_agree(compiled: Any) -> None:
    verify(compiled)
