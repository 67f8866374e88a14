"""`archc weights`: Keras weight files <-> PyTorch state dicts of a spec's model.

Expectations come from the frameworks: the Keras arrays are those of the seed's own Keras
code (tests/reference_models.py), randomised here; the PyTorch model is the committed
generated file, loaded with load_state_dict(strict=True); shapes in error messages are the
frameworks' own."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SEED, SPECS
from tests.reference_models import seed_keras3

ATOL = 1e-5


def randomised(model: Any, seed: int) -> Any:
    """Random weights and BN statistics (positive variances), float32 as Keras keeps them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = layer.get_weights()
        if values:
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape).astype(v.dtype) for v in values])
    return model


def torch_seed(**params: Any) -> Any:
    return importlib.import_module("generated.resnet_preact_torch").build_model(**params).eval()


def torch_outputs(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()


def same_bytes(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_weights(model: Any, original: dict[str, list[np.ndarray]]) -> None:
    for layer in model.layers:
        values = layer.get_weights()
        assert len(values) == len(original[layer.name]), layer.name
        for got, want in zip(values, original[layer.name], strict=True):
            assert same_bytes(got, want), layer.name


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The seed's Keras model (its own code) with random weights, saved both ways."""
    folder = tmp_path_factory.mktemp("seed")
    model = randomised(seed_keras3(), seed=1)
    model.save_weights(folder / "seed.weights.h5")
    model.save(folder / "seed.keras")
    x = np.random.default_rng(2).standard_normal((4, 32, 32, 3)).astype(np.float32)
    return {
        "folder": folder,
        "h5": folder / "seed.weights.h5",
        "keras": folder / "seed.keras",
        "weights": {layer.name: layer.get_weights() for layer in model.layers},
        "x": x,
        "y": np.asarray(model(x, training=False)),
    }


# -- round trips ------------------------------------------------------------------------------
def test_weights_h5_to_safetensors_and_back(archc, seed, tmp_path) -> None:
    from safetensors.torch import load_file

    st = tmp_path / "seed.safetensors"
    result = archc("weights", SEED, "--from", seed["h5"], "--to", st)
    assert result.exit_code == 0, result.output
    assert str(st) in result.output

    model = torch_seed()
    model.load_state_dict(load_file(st), strict=True)
    np.testing.assert_allclose(torch_outputs(model, seed["x"]), seed["y"], rtol=0, atol=ATOL)

    back = tmp_path / "back.weights.h5"
    result = archc("weights", SEED, "--from", st, "--to", back)
    assert result.exit_code == 0, result.output
    keras_model = seed_keras3()
    keras_model.load_weights(back)
    assert_same_weights(keras_model, seed["weights"])
    assert files_in(tmp_path) == ["back.weights.h5", "seed.safetensors"]  # no temp files


def test_keras_file_to_pt_and_back(archc, seed, tmp_path) -> None:
    import keras
    import torch

    pt = tmp_path / "seed.pt"
    result = archc("weights", SEED, "--from", seed["keras"], "--to", pt)
    assert result.exit_code == 0, result.output
    model = torch_seed()
    model.load_state_dict(torch.load(pt, weights_only=True), strict=True)
    np.testing.assert_allclose(torch_outputs(model, seed["x"]), seed["y"], rtol=0, atol=ATOL)

    back = tmp_path / "back.keras"
    result = archc("weights", SEED, "--from", pt, "--to", back)
    assert result.exit_code == 0, result.output
    keras_model = keras.models.load_model(back)  # a whole model: Keras rebuilds it
    assert_same_weights(keras_model, seed["weights"])
    got = np.asarray(keras_model(seed["x"], training=False))
    np.testing.assert_allclose(got, seed["y"], rtol=0, atol=1e-6)


def test_python_api(seed, tmp_path) -> None:
    import torch

    from archc.backends.proof.weights import convert

    pth = tmp_path / "seed.pth"
    done = convert(SEED, seed["h5"], pth, {"nb_classes": 5})
    assert done.target == pth and done.target_format.framework == "torch"
    model = torch_seed()
    model.load_state_dict(torch.load(pth, weights_only=True), strict=True)
    np.testing.assert_allclose(torch_outputs(model, seed["x"]), seed["y"], rtol=0, atol=ATOL)


# -- a file of another model ------------------------------------------------------------------
def test_keras_weights_of_other_classes_name_the_layer_and_both_shapes(archc, tmp_path) -> None:
    other = seed_keras3(nb_classes=10)
    other.save_weights(tmp_path / "ten.weights.h5")
    theirs = other.get_layer("fc10").get_weights()[0].shape
    ours = seed_keras3().get_layer("fc10").get_weights()[0].shape
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"an older file")

    result = archc("weights", SEED, "--from", tmp_path / "ten.weights.h5", "--to", out)
    assert result.exit_code == 1, result.output
    line = next(x for x in result.output.splitlines() if "fc10" in x and "kernel" in x)
    assert line.startswith(f"{tmp_path / 'ten.weights.h5'}: error[E151]: ")
    assert str(tuple(theirs)) in line and str(tuple(ours)) in line
    assert "hint:" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == b"an older file"
    assert files_in(tmp_path) == ["out.safetensors", "ten.weights.h5"]

    # the same file is right for the spec with its parameters
    result = archc("weights", SEED, "--set", "nb_classes=10", "--from", tmp_path / "ten.weights.h5",
                   "--to", out)  # fmt: skip
    assert result.exit_code == 0, result.output


def test_state_dict_of_other_classes_and_stages(archc, tmp_path) -> None:
    from safetensors.torch import save_file

    state = torch_seed(nb_classes=10, num_stages=6).state_dict()
    ours = torch_seed().state_dict()
    save_file(state, tmp_path / "other.safetensors")
    out = tmp_path / "out.weights.h5"

    result = archc("weights", SEED, "--from", tmp_path / "other.safetensors", "--to", out)
    assert result.exit_code == 1, result.output
    text = result.output
    line = next(x for x in text.splitlines() if "'fc10.weight'" in x)
    assert "error[E151]" in line
    assert str(tuple(state["fc10.weight"].shape)) in line
    assert str(tuple(ours["fc10.weight"].shape)) in line
    extra = sorted(set(state) - set(ours))
    assert extra and "error[E153]" in text and f"'{extra[0]}'" in text
    assert not out.exists() and files_in(tmp_path) == ["other.safetensors"]


def test_another_specs_weights_are_refused_readably(archc, tmp_path) -> None:
    from safetensors.torch import save_file

    from archc.backends.torch.backend import from_spec

    small = {"blocks": [1, 1, 1, 1], "classes": 3, "input_shape": [32, 32, 3]}
    state = from_spec(SPECS / "resnet50.yaml", small).state_dict()
    save_file(state, tmp_path / "resnet50.safetensors")
    out = tmp_path / "seed.weights.h5"

    result = archc("weights", SEED, "--from", tmp_path / "resnet50.safetensors", "--to", out)
    assert result.exit_code == 1, result.output
    assert "error[E154]" in result.output and "'conv1_conv'" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_another_specs_keras_weights_are_refused(archc, tmp_path) -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    y = keras.layers.Dense(4, name="head")(keras.layers.Conv2D(2, 3, name="body")(inputs))
    keras.Model(inputs, y).save_weights(tmp_path / "tiny.weights.h5")

    result = archc("weights", SEED, "--from", tmp_path / "tiny.weights.h5", "--to",
                   tmp_path / "out.pt")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "error[E154]" in result.output and "'head'" in result.output
    assert files_in(tmp_path) == ["tiny.weights.h5"]


# -- usage errors and unreadable files --------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "target", "says"),
    [
        ("a.weights.h5", "b.h5", "NAME.weights.h5"),
        ("a.onnx", "b.safetensors", "unknown format"),
        ("a.weights.h5", "b.keras", "between Keras and PyTorch"),
        ("a.pt", "b.safetensors", "between Keras and PyTorch"),
        ("a.safetensors", "b", "unknown format"),
    ],
)
def test_wrong_extensions_are_usage_errors(archc, tmp_path, source, target, says) -> None:
    (tmp_path / source).write_bytes(b"")
    result = archc("weights", SEED, "--from", tmp_path / source, "--to", tmp_path / target)
    assert result.exit_code == 2, result.output
    assert says in result.output and "hint:" in result.output
    assert not (tmp_path / target).exists()


def test_unreadable_files_are_errors(archc, tmp_path) -> None:
    import torch

    model = torch_seed()
    cases = {
        "text.safetensors": b"not a safetensors file",
        "text.weights.h5": b"not an HDF5 file",
        "text.keras": b"not a zip file",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save(model, tmp_path / "module.pt")  # a pickled module: weights_only refuses it
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")
    for name, says in [
        *((name, "cannot read") for name in cases),
        ("module.pt", "weights_only"),
        ("checkpoint.pt", "not a state dict"),
        ("missing.pt", "No such file"),
    ]:
        torch_file = name.endswith((".safetensors", ".pt"))
        out = tmp_path / ("out.weights.h5" if torch_file else "out.pt")
        result = archc("weights", SEED, "--from", tmp_path / name, "--to", out)
        assert result.exit_code == 1, (name, result.output)
        assert f"{tmp_path / name}: error[E150]: " in result.output, result.output
        assert says in result.output and "Traceback" not in result.output
        assert not out.exists()


def test_interrupted_write_leaves_the_old_file(archc, seed, tmp_path, monkeypatch) -> None:
    import safetensors.torch

    out = tmp_path / "out.safetensors"
    out.write_bytes(b"the old file")

    def half_written(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    result = archc("weights", SEED, "--from", seed["h5"], "--to", out)
    assert result.exit_code == 130, result.output
    assert "nothing was written" in result.output
    assert out.read_bytes() == b"the old file"
    assert files_in(tmp_path) == ["out.safetensors"]


def test_output_gets_the_usual_permissions(archc, seed, tmp_path) -> None:
    out = tmp_path / "seed.pt"
    result = archc("weights", SEED, "--from", seed["h5"], "--to", out)
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


# -- recurrent layers -------------------------------------------------------------------------
LSTM_SPEC = SPECS / "lstm.yaml"
SMALL = ["--set", "steps=7", "--set", "vocabulary=30", "--set", "width=6", "--set", "units=5",
         "--set", "tags=4"]  # fmt: skip


@pytest.mark.parametrize(
    "variant, sets",
    [("small", []), ("gru", SMALL)],  # an LSTM and a GRU, each bidirectional then one way
)
def test_recurrent_weights_round_trip(archc, tmp_path, variant, sets) -> None:
    """Keras keeps a recurrent layer's arrays under its cell (`layers/lstm/cell/vars`) and a
    Bidirectional's under `forward_layer/cell` and `backward_layer/cell`: the generated Keras
    model's own file, with random weights, becomes a state dict that makes the generated
    PyTorch model compute the Keras outputs, and comes back bit for bit."""
    import keras
    import torch
    from safetensors.torch import load_file

    keras_code = importlib.import_module("generated.lstm_keras")
    params = dict(keras_code.VARIANTS[variant])
    params.update(a.split("=") for a in sets[1::2])
    params = {k: v if k == "cell" else int(v) for k, v in params.items()}
    model = keras_code.build_model(**params)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        values = layer.get_weights()
        layer.set_weights([rng.normal(0, 0.5, v.shape).astype(v.dtype) for v in values])
    original = {layer.name: layer.get_weights() for layer in model.layers}
    model.save_weights(tmp_path / "rnn.weights.h5")
    tokens = rng.integers(0, params["vocabulary"], (3, params["steps"]))
    y = np.asarray(model(tokens.astype(np.int32), training=False))

    options = ["--variant", variant, *sets]
    st = tmp_path / "rnn.safetensors"
    result = archc(
        "weights", LSTM_SPEC, *options, "--from", tmp_path / "rnn.weights.h5", "--to", st
    )
    assert result.exit_code == 0, result.output
    torch_model = importlib.import_module("generated.lstm_torch").build_model(**params).eval()
    torch_model.load_state_dict(load_file(st), strict=True)
    with torch.no_grad():
        got = torch_model(torch.from_numpy(tokens)).numpy()
    assert got.shape == y.shape
    assert np.max(np.abs(got - y)) <= 1e-5 + 1e-5 * np.max(np.abs(y))

    back = tmp_path / "back.weights.h5"
    result = archc("weights", LSTM_SPEC, *options, "--from", st, "--to", back)
    assert result.exit_code == 0, result.output
    again = keras_code.build_model(**params)
    again.load_weights(back)  # Keras reads what archc wrote
    assert_same_weights(again, original)

    # a whole-model file holds the same arrays: the same state dict, byte for byte
    keras.Model.save(model, tmp_path / "rnn.keras")
    pt = tmp_path / "rnn.pt"
    result = archc("weights", LSTM_SPEC, *options, "--from", tmp_path / "rnn.keras", "--to", pt)
    assert result.exit_code == 0, result.output
    from_keras_file = torch.load(pt, weights_only=True)
    from_h5 = load_file(st)
    assert sorted(from_keras_file) == sorted(from_h5)
    assert all(same_bytes(from_keras_file[k], from_h5[k]) for k in from_h5)


def test_attention_weights_round_trip(archc, tmp_path) -> None:
    """MultiHeadAttention keeps its projections' arrays under `query_dense`, `key_dense`,
    `value_dense` and `output_dense` (listed by name in the file, not in Keras' order)."""
    import torch

    spec = SPECS / "transformer_encoder.yaml"
    params = {"steps": 5, "width": 8, "depth": 2, "heads": 2}
    sets = [a for k, v in params.items() for a in ("--set", f"{k}={v}")]
    model = importlib.import_module("generated.transformer_encoder_keras").build_model(**params)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        values = layer.get_weights()
        layer.set_weights([rng.normal(0, 0.5, v.shape).astype(v.dtype) for v in values])
    original = {layer.name: layer.get_weights() for layer in model.layers}
    model.save_weights(tmp_path / "att.weights.h5")
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    y = np.asarray(model(x, training=False))

    pt = tmp_path / "att.pt"
    result = archc("weights", spec, *sets, "--from", tmp_path / "att.weights.h5", "--to", pt)
    assert result.exit_code == 0, result.output
    torch_code = importlib.import_module("generated.transformer_encoder_torch")
    torch_model = torch_code.build_model(**params).eval()
    torch_model.load_state_dict(torch.load(pt, weights_only=True), strict=True)
    with torch.no_grad():
        got = torch_model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(got - y)) <= 1e-5 + 1e-5 * np.max(np.abs(y))

    back = tmp_path / "back.weights.h5"
    result = archc("weights", spec, *sets, "--from", pt, "--to", back)
    assert result.exit_code == 0, result.output
    again = importlib.import_module("generated.transformer_encoder_keras").build_model(**params)
    again.load_weights(back)
    assert_same_weights(again, original)
