"""Train a generated Keras model on an image folder (one subfolder per class).

    python examples/make_images.py /tmp/images
    python examples/train_keras.py /tmp/images --epochs 5 --save /tmp/seed.weights.h5

The model is `build_model(**params)` of a file `archc compile` wrote: `--module` takes a
module path (generated.first_keras, found from the working folder) or the file's path (default:
the seed, generated/resnet_preact_keras.py; its input size and class count come from the
spec's parameters, e.g. `--param nb_classes=5`). The loss is cross-entropy (class indices) on
what the file's OUTPUT_ACTIVATION says the model gives: probabilities (softmax) or logits
(linear, `from_logits=True`). Images are scaled to [0, 1]. Validation runs on root/val after
every epoch, in inference mode (BatchNorm uses its moving statistics).

BatchNorm momentum: Keras' default 0.99 keeps 99% of the old moving statistics at every
step, so after a few hundred steps they have barely left their initial values (mean 0,
variance 1) and a model that trains well scores near chance in inference mode. For short runs
pass `--bn-momentum 0.9` (Keras' convention: the weight of the old statistics; PyTorch's
`momentum` is 1 minus this, and train_torch.py converts it the same way).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
# the working folder first, as `python -m` has it (its generated/ holds the user's files),
# then the repository (its generated/ holds the seed's)
sys.path[:0] = [os.getcwd(), str(ROOT)]


def load_module(name: str) -> ModuleType:
    """A generated file by its module path (generated.first_keras) or by its file path."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name).resolve()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{name}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # TorchScript and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def output_activation(module: ModuleType) -> str:
    """The generated file's OUTPUT_ACTIVATION, where it is one a classification loss takes:
    "softmax" (probabilities) or "linear" (logits)."""
    activation = getattr(module, "OUTPUT_ACTIVATION", None)
    if activation is None:
        raise SystemExit(
            f"{module.__name__} has no OUTPUT_ACTIVATION: regenerate it with `archc compile`"
        )
    if activation not in ("softmax", "linear"):
        raise SystemExit(
            f"{module.__name__}: the model's output activation is {activation!r}; this script "
            "trains one-label classifiers, whose output is softmax probabilities or logits"
        )
    return activation


def parse_params(pairs: list[str]) -> dict[str, object]:
    """K=V pairs; V as JSON when it parses (5, 0.1, [64, 64, 3], true), else a string."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="data folder with train/ and val/ (one subfolder a class)")
    parser.add_argument(
        "--module",
        default="generated.resnet_preact_keras",
        help="module path (generated.first_keras) or file path (out/first_keras.py)",
    )
    parser.add_argument("--param", action="append", default=[], metavar="K=V")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--bn-momentum", type=float, default=None, metavar="M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="write the trained weights here (.weights.h5)")
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(args.seed)
    module = load_module(args.module)
    from_logits = output_activation(module) == "linear"
    model = module.build_model(**parse_params(args.param))
    if args.bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = args.bn_momentum
    height, width = model.input_shape[1:3]

    def images(folder: str, shuffle: bool):
        data = keras.utils.image_dataset_from_directory(
            Path(args.root) / folder,
            label_mode="int",  # class indices: the model may have more outputs than classes
            image_size=(height, width),
            batch_size=args.batch_size,
            shuffle=shuffle,
            seed=args.seed,
        )
        return data.map(lambda x, y: (x / 255.0, y))

    train, val = images("train", True), images("val", False)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9),
        # softmax: the model gives probabilities; linear: logits
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(val, verbose=0)
    print(f"val loss {loss:.4f}, val accuracy {accuracy:.4f}")
    if args.save:
        model.save_weights(args.save)
        print(f"weights: {args.save}")


if __name__ == "__main__":
    main()
