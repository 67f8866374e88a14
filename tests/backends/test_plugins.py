"""Third-party ops by entry point (compiler/plugins.py, docs/PLUGINS.md): an op that an
installed package declares works with every command as archc's own do, and a broken plugin is
a located error naming it (E180-E182, exit 1), never archc's bug (exit 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.compiler import plugins
from archc.compiler.ops import REGISTRY, load_all
from tests.conftest import ROOT
from tests.plugin_install import installed, write_dist_info

KERAS_LAYERS = '''\
import keras


@keras.saving.register_keras_serializable(package="tw_ops")
class TwScale(keras.layers.Layer):
    """x * gamma, one trainable value per channel (the last axis), starting at 1."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.gamma
'''

TORCH_HELPERS = '''\
import torch
from torch import nn


class TwScale(nn.Module):
    """x * weight, one value per channel (dim 1 of an image), starting at Keras' 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)
'''

UNIT = """\
from dataclasses import dataclass
from pathlib import Path

from archc.backends.keras.ops import KerasLayer
from archc.backends.torch.ops import Binding, TorchOp
from archc.compiler.ir import Weight
from archc.compiler.ops import ATTRS_CONFIG, OpDef
from archc.compiler.plugins import OpUnit

HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class TwScaleAttrs:
    __pydantic_config__ = ATTRS_CONFIG


OP = OpDef(
    "tw_scale",
    "TwScale",
    TwScaleAttrs,
    lambda a, ins: (a, ins[0]),
    lambda a, ins, out: [Weight("gamma", (ins[0][-1],), True)],
    flops=lambda a, ins, out: out[0] * out[1] * out[2],
    doc="x * gamma: a throwaway plugin's per-channel scale.",
)
KERAS = KerasLayer("TwScale", lambda a: [], custom=True, helpers=HERE / "keras_layers.py")
TORCH = TorchOp(
    lambda c, xs, m: f"{m}({xs[0]})",
    lambda c: f"{c.helper('TwScale')}({c.shape}[-1])",
    weights={"gamma": Binding("weight")},
    helpers=HERE / "torch_helpers.py",
    reads=(("TwScale",), lambda m: {}),
)
"""

SPEC = """\
archc: 1
name: throwaway_plugin
inputs:
  - {name: x, shape: [9, 7, 3]}
layers:
  - {op: conv2d, name: stem, filters: 5, kernel: 3}
  - {op: tw_scale, name: scale}
  - {op: batch_norm, name: bn}
  - {op: global_avg_pool2d, name: pool}
  - {op: dense, name: head, units: 4, activation: softmax}
"""


def _package(src: Path, name: str, init: str) -> Path:
    package = src / name
    package.mkdir(parents=True)
    (package / "keras_layers.py").write_text(KERAS_LAYERS, encoding="utf-8")
    (package / "torch_helpers.py").write_text(TORCH_HELPERS, encoding="utf-8")
    (package / "__init__.py").write_text(init, encoding="utf-8")
    return package


@pytest.fixture
def tw_plugin(tmp_path: Path) -> Iterator[Path]:
    """A throwaway plugin package, installed (a dist-info on sys.path) for one test."""
    src = tmp_path / "src"
    _package(src, "tw_ops", UNIT + "\nOPS = [OpUnit(OP, KERAS, TORCH)]\n")
    write_dist_info(tmp_path / "site", "tw-ops", "2.5.1", {"tw": "tw_ops:OPS"})
    with installed(tmp_path / "site", src):
        yield tmp_path


def test_plugins_load_lazily_and_not_on_import() -> None:
    """Importing the compiler and the backends discovers no plugin: the first load_all does,
    once (a second call does not read the installed distributions' metadata again)."""
    probe = textwrap.dedent(
        """
        import importlib.metadata as md
        calls = []
        real = md.entry_points
        def counted(**kw):
            if kw.get("group") == "archc.ops":
                calls.append(kw)
            return real(**kw)
        md.entry_points = counted
        import archc.compiler.api, archc.compiler.plugins
        import archc.backends.keras.ops, archc.backends.torch.ops
        before = len(calls)
        from archc.compiler.ops import load_all
        load_all(); load_all()
        print(before, len(calls), calls[-1])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["0", "1"]
    assert "'group': 'archc.ops'" in proc.stdout


def test_a_plugin_op_works_with_every_command(
    tw_plugin: Path, tmp_path: Path, archc: Callable[..., Any]
) -> None:
    spec = tmp_path / "throwaway_plugin.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path / "out"

    result = archc("ops")
    assert result.exit_code == 0 and "tw_scale: x * gamma" in result.output
    assert archc("ops", "tw_scale").exit_code == 0
    schema = json.loads(archc("schema").output)
    assert "tw_scale" in json.dumps(schema)

    result = archc("check", spec)
    assert result.exit_code == 0, result.output
    assert "TwScale" in result.output and "MACs: " in result.output
    check_json = json.loads(archc("check", spec, "--json").output)
    rows = {r["name"]: r for r in check_json["layers"]}
    assert rows["scale"]["params"] == 5 and rows["scale"]["op"] == "tw_scale"  # gamma (5,)
    assert rows["scale"]["macs"] == 0  # no matrix multiply
    assert check_json["macs"] == 7 * 5 * 5 * (3 * 3 * 3) + 5 * 4  # conv: 7x5 positions, 5 filters
    for args in (
        ["compile", spec, "--backend", "torch", "-o", out],
        ["compile", spec, "--backend", "keras", "-o", out],
        ["verify", spec],
        ["verify", spec, "--train"],
        ["graph", spec, "-o", tmp_path / "net.dot"],
    ):
        result = archc(*args)
        assert result.exit_code == 0, (args, result.output)
    assert "tw_scale" in (tmp_path / "net.dot").read_text(encoding="utf-8")

    # the generated files carry the plugin's helpers and record its version
    for backend in ("torch", "keras"):
        text = (out / f"throwaway_plugin_{backend}.py").read_text(encoding="utf-8")
        assert '"plugins": {"tw-ops": "2.5.1"},' in text, backend
        assert "class TwScale(" in text and "tw_ops" not in text.replace('"tw_ops"', "")

    # weights: PyTorch -> Keras -> PyTorch, by layer name, through the plugin's binding
    from safetensors.torch import load_file, save_file

    torch_source = (out / "throwaway_plugin_torch.py").read_text(encoding="utf-8")
    module = types.ModuleType("throwaway_plugin_torch")
    exec(compile(torch_source, "throwaway_plugin_torch.py", "exec"), module.__dict__)
    model = module.build_model()
    scale = model.get_submodule(model.keras_layers["scale"])
    assert torch.equal(scale.weight.detach(), torch.ones(5))  # Keras' initial value
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "a.safetensors"
    )
    for src, dst in (("a.safetensors", "b.weights.h5"), ("b.weights.h5", "c.safetensors")):
        result = archc("weights", spec, "--from", tmp_path / src, "--to", tmp_path / dst)
        assert result.exit_code == 0, result.output
    back = load_file(tmp_path / "c.safetensors")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back[key].numpy(), value.numpy(), err_msg=key)


def test_files_without_plugin_ops_record_none(tw_plugin: Path, tmp_path: Path, archc: Any) -> None:
    spec = tmp_path / "throwaway_plugin.yaml"
    spec.write_text(SPEC.replace("  - {op: tw_scale, name: scale}\n", ""), encoding="utf-8")
    assert (
        archc("compile", spec, "--backend", "torch", "-o", tmp_path, "--no-verify").exit_code == 0
    )
    assert '"plugins"' not in (tmp_path / "throwaway_plugin_torch.py").read_text(encoding="utf-8")


def test_reset_forgets_a_plugin(tw_plugin: Path) -> None:
    assert "tw_scale" in load_all() and plugins.plugin_of("tw_scale") is not None
    plugins.reset()
    assert "tw_scale" not in REGISTRY and plugins.plugin_of("tw_scale") is None


BROKEN = {
    "fails to import": (
        "raise ImportError('no module named tw_missing')",
        "E180",
        "loading entry point 'tw_ops:OPS' failed: ImportError: no module named tw_missing",
    ),
    "collides with a built-in op": (
        UNIT.replace('"tw_scale"', '"dense"') + "\nOPS = [OpUnit(OP, KERAS, TORCH)]\n",
        "E181",
        "op 'dense' is already archc's own op of that name",
    ),
    "declares one op twice": (
        UNIT + "\nOPS = [OpUnit(OP, KERAS, TORCH), OpUnit(OP, KERAS, TORCH)]\n",
        "E181",
        "op 'tw_scale' is already its own op of that name",
    ),
    "KerasLayer without a TorchOp": (
        UNIT + "\nOPS = [OpUnit(OP, KERAS, None)]\n",
        "E182",
        "op 'tw_scale': torch is a NoneType, not a TorchOp",
    ),
    "attrs not a dataclass": (
        UNIT.replace("@dataclass(frozen=True, slots=True)\n", "")
        + "\nOPS = [OpUnit(OP, KERAS, TORCH)]\n",
        "E182",
        "is not a dataclass",
    ),
    "an attribute of a type pydantic cannot check": (
        UNIT.replace(
            "    __pydantic_config__ = ATTRS_CONFIG\n",
            "    __pydantic_config__ = ATTRS_CONFIG\n\n    size: 'Nonexistent' = 1\n",
        )
        + "\nOPS = [OpUnit(OP, KERAS, TORCH)]\n",
        "E182",
        "TwScaleAttrs's types",
    ),
    "a module without reads": (
        UNIT.replace('    reads=(("TwScale",), lambda m: {}),\n', "")
        + "\nOPS = [OpUnit(OP, KERAS, TORCH)]\n",
        "E182",
        "TorchOp makes a module but says nothing of it to conform",
    ),
    "a custom Keras layer its module lacks": (
        UNIT.replace('KerasLayer("TwScale"', 'KerasLayer("TwScaled"')
        + "\nOPS = [OpUnit(OP, KERAS, TORCH)]\n",
        "E182",
        "defines no class TwScaled",
    ),
    "not an OpUnit": (UNIT + "\nOPS = [OP]\n", "E182", "declares OpDef"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_an_error_naming_it(
    case: str, tmp_path: Path, archc: Callable[..., Any]
) -> None:
    init, code, message = BROKEN[case]
    _package(tmp_path / "src", "tw_ops", init)
    write_dist_info(tmp_path / "site", "tw-ops", "2.5.1", {"tw": "tw_ops:OPS"})
    spec = tmp_path / "throwaway_plugin.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    with installed(tmp_path / "site", tmp_path / "src"):
        for args in (["check", spec], ["ops"], ["compile", spec, "--backend", "torch"]):
            result = archc(*args)
            assert result.exit_code == 1, (args, result.output)
            assert f"error[{code}]: plugin 'tw' (tw-ops 2.5.1)" in result.output, result.output
            assert message in result.output, result.output
            assert "internal error" not in result.output
        assert "dense" not in plugins.OWNERS and "tw_scale" not in REGISTRY  # nothing of it
    assert REGISTRY["dense"].title == "Dense"
