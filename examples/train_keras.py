"""Train a generated Keras model on an image folder (one subfolder per class).

    python examples/make_images.py /tmp/images
    python examples/train_keras.py /tmp/images --epochs 5 --save /tmp/seed.weights.h5

The model is `build_model(**params)` of a file `archc compile` wrote (default: the seed,
generated/resnet_preact_keras.py; its input size and class count come from the spec's
parameters, e.g. `--param nb_classes=5`). Images are scaled to [0, 1]. Validation runs on
root/val after every epoch, in inference mode (BatchNorm uses its moving statistics).

BatchNorm momentum: Keras' default 0.99 keeps 99% of the old moving statistics at every
step, so after a few hundred steps they have barely left their initial values (mean 0,
variance 1) and a model that trains well scores near chance in inference mode. For short runs
pass `--bn-momentum 0.9` (Keras' convention: the weight of the old statistics; PyTorch's
`momentum` is 1 minus this, and train_torch.py converts it the same way).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
    parser.add_argument("--module", default="generated.resnet_preact_keras")
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
    model = importlib.import_module(args.module).build_model(**parse_params(args.param))
    if args.bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = args.bn_momentum
    height, width = model.input_shape[1:3]

    def images(folder: str, shuffle: bool):
        data = keras.utils.image_dataset_from_directory(
            Path(args.root) / folder,
            label_mode="categorical",
            image_size=(height, width),
            batch_size=args.batch_size,
            shuffle=shuffle,
            seed=args.seed,
        )
        return data.map(lambda x, y: (x / 255.0, y))

    train, val = images("train", True), images("val", False)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9),
        loss="categorical_crossentropy",  # the model ends in softmax: probabilities
        metrics=["accuracy"],
    )
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(val, verbose=0)
    print(f"val loss {loss:.4f}, val accuracy {accuracy:.4f}")
    if args.save:
        model.save_weights(args.save)
        print(f"weights: {args.save}")


if __name__ == "__main__":
    main()
