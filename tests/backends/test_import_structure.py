"""`archc import keras` recovers structure: repeated, numbered subgraphs as blocks in repeats.

References are independent of archc: Keras' own models (keras.applications' count_params()
and layer names; the proof compares the original Keras model's outputs with the generated
PyTorch model's after its weights moved), the hand-written specs in specs/ for the line
budget (the issue's acceptance: at most twice their lines), and the YAML the importer wrote,
read back with a YAML parser to find the blocks and repeats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from archc.compiler.diagnostics import SpecError

keras = pytest.importorskip("keras")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> int:
    return path.read_text().count("\n")


def _leaf_names(model: Any) -> set[str]:
    return {layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)}


def _import(
    source: str, tmp_path: Path, name: str = "imported.yaml", **kw: Any
) -> tuple[Any, Any, Path]:
    from archc.backends.importer import import_keras

    spec = tmp_path / name
    written, model = import_keras(source, spec, **kw)
    return written, model, spec


def _json(model: Any, tmp_path: Path) -> str:
    path = tmp_path / f"{model.name}.json"
    path.write_text(model.to_json())
    return str(path)


def _calls(items: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Block calls with the depth of repeats around them."""
    out: list[tuple[int, dict[str, Any]]] = []
    for item in items:
        if "repeat" in item:
            out += [(d + 1, c) for d, c in _calls(item["body"])]
        elif "block" in item:
            out.append((0, item))
    return out


def _same_model(spec: Path, model: Any) -> Any:
    """The spec's counts are Keras' count_params() (and its split), its layer names Keras'."""
    from archc.compiler.api import compile_spec

    graph = compile_spec(str(spec)).graph
    assert graph.counts.total == model.count_params()
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert graph.counts.trainable == trainable
    assert {n.name for n in graph.nodes if n.op != "input"} == _leaf_names(model)
    return graph


# -- a small model: every rule of the recovery, proven end to end -----------------------------


def _staged(stages: tuple[int, ...] = (2, 3, 2), widths: tuple[int, ...] = (8, 16, 24)) -> Any:
    """Bottleneck-like residual units named stage{s}_unit{i}_...: the first unit of a stage
    strides (from the second stage) and projects its shortcut; the others add their input."""
    layers = keras.layers
    x = inp = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for s, (count, width) in enumerate(zip(stages, widths, strict=True), start=1):
        for i in range(1, count + 1):
            p = f"stage{s}_unit{i}_"
            stride = 2 if i == 1 and s > 1 else 1
            y = layers.Conv2D(width, 3, strides=stride, padding="same", name=p + "conv_a")(x)
            y = layers.BatchNormalization(name=p + "bn_a")(y)
            y = layers.ReLU(name=p + "relu_a")(y)
            y = layers.Conv2D(width, 3, padding="same", name=p + "conv_b")(y)
            y = layers.BatchNormalization(name=p + "bn_b")(y)
            if i == 1:
                x = layers.Conv2D(width, 1, strides=stride, name=p + "proj")(x)
            x = layers.Add(name=p + "add")([x, y])
            x = layers.ReLU(name=p + "out")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(5, activation="softmax", name="head")(x)
    return keras.Model(inp, x, name="staged")


def test_key_of_reads_numbered_prefixes() -> None:
    from archc.backends.import_structure import key_of

    key = key_of("conv2_block1_1_conv", 2)
    assert key is not None and key.prefix == "conv2_block1_" and key.values == (2, 1)
    assert key.skeleton == "conv{}_block{}_"
    key = key_of("block2b_expand_conv", 2)  # EfficientNet: stage 2, block b
    assert key is not None and key.prefix == "block2b_" and key.values == (2, 1)
    assert key.kinds == ("n", "a")
    assert key_of("block_16_project_BN", 1).prefix == "block_16_"  # type: ignore[union-attr]
    assert key_of("conv2_block1_1_conv", 1).prefix == "conv2_"  # type: ignore[union-attr]
    assert key_of("Conv1", 1) is None  # nothing after the number
    assert key_of("stem_conv", 1) is None
    assert key_of("block1a_bn", 1) is None  # "block1" is followed by a letter, not "_"


def test_staged_model_becomes_one_block_in_two_loops_and_is_proven(tmp_path: Path) -> None:
    from archc.backends.importer import prove

    model = _staged()
    written, original, spec = _import(_json(model, tmp_path), tmp_path)
    doc = yaml.safe_load(spec.read_text())
    assert written.blocks == [("stage_unit", 7)] and list(doc["blocks"]) == ["stage_unit"]
    (block,) = doc["blocks"].values()
    body = block["body"]
    assert len(body) == 8  # the union of a unit with and one without the projection
    proj = next(b for b in body if b["name"] == "${prefix}proj")
    flag = proj["when"][2:-1]  # "${with_proj}"
    assert block["args"][flag] == {"type": "bool"}
    add = next(b for b in body if b["op"] == "add")
    assert any(flag in ref for ref in add["inputs"])  # the shortcut: proj or the input
    ((depth, call),) = _calls(doc["layers"])
    assert depth == 2 and call["args"]["prefix"] == "stage${s}_unit${i}_"
    assert call["args"][flag] == "${i == 1}"
    outer = next(item for item in doc["layers"] if "repeat" in item)
    assert (outer["repeat"], outer["start"]) == (3, 1)
    assert doc["params"]["stage_blocks"]["default"] == [2, 3, 2]
    # the widths a user changes are parameters
    assert [8, 16, 24] in [p["default"] for p in doc["params"].values()]
    _same_model(spec, model)
    proof = prove(spec, original, tmp_path / "gen")
    assert [s.name for s in proof.steps] == ["check", "compile", "verify", "weights", "outputs"]
    assert proof.max_abs_diff <= 1e-5 * proof.max_abs_output


def test_flat_keeps_one_layer_a_line(tmp_path: Path, archc: Any) -> None:
    model = _staged()
    source = _json(model, tmp_path)
    flat = tmp_path / "flat.yaml"
    result = archc("import", "keras", source, "-o", flat, "--flat")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(flat.read_text())
    assert "blocks" not in doc and not any("repeat" in item for item in doc["layers"])
    assert len(doc["layers"]) == len(_leaf_names(model))
    structured = tmp_path / "structured.yaml"
    result = archc("import", "keras", source, "-o", structured)
    assert result.exit_code == 0, result.output
    assert "1 block: stage_unit x7" in result.stdout
    assert _lines(structured) < _lines(flat)
    _same_model(flat, model)
    _same_model(structured, model)


def test_a_wrong_recovery_falls_back_to_the_flat_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mutant call-site synthesis that gives every block the first block's strides: the
    counts stay the model's (a global pool before the head), so only the comparison with the
    flat graph (attributes, shapes) tells; the importer then writes the flat form."""
    from archc.backends import import_structure

    synthesize = import_structure.Synth.expression

    def first_strides(self: Any, name: str, type_: str, values: list[Any]) -> Any:
        if name == "strides":
            return next(v for v in values if v is not None)
        return synthesize(self, name, type_, values)

    monkeypatch.setattr(import_structure.Synth, "expression", first_strides)
    model = _staged()
    written, _, spec = _import(_json(model, tmp_path), tmp_path)
    assert written.blocks == []
    assert "blocks:" not in spec.read_text()
    _same_model(spec, model)


def test_a_recovery_that_breaks_leaves_the_flat_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structure is an optional rendering: a recovery that fails on a graph it did not foresee
    writes the flat spec, never a traceback."""
    from archc.backends import import_structure

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise IndexError("unforeseen")

    monkeypatch.setattr(import_structure, "recover", broken)
    model = _staged()
    written, _, spec = _import(_json(model, tmp_path), tmp_path)
    assert written.blocks == [] and "blocks:" not in spec.read_text()
    _same_model(spec, model)


def test_units_reading_inside_another_unit_stay_flat(tmp_path: Path) -> None:
    """A layer reading a layer inside the unit before it (not its output) cannot be a block's
    input: those units are left flat, and the spec is still the model."""
    layers = keras.layers
    x = inp = keras.Input((8,), name="v")
    inner = None
    for i in range(1, 4):
        a = layers.Dense(4, name=f"unit{i}_a")(x)
        b = layers.Dense(4, name=f"unit{i}_b")(
            a if inner is None else layers.Add(name=f"unit{i}_mix")([a, inner])
        )
        inner = a
        x = b
    model = keras.Model(inp, x, name="tangled")
    written, _, spec = _import(_json(model, tmp_path), tmp_path)
    assert written.blocks == []
    _same_model(spec, model)


def _unit(x: Any, p: str, units: int = 8) -> Any:
    layers = keras.layers
    y = layers.Dense(units, name=p + "a")(x)
    y = layers.BatchNormalization(name=p + "bn")(y)
    y = layers.ReLU(name=p + "relu")(y)
    return layers.Dense(units, name=p + "b")(y)


def test_zero_pads_written_three_ways_share_one_argument(tmp_path: Path) -> None:
    """A unit's zero pad that is 1 in some units and ((0, 1), (0, 1)) or [1, 2] in others
    (as EfficientNetB2's, whose pads follow each stage's size) is one argument, not a reason
    to leave the model flat."""
    layers = keras.layers
    x = inp = keras.Input((16, 16, 4), name="image")
    pads: list[Any] = [1, ((0, 1), (0, 1)), 1, (1, 2), ((1, 2), (0, 1)), 1]
    for i, pad in enumerate(pads, start=1):
        y = layers.ZeroPadding2D(pad, name=f"unit{i}_pad")(x)
        y = layers.Conv2D(4, 3, name=f"unit{i}_conv")(y)
        y = layers.BatchNormalization(name=f"unit{i}_bn")(y)
        x = layers.ReLU(name=f"unit{i}_relu")(y)
    model = keras.Model(inp, x, name="pads")
    written, _, spec = _import(_json(model, tmp_path), tmp_path)
    assert written.blocks == [("unit", 6)]
    _same_model(spec, model)


def test_a_run_read_from_outside_is_left_flat_and_the_others_kept(tmp_path: Path) -> None:
    """A layer outside the repeats reading a run's output by name (ResNet50V2's max-pool
    shortcut) cannot be generated; that run stays flat, the next run is still a block."""
    layers = keras.layers
    x = inp = keras.Input((8,), name="v")
    for i in range(1, 5):
        x = _unit(x, f"first{i}_")
    side = layers.Dense(8, name="side")(x)  # reads the run's output by name
    x = layers.Add(name="join")([x, side])
    for i in range(1, 5):
        x = _unit(x, f"second{i}_", 6)
    model = keras.Model(inp, x, name="side_read")
    written, _, spec = _import(_json(model, tmp_path), tmp_path)
    assert written.blocks == [("second", 4)]
    _same_model(spec, model)


# -- keras.applications ------------------------------------------------------------------------


def test_resnet50_reads_like_the_hand_written_spec(tmp_path: Path) -> None:
    """keras.applications:ResNet50 as built by Keras: at most twice specs/resnet50.yaml's
    lines, its bottleneck a block (three convolutions, a projected shortcut under `when`)
    called in a repeat in a repeat, counts and names Keras'."""
    written, model, spec = _import("keras.applications:ResNet50", tmp_path)
    assert _lines(spec) <= 2 * _lines(ROOT / "specs" / "resnet50.yaml")
    doc = yaml.safe_load(spec.read_text())
    ((name, block),) = doc["blocks"].items()
    convs = [b for b in block["body"] if b["op"] == "conv2d"]
    assert len(convs) == 4 and sum("when" in c for c in convs) == 1
    assert [b["op"] for b in block["body"]].count("add") == 1
    ((depth, call),) = _calls(doc["layers"])
    assert depth == 2 and call["block"] == name
    assert written.blocks == [(name, 16)]
    assert doc["params"]["stage_blocks"]["default"] == [3, 4, 6, 3]
    _same_model(spec, model)


def test_efficientnet_b0_has_its_mbconv_block(tmp_path: Path) -> None:
    written, model, spec = _import("keras.applications:EfficientNetB0", tmp_path)
    assert _lines(spec) <= 2 * _lines(ROOT / "specs" / "efficientnet.yaml")
    doc = yaml.safe_load(spec.read_text())
    ((name, block),) = doc["blocks"].items()
    ops = [b["op"] for b in block["body"]]
    # MBConv: expansion, depthwise conv, squeeze-excite, projection, residual
    for op in ("depthwise_conv2d", "global_avg_pool2d", "multiply", "add"):
        assert op in ops
    optional = {b["name"].removeprefix("${prefix}") for b in block["body"] if "when" in b}
    assert {"expand_conv", "add"} <= optional  # expansion 1 in stage 1; residual when shapes allow
    assert written.blocks == [(name, 16)]
    assert doc["params"]["stage_blocks"]["default"] == [1, 2, 2, 3, 3, 4, 1]
    _same_model(spec, model)


def _prove_small(model: Any, tmp_path: Path) -> tuple[Any, Any]:
    from archc.backends.importer import prove

    written, original, spec = _import(_json(model, tmp_path), tmp_path)
    _same_model(spec, model)
    proof = prove(spec, original, tmp_path / "gen")
    assert proof.steps[-1].name == "outputs"
    assert proof.max_abs_diff <= 1e-5 * proof.max_abs_output
    return written, proof


def test_resnet50_structured_is_proven(tmp_path: Path) -> None:
    """keras.applications' ResNet50 (at 64x64, 10 classes, to keep the test short): the
    structured spec compiles, verifies and equals the original model with its weights moved."""
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    written, _ = _prove_small(model, tmp_path)
    assert written.blocks == [("conv_block", 16)]


def test_efficientnet_b0_structured_is_proven(tmp_path: Path) -> None:
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classes=10)
    written, _ = _prove_small(model, tmp_path)
    assert written.blocks == [("block", 16)]


def test_mobilenet_v2_structured_is_proven(tmp_path: Path) -> None:
    """One loop (block_1_ .. block_16_), strides and residuals as arguments and flags."""
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    written, _ = _prove_small(model, tmp_path)
    assert written.blocks == [("block", 16)]


def test_densenet121_shares_one_block_between_its_stages(tmp_path: Path) -> None:
    """Four dense stages split by transitions: four repeats of one block."""
    written, model, spec = _import("keras.applications:DenseNet121", tmp_path)
    assert written.blocks == [("conv_block", 58)]
    doc = yaml.safe_load(spec.read_text())
    assert len(_calls(doc["layers"])) == 4
    _same_model(spec, model)


def test_import_error_unchanged_by_structure(tmp_path: Path, archc: Any) -> None:
    """A Lambda is still refused with its name, before any structure is looked for."""
    x = inp = keras.Input((8,), name="x")
    x = keras.layers.Dense(4, name="unit1_fc")(x)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="unit1_double")(x)
    path = tmp_path / "lam.json"
    path.write_text(keras.Model(inp, x).to_json())
    result = archc("import", "keras", path, "-o", tmp_path / "o.yaml")
    assert result.exit_code == 1 and "layer 'unit1_double' (Lambda)" in result.stderr
    with pytest.raises(SpecError):
        _import(str(path), tmp_path)
