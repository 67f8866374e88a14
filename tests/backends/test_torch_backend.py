"""The PyTorch backend: golden file, generated models, every op, initial values, source.

The live model IS the generated module (`torch_backend.build` renders, imports and builds it),
so there is one model to test per spec. Counts here are taken straight from `parameters()` and
`buffers()` (never through the backend's own `counts`), layer names from `state_dict()` and
`model.keras_layers` (Keras layer name -> module path), and Glorot bounds from Keras' fan rule
applied to the IR's Keras-layout weight shapes, so each test checks the backend against the
contract in docs/ARCHITECTURE.md rather than against itself. Nothing here measures time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archc.backends.codegen import import_source
from archc.backends.compile import compile_to_file
from archc.backends.proof.verify import vocabulary
from archc.backends.torch import backend as torch_backend
from archc.backends.torch.ops import TORCH_OPS
from archc.compiler.api import compile_spec
from archc.compiler.ir import Counts, Graph
from archc.compiler.ops import load_all
from tests.backends.llm_op_cases import LLM_TORCH_KEY
from tests.backends.op_cases import OP_CASES
from tests.backends.sequence_op_cases import (
    RECURRENT_OPS,
    RECURRENT_TORCH_KEY,
    SEQUENCE_TORCH_KEY,
)
from tests.conftest import ROOT, SEED, SPECS, without_spec_path

GOLDEN = ROOT / "generated" / "resnet_preact_torch.py"
SEED_REL = "specs/resnet_preact.yaml"
VENV_BIN = Path(sys.executable).parent
ARCHC = VENV_BIN / "archc"
RUFF = VENV_BIN / "ruff"
SEED_COUNTS = Counts(96_133, 93_957, 2_176)

# IR weight name -> the PyTorch parameter / buffer it becomes (docs/ARCHITECTURE.md).
TORCH_KEY = {
    "kernel": "weight",
    "depthwise_kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "mean": "mean",  # normalization's statistics: buffers of KerasNormalization
    "variance": "variance",
    "count": "count",
}
TORCH_KEY.update(SEQUENCE_TORCH_KEY)  # sequences and attention (sequence_op_cases.py)
TORCH_KEY.update(LLM_TORCH_KEY)  # rms_norm (llm_op_cases.py)
# one Keras layer that is two PyTorch convolutions (weights load by the layer's name)
SEPARABLE_KEY = {
    "depthwise_kernel": "depthwise.weight",
    "pointwise_kernel": "pointwise.weight",
    "bias": "pointwise.bias",
}


def torch_key(op: str, weight: str) -> str:
    if op in RECURRENT_OPS:
        return RECURRENT_TORCH_KEY[weight]
    return SEPARABLE_KEY[weight] if op == "separable_conv2d" else TORCH_KEY[weight]


FRAMEWORK_IMPORT = re.compile(r"^\s*(import|from)\s+(tensorflow|keras)\b", re.MULTILINE)


# -- helpers ----------------------------------------------------------------------------------
def torch_counts(module: nn.Module) -> Counts:
    """The counting rule (docs/ARCHITECTURE.md): trainable = parameters with requires_grad;
    non-trainable = frozen parameters plus floating-point buffers, never num_batches_tracked."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    buffers = sum(
        b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked")
    )
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


def layer(model: nn.Module, name: str) -> nn.Module:
    """The module of a Keras layer, through `model.keras_layers`."""
    return model.get_submodule(model.keras_layers[name])


def expected_state_keys(model: nn.Module, graph: Graph) -> set[str]:
    """`<path>.weight`, `.bias`, `.running_mean`, `.running_var` (+ num_batches_tracked) of
    every IR node with weights, `<path>` being the module path `keras_layers` gives for it."""
    keys = set()
    for node in graph.nodes:
        if not node.weights:
            continue
        names = {torch_key(node.op, w.name) for w in node.weights}
        if node.op == "batch_norm":
            names.add("num_batches_tracked")
        keys |= {f"{model.keras_layers[node.name]}.{n}" for n in names}
    return keys


def check_keras_layers(model: nn.Module, graph: Graph) -> None:
    """Every IR node with weights has a module tagged with its name; every tagged module is
    an IR layer; per-layer counts and trainable flags are the IR's."""
    names = {n.name for n in graph.nodes}
    assert set(model.keras_layers) <= names
    for node in graph.nodes:
        if node.weights:
            assert node.name in model.keras_layers, node.name  # nothing missing
        if node.name not in model.keras_layers:
            continue
        module = layer(model, node.name)
        assert module.keras_name == node.name
        assert torch_counts(module) == node.counts, node.name
        assert all(p.requires_grad is node.trainable for p in module.parameters()), node.name


def nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A channels-last logical shape as PyTorch lays it out: images channels first; vectors
    and sequences (T, C) as they are."""
    return shape if len(shape) <= 2 else (shape[-1], *shape[:-1])


def random_input(graph: Graph, name: str, batch: int, gen: torch.Generator | None = None):
    """A batch for one input, as the model takes it: normal values, or token ids."""
    shape = (batch, *nchw(graph.node(name).shape or ()))
    if graph.node(name).attrs.dtype == "int":
        return torch.randint(0, vocabulary(graph, name), shape, generator=gen)
    return torch.randn(*shape, generator=gen)


def keras_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras' `compute_fans` on a Keras-layout kernel (not PyTorch's rule)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_limit(fans: tuple[int, int]) -> float:
    return math.sqrt(6.0 / sum(fans))


def write(tmp_path: Path, text: str, stem: str = "spec") -> Path:
    path = tmp_path / f"{stem}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def tiny(shape: list[int], layers: str, name: str = "tiny") -> str:
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    return f"archc: 1\nname: {name}\ninputs:\n  - {{name: x, shape: {shape}}}\nlayers:\n{body}\n"


def case_params() -> list[Any]:
    return [
        pytest.param(op, i, id=f"{op}-{i}")
        for op, cases in sorted(OP_CASES.items())
        for i in range(len(cases))
    ]


def import_file(path: Path, name: str) -> ModuleType:
    """Import a generated file from where it was written."""
    spec = importlib.util.spec_from_file_location(f"_test_torch_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(*args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run(
        [str(a) for a in args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ruff_ok(source: str) -> None:
    """`ruff check` and `ruff format --check` with the project's settings, on source text."""
    target = "generated/_archc_test_case.py"  # resolves pyproject.toml; never written
    lint = run_tool(RUFF, "check", "--no-cache", "--stdin-filename", target, "-", stdin=source)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run_tool(RUFF, "format", "--check", "--stdin-filename", target, "-", stdin=source)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def outputs_equal(a: nn.Module, b: nn.Module, graph: Graph, seed: int = 0) -> None:
    """Two models with the same state compute exactly the same outputs on one NCHW batch."""
    gen = torch.Generator().manual_seed(seed)
    xs = [random_input(graph, n, 3, gen) for n in graph.inputs]
    a.eval()
    b.eval()
    with torch.no_grad():
        ya, yb = a(*xs), b(*xs)
    ya = ya if isinstance(ya, tuple) else (ya,)
    yb = yb if isinstance(yb, tuple) else (yb,)
    assert len(ya) == len(yb) == len(graph.outputs)
    for u, v in zip(ya, yb, strict=True):
        assert torch.equal(u, v)


# -- the golden file: generated/resnet_preact_torch.py ----------------------------------------
@pytest.fixture(scope="module")
def golden() -> Any:
    return import_source(GOLDEN.read_text(encoding="utf-8"), "golden_torch")


@pytest.fixture(scope="module")
def seed_graph() -> Graph:
    return compile_spec(SEED).graph


@pytest.fixture
def golden_model(golden: Any) -> nn.Module:
    torch.manual_seed(0)
    return golden.build_model()


def test_golden_module_constants(golden: Any) -> None:
    assert SEED_COUNTS.as_dict() == golden.PARAMS
    assert golden.INPUT_SHAPE == (3, 32, 32)  # NCHW, batch excluded
    assert golden.SPEC["path"] == "../" + SEED_REL  # relative to generated/
    assert isinstance(golden.build_model(), nn.Module)


def test_golden_model_counts_from_parameters_and_buffers(
    golden_model: nn.Module, seed_graph: Graph
) -> None:
    assert torch_counts(golden_model) == SEED_COUNTS
    assert torch_backend.counts(golden_model) == SEED_COUNTS
    # num_batches_tracked exists (one per BN) but is an integer buffer and is never counted
    tracked = [b for n, b in golden_model.named_buffers() if n.endswith("num_batches_tracked")]
    assert len(tracked) == sum(n.op == "batch_norm" for n in seed_graph.nodes) == 16
    assert all(not b.is_floating_point() for b in tracked)
    everything = sum(p.numel() for p in golden_model.parameters()) + sum(
        b.numel() for b in golden_model.buffers()
    )
    assert everything == SEED_COUNTS.total + len(tracked)


@pytest.mark.parametrize(
    ("params", "want"),
    [
        ({"nb_classes": 10}, Counts(96_778, 96_778 - 2_176, 2_176)),
        ({"num_stages": 8}, Counts(151_045, 147_717, 3_328)),
        ({"use_final_conv": True}, Counts(169_605, 169_605 - 2_176, 2_176)),
    ],
    ids=["nb_classes", "num_stages", "use_final_conv"],
)
def test_golden_build_model_takes_the_spec_params(
    golden: Any, params: dict[str, Any], want: Counts
) -> None:
    """The golden module's build_model takes the spec's params; the counts are the seed's own
    Keras model's (tests/reference_models.seed_keras3 with the same arguments)."""
    model = golden.build_model(**params)
    assert torch_counts(model) == want
    # and they are the IR's for the same overrides
    assert torch_counts(model) == compile_spec(SEED, params).graph.counts


def test_golden_model_state_dict_keys_follow_keras_layers(
    golden_model: nn.Module, seed_graph: Graph
) -> None:
    state = golden_model.state_dict()
    assert set(state) == expected_state_keys(golden_model, seed_graph)
    paths = golden_model.keras_layers
    assert f"{paths['conv0']}.weight" in state and f"{paths['conv0']}.bias" not in state
    assert {f"{paths['conv1c']}.weight", f"{paths['conv1c']}.bias"} <= set(state)  # use_bias
    assert {f"{paths['bn0']}.{k}" for k in ("weight", "bias", "running_mean", "running_var")} <= (
        set(state)
    )
    assert {f"{paths['fc10']}.weight", f"{paths['fc10']}.bias"} <= set(state)
    # structured: the repeat is an nn.Sequential of one module per block call
    stages = golden_model.get_submodule(paths["conv1a"].split(".")[0])
    assert isinstance(stages, nn.Sequential) and len(stages) == 5
    for stage in range(1, 6):
        for name in (f"conv{stage}a", f"bn{stage}b", f"conv{stage}c"):
            assert paths[name].split(".")[1] == str(stage - 1), name
    assert "." not in paths["conv0"] and "." not in paths["fc10"]
    # every tensor has the PyTorch layout of the IR weight's Keras shape
    for node in seed_graph.nodes:
        for w in node.weights:
            got = tuple(state[f"{paths[node.name]}.{TORCH_KEY[w.name]}"].shape)
            if node.op == "conv2d" and w.name == "kernel":
                kh, kw, cin, cout = w.shape
                assert got == (cout, cin, kh, kw), node.name
            elif node.op == "dense" and w.name == "kernel":
                assert got == w.shape[::-1], node.name
            else:
                assert got == w.shape, node.name


def test_golden_model_per_layer_counts_match_ir(golden_model: nn.Module, seed_graph: Graph) -> None:
    check_keras_layers(golden_model, seed_graph)
    weighted = [n.name for n in seed_graph.nodes if n.weights]
    assert len(weighted) == 16 + 16 + 1  # BNs, convs, the dense layer


def test_golden_model_batch_norm_epsilon_and_momentum(
    golden_model: nn.Module, seed_graph: Graph
) -> None:
    bns = {
        m.keras_name: m
        for m in golden_model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }
    assert len(bns) == 16
    for name, bn in bns.items():
        attrs = seed_graph.node(name).attrs
        assert (attrs.epsilon, attrs.momentum) == (1e-3, 0.99)
        assert type(bn).__name__ == "KerasBatchNorm", name
        assert bn.eps == 1e-3, name  # Keras' default, not PyTorch's 1e-5
        assert bn.momentum == pytest.approx(0.01), name  # 1 - Keras' 0.99, not PyTorch's 0.1
        assert bn.affine and bn.track_running_stats, name
        assert bn.weight is not None and bn.bias is not None, name


def test_golden_model_takes_nchw_input(golden_model: nn.Module) -> None:
    golden_model.eval()
    with torch.no_grad():
        y = golden_model(torch.randn(3, 3, 32, 32))
        assert tuple(y.shape) == (3, 5)
        torch.testing.assert_close(y.sum(dim=1), torch.ones(3))  # softmax head
        with pytest.raises(RuntimeError):
            golden_model(torch.randn(3, 32, 32, 3))  # NHWC is not what it takes


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF's 'same' padding of one axis: (before, after), the extra pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def test_golden_stem_pads_like_tensorflow(golden_model: nn.Module, seed_graph: Graph) -> None:
    """conv0: 3x3, stride 2, 'same'. On 32x32 TF pads (0, 1) per axis, which PyTorch's
    symmetric `padding=` cannot do: conv0 is a KerasConv2d that pads in forward()."""
    assert seed_graph.node("conv0").attrs.pads == ((0, 1), (0, 1))
    assert tf_same_pads(32, 3, 2) == (0, 1) and tf_same_pads(33, 3, 2) == (1, 1)
    conv0 = layer(golden_model, "conv0")
    assert type(conv0).__name__ == "KerasConv2d"
    assert isinstance(conv0, nn.Conv2d)
    assert conv0.stride == (2, 2) and conv0.kernel_size == (3, 3) and conv0.bias is None
    assert "KerasConv2d(" in GOLDEN.read_text(encoding="utf-8")
    w = conv0.weight.detach()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32, generator=gen)
        y = conv0(x)
        assert tuple(y.shape) == (2, 128, 16, 16)
        assert torch.equal(y, F.conv2d(F.pad(x, (0, 1, 0, 1)), w, None, stride=2))
        # not PyTorch's symmetric padding 1, which shifts every output by one pixel
        assert not torch.allclose(y, F.conv2d(x, w, None, stride=2, padding=1))
        x = torch.randn(2, 3, 33, 33, generator=gen)
        y = conv0(x)
        assert tuple(y.shape) == (2, 128, 17, 17)
        torch.testing.assert_close(y, F.conv2d(x, w, None, stride=2, padding=1))


def test_golden_module_is_the_live_model(golden: Any, seed_graph: Graph) -> None:
    """build() is the generated module: the golden file is today's render, and its model
    computes exactly what the live one does with the same state."""
    compiled = compile_spec(SEED)
    assert torch_backend.render(compiled, ROOT / "generated") == GOLDEN.read_text(encoding="utf-8")
    torch.manual_seed(1)
    live = torch_backend.build(compiled)
    golden_model = golden.build_model()
    assert type(live).__name__ == type(golden_model).__name__
    with torch.no_grad():  # random BN statistics and affine terms so every tensor matters
        for m in live.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    assert set(live.state_dict()) == set(golden_model.state_dict())
    golden_model.load_state_dict(live.state_dict())
    outputs_equal(golden_model, live, seed_graph)


def test_regularization_loss_equals_keras_l2_losses() -> None:
    """With reg=1e-4 every conv kernel carries L2(1e-4); PyTorch's regularization_loss()
    equals the sum of the Keras model's losses with the same weights."""
    import keras

    from archc.backends.keras import backend as keras_backend
    from archc.backends.proof.transfer import keras_to_torch

    overrides = {"reg": 1e-4}
    compiled = compile_spec(SEED, overrides)
    km = keras_backend.from_spec(SEED, overrides)
    model = torch_backend.from_spec(SEED, overrides)
    assert keras_to_torch(km, model, compiled.graph) > 0
    assert len(km.losses) == 16
    want = float(sum(float(keras.ops.convert_to_numpy(loss)) for loss in km.losses))
    by_hand = sum(
        1e-4 * float((km.get_layer(n.name).get_weights()[0].astype("float64") ** 2).sum())
        for n in compiled.graph.nodes
        if n.op == "conv2d"
    )
    assert want == pytest.approx(by_hand, rel=1e-5)
    assert model.regularization_loss().item() == pytest.approx(want, rel=1e-5)

    # it is a differentiable penalty: d/dw r*sum(w^2) = 2*r*w
    loss = model.regularization_loss()
    loss.backward()
    w = layer(model, "conv0").weight
    torch.testing.assert_close(w.grad, 2e-4 * w.detach())
    assert layer(model, "fc10").weight.grad is None  # the dense layer has no L2


def test_golden_regularization_loss_is_zero_without_reg(golden_model: nn.Module) -> None:
    assert golden_model.regularization_loss().item() == 0.0


# -- every op -------------------------------------------------------------------------------
def test_every_registered_op_has_a_torch_emitter() -> None:
    assert set(load_all()) - {"input"} == set(TORCH_OPS)


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_weights_bind_to_torch_keys(op: str, i: int, tmp_path: Path) -> None:
    """Every IR weight of every case has a binding to the PyTorch key docs/ARCHITECTURE.md names."""
    graph = compile_spec(write(tmp_path, OP_CASES[op][i])).graph
    for node in graph.nodes:
        for w in node.weights:
            assert TORCH_OPS[node.op].weights[w.name].key == torch_key(node.op, w.name), node.name


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_generated_model_matches_ir(op: str, i: int, tmp_path: Path) -> None:
    result = compile_to_file(write(tmp_path, OP_CASES[op][i]), "torch", tmp_path / "out")
    graph = result.compiled.graph
    assert result.path.is_file() and result.path.parent == tmp_path / "out"
    source = result.path.read_text(encoding="utf-8")
    assert source == result.source
    assert not FRAMEWORK_IMPORT.search(source)
    module = import_file(result.path, f"{op}_{i}")
    assert graph.counts.as_dict() == module.PARAMS
    assert nchw(graph.node(graph.inputs[0]).shape) == module.INPUT_SHAPE
    torch.manual_seed(0)
    model = module.build_model()
    assert torch_counts(model) == graph.counts
    assert torch_backend.counts(model) == graph.counts
    assert set(model.state_dict()) == expected_state_keys(model, graph)
    check_keras_layers(model, graph)
    # the outputs have the IR's shapes, channels first
    model.eval()
    xs = [random_input(graph, n, 2) for n in graph.inputs]
    with torch.no_grad():
        ys = model(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert [tuple(y.shape) for y in ys] == [(2, *nchw(graph.node(n).shape)) for n in graph.outputs]
    assert all(torch.isfinite(y).all() for y in ys)


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_generated_source_passes_ruff(op: str, i: int, tmp_path: Path) -> None:
    ruff_ok(torch_backend.render(compile_spec(write(tmp_path, OP_CASES[op][i]))))


def test_frozen_layers_are_frozen_parameters(tmp_path: Path) -> None:
    text = tiny(
        [7, 5, 4],
        """
        - {op: conv2d, name: conv, filters: 6, kernel: 3, trainable: false}
        - {op: batch_norm, name: bn, trainable: false}
        - {op: depthwise_conv2d, name: dw, kernel: 1, depth_multiplier: 2, trainable: false}
        - {op: flatten, name: flat}
        - {op: dense, name: fc, units: 3}
        """,
    )
    compiled = compile_spec(write(tmp_path, text))
    graph = compiled.graph
    frozen = {"conv": 3 * 3 * 4 * 6 + 6, "bn": 4 * 6, "dw": 6 * 2 + 12}
    assert {n.name: n.counts.non_trainable for n in graph.nodes if n.weights} == {
        **frozen,
        "fc": 0,
    }
    model = torch_backend.build(compiled)
    assert torch_counts(model) == graph.counts
    assert graph.counts.non_trainable == sum(frozen.values())
    for name in frozen:
        module = layer(model, name)
        assert module.keras_trainable is False, name
        assert not any(p.requires_grad for p in module.parameters()), name
    assert all(p.requires_grad for p in layer(model, "fc").parameters())
    model.train()  # a frozen BatchNorm stays in inference mode, as in Keras
    assert model.training and layer(model, "fc").training
    assert not layer(model, "bn").training


@pytest.mark.parametrize("name", ["training", "forward"])
def test_layer_named_like_a_module_attribute_builds(name: str, tmp_path: Path) -> None:
    """A layer named like an nn.Module attribute or method gets another attribute name but
    keeps its Keras name; the model still trains and runs."""
    text = tiny(
        [5, 7, 3],
        f"""
        - {{op: conv2d, name: {name}, filters: 2, kernel: 1}}
        - {{op: batch_norm, name: bn}}
        """,
    )
    compiled = compile_spec(write(tmp_path, text))
    source = torch_backend.render(compiled)
    ruff_ok(source)
    model = torch_backend.build(compiled)
    assert torch_counts(model) == compiled.graph.counts
    module = layer(model, name)
    assert isinstance(module, nn.Conv2d) and module.keras_name == name
    assert model.keras_layers[name] != name
    model.train()
    assert model.training is True  # still nn.Module's flag
    model.eval()
    assert model.training is False
    with torch.no_grad():
        y = model.forward(torch.randn(2, 3, 5, 7))  # still nn.Module's method
    assert tuple(y.shape) == (2, 2, 5, 7)


# -- BatchNorm: center and scale apart, Keras' statistics -------------------------------------
BN_SPEC = """
- {op: batch_norm, name: no_scale, scale: false, epsilon: 0.01}
- {op: batch_norm, name: no_center, center: false, momentum: 0.9}
- {op: batch_norm, name: neither, center: false, scale: false}
"""


def test_batch_norm_center_and_scale_apart(tmp_path: Path) -> None:
    """center != scale builds: gamma and beta exist independently, and eval computes
    (x - mean) / sqrt(var + eps) * gamma + beta with the missing term left out."""
    compiled = compile_spec(write(tmp_path, tiny([5, 3, 4], BN_SPEC)))
    graph = compiled.graph
    model = torch_backend.build(compiled)
    assert torch_counts(model) == graph.counts
    check_keras_layers(model, graph)
    no_scale, no_center, neither = (layer(model, n) for n in ("no_scale", "no_center", "neither"))
    assert no_scale.weight is None and no_scale.bias is not None
    assert no_center.weight is not None and no_center.bias is None
    assert neither.weight is None and neither.bias is None
    assert no_scale.eps == 0.01 and no_center.momentum == pytest.approx(0.1)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for bn in (no_scale, no_center, neither):
            bn.running_mean.normal_(0, 0.5, generator=gen)
            bn.running_var.uniform_(0.5, 2.0, generator=gen)
        no_scale.bias.normal_(0, 0.5, generator=gen)
        no_center.weight.normal_(1, 0.5, generator=gen)
        x = torch.randn(2, 4, 5, 3, generator=gen)
        model.eval()
        y = model(x)

    def norm(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        mean, var = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
        return (x - mean) / torch.sqrt(var + bn.eps)

    want = norm(no_scale, x) + no_scale.bias.view(1, -1, 1, 1)
    want = norm(no_center, want) * no_center.weight.view(1, -1, 1, 1)
    want = norm(neither, want)
    torch.testing.assert_close(y, want)


def test_batch_norm_training_updates_moving_variance_like_keras(tmp_path: Path) -> None:
    """Keras: moving = m * moving + (1 - m) * batch statistic, with the BIASED batch variance
    (PyTorch's own BatchNorm uses the unbiased one); the output uses the biased variance."""
    compiled = compile_spec(
        write(tmp_path, tiny([3, 5, 4], "- {op: batch_norm, name: bn, momentum: 0.8}"))
    )
    model = torch_backend.build(compiled)
    bn = layer(model, "bn")
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        bn.running_mean.normal_(0, 1, generator=gen)
        bn.running_var.uniform_(0.5, 2.0, generator=gen)
        mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
        x = 2 * torch.randn(6, 4, 3, 5, generator=gen) + 1
        model.train()
        y = model(x)
    batch_mean = x.mean(dim=(0, 2, 3))
    batch_var = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(bn.running_mean, 0.8 * mean0 + 0.2 * batch_mean)
    torch.testing.assert_close(bn.running_var, 0.8 * var0 + 0.2 * batch_var)
    want = (x - batch_mean.view(1, -1, 1, 1)) / torch.sqrt(batch_var.view(1, -1, 1, 1) + 1e-3)
    torch.testing.assert_close(y, want)


# -- initial values ---------------------------------------------------------------------------
INIT_SPEC = """
- {op: conv2d, name: conv, filters: 16, kernel: 3, padding: same}
- {op: batch_norm, name: bn}
- {op: depthwise_conv2d, name: dw, kernel: 3, depth_multiplier: 2}
- {op: conv2d, name: grouped, filters: 8, kernel: [3, 2], groups: 4}
- {op: flatten, name: flat}
- {op: dense, name: fc, units: 10}
"""


def test_fresh_model_has_keras_initial_values(tmp_path: Path) -> None:
    """Biases 0, BN gamma 1 / beta 0 (mean 0, var 1), kernels ~ U(-a, a) with Keras' Glorot
    bound a = sqrt(6 / (fan_in + fan_out)) from Keras' fans of the Keras-layout kernel."""
    compiled = compile_spec(write(tmp_path, tiny([9, 7, 8], INIT_SPEC)))
    graph = compiled.graph
    torch.manual_seed(0)
    model = torch_backend.build(compiled)
    state = model.state_dict()
    checked = 0
    for node in graph.nodes:
        for w in node.weights:
            value = state[f"{model.keras_layers[node.name]}.{torch_key(node.op, w.name)}"]
            where = f"{node.name}.{w.name}"
            if w.name in ("bias", "beta", "moving_mean"):
                assert torch.count_nonzero(value) == 0, where
            elif w.name in ("gamma", "moving_variance"):
                assert torch.all(value == 1), where
            else:
                limit = glorot_limit(keras_fans(w.shape))
                biggest = value.abs().max().item()
                # within the bound, and (hundreds of draws) close to it: not a smaller bound
                assert biggest <= limit, where
                assert biggest >= 0.9 * limit, where
                assert value.mean().abs().item() < 0.25 * limit, where
            checked += 1
    assert checked == 2 + 4 + 2 + 2 + 2


def test_depthwise_glorot_bound_uses_keras_fans_not_torchs(tmp_path: Path) -> None:
    """Keras' fans of a (kh, kw, C, M) depthwise kernel are (kh*kw*C, kh*kw*M); PyTorch's of the
    (C*M, 1, kh, kw) weight are (kh*kw, kh*kw*C*M). The bounds differ; Keras' is used."""
    compiled = compile_spec(write(tmp_path, tiny([9, 7, 8], INIT_SPEC)))
    torch.manual_seed(0)
    weight = layer(torch_backend.build(compiled), "dw").weight
    (kernel,) = [w for w in compiled.graph.node("dw").weights if w.name == "depthwise_kernel"]
    assert kernel.shape == (3, 3, 16, 2)
    assert tuple(weight.shape) == (32, 1, 3, 3)
    assert keras_fans(kernel.shape) == (144, 18)
    assert nn.init._calculate_fan_in_and_fan_out(weight) == (9, 288)
    keras_limit = glorot_limit(keras_fans(kernel.shape))
    torch_limit = glorot_limit(nn.init._calculate_fan_in_and_fan_out(weight))
    assert torch_limit < 0.85 * keras_limit
    assert weight.abs().max().item() > torch_limit  # impossible under PyTorch's fans
    assert weight.abs().max().item() <= keras_limit


def test_reset_parameters_restores_keras_initial_values(tmp_path: Path) -> None:
    compiled = compile_spec(write(tmp_path, tiny([9, 7, 8], INIT_SPEC)))
    model = torch_backend.build(compiled)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
        for b in model.buffers():
            b.fill_(7)
    model.reset_parameters()
    assert torch.count_nonzero(layer(model, "conv").bias) == 0
    bn = layer(model, "bn")
    assert torch.all(bn.weight == 1) and torch.count_nonzero(bn.bias) == 0
    assert torch.count_nonzero(bn.running_mean) == 0 and torch.all(bn.running_var == 1)
    (kernel,) = [w for w in compiled.graph.node("fc").weights if w.name == "kernel"]
    assert kernel.shape == (5 * 4 * 8, 10)
    limit = glorot_limit(keras_fans(kernel.shape))
    assert 0.9 * limit <= layer(model, "fc").weight.abs().max().item() <= limit
    (dw_kernel,) = [w for w in compiled.graph.node("dw").weights if w.name == "depthwise_kernel"]
    dw_limit = glorot_limit(keras_fans(dw_kernel.shape))
    assert 0.9 * dw_limit <= layer(model, "dw").weight.abs().max().item() <= dw_limit
    assert torch.count_nonzero(layer(model, "dw").bias) == 0


# -- generated source: imports, determinism, style, freshness ---------------------------------
def _modules_after(code: str) -> dict[str, Any]:
    """Run code in a fresh interpreter, then report which frameworks it imported."""
    probe = textwrap.dedent(
        """
        import json, sys
        code = None
        try:
        {body}
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{
            "code": code,
            "tensorflow": "tensorflow" in sys.modules,
            "keras": "keras" in sys.modules,
            "torch": "torch" in sys.modules,
        }}))
        """
    ).format(body=textwrap.indent(textwrap.dedent(code).strip(), "    "))
    proc = run_tool(sys.executable, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_compile_torch_never_imports_tensorflow(tmp_path: Path) -> None:
    seen = _modules_after(
        f"""
        from archc.cli import main
        main(["compile", {SEED_REL!r}, "--backend", "torch", "-o", {str(tmp_path)!r}])
        """
    )
    assert seen["code"] in (0, None)
    assert (tmp_path / "resnet_preact_torch.py").is_file()
    assert seen["torch"]  # it did build and count the model
    assert not seen["tensorflow"] and not seen["keras"]


def test_importing_generated_torch_module_never_imports_tensorflow() -> None:
    seen = _modules_after(
        f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("g", {str(GOLDEN)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.build_model()
        assert sum(p.numel() for p in model.parameters()) == {SEED_COUNTS.trainable}
        """
    )
    assert seen["torch"]
    assert not seen["tensorflow"] and not seen["keras"]


def test_check_imports_no_framework() -> None:
    seen = _modules_after(
        f"""
        from archc.cli import main
        main(["check", {SEED_REL!r}, "--json"])
        """
    )
    assert seen["code"] in (0, None)
    assert not seen["tensorflow"] and not seen["keras"] and not seen["torch"]


DAG_SPEC = """
- {op: conv2d, name: stem, filters: 4, kernel: 3, strides: 2, padding: same}
- {op: max_pool2d, name: pool, pool: 3, strides: 2, padding: same, inputs: x}
- {op: avg_pool2d, name: avg, pool: 2, strides: 2, padding: same, inputs: x}
- {op: concat, name: cat, inputs: [stem, pool, avg]}
- {op: dense, name: fc, units: 3, kernel_l2: 0.001}
"""


@pytest.mark.parametrize("which", ["seed", "dag"])
def test_compile_is_byte_identical_across_hash_seeds(which: str, tmp_path: Path) -> None:
    spec = SEED_REL if which == "seed" else write(tmp_path, tiny([9, 6, 3], DAG_SPEC), "dag")
    texts = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}"
        proc = run_tool(
            ARCHC, "compile", spec, "--backend", "torch", "-o", out, env={"PYTHONHASHSEED": seed}
        )
        assert proc.returncode == 0, proc.stderr
        (path,) = out.iterdir()
        texts.append(path.read_bytes())
    assert texts[0] == texts[1]
    if which == "seed":
        assert without_spec_path(texts[0]) == without_spec_path(GOLDEN.read_bytes())


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_golden_file_passes_ruff(command: list[str]) -> None:
    proc = run_tool(RUFF, *command, "--no-cache", GOLDEN)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_committed_generated_torch_file_is_fresh(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    compile_to_file(f"specs/{spec}", "torch", "generated", check=True)  # E093 if stale
