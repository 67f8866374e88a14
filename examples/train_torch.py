"""Train a generated PyTorch model on an image folder (one subfolder per class).

    python examples/make_images.py /tmp/images
    python examples/train_torch.py /tmp/images --epochs 5 --save /tmp/seed.safetensors

The model is `build_model(**params)` of a file `archc compile` wrote: `--module` takes a
module path (generated.first_torch, found from the working folder) or the file's path
(default: the seed, generated/resnet_preact_torch.py). A plain `Dataset` reads the PNG/JPEG
files with Pillow (classes in sorted folder order, as Keras' image_dataset_from_directory
numbers them), scaled to [0, 1], channels first. The loss is cross-entropy on logits plus
`model.regularization_loss()` (the spec's L2 penalties, which Keras adds to its loss by
itself); the file's OUTPUT_ACTIVATION says what the model gives: logits ("linear"), or
probabilities ("softmax"), which `build_model(logits=True)` leaves out. Validation runs on root/val
after every epoch with `model.eval()`.

`--load FILE` starts from weights (a .safetensors or .pt state dict, e.g. one `archc weights`
converted from Keras); `--epochs 0` then only evaluates them.

BatchNorm momentum: the generated modules keep Keras' convention converted (Keras 0.99 is
PyTorch's momentum 0.01), so short runs look broken here too; `--bn-momentum 0.9` (Keras'
convention) sets PyTorch's momentum to 0.1 on every BatchNorm.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from examples.train_keras import load_module, output_activation, parse_params  # noqa: E402

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


class ImageFolder(Dataset):
    """(image, class index) pairs of root/<class>/<file>, classes in sorted order."""

    def __init__(self, root: str | Path, size: tuple[int, int]) -> None:
        root = Path(root)
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.files = [
            (path, index)
            for index, name in enumerate(self.classes)
            for path in sorted((root / name).iterdir())
            if path.suffix.lower() in EXTENSIONS
        ]
        self.size = size  # (height, width)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        image = Image.open(path).convert("RGB")
        if image.size != (self.size[1], self.size[0]):
            image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1), label


def classifier(module, params: dict[str, object]) -> tuple[nn.Module, Callable]:
    """The model of a generated file and what turns its output into logits: the output
    itself for a model that gives logits, or for a softmax that `logits=True` leaves out;
    the log of a softmax the model cannot leave out (cross-entropy is the same)."""
    if output_activation(module) == "linear":
        return module.build_model(**params), lambda y: y
    model_class = inspect.signature(module.build_model).return_annotation
    if "logits" in inspect.signature(model_class).parameters:
        return module.build_model(**params, logits=True), lambda y: y
    return module.build_model(**params), lambda p: p.clamp_min(1e-30).log()


def evaluate(
    model: nn.Module, loader: DataLoader, to_logits: Callable = lambda y: y
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in inference mode."""
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = to_logits(model(x))
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
    return loss / max(seen, 1), correct / max(seen, 1)


def load_weights(model: nn.Module, path: str) -> None:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, weights_only=True)
    model.load_state_dict(state, strict=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="data folder with train/ and val/ (one subfolder a class)")
    parser.add_argument(
        "--module",
        default="generated.resnet_preact_torch",
        help="module path (generated.first_torch) or file path (out/first_torch.py)",
    )
    parser.add_argument("--param", action="append", default=[], metavar="K=V")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--bn-momentum", type=float, default=None, metavar="M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", help="start from these weights (.safetensors or .pt)")
    parser.add_argument("--save", help="write the trained weights here (.safetensors)")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    module = load_module(args.module)
    # logits, as nn.CrossEntropyLoss wants them
    model, to_logits = classifier(module, parse_params(args.param))
    if args.load:
        load_weights(model, args.load)
    if args.bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 1.0 - args.bn_momentum
    height, width = module.INPUT_SHAPE[1:]
    train = DataLoader(
        ImageFolder(Path(args.root) / "train", (height, width)),
        batch_size=args.batch_size,
        shuffle=True,
    )
    val = DataLoader(ImageFolder(Path(args.root) / "val", (height, width)), args.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        bar = tqdm(train, desc=f"epoch {epoch}/{args.epochs}", leave=False)
        for x, y in bar:
            optimizer.zero_grad()
            loss = loss_fn(to_logits(model(x)), y) + model.regularization_loss()
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        val_loss, val_acc = evaluate(model, val, to_logits)
        print(f"epoch {epoch}: val loss {val_loss:.4f}, val accuracy {val_acc:.4f}")
    val_loss, val_acc = evaluate(model, val, to_logits)
    print(f"val loss {val_loss:.4f}, val accuracy {val_acc:.4f}")
    if args.save:
        from safetensors.torch import save_file

        save_file(model.state_dict(), args.save)
        print(f"weights: {args.save}")


if __name__ == "__main__":
    main()
