"""An op is one unit: what the renderers know of helpers and activations is derived from the
ops' declarations and the helpers' source, never listed by hand (docs/ARCHITECTURE.md,
"Writing an op")."""

from __future__ import annotations

import builtins
import dis
import importlib
import importlib.util
import inspect
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.backends.codegen import helper_source
from archc.backends.helper_library import (
    TORCH_MODULES,
    helper_names,
    library,
    torch_library,
    torch_modules,
)
from archc.backends.keras.ops import KERAS_LAYERS, KerasLayer
from archc.backends.structure import generated_names
from archc.backends.torch.ops import ACTIVATIONS, TORCH_OPS, Binding, TorchOp, activate_source
from archc.compiler.ir import Shape, Weight
from archc.compiler.ops import ATTRS_CONFIG, L2, REGISTRY, Activation, OpDef, PosInt, register
from tests.conftest import ROOT

HEADER = {"math": __import__("math"), "torch": torch, "nn": torch.nn, "F": torch.nn.functional}
HEADER["Tensor"] = torch.Tensor


def _global_loads(code: types.CodeType) -> set[str]:
    """The global names a code object (and the code objects inside it) loads: Python's own
    compiler says what a helper needs, independently of the library's reading of its source."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname == "LOAD_GLOBAL"}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_loads(const)
    return names


@pytest.mark.parametrize("name", sorted(torch_library().helpers))
def test_a_helper_carries_what_it_needs(name: str) -> None:
    """The helpers a file that uses one carries define, in their order, every global name the
    bytecode of each loads (besides the file's imports and builtins)."""
    carried = torch_library().carried([name])
    namespace = dict(HEADER)
    source = "\n\n".join(helper_source(h) for h in carried)
    code = compile(source, f"<{name}>", "exec")
    exec(code, namespace)  # definitions in this order run: bases and annotations defined first
    missing = _global_loads(code) - namespace.keys() - set(dir(builtins))
    assert not missing, f"{name} carries {carried} but its code loads {sorted(missing)}"


def _imported(module: str | Path) -> types.ModuleType:
    """A helper module (a name in backends/, or a plugin's file), imported."""
    if isinstance(module, str):
        return importlib.import_module(f"archc.backends.{module}")
    spec = importlib.util.spec_from_file_location(f"_helpers_{Path(module).stem}", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_own_reset_is_the_classes_that_define_reset_parameters() -> None:
    """The classes the model's reset_parameters calls are those whose class body defines
    one, read here from the imported classes (not from source)."""
    want = []
    for module in map(_imported, torch_modules()):  # archc's, and those ops declare
        for name, value in vars(module).items():
            mine = inspect.isclass(value) and value.__module__ == module.__name__
            if mine and "reset_parameters" in value.__dict__:
                want.append(name)
    lib = torch_library()
    assert sorted(lib.own_reset(lib.helpers)) == sorted(want)


def test_helper_order_puts_needs_first_and_is_stable() -> None:
    lib = library(TORCH_MODULES)
    carried = lib.carried(["KerasSeparableConv2d", "take_axis", "pair"])
    assert carried == [  # the source's order: torch_helpers, then the sequence helpers
        "pair",
        "same_pad",
        "same_pads",
        "spec_initializers_",  # keras_reset_ calls it
        "keras_reset_",  # GlorotConv2d's reset_parameters
        "GlorotConv2d",  # KerasConv2d's base, and the separable convolution's pointwise part
        "KerasConv2d",
        "KerasDepthwiseConv2d",
        "KerasSeparableConv2d",
        "to_channels_last",
        "from_channels_last",
        "take_axis",
    ]
    with pytest.raises(KeyError, match="no helper 'Nope'"):
        lib.carried(["Nope"])


def test_every_op_with_kernel_l2_is_regularized_in_both_frameworks() -> None:
    """The L2 tag follows the attribute (no list of ops): every op that declares `kernel_l2`
    has a Keras regularizer keyword and a PyTorch module whose `weight` is a Keras kernel."""
    from archc.compiler.ops import load_all

    with_l2 = [n for n, op in load_all().items() if "kernel_l2" in op.attrs.__dataclass_fields__]
    assert {"conv2d", "depthwise_conv2d", "dense", "conv1d"} <= set(with_l2)
    for name in with_l2:
        assert KERAS_LAYERS[name].regularizes, name
        torch_op = TORCH_OPS[name]
        assert torch_op.module is not None, name
        assert any(b.key == "weight" and "kernel" in k for k, b in torch_op.weights.items()), name


# -- activations ------------------------------------------------------------------------------
def test_every_activation_has_one_rule_in_each_framework() -> None:
    import keras

    declared = typing.get_args(Activation)
    assert list(ACTIVATIONS) == list(declared)
    for name in declared:
        assert callable(keras.activations.get(name)), name


def test_an_activation_without_a_pytorch_rule_fails_when_the_backend_loads() -> None:
    probe = textwrap.dedent(
        """
        import typing
        import archc.compiler.ops as ops
        ops.Activation = typing.Literal[(*typing.get_args(ops.Activation), "swishy")]
        import archc.backends.torch.ops
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "RegistrationError" in proc.stderr
    assert "'swishy' of archc.compiler.ops.Activation has no PyTorch rule" in proc.stderr


def test_the_activate_helper_computes_each_rule() -> None:
    """The helper generated files carry (`activate`, choosing by name when the spec computes
    it) gives what each inline rule gives, for every declared activation."""
    namespace = dict(HEADER)
    exec(activate_source(helper_source("activate")), namespace)
    activate = namespace["activate"]
    x = torch.linspace(-4.0, 4.0, 2 * 3 * 4).reshape(2, 3, 4)  # a sequence: channels last
    for name in typing.get_args(Activation):
        rule = ACTIVATIONS[name].replace("dim=1", "dim=-1")  # softmax over the held channels
        want = eval(rule.format(x="x"), {**HEADER, "x": x})
        torch.testing.assert_close(activate(x, name), want, rtol=0, atol=0, msg=name)


# -- an op added at run time ------------------------------------------------------------------
POINTWISE_HELPERS = '''\
import math

import torch
import torch.nn.functional as F
from torch import nn


class Pointwise(nn.Module):
    """A 1x1 convolution without bias, weight (out, in, 1, 1), Keras' Glorot-uniform."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.kernel_size = pair(1)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        out_channels, in_channels = self.weight.shape[:2]
        limit = math.sqrt(6.0 / (in_channels + out_channels))
        with torch.no_grad():
            self.weight.uniform_(-limit, limit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)
'''
OP = "pointwise_throwaway"


@dataclass(frozen=True, slots=True)
class PointwiseAttrs:
    __pydantic_config__ = ATTRS_CONFIG

    filters: PosInt
    kernel_l2: L2 = None


def _infer(a: PointwiseAttrs, ins: list[Shape]) -> tuple[PointwiseAttrs, Shape]:
    return a, (*ins[0][:-1], a.filters)


def _weights(a: PointwiseAttrs, ins: list[Shape], out: Shape) -> list[Weight]:
    return [Weight("kernel", (1, 1, ins[0][-1], a.filters), True)]


@pytest.fixture
def pointwise_op(tmp_path: Path) -> Iterator[Path]:
    """A throwaway op with a PyTorch helper class of its own, in the three registries for one
    test: nothing else is told it exists."""
    helpers = tmp_path / "pointwise_helpers.py"
    helpers.write_text(POINTWISE_HELPERS, encoding="utf-8")
    register(OpDef(OP, "Conv2D", PointwiseAttrs, _infer, _weights, unknown_sizes=True))
    KERAS_LAYERS[OP] = KerasLayer(
        "Conv2D",
        lambda a: [(None, a("filters") or ""), (None, "(1, 1)"), ("use_bias", "False")],
        "kernel_regularizer",
    )
    read: Callable[[Any], dict[str, Any]] = lambda m: {"filters": m.weight.shape[0]}  # noqa: E731
    TORCH_OPS[OP] = TorchOp(
        lambda c, xs, m: f"{m}({xs[0]})",
        lambda c: f"{c.helper('Pointwise')}({c.shape}[-1], {c.attr('filters')})",
        lambda c: f"(*{c.shape}[:-1], {c.module}.weight.shape[0])",
        {
            "kernel": Binding(
                "weight", lambda a: a.transpose(3, 2, 0, 1), lambda a, s: a.transpose(2, 3, 1, 0)
            )
        },
        helpers=helpers,
        reads=(("Pointwise",), read),
    )
    try:
        yield helpers
    finally:
        del REGISTRY[OP], KERAS_LAYERS[OP], TORCH_OPS[OP]
    assert "Pointwise" not in helper_names()


SPEC = f"""\
archc: 1
name: throwaway
inputs:
  - {{name: x, shape: [7, 5, 3]}}
blocks:
  pointwise:
    args: {{filters: {{type: int}}}}
    body:
      - {{op: {OP}, name: mix, filters: "${{filters}}", kernel_l2: 0.01}}
layers:
  - {{op: conv2d, name: stem, filters: 4, kernel: 3}}
  - {{block: pointwise, args: {{filters: 6}}}}
  - {{op: batch_norm, name: bn}}
  - {{op: global_avg_pool2d, name: pool}}
"""


def test_an_op_added_at_run_time_works_everywhere(
    pointwise_op: Path, tmp_path: Path, archc: Callable[..., Any]
) -> None:
    spec = tmp_path / "throwaway.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path / "out"
    for args in (
        ["check", spec],
        ["compile", spec, "--backend", "torch", "-o", out],
        ["compile", spec, "--backend", "keras", "-o", out],
        ["verify", spec],
        ["verify", spec, "--train"],  # the L2 penalty in the loss, both frameworks
    ):
        result = archc(*args)
        assert result.exit_code == 0, (args, result.output)
    source = (out / "throwaway_torch.py").read_text(encoding="utf-8")
    assert source.index("def pair(") < source.index("class Pointwise(nn.Module):")  # it needs
    assert "class Pointwise_(nn.Module):" in source  # the block's class: the helper's is taken
    assert "l2=0.01" in source
    module = types.ModuleType("throwaway_torch")
    exec(compile(source, "throwaway_torch.py", "exec"), module.__dict__)
    model = module.build_model()
    weight = model.get_submodule(model.keras_layers["mix"]).weight
    with torch.no_grad():
        weight.zero_()
    model.reset_parameters()  # Pointwise's own rule: Glorot-uniform, fans 4 and 6
    limit = np.sqrt(6.0 / (4 + 6))
    values = weight.detach().numpy()
    assert np.all(np.abs(values) <= limit) and np.ptp(values) > limit / 2
    want = 0.01 * float((weight.detach().double() ** 2).sum())  # the one L2 layer
    assert float(model.regularization_loss()) == pytest.approx(want, rel=1e-6)


def test_generated_names_come_from_the_helper_modules(pointwise_op: Path) -> None:
    assert "Pointwise" in helper_names() and "Pointwise" in generated_names()
