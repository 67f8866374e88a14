"""MACs: multiply-accumulates of convolutions, dense layers and attention matmuls, the work
FLOP counters count. The convention is PyTorch's own counter's: for every spec in specs/,
2 x archc's MACs equals torch.utils.flop_counter.FlopCounterMode's total on the generated
PyTorch model at batch 1 (built on the meta device: no memory, any size). Per-op rules are
also checked against the textbook formulas written out here."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archc.backends.torch.render import input_shape
from archc.compiler.api import at_size, compile_spec
from archc.compiler.load import loads
from tests.conftest import SEED, SPECS
from tests.reference_models import seed_torch

SPEC_FILES = sorted(p.name for p in SPECS.glob("*.yaml"))


def counted_flops(
    module: Any, size: tuple[int, int] | None = None, shapes: list[Any] | None = None
) -> int:
    """FlopCounterMode's total for one batch-1 pass (unknown heights and widths at `size`;
    `shapes`: every input's, as PyTorch takes it, where INPUT_SHAPE names the first only)."""
    with torch.device("meta"):
        model = module.build_model().eval()
    shapes = shapes or (
        module.INPUT_SHAPE if isinstance(module.INPUT_SHAPE[0], tuple) else [module.INPUT_SHAPE]
    )
    if size is not None:  # NCHW: (channels, height, width)
        shapes = [(s[0], *size) if None in s else s for s in shapes]
    dtypes = getattr(module, "INPUT_DTYPES", None)
    xs = [
        torch.zeros(1, *s, device="meta", dtype=dtypes[i] if dtypes else torch.float32)
        for i, s in enumerate(shapes)
    ]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*xs)
    return counter.get_total_flops()


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_twice_the_macs_are_what_pytorch_counts(spec: str) -> None:
    compiled = compile_spec(SPECS / spec)
    size = None
    if compiled.graph.macs is None:  # an unknown input size: MACs at a concrete one
        size = (64, 96)
        compiled = at_size(compiled, size)
    macs = compiled.graph.macs
    assert macs is not None
    module = importlib.import_module(f"generated.{Path(spec).stem}_torch")
    graph = compiled.graph
    shapes = [input_shape(graph.node(n).shape or ()) for n in graph.inputs]
    assert 2 * macs == counted_flops(module, size, shapes if len(shapes) > 1 else None)


# The seed by hand (32x32x3 input; conv0 3x3 stride 2 'same' to 16x16x128; five bottlenecks
# 128 -> 32 (1x1) -> 32 (3x3) -> 128 (1x1) at 16x16; a 128 -> 5 dense head): every output
# of a convolution is kh * kw * in multiply-accumulates, a dense layer in * units.
SEED_MACS = 16 * 16 * 128 * (3 * 3 * 3) + 5 * 16 * 16 * (128 * 32 + 32 * 3 * 3 * 32 + 32 * 128)
SEED_MACS += 128 * 5


def test_the_seed_counts_what_pytorch_counts_on_its_hand_written_twin() -> None:
    # FlopCounterMode on tests/reference_models.seed_torch (written by hand, not by archc)
    with torch.device("meta"):
        model = seed_torch().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32, device="meta"))
    assert counter.get_total_flops() == 2 * SEED_MACS
    assert compile_spec(SEED).graph.macs == SEED_MACS


FORMULAS = """
archc: 1
name: formulas
inputs:
  - {name: image, shape: [9, 10, 6]}
layers:
  - {op: conv2d, name: conv, filters: 8, kernel: [3, 2], strides: 2, padding: same}
  - {op: conv2d, name: grouped, filters: 4, kernel: 1, groups: 2, use_bias: false}
  - {op: depthwise_conv2d, name: dw, kernel: 3, depth_multiplier: 2, padding: same}
  - {op: separable_conv2d, name: sep, filters: 5, kernel: 3, padding: valid}
  - {op: conv2d_transpose, name: up, filters: 3, kernel: 3, strides: 2, padding: same}
  - {op: batch_norm, name: bn}
  - {op: max_pool2d, name: pool, pool: 2}
  - {op: dense, name: per_pixel, units: 7}
  - {op: flatten, name: flat}
  - {op: dense, name: fc, units: 2}
"""


def test_each_op_counts_its_textbook_formula() -> None:
    graph = compile_spec(loads(FORMULAS, "formulas.yaml")).graph
    got = {n.name: n.macs for n in graph.nodes}
    h, w = 5, 5  # 'same', stride 2: ceil(9 / 2), ceil(10 / 2)
    want = {
        "conv": h * w * 8 * (3 * 2 * 6),  # every output: kh * kw * in
        "grouped": h * w * 4 * (1 * 1 * 8 // 2),  # in / groups per output
        "dw": h * w * (4 * 2) * (3 * 3),  # one input channel per output
        "sep": 3 * 3 * (8 * 1) * (3 * 3) + 3 * 3 * 8 * 5,  # depthwise, then pointwise
        "up": 3 * 3 * 5 * (3 * 3) * 3,  # every input pixel scattered to k * k * out
        "bn": 0,
        "pool": 0,
        "per_pixel": 3 * 3 * 3 * 7,  # (6 x 6 x 3 pooled to 3 x 3 x 3) rows x in x units
        "flat": 0,
        "fc": (3 * 3 * 7) * 2,
    }
    assert {k: got[k] for k in want} == want


def test_check_prints_and_json_gives_macs(archc: Any) -> None:
    text = archc("check", SEED).stdout
    assert f"MACs: {SEED_MACS:,} (multiply-accumulates" in text
    data = json.loads(archc("check", SEED, "--json").stdout)
    assert data["macs"] == SEED_MACS
    per = {layer["name"]: layer["macs"] for layer in data["layers"]}
    assert sum(per.values()) == data["macs"]
    assert per["fc10"] == 128 * 5 and per["merge5"] == 0
