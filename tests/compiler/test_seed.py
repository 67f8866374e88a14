"""The seed network (its summary: data/seed_summary.txt) must come out of our spec row for row."""

from __future__ import annotations

import json

import pytest

from archc.compiler.api import compile_spec
from archc.compiler.summary import table
from tests.conftest import SEED
from tests.seedtable import SEED_TABLE, seed_rows


def test_seed_table_is_reproduced_exactly() -> None:
    seed = SEED_TABLE
    ours = table(compile_spec(SEED).graph)
    start = ours.index("Layer (type)")
    assert ours[start:].rstrip("_\n") + "\n" == seed.rstrip("_\n") + "\n"


def test_seed_rows_names_shapes_params_connections() -> None:
    rows = seed_rows(SEED_TABLE)
    graph = compile_spec(SEED).graph
    assert len(rows) == len(graph.nodes) == 57
    for (name, _kind, shape, params, conns), node in zip(rows, graph.nodes, strict=True):
        assert node.name == name
        assert shape == "(None, " + ", ".join(map(str, node.shape)) + ")"
        assert int(params) == node.counts.total
        assert conns == [f"{i}[0][0]" for i in node.inputs]


def test_seed_totals() -> None:
    counts = compile_spec(SEED).counts
    assert counts.as_dict() == {"total": 96_133, "trainable": 93_957, "non_trainable": 2_176}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"use_final_conv": "true"}, (169_605, 167_429, 2_176)),
        ({"num_stages": "8"}, (151_045, 147_717, 3_328)),
        ({"nb_classes": "10"}, (96_778, 94_602, 2_176)),
    ],
)
def test_seed_variants_count_like_keras(
    override: dict[str, str], expected: tuple[int, ...]
) -> None:
    counts = compile_spec(SEED, override, from_text=True).counts
    assert (counts.total, counts.trainable, counts.non_trainable) == expected


def test_check_cli_prints_table_and_totals(archc) -> None:
    result = archc("check", SEED)
    assert result.exit_code == 0, result.output
    assert "Total params: 96,133" in result.stdout
    assert "merge5 (Add)" in result.stdout
    assert "expect: ok" in result.stdout


def test_check_cli_json(archc) -> None:
    result = archc("check", SEED, "--json", "--set", "nb_classes=10")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "rnpa"
    assert data["input_shape"] == [32, 32, 3]
    assert data["params"] == {"total": 96_778, "trainable": 94_602, "non_trainable": 2_176}
    assert data["flops"] > 0
    first_add = next(layer for layer in data["layers"] if layer["op"] == "add")
    assert first_add == {
        "name": "merge1",
        "op": "add",
        "output_shape": [16, 16, 128],
        "params": 0,
        "macs": 0,  # an add: element-wise work only
        "inputs": ["conv1c", "relu0"],
    }
    assert data["layers"][-1]["output_shape"] == [10]
