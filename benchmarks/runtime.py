"""Generated models cost nothing at run time: archc's seed models against hand-written twins.

PyTorch: generated/resnet_preact_torch.py against a hand-written twin (tests/reference_models)
Keras:   generated/resnet_preact_keras.py against the seed's own code ported to Keras 3
Each pair is timed alternately in one process (eval forward at batch 64, and one SGD training
step), medians over N rounds after warm-up; the ratio generated / hand-written is the result
(target <= 1.05). Usage: .venv/bin/python benchmarks/runtime.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 64


def paired(a: Callable[[], object], b: Callable[[], object], rounds: int) -> tuple[float, float]:
    for _ in range(3):
        a(), b()
    ta, tb = [], []
    for _ in range(rounds):
        for fn, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def _result(fg: float, fh: float, tg: float, th: float) -> dict[str, float]:
    return {
        "forward_generated_s": fg,
        "forward_hand_s": fh,
        "forward_ratio": fg / fh,
        "train_generated_s": tg,
        "train_hand_s": th,
        "train_ratio": tg / th,
    }


def torch_pair(rounds: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from generated.resnet_preact_torch import build_model
    from tests.reference_models import seed_torch

    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 5, (BATCH,))
    gen, hand = build_model(), seed_torch()

    def forward(model: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            model.eval()
            with torch.no_grad():
                return model(x)

        return run

    def train(model: torch.nn.Module) -> Callable[[], object]:
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def run() -> object:
            model.train()
            opt.zero_grad()
            loss = F.nll_loss(torch.log(model(x) + 1e-7), y)
            loss.backward()
            opt.step()
            return loss

        return run

    fg, fh = paired(forward(gen), forward(hand), rounds)
    tg, th = paired(train(gen), train(hand), rounds)
    return _result(fg, fh, tg, th)


def keras_pair(rounds: int) -> dict[str, float]:
    import keras
    import numpy as np

    from generated.resnet_preact_keras import build_model
    from tests.reference_models import seed_keras3

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 5, BATCH), 5)
    gen, hand = build_model(), seed_keras3()
    for m in (gen, hand):
        m.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    fg, fh = paired(lambda: gen.predict_on_batch(x), lambda: hand.predict_on_batch(x), rounds)
    tg, th = paired(lambda: gen.train_on_batch(x, y), lambda: hand.train_on_batch(x, y), rounds)
    return _result(fg, fh, tg, th)


def main(rounds: int) -> dict[str, object]:
    import torch

    return {
        "batch": BATCH,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "torch": {k: round(v, 5) for k, v in torch_pair(rounds).items()},
        "keras": {k: round(v, 5) for k, v in keras_pair(rounds).items()},
        "target_ratio": 1.05,
    }


if __name__ == "__main__":
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results" / "runtime.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
