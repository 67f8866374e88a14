"""Generated models cost nothing at run time: archc's models against hand-written references,
on the CPU, in one process.

  seed_torch:     generated/resnet_preact_torch.py vs SeedTwin (below, written by hand)  batch 64
  seed_keras:     generated/resnet_preact_keras.py vs the seed's own code in Keras 3
                  (tests/reference_models.seed_keras3)                                     batch 64
  resnet50_keras: generated/resnet50_keras.py      vs keras.applications.ResNet50(weights=None)
                                                                                          batch 8
  resnet50_torch: generated/resnet50_torch.py      vs ResNet50Twin (below, written by hand:
                  keras.applications' network, as a person would port it)                 batch 8

Each pair gets the same weights (copied from the generated model), the same input, the same
optimizer (SGD, lr 0.01) and loss. Forward: eval mode, no grad (Keras: predict_on_batch).
Training: one SGD step (Keras: train_on_batch). After warm-up the two are timed alternately,
A B B A ..., so that load from other processes falls on both; per pair we report median
times, their ratio generated / reference (the result, target <= 1.05), the ratio of the
minima, and the spread (min, quartiles, max) of the per-round ratios.
Usage: .venv/bin/python benchmarks/runtime.py [--rounds N] [--resnet-rounds M] [--only a,b]
(taskset -c 0,1 recommended; OMP_WAIT_POLICY defaults to PASSIVE, see below).
Writes benchmarks/results/runtime.json unless --no-save. About 8 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TensorFlow's path archc verifies on
# Idle OpenMP threads sleep instead of spinning: when other processes share the 2 cores, the
# spinning default made torch's 2-thread runs 3-8x slower and their timings noise (measured:
# seed forward 0.4-1.1 s spinning vs 0.08-0.15 s passive, ResNet50 batch 8 3.3-4.8 s vs 1.5 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_BATCH = 64
RESNET_BATCH = 8
THREADS = 2


# --------------------------------------------------------------------------- timing


def paired(
    a: Callable[[], object], b: Callable[[], object], rounds: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """Time a and b alternately (A B, then B A, ...); per-round seconds for each."""
    for _ in range(warmup):
        a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for r in range(rounds):
        order = ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return ta, tb


def _quartiles(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [round(v, 3) for v in (min(values), q[0], q[1], q[2], max(values))]


def _summary(kind: str, ta: list[float], tb: list[float]) -> dict[str, Any]:
    ga, hb = statistics.median(ta), statistics.median(tb)
    return {
        f"{kind}_generated_s": round(ga, 5),
        f"{kind}_hand_s": round(hb, 5),
        f"{kind}_ratio": round(ga / hb, 4),
        f"{kind}_ratio_of_min": round(min(ta) / min(tb), 4),
        f"{kind}_round_ratios_min_q1_median_q3_max": _quartiles(
            [x / y for x, y in zip(ta, tb, strict=True)]
        ),
    }


def _report(name: str, res: dict[str, Any]) -> None:
    print(
        f"{name:15s} forward {res['forward_generated_s']:.4f}s / {res['forward_hand_s']:.4f}s"
        f" = {res['forward_ratio']:.3f}x (min {res['forward_ratio_of_min']:.3f}x)   "
        f"train {res['train_generated_s']:.4f}s / {res['train_hand_s']:.4f}s"
        f" = {res['train_ratio']:.3f}x (min {res['train_ratio_of_min']:.3f}x)",
        flush=True,
    )


# --------------------------------------------------------------------------- PyTorch


def seed_twin(nb_classes: int = 5, num_stages: int = 5) -> Any:
    """The seed network written by hand in PyTorch: TF 'same' padding of the strided stem
    (one pixel after), BN eps 1e-3 / momentum 0.01, channels-last flatten, softmax output.
    Modules in the generated model's order, so that its state_dict copies over by position."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, stage: int) -> None:
            super().__init__()
            self.bn_a = bn(128) if stage > 1 else None
            self.conv_a = nn.Conv2d(128, 32, 1, bias=False)
            self.bn_b = bn(32)
            self.conv_b = nn.Conv2d(32, 32, 3, padding=1, bias=False)
            self.bn_c = bn(32)
            self.conv_c = nn.Conv2d(32, 128, 1)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.bn_a(inputs)) if self.bn_a is not None else inputs
            x = self.conv_a(x)
            x = self.conv_b(F.relu(self.bn_b(x)))
            x = self.conv_c(F.relu(self.bn_c(x)))
            return x + inputs

    class SeedTwin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv0 = nn.Conv2d(3, 128, 3, stride=2, bias=False)
            self.bn0 = bn(128)
            self.stages = nn.Sequential(*(Block(s) for s in range(1, num_stages + 1)))
            self.bnF = bn(128)
            self.fc = nn.Linear(128, nb_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.bn0(self.conv0(F.pad(x, (0, 1, 0, 1)))))
            x = F.relu(self.bnF(self.stages(x)))
            x = F.avg_pool2d(x, 16).movedim(1, -1).flatten(1)
            return F.softmax(self.fc(x), dim=1)

    return SeedTwin()


def resnet50_twin(classes: int = 1000, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> Any:
    """keras.applications.ResNet50 written by hand in PyTorch: biases on every conv, the
    stride on the first 1x1 conv, BN eps 1.001e-5 / momentum 0.01, the stem's pads folded
    into the conv and the max pool (exact: the pool's input is post-relu, >= 0)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1.001e-5, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin: int, filters: int, stride: int, shortcut: bool) -> None:
            super().__init__()
            self.conv0 = nn.Conv2d(cin, 4 * filters, 1, stride=stride) if shortcut else None
            self.bn0 = bn(4 * filters) if shortcut else None
            self.conv1 = nn.Conv2d(cin, filters, 1, stride=stride)
            self.bn1 = bn(filters)
            self.conv2 = nn.Conv2d(filters, filters, 3, padding=1)
            self.bn2 = bn(filters)
            self.conv3 = nn.Conv2d(filters, 4 * filters, 1)
            self.bn3 = bn(4 * filters)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shortcut = self.bn0(self.conv0(x)) if self.conv0 is not None else x
            y = F.relu(self.bn1(self.conv1(x)))
            y = F.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return F.relu(shortcut + y)

    class ResNet50Twin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
            self.bn1 = bn(64)
            layers = []
            cin = 64
            for stack, n in enumerate(blocks):
                filters = 64 * 2**stack
                for i in range(n):
                    stride = 2 if i == 0 and stack > 0 else 1
                    layers.append(Block(cin, filters, stride, i == 0))
                    cin = 4 * filters
            self.body = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.max_pool2d(x, 3, stride=2, padding=1)
            x = self.body(x)
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
            return F.softmax(self.fc(x), dim=1)

    return ResNet50Twin()


def copy_torch_weights(src: Any, dst: Any) -> None:
    """Copy src's state (parameters and BN statistics) into dst, position by position."""
    s, d = list(src.state_dict().values()), dst.state_dict()
    assert len(s) == len(d), (len(s), len(d))
    for (key, target), value in zip(d.items(), s, strict=True):
        assert target.shape == value.shape, (key, target.shape, value.shape)
        target.copy_(value)


def keras_bn_forward_fixed(self: Any, x: Any) -> Any:
    """KerasBatchNorm.forward, trainable: the benchmark's stand-in (see patch_keras_bn).

    F.batch_norm moves the running variance v towards the unbiased batch variance,
    (1-m) v + m s2 n/(n-1). Started from v n/(n-1) and scaled back by (n-1)/n, that is Keras'
    (1-m) v + m s2. The op updates a temporary, which autograd saves and nothing modifies
    later; the generated forward rewrites running_var in place after the op saved it, so
    backward() raises 'modified by an inplace operation'."""
    import torch
    import torch.nn.functional as F

    mean, var = self.running_mean, self.running_var
    momentum = self.momentum if self.momentum is not None else 0.0
    if not self.training or mean is None or var is None:
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
    n = x.numel() // x.shape[1]
    scaled = var * (n / (n - 1))
    y = F.batch_norm(x, mean, scaled, self.weight, self.bias, True, momentum, self.eps)
    with torch.no_grad():
        torch.mul(scaled, (n - 1) / n, out=var)
    return y


def patch_keras_bn(model: Any) -> list[str]:
    """Give model's KerasBatchNorm classes keras_bn_forward_fixed, after checking on a batch
    that it updates the running statistics exactly as the generated forward does."""
    import torch

    patched = []
    for cls in {type(m) for m in model.modules() if type(m).__name__ == "KerasBatchNorm"}:
        probe = cls(4, eps=1e-3, momentum=0.01)
        probe.running_var.uniform_(0.5, 2.0)
        probe.train()
        x = torch.randn(6, 4, 5, 5)
        twin = cls(4, eps=1e-3, momentum=0.01)
        twin.load_state_dict(probe.state_dict())
        twin.train()
        with torch.no_grad():
            want = probe(x)  # the generated forward (fine without autograd)
        got = keras_bn_forward_fixed(twin, x)
        assert torch.allclose(got, want, atol=1e-6)
        assert torch.allclose(twin.running_var, probe.running_var, rtol=1e-6, atol=1e-7)
        assert torch.allclose(twin.running_mean, probe.running_mean, rtol=1e-6, atol=1e-7)
        cls.forward = keras_bn_forward_fixed
        patched.append(f"{cls.__module__}.{cls.__name__}")
    return patched


def torch_compare(gen: Any, hand: Any, x: Any, classes: int, rounds: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    notes: dict[str, Any] = {}
    gen.train()
    try:  # can the generated model train as it is?
        gen(x[:4]).sum().backward()
    except RuntimeError as exc:
        notes["train_error_as_generated"] = str(exc).split(". Hint")[0]
        notes["train_timed_with_patched"] = patch_keras_bn(gen)
        gen(x[:4]).sum().backward()  # now it trains
    gen.zero_grad(set_to_none=True)
    copy_torch_weights(gen, hand)
    y = torch.randint(0, classes, (x.shape[0],))
    with torch.no_grad():
        gen.eval(), hand.eval()
        diff = (gen(x) - hand(x)).abs().max().item()
    assert diff < 1e-4, f"generated and hand-written outputs differ by {diff}"

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
            loss = F.nll_loss(torch.log(model(x) + 1e-7), y)  # both output softmax
            loss.backward()
            opt.step()
            return loss

        return run

    res = _summary("forward", *paired(forward(gen), forward(hand), rounds))
    res |= _summary("train", *paired(train(gen), train(hand), rounds))
    return {"max_abs_output_diff": diff, **notes, **res}


def seed_torch(rounds: int) -> dict[str, Any]:
    import torch

    from generated.resnet_preact_torch import build_model

    torch.manual_seed(0)
    x = torch.randn(SEED_BATCH, 3, 32, 32)
    return {"batch": SEED_BATCH, **torch_compare(build_model(), seed_twin(), x, 5, rounds)}


def resnet50_torch(rounds: int) -> dict[str, Any]:
    import torch

    from generated.resnet50_torch import build_model

    torch.manual_seed(0)
    x = torch.randn(RESNET_BATCH, 3, 224, 224)
    return {
        "batch": RESNET_BATCH,
        **torch_compare(build_model(), resnet50_twin(), x, 1000, rounds),
    }


# --------------------------------------------------------------------------- Keras


def keras_compare(gen: Any, hand: Any, x: Any, classes: int, rounds: int) -> dict[str, Any]:
    import keras
    import numpy as np

    for layer in gen.layers:  # same weights, by layer name
        if layer.weights:
            hand.get_layer(layer.name).set_weights(layer.get_weights())
    rng = np.random.default_rng(1)
    y = keras.utils.to_categorical(rng.integers(0, classes, x.shape[0]), classes)
    for m in (gen, hand):
        m.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    diff = float(np.abs(gen.predict_on_batch(x) - hand.predict_on_batch(x)).max())
    assert diff < 1e-4, f"generated and reference outputs differ by {diff}"
    res = _summary(
        "forward",
        *paired(lambda: gen.predict_on_batch(x), lambda: hand.predict_on_batch(x), rounds),
    )
    res |= _summary(
        "train",
        *paired(lambda: gen.train_on_batch(x, y), lambda: hand.train_on_batch(x, y), rounds),
    )
    return {"max_abs_output_diff": diff, **res}


def _keras_threads() -> None:
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError):  # another backend, or TF already running
        pass


def seed_keras(rounds: int) -> dict[str, Any]:
    import numpy as np

    from generated.resnet_preact_keras import build_model
    from tests.reference_models import seed_keras3

    x = np.random.default_rng(0).standard_normal((SEED_BATCH, 32, 32, 3)).astype("float32")
    return {"batch": SEED_BATCH, **keras_compare(build_model(), seed_keras3(), x, 5, rounds)}


def resnet50_keras(rounds: int) -> dict[str, Any]:
    import keras
    import numpy as np

    from generated.resnet50_keras import build_model

    x = np.random.default_rng(0).standard_normal((RESNET_BATCH, 224, 224, 3)).astype("float32")
    ref = keras.applications.ResNet50(weights=None)
    return {"batch": RESNET_BATCH, **keras_compare(build_model(), ref, x, 1000, rounds)}


# --------------------------------------------------------------------------- main

PAIRS = {
    "seed_torch": (seed_torch, "generated PyTorch seed vs a hand-written PyTorch twin"),
    "seed_keras": (seed_keras, "generated Keras seed vs the seed's own code in Keras 3"),
    "resnet50_keras": (
        resnet50_keras,
        "generated Keras ResNet50 vs keras.applications.ResNet50(weights=None)",
    ),
    "resnet50_torch": (
        resnet50_torch,
        "generated PyTorch ResNet50 vs a hand-written PyTorch ResNet50 (Keras' network)",
    ),
}


def main(rounds: int, resnet_rounds: int, only: list[str]) -> dict[str, object]:
    import keras
    import torch

    torch.set_num_threads(THREADS)
    _keras_threads()
    start = time.perf_counter()
    load = os.getloadavg()
    pairs: dict[str, Any] = {}
    for name in only:
        fn, what = PAIRS[name]
        n = resnet_rounds if name.startswith("resnet50") else rounds
        t0 = time.perf_counter()
        res = fn(n)
        pairs[name] = {"what": what, "rounds": n, **res, "wall_s": round(time.perf_counter() - t0)}
        _report(name, res)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "affinity": sorted(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "keras": f"{keras.__version__} ({keras.backend.backend()})",
        "loadavg_1m_start_end": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        "pairs": pairs,
        "target_ratio": 1.05,
        "wall_s": round(time.perf_counter() - start),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="seed pairs' timed rounds")
    parser.add_argument("--resnet-rounds", type=int, default=10, help="ResNet50 timed rounds")
    parser.add_argument("--only", default=",".join(PAIRS), help="comma-separated pair names")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    result = main(args.rounds, args.resnet_rounds, args.only.split(","))
    print(json.dumps(result, indent=2))
    if not args.no_save:
        out = ROOT / "benchmarks" / "results" / "runtime.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
