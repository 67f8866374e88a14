"""The committed generated files as a user meets them: parametric, one file for every variant,
structured like hand-written code, and usable with each framework's own tooling.

Expected counts come from the seed (its summary and its Keras code with other arguments,
tests/reference_models.seed_keras3) and from keras.applications (ResNet101/152); counts of
built models are taken by each framework's own rule, never from archc.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archc.compiler.ir import Counts
from tests.conftest import ROOT
from tests.reference_models import seed_keras3
from tests.zoo import keras_counts

GENERATED = ROOT / "generated"

# the seed's Keras code with other arguments (see tests/reference_models.seed_keras3)
SEED_VARIANTS = [
    ({"nb_classes": 10}, Counts(96_778, 94_602, 2_176)),
    ({"num_stages": 8}, Counts(151_045, 147_717, 3_328)),
    ({"use_final_conv": True}, Counts(169_605, 167_429, 2_176)),
]
# keras.applications.ResNet101 / ResNet152 (include_top, 1000 classes)
RESNETS = {
    "resnet101": Counts(44_707_176, 44_601_832, 105_344),
    "resnet152": Counts(60_419_944, 60_268_520, 151_424),
}


def torch_counts(model: torch.nn.Module) -> Counts:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


def module(name: str) -> Any:
    return importlib.import_module(f"generated.{name}")


@pytest.mark.parametrize(
    ("params", "counts"), SEED_VARIANTS, ids=["10_classes", "8_stages", "final_conv"]
)
def test_the_seed_variants_counts_are_the_seeds(params: dict[str, Any], counts: Counts) -> None:
    # the seed's own Keras code (by hand, not by archc) with these arguments, counted by Keras
    assert keras_counts(seed_keras3(**params)) == counts


@pytest.mark.parametrize(
    ("params", "counts"), SEED_VARIANTS, ids=["10_classes", "8_stages", "final_conv"]
)
def test_keras_seed_file_builds_every_variant(params: dict[str, Any], counts: Counts) -> None:
    model = module("resnet_preact_keras").build_model(**params)
    assert keras_counts(model) == counts


@pytest.mark.parametrize("variant", sorted(RESNETS))
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_one_resnet50_file_builds_resnet101_and_152(backend: str, variant: str) -> None:
    mod = module(f"resnet50_{backend}")
    assert mod.VARIANT_COUNTS[variant] == RESNETS[variant].as_dict()
    model = mod.build_model(**mod.VARIANTS[variant])
    count = keras_counts if backend == "keras" else torch_counts
    assert count(model) == RESNETS[variant]


@pytest.mark.parametrize("name", ["resnet_preact", "resnet50", "mobilenet_v2", "densenet121"])
def test_every_spec_block_is_one_function_and_one_class(name: str) -> None:
    """Blocks keep their shape in code: a Keras function and a PyTorch class per spec block,
    and each repeat is a loop (no unrolled copies of a block)."""
    from archc.compiler.load import load

    spec = load(ROOT / "specs" / f"{name}.yaml").spec
    keras_tree = ast.parse((GENERATED / f"{name}_keras.py").read_text(encoding="utf-8"))
    torch_tree = ast.parse((GENERATED / f"{name}_torch.py").read_text(encoding="utf-8"))
    functions = {n.name for n in keras_tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name for n in torch_tree.body if isinstance(n, ast.ClassDef)}
    for block in spec.blocks:
        assert block in functions
        assert "".join(p.title() for p in block.split("_")) in classes
    build = next(
        n for n in keras_tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_model"
    )
    assert any(isinstance(n, ast.For) for n in ast.walk(build))


def test_keras_seed_model_saves_and_reloads(tmp_path: Path) -> None:
    import keras

    model = module("resnet_preact_keras").build_model()
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    want = np.asarray(model(x, training=False))
    path = tmp_path / "seed.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), want)
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("name", ["resnet_preact", "resnet50v2", "mobilenet_v2"])
def test_torch_models_script_and_export(name: str) -> None:
    """torch.jit.script and torch.export.export both take the generated models and compute
    what they compute (torch.compile works too; it is left out here only for its time)."""
    mod = module(f"{name}_torch")
    torch.manual_seed(0)
    model = mod.build_model().eval()
    x = torch.randn(2, *mod.INPUT_SHAPE)
    with torch.no_grad():
        want = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), want, rtol=1e-5, atol=1e-6)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), want, rtol=1e-5, atol=1e-6)


def test_a_thousand_layer_resnet_builds_in_keras() -> None:
    """num_stages=333 (3,337 layers, ResNet-1001's depth): Keras' functional graph walk
    recurses per layer, and the generated build_model allows for it. Count: each stage adds
    BN-a 4*128 + conv-a 128*32 + BN-b 4*32 + conv-b 9*32*32 + BN-c 4*32 + conv-c 32*128+128
    = 18,304 parameters to the seed's five stages."""
    per_stage = 4 * 128 + 128 * 32 + 4 * 32 + 9 * 32 * 32 + 4 * 32 + 32 * 128 + 128
    model = module("resnet_preact_keras").build_model(num_stages=333)
    assert len(model.layers) == 3_337
    assert keras_counts(model).total == 96_133 + (333 - 5) * per_stage == 6_099_845


def test_a_thousand_layer_resnet_builds_in_pytorch() -> None:
    model = module("resnet_preact_torch").build_model(num_stages=333)
    assert torch_counts(model).total == 6_099_845
    with torch.no_grad():
        assert tuple(model.eval()(torch.randn(1, 3, 32, 32)).shape) == (1, 5)


def test_a_variant_compiled_on_its_own_is_named_after_it(tmp_path: Path) -> None:
    from archc.backends.compile import compile_to_file

    for backend in ("keras", "torch"):
        result = compile_to_file(
            ROOT / "specs" / "resnet50.yaml", backend, tmp_path, variant="resnet152", verify=False
        )
        assert result.path.name == f"resnet50_resnet152_{backend}.py"
        source = result.source
        assert "Resnet50(" not in source and '"resnet50"' not in source
        if backend == "torch":
            assert "class Resnet50Resnet152(nn.Module):" in source
        else:
            assert 'name="resnet50_resnet152"' in source


def test_every_helper_name_is_reserved() -> None:
    """A spec name equal to a helper a generated file may define would shadow it."""
    import inspect

    from archc.backends import py_helpers
    from archc.backends.structure import generated_names
    from archc.backends.torch import helpers as torch_helpers

    for mod in (py_helpers, torch_helpers):
        defined = {
            name
            for name, value in vars(mod).items()
            if (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == mod.__name__
        }
        assert defined <= generated_names(), defined - generated_names()


@pytest.mark.parametrize("name", ["resnet_preact", "mobilenet_v2"])
def test_generated_torch_models_train(name: str) -> None:
    """One SGD step in training mode: backward runs (BatchNorm's statistics update must not
    touch a tensor autograd saved), every trainable parameter gets a gradient, and the
    moving statistics move."""
    mod = module(f"{name}_torch")
    torch.manual_seed(0)
    shape = mod.INPUT_SHAPE if name == "resnet_preact" else (3, 64, 64)
    model = mod.build_model(input_shape=(*shape[1:], shape[0])).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_var" in k}
    loss = model(torch.randn(4, *shape)).log().mean() * -1
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    optimizer.step()
    moved = [
        k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])
    ]
    assert moved == list(before)


# -- what a generated file carries and does, nothing more ---------------------------------------
RESNET20 = """
archc: 1
name: resnet20
params:
  input_shape: {type: "list[int]", default: [32, 32, 3]}
  depth: {type: int, default: 1}
inputs:
  - {name: image, shape: "${input_shape}"}
defaults:
  conv2d: {padding: same, use_bias: false, kernel_initializer: he_normal}
blocks:
  basic:
    args: {filters: {type: int}, stride: {type: int}, p: {type: str}}
    body:
      - {op: conv2d, name: "${p}_c1", filters: "${filters}", kernel: 3, strides: "${stride}"}
      - {op: batch_norm, name: "${p}_bn1"}
      - {op: activation, name: "${p}_r1", fn: relu}
      - {op: conv2d, name: "${p}_c2", filters: "${filters}", kernel: 3}
      - {op: batch_norm, name: "${p}_bn2", id: main}
      - {op: conv2d, name: "${p}_proj", id: proj, inputs: [input], filters: "${filters}",
         kernel: 1, strides: "${stride}", when: "${stride > 1}"}
      - {op: add, name: "${p}_add", inputs: [main, "${'proj' if stride > 1 else 'input'}"]}
      - {op: activation, name: "${p}_out", fn: relu}
layers:
  - {op: conv2d, filters: 16, kernel: 3}
  - {op: batch_norm}
  - {op: activation, fn: relu}
  - repeat: 3
    var: s
    body:
      - repeat: "${depth}"
        var: i
        body:
          - block: basic
            args: {filters: "${16 * 2 ** s}", stride: "${2 if s > 0 and i == 0 else 1}",
                   p: "s${s}b${i}"}
  - {op: global_avg_pool2d}
  - {op: dense, units: 10, activation: softmax}
"""


def rendered(text: str, backend: str) -> str:
    from archc.backends.keras import backend as keras_backend
    from archc.backends.torch import backend as torch_backend
    from archc.compiler.api import compile_spec
    from archc.compiler.load import loads

    mod = torch_backend if backend == "torch" else keras_backend
    return mod.render(compile_spec(loads(text, "resnet20.yaml")))


def test_a_resnet20_with_he_normal_carries_only_the_class_it_uses() -> None:
    """he_normal is Keras' VarianceScaling(2.0, "fan_in", "truncated_normal"): the file
    defines that class and none of the other four, nor the name table."""
    tree = ast.parse(rendered(RESNET20, "torch"))
    defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    others = {"RandomNormal", "TruncatedNormal", "RandomUniform", "Constant"}
    assert "VarianceScaling" in defined
    assert not defined & (others | {"keras_initializer"})


def test_a_named_initializer_is_the_object_keras_initializer_gives() -> None:
    from archc.backends.torch import init_helpers as torch_init_helpers
    from archc.backends.torch.render import named_initializer
    from archc.compiler.ops.initializers import NAMES

    for name in NAMES:
        cls, source = named_initializer(name)
        made = eval(source, vars(torch_init_helpers))  # our own rendered source
        want = torch_init_helpers.keras_initializer(name)
        assert type(made) is type(want) and type(made).__name__ == cls, name
        assert vars(made) == vars(want), name


def test_a_condition_is_stored_once() -> None:
    """The projection's `when` and the add's choice test the same condition: forward tests
    the module it made (`self.s1b0_proj is not None`), not a flag that stores it again; and
    the model computes what Keras' does (archc.backends.proof.verify: every layer, weights
    transferred)."""
    from archc.backends.proof.verify import verify
    from archc.compiler.api import compile_spec
    from archc.compiler.load import loads

    source = rendered(RESNET20, "torch")
    assert "self.use_" not in source
    assert "(proj if self.proj is not None else inputs)" in source
    verify(compile_spec(loads(RESNET20, "resnet20.yaml"), {"input_shape": [12, 12, 3]}))


def test_keras_build_model_gives_the_recursion_limit_back() -> None:
    import sys

    before = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(1_234)
        module("resnet_preact_keras").build_model(num_stages=2)
        assert sys.getrecursionlimit() == 1_234
    finally:
        sys.setrecursionlimit(before)


# -- PyTorch layouts: NCHW images, (N, T, C) sequences, shape parameters channels-last ----------
M5 = """
archc: 1
name: m5
params:
  input_shape: {type: "list[int]", default: [400, 1]}
inputs:
  - {name: wave, shape: "${input_shape}"}
layers:
  - {op: conv1d, filters: 8, kernel: 80, strides: 4, activation: relu}
  - {op: max_pool1d, pool: 4}
  - {op: conv1d, filters: 8, kernel: 3, activation: relu}
  - {op: global_avg_pool1d}
  - {op: dense, units: 5, activation: softmax}
"""


def test_a_channels_first_input_shape_fails_at_construction_naming_the_layout() -> None:
    """INPUT_SHAPE is (3, 32, 32); build_model's input_shape is the spec's (32, 32, 3). Given
    in the file's form, it fails when the model is made, saying what to pass; given
    channels-last (any channel count), the model takes the NCHW tensor it describes."""
    mod = module("resnet_preact_torch")
    assert mod.INPUT_SHAPE == (3, 32, 32)
    with pytest.raises(ValueError, match=r"channels-last, \(height, width, channels\)") as err:
        mod.build_model(input_shape=(3, 64, 64))
    assert "input_shape=(64, 64, 3)" in str(err.value)
    with torch.no_grad():
        for shape in ((64, 64, 3), [64, 64, 1], (3, 64, 3)):  # (3, 64, 3): 3 high, RGB
            model = mod.build_model(input_shape=shape).eval()
            x = torch.randn(2, shape[-1], shape[0], shape[1])
            assert tuple(model(x).shape) == (2, 5)


def test_a_sequence_model_says_it_takes_steps_then_channels() -> None:
    """Sequences stay (N, T, C) in PyTorch (docs/ARCHITECTURE.md), Conv1d's (N, C, T) is
    not: the file says so beside INPUT_SHAPE and in its docstring, takes (2, 400, 1), and a
    channels-first input_shape fails at construction."""
    from archc.backends.codegen import import_source

    source = rendered(M5, "torch")
    assert "INPUT_SHAPE = (400, 1)  # (steps, channels): channels last, not Conv1d's" in source
    doc = " ".join((ast.get_docstring(ast.parse(source)) or "").split())
    assert "takes channels-last input of shape (batch, *INPUT_SHAPE)" in doc
    assert "Sequences are (batch, steps, channels)" in doc
    assert "not Conv1d's (batch, channels, steps)" in doc
    mod = import_source(source, "m5_torch")
    with torch.no_grad():
        assert tuple(mod.build_model().eval()(torch.randn(2, 400, 1)).shape) == (2, 5)
        with pytest.raises(RuntimeError):  # Conv1d's layout is not this model's
            mod.build_model().eval()(torch.randn(2, 1, 400))
    with pytest.raises(ValueError, match=r"\(steps, channels\).*input_shape=\(400, 1\)"):
        mod.build_model(input_shape=(1, 400))
