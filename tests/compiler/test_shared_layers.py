"""Shared weights in the IR (no framework): `apply:` calls an earlier layer again, and its
weights count once, as Keras (variables deduplicated) and PyTorch (`parameters()`) count a
shared layer; `reverse: true` calls an embedding in reverse (x @ E^T, a tied output head).
Expected counts are hand formulas."""

from __future__ import annotations

import pytest

from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads
from tests.conftest import SPECS

GPT = SPECS / "gpt.yaml"

SIAMESE = """
archc: 1
name: siamese
inputs:
  - {name: left, shape: [5]}
  - {name: right, shape: [5]}
layers:
  - {op: dense, name: fc1, units: 7, activation: relu, inputs: left}
  - {op: dense, name: fc2, units: 3, id: a}
  - {apply: fc1, inputs: right}
  - {apply: fc2, id: b}
  - {op: subtract, name: diff, inputs: [a, b]}
"""

TIED = """
archc: 1
name: tied
inputs:
  - {name: tokens, shape: [8], dtype: int}
layers:
  - {op: embedding, name: wte, input_dim: 11, output_dim: 6}
  - {op: layer_norm, name: ln}
  - {apply: wte, name: head, reverse: true}
"""


def test_a_layer_applied_twice_counts_once() -> None:
    compiled = compile_spec(loads(SIAMESE))
    graph = compiled.graph
    assert graph.counts.total == (5 * 7 + 7) + (7 * 3 + 3)  # fc1 and fc2, once each
    again = graph.node("fc1_call1")
    assert (again.op, again.shares, again.inputs, again.weights) == ("dense", "fc1", ("right",), ())
    assert graph.node("fc2_call1").shares == "fc2"
    assert graph.node("diff").inputs == ("fc2", "fc2_call1")
    assert again.macs == 5 * 7  # a call's work is counted per call


def test_a_tied_head_reads_the_embedding_transposed_and_counts_once() -> None:
    graph = compile_spec(loads(TIED)).graph
    head = graph.node("head")
    assert head.shape == (8, 11) and head.shares == "wte" and head.weights == ()
    assert head.attrs.reverse and graph.node("wte").attrs.reversible
    assert graph.counts.total == 11 * 6 + 2 * 6  # the embedding once, the layer norm
    assert head.macs == 8 * 11 * 6


def gpt2_count(vocab: int, context: int, width: int, depth: int) -> int:
    """GPT-2's parameters by formula: token and position embeddings; per block two layer
    norms (2 * 2E), attention (c_attn 3E^2 + 3E, c_proj E^2 + E) and the MLP (c_fc 4E^2 +
    4E, c_proj 4E^2 + E); the final norm; the head tied to the token embedding (nothing)."""
    e = width
    block = 4 * e + (3 * e * e + 3 * e) + (e * e + e) + (4 * e * e + 4 * e) + (4 * e * e + e)
    return vocab * e + context * e + depth * block + 2 * e


def test_gpt2_small_is_124_million_with_its_head_tied() -> None:
    assert gpt2_count(50257, 1024, 768, 12) == 124_439_808  # the published count
    counts = compile_spec(GPT, variant="gpt2").graph.counts
    assert counts.total == counts.trainable == gpt2_count(50257, 1024, 768, 12)


def test_gpt3_counts_its_tied_head_once() -> None:
    counts = compile_spec(GPT, variant="gpt3").graph.counts
    assert counts.total == gpt2_count(50257, 2048, 12288, 96)


def test_the_gpt2_variant_uses_the_tanh_gelu_and_epsilon_1e_5() -> None:
    graph = compile_spec(GPT, variant="gpt2").graph
    acts = [n for n in graph.nodes if n.op == "activation"]
    assert len(acts) == 12 and all(n.attrs.fn == "gelu" and n.attrs.approximate for n in acts)
    norms = [n for n in graph.nodes if n.op == "layer_norm"]
    assert len(norms) == 25 and all(n.attrs.epsilon == 1e-5 for n in norms)


@pytest.mark.parametrize(
    ("item", "code", "words"),
    [
        ("{apply: nowhere, inputs: right}", "E051", "undefined layer 'nowhere'"),
        ("{apply: left}", "E054", "'left' is a graph input"),
        ("{apply: fc1, inputs: right, reverse: true}", "E054", "'fc1' is a dense"),
        ("{apply: fc2, inputs: right}", "E054", "its weights are kernel (7, 3)"),
        ("{apply: \"${'fc1'}\", inputs: right}", "E054", "names a layer by an expression"),
    ],
)
def test_a_wrong_apply_is_a_located_error(item: str, code: str, words: str) -> None:
    text = SIAMESE.replace("  - {apply: fc1, inputs: right}\n", f"  - {item}\n").replace(
        "  - {apply: fc2, id: b}\n", "  - {op: dense, name: fc3, units: 3, id: b}\n"
    )
    with pytest.raises(SpecError) as info:
        compile_spec(loads(text))
    (diag,) = info.value.diagnostics
    assert diag.code == code and words in diag.message, diag.message
    assert diag.location is not None and diag.location.line == 10


# -- blocks of several inputs -----------------------------------------------------------------
BLOCK_INPUTS = """
archc: 1
name: two
inputs:
  - {name: x, shape: [6, 8]}
  - {name: memory, shape: [5, 8]}
blocks:
  cross:
    inputs: [q, mem]
    args: {i: {type: int}}
    body:
      - {op: layer_norm, name: "ln${i}"}
      - {op: multi_head_attention, name: "attn${i}", num_heads: 2, key_dim: 4, inputs: [prev, mem]}
      - {op: add, name: "add${i}", inputs: [q, prev]}
layers:
  - {op: dense, name: stem, units: 8, inputs: x}
  - {block: cross, args: {i: 0}, inputs: [prev, memory]}
"""


def test_a_block_of_two_inputs_reads_each_by_its_name() -> None:
    graph = compile_spec(loads(BLOCK_INPUTS)).graph
    assert graph.node("ln0").inputs == ("stem",)  # the first input is also prev and input
    assert graph.node("attn0").inputs == ("ln0", "memory")
    assert graph.node("add0").inputs == ("stem", "attn0")
    # attention: query (8 -> 2 x 4), key and value (8 -> 2 x 4) with biases, output (8 -> 8)
    attention = 3 * (8 * 8 + 8) + (8 * 8 + 8)
    assert graph.counts.total == (8 * 8 + 8) + 2 * 8 + attention


@pytest.mark.parametrize("given", ["[prev]", "[prev, memory, x]"])
def test_a_call_passes_as_many_inputs_as_the_block_names(given: str) -> None:
    text = BLOCK_INPUTS.replace("inputs: [prev, memory]}", f"inputs: {given}}}")
    with pytest.raises(SpecError) as info:
        compile_spec(loads(text))
    (diag,) = info.value.diagnostics
    assert diag.code == "E052" and "takes 2 input(s) (q, mem)" in diag.message, diag.message
    assert diag.location is not None and diag.location.line == 17  # the call


@pytest.mark.parametrize("names", ["[q, q]", "[prev, mem]"])
def test_input_names_differ_and_are_not_references(names: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_spec(loads(BLOCK_INPUTS.replace("inputs: [q, mem]", f"inputs: {names}")))
    assert info.value.diagnostics[0].location is not None
    assert info.value.diagnostics[0].location.line in (8, 9)
