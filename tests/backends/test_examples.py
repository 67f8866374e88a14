"""The training examples run as a user runs them: the seed trained on a small generated image
folder in Keras and in PyTorch, and Keras' trained weights moved to PyTorch with
`archc weights` give the same validation accuracy and loss there; and, from a folder outside
the repository, the README's first spec (logits) and the seed (softmax) learn in both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archc.backends.compile import compile_to_file
from examples.make_images import make_images
from tests.compiler.test_errors import archc_command
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
ACCURACY = re.compile(r"^val loss ([0-9.]+), val accuracy ([0-9.]+)$", re.MULTILINE)


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def final(stdout: str) -> tuple[float, float]:
    loss, accuracy = ACCURACY.findall(stdout)[-1]
    return float(loss), float(accuracy)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("images"), classes=5, per_class=12, size=32)


def test_the_image_folder_has_the_flowers_layout(images: Path) -> None:
    for split, count in (("train", 12), ("val", 3)):
        folders = sorted(p.name for p in (images / split).iterdir())
        assert folders == [f"class_{c}" for c in range(5)]
        assert all(len(list((images / split / f).glob("*.png"))) == count for f in folders)


def test_keras_training_and_the_weights_moved_to_pytorch(images: Path, tmp_path: Path) -> None:
    keras_weights = tmp_path / "seed.weights.h5"
    out = run(
        str(EXAMPLES / "train_keras.py"),
        str(images),
        "--epochs",
        "2",
        "--bn-momentum",
        "0.9",
        "--save",
        str(keras_weights),
    )
    keras_loss, keras_accuracy = final(out)
    assert len(re.findall(r"^Epoch \d+/2", out, re.MULTILINE)) == 2  # fit's own log

    torch_weights = tmp_path / "seed.safetensors"
    move = subprocess.run(
        [
            *archc_command(),
            "weights",
            "specs/resnet_preact.yaml",
            "--from",
            str(keras_weights),
            "--to",
            str(torch_weights),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert move.returncode == 0, move.stderr
    out = run(
        str(EXAMPLES / "train_torch.py"),
        str(images),
        "--epochs",
        "0",
        "--load",
        str(torch_weights),
    )
    torch_loss, torch_accuracy = final(out)
    assert torch_accuracy == keras_accuracy
    assert torch_loss == pytest.approx(keras_loss, rel=1e-4, abs=1e-5)


def test_pytorch_training_runs_with_logits_and_the_penalty(images: Path, tmp_path: Path) -> None:
    saved = tmp_path / "torch.safetensors"
    out = run(
        str(EXAMPLES / "train_torch.py"),
        str(images),
        "--epochs",
        "2",
        "--bn-momentum",
        "0.9",
        "--save",
        str(saved),
    )
    assert len(re.findall(r"^epoch \d: val loss", out, re.MULTILINE)) == 2
    loss, accuracy = final(out)
    assert 0.0 <= accuracy <= 1.0 and np.isfinite(loss)
    assert saved.stat().st_size > 4 * 96_133  # float32 parameters and buffers of the seed


# -- from a user's folder: the README's first spec (no softmax) and the seed (softmax) ----------
def readme_first_spec() -> str:
    """The first spec of README's "Your first spec": its last layer has no activation."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Your first spec\n") :]
    return re.search(r"^```yaml\n(.*?)^```$", section, re.S | re.M).group(1)


TRAIN = ("--epochs", "8", "--lr", "0.1", "--bn-momentum", "0.9")


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the repository: first.yaml compiled into its generated/ (imported by
    module path), the seed at 16x16 compiled into out/ (given by file path), and images."""
    folder = tmp_path_factory.mktemp("user")
    assert not folder.resolve().is_relative_to(ROOT.resolve())
    (folder / "first.yaml").write_text(readme_first_spec(), encoding="utf-8")
    for backend in ("torch", "keras"):
        compile_to_file(folder / "first.yaml", backend, folder / "generated")
        compile_to_file(
            ROOT / "specs" / "resnet_preact.yaml",
            backend,
            folder / "out",
            {"input_shape": [16, 16, 3], "num_stages": 2},  # small: seconds of CPU
        )
    make_images(folder / "images", classes=5, per_class=16, size=16)
    return folder


@pytest.mark.parametrize(
    ("script", "module", "activation"),
    [
        ("train_torch.py", "generated.first_torch", "linear"),
        ("train_keras.py", "generated.first_keras", "linear"),
        ("train_torch.py", "out/resnet_preact_torch.py", "softmax"),
        ("train_keras.py", "out/resnet_preact_keras.py", "softmax"),
    ],
)
def test_the_examples_train_logits_and_softmax_models_from_a_users_folder(
    user_folder: Path, script: str, module: str, activation: str
) -> None:
    """Logits (the first spec's plain dense) and probabilities (the seed's softmax) both train
    well above chance (1 in 5); a loss that took logits for probabilities would stay at it."""
    path = module if module.endswith(".py") else module.replace(".", "/") + ".py"
    source = (user_folder / path).read_text(encoding="utf-8")
    assert f'OUTPUT_ACTIVATION = "{activation}"' in source
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the repo's
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "images", "--module", module, *TRAIN],
        cwd=user_folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, accuracy = final(proc.stdout)
    assert accuracy >= 0.6, proc.stdout[-2000:]
