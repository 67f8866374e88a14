"""`archc import keras`: a Keras model as a spec, and the round trip proven.

The references are Keras' own: its models' parameter counts and layer names, and its outputs
(the proof compares the original Keras model with the generated PyTorch model after the
original's weights moved through a Keras weights file). A wrong import (a relu6 read as relu)
must fail the proof; a layer archc has no op for is refused with its name and class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archc.compiler.diagnostics import SpecError

keras = pytest.importorskip("keras")
pytest.importorskip("torch")


def _keras_counts(model: Any) -> tuple[int, int, int]:
    t = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    n = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return t + n, t, n


def _leaf_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += [x for x in _leaf_layers(layer)]
        elif not isinstance(layer, keras.layers.InputLayer):
            out.append(layer)
    return out


def _mixed_model() -> Any:
    """Most layer kinds keras.applications uses, a nested Sequential, keras.ops on tensors,
    and the two applications' own classes (ConvNeXt's LayerScale, InceptionResNetV2's
    CustomScaleLayer)."""
    from keras.src.applications.convnext import LayerScale
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    layers = keras.layers
    x = inp = keras.Input((17, 15, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(x)
    x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="norm")(x)
    stem = keras.Sequential(
        [
            keras.Input((17, 15, 3)),
            layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv"),
            layers.LayerNormalization(epsilon=1e-6, name="stem_ln"),
        ],
        name="stem",
    )
    x = stem(x)
    a = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    a = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="dw_bn")(a)
    a = layers.ReLU(6.0, name="dw_relu6")(a)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(a)
    gate = layers.Conv2D(8, 1, name="se_conv")(gate)
    gate = keras.ops.multiply(layers.ReLU(6.0, name="se_relu6")(gate + 3.0), 1.0 / 6.0)
    a = layers.Multiply(name="se_mul")([a, gate])
    b = layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    b = layers.LeakyReLU(negative_slope=0.1, name="leaky")(b)
    x = CustomScaleLayer(0.17, name="scaled")([a, b])
    x = LayerScale(1e-6, 8, name="layer_scale")(x)
    x = layers.Concatenate(name="cat")([x, layers.Subtract(name="sub")([a, b])])
    x = layers.ZeroPadding2D(((0, 1), (1, 2)), name="pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name="up")(x)
    x = layers.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = layers.AveragePooling2D(2, padding="same", name="avg")(x)
    x = layers.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="drop")(x)
    x = layers.Activation("hard_silu", name="hswish")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, x, name="mixed")


def _prove(model: Any, tmp_path: Path, source: str) -> tuple[Any, Any, str]:
    from archc.backends.importer import import_keras, prove

    spec = tmp_path / "imported.yaml"
    written, original = import_keras(source, spec)
    proof = prove(spec, original, tmp_path, report=lambda s: None)
    return written, proof, spec.read_text()


def test_mixed_model_round_trip_is_proven(tmp_path: Path) -> None:
    """A config JSON: counts and layer names are Keras', and the proof's every step passes
    (the original Keras model equals the generated PyTorch model with its weights moved)."""
    from archc.compiler.api import compile_spec

    model = _mixed_model()
    path = tmp_path / "mixed.json"
    path.write_text(model.to_json())
    _, proof, text = _prove(model, tmp_path, str(path))
    assert [s.name for s in proof.steps] == ["check", "compile", "verify", "weights", "outputs"]
    assert proof.max_abs_diff <= 1e-5 * proof.max_abs_output
    graph = compile_spec(str(tmp_path / "imported.yaml")).graph
    total, trainable, non_trainable = _keras_counts(model)
    assert (graph.counts.total, graph.counts.trainable) == (total, trainable)
    assert graph.counts.non_trainable == non_trainable
    names = {n.name for n in graph.nodes if n.op != "input"}
    keras_names = {layer.name for layer in _leaf_layers(model)}
    assert keras_names <= names  # every layer kept; the rest are keras.ops nodes
    assert "stem_conv" in text and "stem:" not in text  # the Sequential flattened
    assert "weights file" in proof.steps[3].result


def test_mobilenet_v3_small_keras_file_round_trip(tmp_path: Path) -> None:
    """keras.applications' MobileNetV3Small at 96x96, saved as a .keras file."""
    model = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None)
    path = tmp_path / "mnv3.keras"
    model.save(path)
    written, proof, text = _prove(model, tmp_path, str(path))
    assert proof.steps[-1].name == "outputs"
    assert proof.max_abs_diff <= 1e-5 * proof.max_abs_output
    assert written.layers == len(_leaf_layers(model)) + 18  # + the keras.ops nodes (hard sigmoid)
    assert 'input_shape: {type: "list[int]", default: [96, 96, 3]' in text
    assert "classes: {type: int, default: 1000" in text
    total = _keras_counts(model)[0]
    assert f"expect: {{total: {total}," in text
    longest = max(len(line) for line in text.splitlines())
    assert longest <= 100, longest  # one layer a line, readable


def test_import_is_deterministic(tmp_path: Path) -> None:
    from archc.backends.importer import import_keras

    path = tmp_path / "m.json"
    path.write_text(_mixed_model().to_json())
    import_keras(str(path), tmp_path / "a.yaml")
    import_keras(str(path), tmp_path / "b.yaml")
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()


def test_a_wrong_import_fails_the_proof(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutant importer that puts InceptionResNetV2's residual scale on the wrong input
    (x * 0.17 + branch instead of x + branch * 0.17): counts and names stay right, so only
    the outputs can tell, and the proof must."""
    from archc.backends import importer

    key = ("keras.src.applications.inception_resnet_v2", "CustomScaleLayer")
    monkeypatch.setitem(
        importer.APPLICATION_CLASSES,
        key,
        lambda layer: ("add", {"scales": [float(layer.get("scale")), 1.0]}),
    )
    model = _mixed_model()
    path = tmp_path / "mixed.json"
    path.write_text(model.to_json())
    with pytest.raises(SpecError) as info:
        _prove(model, tmp_path, str(path))
    assert info.value.diagnostics[0].code == "E173"
    assert "outputs differ" in info.value.diagnostics[0].message


def _lambda_model() -> Any:
    x = inp = keras.Input((8,), name="x")
    x = keras.layers.Dense(4, name="fc")(x)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double_it")(x)
    return keras.Model(inp, x)


def test_lambda_layer_is_refused_with_its_name_and_location(tmp_path: Path, archc: Any) -> None:
    path = tmp_path / "lam.json"
    text = json.dumps(json.loads(_lambda_model().to_json()), indent=1)
    path.write_text(text)
    out = tmp_path / "out.yaml"
    result = archc("import", "keras", path, "-o", out)
    assert result.exit_code == 1, result.output
    lines = text.splitlines()
    line = next(i for i, x in enumerate(lines, 1) if '"name": "double_it"' in x)
    assert f"{path}:{line}:" in result.stderr
    assert "layer 'double_it' (Lambda)" in result.stderr
    assert "error[E170]" in result.stderr and "hint:" in result.stderr
    assert "Lambda" in lines[line - 3] + lines[line - 2]  # the location is the Lambda's entry
    assert not out.exists()  # nothing written


def test_custom_class_and_unsupported_value_are_refused(tmp_path: Path, archc: Any) -> None:
    @keras.saving.register_keras_serializable(package="test_import")
    class Twice(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2

    x = inp = keras.Input((8, 8, 3), name="img")
    x = Twice(name="twice")(x)
    path = tmp_path / "custom.json"
    path.write_text(keras.Model(inp, x).to_json())
    result = archc("import", "keras", path, "-o", tmp_path / "o.yaml")
    assert result.exit_code == 1
    assert "layer 'twice' (Twice)" in result.stderr and "error[E170]" in result.stderr

    x = inp = keras.Input((8, 8, 3), name="img")
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", name="cf")(x)
    path = tmp_path / "cf.json"
    path.write_text(keras.Model(inp, x).to_json())
    result = archc("import", "keras", path, "-o", tmp_path / "o.yaml")
    assert result.exit_code == 1
    assert "layer 'cf' (Conv2D)" in result.stderr and "channels_first" in result.stderr


def test_unknown_application_and_bad_file(tmp_path: Path, archc: Any) -> None:
    result = archc("import", "keras", "keras.applications:ResNet51", "-o", tmp_path / "o.yaml")
    assert result.exit_code == 1 and "ResNet50" in result.stderr  # did you mean
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": [\n  oops]}')
    result = archc("import", "keras", bad, "-o", tmp_path / "o.yaml")
    assert result.exit_code == 1 and f"{bad}:2:" in result.stderr


def test_a_shared_value_whose_op_default_is_null_stays_on_its_items(tmp_path: Path) -> None:
    """Three dropouts with a noise shape and one without: the noise shape must not become a
    spec default that the fourth would have to set back to null (the Keras model generated
    from such a spec did not build)."""
    from archc.backends.compile import compile_to_file
    from archc.backends.importer import import_keras

    x = inp = keras.Input((6,), name="v")
    for i in range(3):
        x = keras.layers.Dropout(0.1, noise_shape=(None, 1), name=f"shared_{i}")(x)
    x = keras.layers.Dropout(0.1, name="plain")(x)
    x = keras.layers.Dense(2, name="out")(x)
    path = tmp_path / "drops.json"
    path.write_text(keras.Model(inp, x).to_json())
    spec = tmp_path / "drops.yaml"
    import_keras(str(path), spec)
    text = spec.read_text()
    assert "noise_shape: null" not in text
    assert text.count("noise_shape: [1]") == 3
    compile_to_file(spec, "keras", tmp_path)  # builds and checks the model against the IR


def test_cli_prove_reports_each_step(tmp_path: Path, archc: Any) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(_mixed_model().to_json())
    spec = tmp_path / "mixed.yaml"
    result = archc("import", "keras", path, "-o", spec, "--prove", "--out-dir", tmp_path / "gen")
    assert result.exit_code == 0, result.output
    steps = [line.split(":")[0] for line in result.stdout.splitlines()[1:]]
    assert steps == ["check", "compile", "verify", "weights", "outputs"]
    assert (tmp_path / "gen" / "mixed_torch.py").is_file()
    assert (tmp_path / "gen" / "mixed_keras.py").is_file()
