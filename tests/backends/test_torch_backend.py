"""The PyTorch backend: golden file, live models, every op, initial values, generated source.

Counts here are taken straight from `parameters()` and `buffers()` (never through the backend's
own `counts`), layer names straight from `state_dict()`, and Glorot bounds from Keras' fan rule
applied to the IR's Keras-layout weight shapes, so each test checks the backend against the
DESIGN.md contract rather than against itself. Nothing here measures time.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from backends import torch_backend
from backends.codegen import import_source
from backends.compile import compile_to_file
from compiler.api import compile_spec
from compiler.diagnostics import SpecError
from compiler.ir import Counts, Graph, Node
from compiler.ops import load_all
from tests.backends.op_cases import OP_CASES
from tests.conftest import ROOT, SEED, SPECS, without_spec_path

GOLDEN = ROOT / "generated" / "resnet_preact_torch.py"
SEED_REL = "specs/resnet_preact.yaml"
VENV_BIN = Path(sys.executable).parent
ARCHC = VENV_BIN / "archc"
RUFF = VENV_BIN / "ruff"
SEED_COUNTS = Counts(96_133, 93_957, 2_176)

# IR weight name -> the PyTorch parameter / buffer it becomes (DESIGN.md).
TORCH_KEY = {
    "kernel": "weight",
    "depthwise_kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


# -- helpers ----------------------------------------------------------------------------------
def torch_counts(module: nn.Module) -> Counts:
    """DESIGN.md's rule: trainable = parameters with requires_grad; non-trainable = frozen
    parameters plus floating-point buffers, never num_batches_tracked."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    buffers = sum(
        b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked")
    )
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


def expected_state_keys(graph: Graph) -> set[str]:
    """`<layer>.weight`, `.bias`, `.running_mean`, `.running_var` (+ num_batches_tracked)."""
    keys = set()
    for node in graph.nodes:
        names = {TORCH_KEY[w.name] for w in node.weights}
        if node.op == "batch_norm":
            names.add("num_batches_tracked")
        keys |= {f"{node.name}.{n}" for n in names}
    return keys


def nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A channels-last logical shape as PyTorch lays it out (channels first)."""
    return (shape[-1], *shape[:-1])


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


def torch_unsupported(graph: Graph) -> Node | None:
    """The node the torch backend rejects by design (BatchNorm with center != scale)."""
    for node in graph.nodes:
        if node.op == "batch_norm" and node.attrs.center != node.attrs.scale:
            return node
    return None


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


def generated_module(compiled: Any, tag: str) -> Any:
    return import_source(torch_backend.render(compiled), f"test_{tag}")


def outputs_equal(a: nn.Module, b: nn.Module, graph: Graph, seed: int = 0) -> None:
    """Two models with the same state compute the same outputs on one NCHW batch."""
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(3, *nchw(graph.node(n).shape), generator=gen) for n in graph.inputs]
    a.eval()
    b.eval()
    with torch.no_grad():
        ya, yb = a(*xs), b(*xs)
    ya = ya if isinstance(ya, tuple) else (ya,)
    yb = yb if isinstance(yb, tuple) else (yb,)
    assert len(ya) == len(yb) == len(graph.outputs)
    for u, v in zip(ya, yb, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


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


def test_golden_model_state_dict_keys_are_ir_layer_names(
    golden_model: nn.Module, seed_graph: Graph
) -> None:
    state = golden_model.state_dict()
    assert set(state) == expected_state_keys(seed_graph)
    assert "conv0.weight" in state and "conv0.bias" not in state  # use_bias: false
    assert {"conv1c.weight", "conv1c.bias"} <= set(state)  # use_bias: true
    assert {"bn0.weight", "bn0.bias", "bn0.running_mean", "bn0.running_var"} <= set(state)
    assert {"fc10.weight", "fc10.bias"} <= set(state)
    # every tensor has the PyTorch layout of the IR weight's Keras shape
    for node in seed_graph.nodes:
        for w in node.weights:
            got = tuple(state[f"{node.name}.{TORCH_KEY[w.name]}"].shape)
            if node.op == "conv2d" and w.name == "kernel":
                kh, kw, cin, cout = w.shape
                assert got == (cout, cin, kh, kw), node.name
            elif node.op == "dense" and w.name == "kernel":
                assert got == w.shape[::-1], node.name
            else:
                assert got == w.shape, node.name


def test_golden_model_per_layer_counts_match_ir(golden_model: nn.Module, seed_graph: Graph) -> None:
    children = dict(golden_model.named_children())
    for node in seed_graph.nodes:
        if node.weights:
            assert torch_counts(children[node.name]) == node.counts, node.name
    weighted = [n.name for n in seed_graph.nodes if n.weights]
    assert [n for n in children if n in weighted] == weighted  # IR order, nothing missing


def test_golden_model_batch_norm_epsilon_and_momentum(
    golden_model: nn.Module, seed_graph: Graph
) -> None:
    bns = {n: m for n, m in golden_model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(bns) == 16
    for name, bn in bns.items():
        attrs = seed_graph.node(name).attrs
        assert (attrs.epsilon, attrs.momentum) == (1e-3, 0.99)
        assert bn.eps == 1e-3, name  # Keras' default, not PyTorch's 1e-5
        assert bn.momentum == pytest.approx(0.01), name  # 1 - Keras' 0.99, not PyTorch's 0.1
        assert bn.affine and bn.track_running_stats, name


def test_golden_model_takes_nchw_input(golden_model: nn.Module) -> None:
    golden_model.eval()
    with torch.no_grad():
        y = golden_model(torch.randn(3, 3, 32, 32))
        assert tuple(y.shape) == (3, 5)
        torch.testing.assert_close(y.sum(dim=1), torch.ones(3))  # softmax head
        with pytest.raises(RuntimeError):
            golden_model(torch.randn(3, 32, 32, 3))  # NHWC is not what it takes


def test_golden_stem_pads_like_tensorflow(golden_model: nn.Module, seed_graph: Graph) -> None:
    """conv0: 3x3, stride 2, 'same' on 32x32: TF pads (0, 1) per axis, so PyTorch's symmetric
    `padding=` cannot be used; the module pads nothing and forward() pads explicitly."""
    assert seed_graph.node("conv0").attrs.pads == ((0, 1), (0, 1))
    conv0 = golden_model.get_submodule("conv0")
    assert conv0.padding == (0, 0) and conv0.stride == (2, 2)
    source = GOLDEN.read_text(encoding="utf-8")
    assert "F.pad(input_3, (0, 1, 0, 1))" in source


def test_golden_model_equals_live_model(golden_model: nn.Module, seed_graph: Graph) -> None:
    torch.manual_seed(1)
    live = torch_backend.build(seed_graph)
    with torch.no_grad():  # random BN statistics so every buffer matters
        for m in live.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    assert set(live.state_dict()) == set(golden_model.state_dict())
    golden_model.load_state_dict(live.state_dict())
    outputs_equal(golden_model, live, seed_graph)


def test_regularization_loss_equals_keras_l2_losses() -> None:
    """With reg=1e-4 every conv kernel carries L2(1e-4); PyTorch's regularization_loss() (live
    and generated) equals the sum of the Keras model's losses with the same weights."""
    import keras

    from backends import keras_backend
    from backends.transfer import keras_to_torch

    overrides = {"reg": 1e-4}
    compiled = compile_spec(SEED, overrides)
    km = keras_backend.from_spec(SEED, overrides)
    live = torch_backend.from_spec(SEED, overrides)
    assert keras_to_torch(km, live, compiled.graph) > 0
    assert len(km.losses) == 16
    want = float(sum(float(keras.ops.convert_to_numpy(loss)) for loss in km.losses))
    by_hand = sum(
        1e-4 * float((km.get_layer(n.name).get_weights()[0].astype("float64") ** 2).sum())
        for n in compiled.graph.nodes
        if n.op == "conv2d"
    )
    assert want == pytest.approx(by_hand, rel=1e-5)
    assert live.regularization_loss().item() == pytest.approx(want, rel=1e-5)

    generated = generated_module(compiled, "reg").build_model()
    generated.load_state_dict(live.state_dict())
    assert generated.regularization_loss().item() == pytest.approx(want, rel=1e-5)

    # it is a differentiable penalty: d/dw r*sum(w^2) = 2*r*w
    loss = generated.regularization_loss()
    loss.backward()
    w = generated.get_submodule("conv0").weight
    torch.testing.assert_close(w.grad, 2e-4 * w.detach())


def test_golden_regularization_loss_is_zero_without_reg(golden_model: nn.Module) -> None:
    assert golden_model.regularization_loss().item() == 0.0


# -- every op -------------------------------------------------------------------------------
def test_every_registered_op_has_a_torch_lowering() -> None:
    from backends.torch_lowering import LOWER

    assert set(load_all()) - {"input"} == set(LOWER)


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_live_model_matches_ir(op: str, i: int, tmp_path: Path) -> None:
    graph = compile_spec(write(tmp_path, OP_CASES[op][i])).graph
    if (bad := torch_unsupported(graph)) is not None:
        with pytest.raises(SpecError, match="center and scale must both be"):
            torch_backend.build(graph)
        assert bad.op == "batch_norm"
        return
    torch.manual_seed(0)
    model = torch_backend.build(graph)
    assert torch_counts(model) == graph.counts
    assert torch_backend.counts(model) == graph.counts
    assert set(model.state_dict()) == expected_state_keys(graph)
    children = dict(model.named_children())
    for node in graph.nodes:
        if node.name in children:
            assert torch_counts(children[node.name]) == node.counts, node.name
            params = list(children[node.name].parameters())
            assert all(p.requires_grad is node.trainable for p in params), node.name
        else:
            assert node.counts.total == 0, node.name
    # every layer's output has the IR's shape, channels first
    model.eval()
    xs = [torch.randn(2, *nchw(graph.node(n).shape)) for n in graph.inputs]
    with torch.no_grad():
        values = model.forward_all(*xs)
    for node in graph.nodes:
        assert tuple(values[node.name].shape) == (2, *nchw(node.shape)), node.name


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_generated_source_matches_live_model(op: str, i: int, tmp_path: Path) -> None:
    compiled = compile_spec(write(tmp_path, OP_CASES[op][i]))
    graph = compiled.graph
    if torch_unsupported(graph) is not None:
        with pytest.raises(SpecError, match="E100"):
            torch_backend.render(compiled)
        return
    source = torch_backend.render(compiled)
    module = import_source(source, f"case_{op}_{i}")
    assert graph.counts.as_dict() == module.PARAMS
    assert nchw(graph.node(graph.inputs[0]).shape) == module.INPUT_SHAPE
    torch.manual_seed(0)
    generated = module.build_model()
    assert torch_counts(generated) == graph.counts
    live = torch_backend.build(graph)
    assert set(generated.state_dict()) == set(live.state_dict())
    for key, value in live.state_dict().items():
        assert generated.state_dict()[key].shape == value.shape, key
    generated.load_state_dict(live.state_dict())
    outputs_equal(generated, live, graph)
    assert "tensorflow" not in source and "keras" not in source


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_generated_source_passes_ruff(op: str, i: int, tmp_path: Path) -> None:
    compiled = compile_spec(write(tmp_path, OP_CASES[op][i]))
    if torch_unsupported(compiled.graph) is not None:
        pytest.skip("the torch backend rejects this case by design (see the test above)")
    ruff_ok(torch_backend.render(compiled))


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
    for model in (
        torch_backend.build(graph),
        generated_module(compiled, "frozen").build_model(),
    ):
        assert torch_counts(model) == graph.counts
        assert graph.counts.non_trainable == sum(frozen.values())
        for name in frozen:
            assert not any(p.requires_grad for p in model.get_submodule(name).parameters())
        assert all(p.requires_grad for p in model.get_submodule("fc").parameters())


def test_layer_named_like_a_module_instance_attribute_is_a_spec_error(tmp_path: Path) -> None:
    text = tiny([5, 7, 3], "- {op: conv2d, name: training, filters: 2, kernel: 1}")
    graph = compile_spec(write(tmp_path, text)).graph
    with pytest.raises(SpecError, match="E101"):
        torch_backend.build(graph)


def test_layer_named_like_a_module_method_is_a_spec_error(tmp_path: Path) -> None:
    text = tiny([5, 7, 3], "- {op: conv2d, name: forward, filters: 2, kernel: 1}")
    graph = compile_spec(write(tmp_path, text)).graph
    with pytest.raises(SpecError, match=r"E101.*'forward'"):
        torch_backend.build(graph)


# -- initial values ---------------------------------------------------------------------------
INIT_SPEC = """
- {op: conv2d, name: conv, filters: 16, kernel: 3, padding: same}
- {op: batch_norm, name: bn}
- {op: depthwise_conv2d, name: dw, kernel: 3, depth_multiplier: 2}
- {op: conv2d, name: grouped, filters: 8, kernel: [3, 2], groups: 4}
- {op: flatten, name: flat}
- {op: dense, name: fc, units: 10}
"""


@pytest.mark.parametrize("kind", ["live", "generated"])
def test_fresh_model_has_keras_initial_values(kind: str, tmp_path: Path) -> None:
    """Biases 0, BN gamma 1 / beta 0 (mean 0, var 1), kernels ~ U(-a, a) with Keras' Glorot
    bound a = sqrt(6 / (fan_in + fan_out)) from Keras' fans of the Keras-layout kernel."""
    compiled = compile_spec(write(tmp_path, tiny([9, 7, 8], INIT_SPEC)))
    graph = compiled.graph
    torch.manual_seed(0)
    if kind == "live":
        model = torch_backend.build(graph)
    else:
        model = generated_module(compiled, "init").build_model()
    checked = 0
    for node in graph.nodes:
        for w in node.weights:
            value = model.state_dict()[f"{node.name}.{TORCH_KEY[w.name]}"]
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
    weight = torch_backend.build(compiled.graph).get_submodule("dw").weight
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
    model = torch_backend.build(compiled.graph)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    model.reset_parameters()
    assert torch.count_nonzero(model.get_submodule("conv").bias) == 0
    assert torch.all(model.get_submodule("bn").weight == 1)
    assert torch.count_nonzero(model.get_submodule("bn").bias) == 0
    (kernel,) = [w for w in compiled.graph.node("fc").weights if w.name == "kernel"]
    assert kernel.shape == (5 * 4 * 8, 10)
    limit = glorot_limit(keras_fans(kernel.shape))
    assert 0.9 * limit <= model.get_submodule("fc").weight.abs().max().item() <= limit


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
        from compiler.cli import main
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
        assert sum(p.numel() for p in model.parameters()) == 93957
        """
    )
    assert seen["torch"]
    assert not seen["tensorflow"] and not seen["keras"]


def test_check_imports_no_framework() -> None:
    seen = _modules_after(
        f"""
        from compiler.cli import main
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
    result = compile_to_file(f"specs/{spec}", "torch", "generated", check=True)
    assert result.path.read_text(encoding="utf-8") == result.source
