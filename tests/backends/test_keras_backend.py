"""The Keras backend: golden file, live models, every op, generated source, CLI, no data lost.

Keras is imported once per session (slow) and the seed model is built once per module; the
per-op cases are small. Nothing here measures time.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archc.backends.codegen import import_source
from archc.backends.compile import VerificationError, compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.keras.ops import KERAS_LAYERS
from archc.backends.proof.verify import inputs_for
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.ir import Counts, Graph, Node
from archc.compiler.ops import load_all
from archc.compiler.plugins import builtin_ops
from tests.backends.op_cases import OP_CASES
from tests.conftest import ROOT, RUFF, SEED, SPECS, without_spec_path
from tests.seedtable import SEED_TABLE, seed_rows

GOLDEN = ROOT / "generated" / "resnet_preact_keras.py"
SEED_REL = "specs/resnet_preact.yaml"
VENV_BIN = Path(sys.executable).parent
ARCHC = VENV_BIN / "archc"
SEED_COUNTS = {"total": 96_133, "trainable": 93_957, "non_trainable": 2_176}
SEED_MESSAGE = "96,133 params: 93,957 trainable, 2,176 non-trainable"


# -- helpers ----------------------------------------------------------------------------------
def _size(w: Any) -> int:
    size = 1
    for d in w.shape:
        size *= int(d)
    return size


def keras_counts(obj: Any) -> Counts:
    """Counts straight from Keras' trainable_weights / non_trainable_weights."""
    t = sum(_size(w) for w in obj.trainable_weights)
    n = sum(_size(w) for w in obj.non_trainable_weights)
    return Counts(t + n, t, n)


def connections(layer: Any) -> list[str]:
    """`name[node_index][tensor_index]` of each inbound tensor, as Keras' summary prints them."""
    nodes = layer._inbound_nodes
    assert len(nodes) == 1, f"{layer.name} is called {len(nodes)} times"
    out = []
    for tensor in nodes[0].input_tensors:
        history = tensor._keras_history
        out.append(f"{history.operation.name}[{history.node_index}][{history.tensor_index}]")
    return out


def inbound_names(layer: Any) -> list[str]:
    return [c.split("[", 1)[0] for c in connections(layer)]


def class_name(node: Node) -> str:
    return load_all()[node.op].layer_type(node.attrs)


def cli(*args: str | Path, seed: str = "0", cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the installed `archc` console script in a fresh interpreter."""
    env = {**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("ARCHC_DEBUG", None)
    return subprocess.run(
        [str(ARCHC), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def check_model_against_graph(model: Any, graph: Graph) -> None:
    """Every IR node is a Keras layer of the right class, shape, counts and inbound layers."""
    assert [layer.name for layer in model.layers] == [n.name for n in graph.nodes]
    for node in graph.nodes:
        layer = model.get_layer(node.name)
        where = f"layer {node.name} ({node.op})"
        assert type(layer).__name__ == class_name(node), where
        assert tuple(layer.output.shape) == (None, *node.shape), where
        assert keras_counts(layer) == node.counts, where
        inbound = list(node.inputs)
        if node.op in ("multi_head_attention", "grouped_query_attention") and len(inbound) == 1:
            inbound *= 2  # self-attention is Keras' layer(x, x)
        assert inbound_names(layer) == inbound, where
        if node.weights:
            assert layer.trainable is node.trainable, where
        check_config(layer, node)
    assert keras_counts(model) == graph.counts
    assert keras_backend.counts(model) == graph.counts
    assert [t._keras_history.operation.name for t in _flat(model.inputs)] == list(graph.inputs)
    assert [t._keras_history.operation.name for t in _flat(model.outputs)] == list(graph.outputs)


def _flat(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


def _activation(layer: Any, fn: str) -> None:
    import keras

    assert layer.activation is keras.activations.get(fn), (layer.name, fn)


def _l2(regularizer: Any, factor: float | None) -> None:
    if factor is None:
        assert regularizer is None
    else:
        assert regularizer is not None and regularizer.l2 == pytest.approx(factor)


def check_config(layer: Any, node: Node) -> None:
    """The layer does what the IR attributes say (written from the IR's meaning, not from the
    backend's table, so a wrong keyword in the backend shows here)."""
    a = node.attrs
    cfg = layer.get_config()
    if node.op == "conv2d":
        assert cfg["filters"] == a.filters
        assert tuple(cfg["kernel_size"]) == a.kernel
        assert tuple(cfg["strides"]) == a.strides
        assert cfg["padding"] == a.padding
        assert tuple(cfg["dilation_rate"]) == a.dilation
        assert cfg["groups"] == a.groups
        assert cfg["use_bias"] is a.use_bias
        _activation(layer, a.activation)
        _l2(layer.kernel_regularizer, a.kernel_l2)
    elif node.op == "depthwise_conv2d":
        assert tuple(cfg["kernel_size"]) == a.kernel
        assert tuple(cfg["strides"]) == a.strides
        assert cfg["padding"] == a.padding
        assert tuple(cfg["dilation_rate"]) == a.dilation
        assert cfg["depth_multiplier"] == a.depth_multiplier
        assert cfg["use_bias"] is a.use_bias
        _activation(layer, a.activation)
        _l2(layer.depthwise_regularizer, a.kernel_l2)
    elif node.op == "batch_norm":
        assert cfg["axis"] in (-1, len(node.shape))
        assert cfg["epsilon"] == pytest.approx(a.epsilon)
        assert cfg["momentum"] == pytest.approx(a.momentum)
        assert (cfg["center"], cfg["scale"]) == (a.center, a.scale)
    elif node.op == "activation":
        _activation(layer, a.fn)
    elif node.op == "dense":
        assert cfg["units"] == a.units
        assert cfg["use_bias"] is a.use_bias
        _activation(layer, a.activation)
        _l2(layer.kernel_regularizer, a.kernel_l2)
    elif node.op in ("max_pool2d", "avg_pool2d"):
        assert tuple(cfg["pool_size"]) == a.pool
        assert tuple(cfg["strides"]) == a.strides
        assert cfg["padding"] == a.padding
    elif node.op == "global_avg_pool2d":
        assert cfg["keepdims"] is a.keepdims
    elif node.op == "zero_pad2d":
        assert tuple(map(tuple, cfg["padding"])) == a.padding
    elif node.op == "concat":
        rank = len(node.shape) + 1  # Keras counts the batch axis
        assert cfg["axis"] % rank == a.axis % len(node.shape) + 1
    elif node.op == "reshape":
        assert tuple(layer.output.shape[1:]) == node.shape
    elif node.op == "dropout":
        assert cfg["rate"] == pytest.approx(a.rate)


def case_params() -> list[Any]:
    """(op, index) of every case in OP_CASES."""
    return [
        pytest.param(op, i, id=f"{op}-{i}")
        for op, cases in sorted(OP_CASES.items())
        for i in range(len(cases))
    ]


def write_case(directory: Path, op: str, i: int) -> Path:
    path = directory / f"{op}_{i}.yaml"
    path.write_text(OP_CASES[op][i], encoding="utf-8")
    return path


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden() -> Any:
    return importlib.import_module("generated.resnet_preact_keras")


@pytest.fixture(scope="module")
def seed_model(golden: Any) -> Any:
    return golden.build_model()


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root: generated headers record spec paths relative to it."""
    monkeypatch.chdir(ROOT)
    return ROOT


# -- 1. the golden file is the seed network ---------------------------------------------------
def test_golden_module_constants(golden: Any) -> None:
    assert golden.PARAMS == SEED_COUNTS
    assert golden.INPUT_SHAPE == (32, 32, 3)
    assert golden.SPEC["path"] == "../" + SEED_REL  # relative to generated/, wherever archc ran


def test_golden_model_matches_seed_table_row_for_row(seed_model: Any) -> None:
    rows = seed_rows(SEED_TABLE)
    assert len(rows) == len(seed_model.layers) == 57
    for (name, kind, shape, params, conns), layer in zip(rows, seed_model.layers, strict=True):
        assert layer.name == name
        assert type(layer).__name__ == kind, name
        assert str(tuple(layer.output.shape)) == shape, name
        assert layer.count_params() == int(params), name
        assert keras_counts(layer).total == int(params), name
        assert connections(layer) == conns, name


def test_golden_model_layer_classes_are_the_seeds(seed_model: Any) -> None:
    kinds = {type(layer).__name__ for layer in seed_model.layers}
    assert kinds == {
        "InputLayer",
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "Add",
        "AveragePooling2D",
        "Flatten",
        "Dense",
    }


def test_golden_model_totals(seed_model: Any) -> None:
    assert keras_counts(seed_model).as_dict() == SEED_COUNTS
    assert keras_backend.counts(seed_model).as_dict() == SEED_COUNTS
    assert seed_model.count_params() == SEED_COUNTS["total"]


def test_golden_model_matches_ir(seed_model: Any) -> None:
    check_model_against_graph(seed_model, compile_spec(SEED).graph)


# -- 2. overrides through the Python API; L2 regularization ------------------------------------
def test_from_spec_reg_override_gives_one_l2_loss_per_conv_kernel() -> None:
    import numpy as np

    reg = 1e-4
    model = keras_backend.from_spec(SEED, {"reg": reg})
    assert keras_counts(model).as_dict() == SEED_COUNTS
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 16
    expected = [reg * float(np.sum(np.square(c.kernel.numpy().astype("float64")))) for c in convs]
    losses = [float(x) for x in model.losses]
    assert len(losses) == 16
    assert sum(losses) == pytest.approx(sum(expected), rel=1e-5)
    # one loss per kernel, on its own layer (matching losses to kernels by value alone is
    # ambiguous: same-shaped kernels can have sums of squares within the tolerance)
    for conv, want in zip(convs, expected, strict=True):  # and each sits on its own layer
        assert [float(x) for x in conv.losses] == [pytest.approx(want, rel=1e-5)]
        assert conv.kernel_regularizer.l2 == pytest.approx(reg)
    others = [layer for layer in model.layers if type(layer).__name__ != "Conv2D"]
    assert all(not layer.losses for layer in others)


def test_from_spec_other_overrides_change_the_model() -> None:
    model = keras_backend.from_spec(SEED, {"nb_classes": 10, "use_final_conv": True})
    assert keras_counts(model) == Counts(169_930, 167_754, 2_176)
    assert model.get_layer("convF").output.shape == (None, 16, 16, 64)
    assert model.output.shape == (None, 10)


# -- 3. every op, live and generated, against the IR ------------------------------------------
def test_every_registered_op_has_a_case() -> None:
    ops = set(builtin_ops()) - {"input"}  # a plugin tests its own
    missing = sorted(ops - set(OP_CASES))
    assert not missing, f"add cases to tests/backends/op_cases.py for: {missing}"
    unknown = sorted(set(OP_CASES) - ops)
    assert not unknown, f"OP_CASES names ops that are not registered: {unknown}"
    assert all(OP_CASES[op] for op in OP_CASES)


def test_every_registered_op_has_a_keras_emitter() -> None:
    assert set(KERAS_LAYERS) | {"input"} == set(load_all())


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_uses_its_op_and_compiles(op: str, i: int, tmp_path: Path) -> None:
    graph = compile_spec(write_case(tmp_path, op, i)).graph
    assert op in {n.op for n in graph.nodes}
    assert len(graph.inputs) >= 1 and len(graph.outputs) >= 1


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_live_model_matches_ir(op: str, i: int, tmp_path: Path) -> None:
    import numpy as np

    compiled = compile_spec(write_case(tmp_path, op, i))
    graph = compiled.graph
    model = keras_backend.build(compiled)
    check_model_against_graph(model, graph)
    xs = inputs_for(graph, 3, 0)  # normal values, or token ids (an input of dtype int)
    ys = _flat(model(xs[0] if len(xs) == 1 else xs, training=False))
    for y, name in zip(ys, graph.outputs, strict=True):
        assert tuple(y.shape) == (3, *graph.node(name).shape)
        assert np.isfinite(np.asarray(y)).all()


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_generated_source_matches_ir(op: str, i: int, tmp_path: Path) -> None:
    spec = write_case(tmp_path, op, i)
    result = compile_to_file(spec, "keras", tmp_path / "out")  # verifies counts on the way
    assert result.changed
    assert result.path.read_text(encoding="utf-8") == result.source
    module = import_source(result.source, result.path.stem)
    assert result.compiled.graph.counts.as_dict() == module.PARAMS
    check_model_against_graph(module.build_model(), result.compiled.graph)


@pytest.fixture(scope="module")
def op_case_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """Every case rendered to source (no Keras needed: render only, no verification)."""
    tmp = tmp_path_factory.mktemp("op_cases")
    return {
        (op, i): compile_to_file(write_case(tmp, op, i), "keras", tmp / "out", verify=False).path
        for op, cases in OP_CASES.items()
        for i in range(len(cases))
    }


@pytest.mark.parametrize(("op", "i"), case_params())
def test_op_case_generated_source_passes_ruff(
    op: str, i: int, op_case_sources: dict[tuple[str, int], Path]
) -> None:
    path = op_case_sources[op, i]
    config = ("--config", str(ROOT / "pyproject.toml"), "--no-cache")
    for command in (["check"], ["format", "--check", "--diff"]):
        proc = subprocess.run([RUFF, *command, *config, path], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# -- 4. byte-identical output ------------------------------------------------------------------
def test_compile_is_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    runs = [("1", "a", "--no-verify"), ("2", "b", "--no-verify"), ("3", "c", None)]
    texts = []
    for seed, sub, flag in runs:
        args = ["compile", SEED_REL, "--backend", "keras", "-o", tmp_path / sub]
        proc = cli(*args, *([flag] if flag else []), seed=seed)
        assert proc.returncode == 0, proc.stderr
        texts.append((tmp_path / sub / "resnet_preact_keras.py").read_bytes())
    assert (
        "verified: keras counts and output shapes equal the IR" in proc.stdout
    )  # the last run verified
    assert texts[0] == texts[1] == texts[2]
    assert without_spec_path(texts[0]) == without_spec_path(GOLDEN.read_bytes())


# -- 5. --check keeps generated/ fresh --------------------------------------------------------
@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_committed_generated_file_is_up_to_date(spec: str, in_root: Path) -> None:
    result = compile_to_file(f"specs/{spec}", "keras", "generated", check=True)
    assert result.path == Path("generated") / f"{Path(spec).stem}_keras.py"
    assert not result.changed


def test_check_reports_a_stale_file_and_leaves_it(tmp_path: Path, in_root: Path, archc) -> None:
    target = compile_to_file(SEED_REL, "keras", tmp_path, verify=False).path
    ok = archc("compile", SEED_REL, "--backend", "keras", "-o", tmp_path, "--check")
    assert ok.exit_code == 0, ok.output
    assert "is up to date" in ok.output

    fresh = target.read_text(encoding="utf-8")
    stale = fresh.replace("nb_classes: int = 5", "nb_classes: int = 6")
    assert stale != fresh
    target.write_text(stale, encoding="utf-8")
    before = target.read_bytes()
    result = archc("compile", SEED_REL, "--backend", "keras", "-o", tmp_path, "--check")
    assert result.exit_code == 1
    assert "stale" in result.output and "E093" in result.output
    assert "nb_classes: int = 6" in result.output  # the diff shows what differs
    assert target.read_bytes() == before
    with pytest.raises(VerificationError, match="stale"):
        compile_to_file(SEED_REL, "keras", tmp_path, check=True)


def test_check_reports_a_missing_file(tmp_path: Path, in_root: Path, archc) -> None:
    result = archc("compile", SEED_REL, "--backend", "keras", "-o", tmp_path, "--check")
    assert result.exit_code == 1
    assert "missing" in result.output
    assert list(tmp_path.iterdir()) == []


# -- 6. nothing lost -----------------------------------------------------------------------------
OLD = "# the previous generated file\n"


def test_failed_verification_keeps_the_old_file(
    tmp_path: Path, in_root: Path, monkeypatch: pytest.MonkeyPatch, archc
) -> None:
    real_layer_counts = keras_backend.layer_counts

    def wrong_counts(model: Any) -> Counts:
        return Counts(1, 1, 0)

    def wrong_layer_counts(model: Any) -> dict[str, Counts]:
        out = dict(real_layer_counts(model))
        out["fc10"] = Counts(1, 1, 0)
        return out

    monkeypatch.setattr(keras_backend, "counts", wrong_counts)
    monkeypatch.setattr(keras_backend, "layer_counts", wrong_layer_counts)
    target = tmp_path / "resnet_preact_keras.py"
    target.write_text(OLD, encoding="utf-8")

    with pytest.raises(VerificationError) as info:
        compile_to_file(SEED_REL, "keras", tmp_path)
    message = info.value.diagnostics[0].format()
    assert "E091" in message
    assert "fc10: IR {'total': 645, 'trainable': 645, 'non_trainable': 0}" in message
    assert "{'total': 1, 'trainable': 1, 'non_trainable': 0}" in message
    assert "conv0:" not in message  # only the layers that differ

    result = archc("compile", SEED_REL, "--backend", "keras", "-o", tmp_path)
    assert result.exit_code == 1
    assert "per-layer differences" in result.output and "fc10: IR" in result.output
    assert "Traceback" not in result.output
    assert target.read_text(encoding="utf-8") == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp file left


def test_spec_error_keeps_the_old_file(tmp_path: Path, archc) -> None:
    spec = tmp_path / "resnet_preact.yaml"
    text = SEED.read_text(encoding="utf-8")
    spec.write_text(text.replace("units: ", "unitz: "), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "resnet_preact_keras.py"
    target.write_text(OLD, encoding="utf-8")
    result = archc("compile", spec, "--backend", "keras", "-o", out)
    assert result.exit_code == 1
    assert "unitz" in result.output
    assert f"{spec.name}:" in result.output  # located in the spec
    assert target.read_text(encoding="utf-8") == OLD
    assert sorted(p.name for p in out.iterdir()) == [target.name]
    with pytest.raises(SpecError):
        compile_to_file(spec, "keras", out)
    assert target.read_text(encoding="utf-8") == OLD


def test_unwritable_output_dir_is_a_clean_error(tmp_path: Path) -> None:
    blocker = tmp_path / "some_file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    out = blocker / "sub"
    proc = cli("compile", SEED_REL, "--backend", "keras", "-o", out, "--no-verify")
    assert proc.returncode == 1, proc.stderr
    assert "cannot write" in proc.stderr and "E095" in proc.stderr
    assert str(out) in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr
    assert blocker.read_text(encoding="utf-8") == "not a folder\n"


# -- 7. the generated file is lint- and format-clean -------------------------------------------
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_golden_file_passes_ruff(command: list[str]) -> None:
    proc = subprocess.run(
        [RUFF, *command, "--no-cache", str(GOLDEN)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- 8. the CLI end to end -----------------------------------------------------------------------
def test_cli_compile_writes_verifies_and_reports(tmp_path: Path, in_root: Path, archc) -> None:
    result = archc("compile", SEED_REL, "--backend", "keras", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    target = tmp_path / "resnet_preact_keras.py"
    assert (
        f"{target} (written; {SEED_MESSAGE}; verified: keras counts and output shapes equal the IR)"
        in (result.output)
    )
    assert without_spec_path(target.read_bytes()) == without_spec_path(GOLDEN.read_bytes())

    again = archc("compile", SEED_REL, "--backend", "keras", "-o", tmp_path)
    assert again.exit_code == 0, again.output
    assert "(unchanged;" in again.output and SEED_MESSAGE in again.output


def test_cli_compile_set_override(tmp_path: Path, in_root: Path, archc) -> None:
    result = archc(
        "compile", SEED_REL, "--backend", "keras", "-o", tmp_path, "--set", "nb_classes=10"
    )
    assert result.exit_code == 0, result.output
    assert "96,778 params: 94,602 trainable, 2,176 non-trainable" in result.output
    text = (tmp_path / "resnet_preact_keras.py").read_text(encoding="utf-8")
    assert "nb_classes: int = 10" in text
    assert '"total": 96778' in text


def test_cli_compile_expect_mismatch_names_the_key(tmp_path: Path, archc) -> None:
    spec = tmp_path / "resnet_preact.yaml"
    text = SEED.read_text(encoding="utf-8")
    assert "expect: {total: 96133," in text
    spec.write_text(text.replace("total: 96133", "total: 96134"), encoding="utf-8")
    out = tmp_path / "out"
    result = archc("compile", spec, "--backend", "keras", "-o", out)
    assert result.exit_code == 1
    assert "expect.total is 96,134" in result.output
    assert "expect.trainable" not in result.output
    assert not out.exists() or not any(out.iterdir())
