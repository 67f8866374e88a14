"""Where a generated PyTorch model's time goes, op by op, against its hand-written twin.

Runs torch.profiler over ROUNDS alternating eval forwards (or SGD steps) of the generated
model and of the twin (benchmarks/runtime.py), same weights and input, and prints per-op
self CPU time per call for both, largest difference first.
Usage: .venv/bin/python benchmarks/profile_torch.py seed|resnet50 [forward|train] [ROUNDS]
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.nn.functional as F
from runtime import (
    RESNET_BATCH,
    SEED_BATCH,
    THREADS,
    copy_torch_weights,
    patch_keras_bn,
    resnet50_twin,
    seed_twin,
)
from torch.profiler import ProfilerActivity, profile, record_function


def main(which: str, mode: str, rounds: int) -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    if which == "seed":
        from generated.resnet_preact_torch import build_model

        gen, hand, x, classes = build_model(), seed_twin(), torch.randn(SEED_BATCH, 3, 32, 32), 5
    else:
        from generated.resnet50_torch import build_model

        gen, hand = build_model(), resnet50_twin()
        x, classes = torch.randn(RESNET_BATCH, 3, 224, 224), 1000
    if mode == "train":
        patch_keras_bn(gen)  # the generated forward cannot backward (see runtime.py)
    copy_torch_weights(gen, hand)
    y = torch.randint(0, classes, (x.shape[0],))
    steps = {}
    for name, model in (("generated", gen), ("hand", hand)):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step(model: torch.nn.Module = model, opt: torch.optim.SGD = opt) -> None:
            if mode == "forward":
                model.eval()
                with torch.no_grad():
                    model(x)
            else:
                model.train()
                opt.zero_grad()
                F.nll_loss(torch.log(model(x) + 1e-7), y).backward()
                opt.step()

        steps[name] = step
    for _ in range(2):
        steps["generated"](), steps["hand"]()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            for name, step in steps.items():
                with record_function(f"##{name}"):
                    step()
    # attribute each op event to the ## range that encloses it
    ranges = [(e.name[2:], e.time_range) for e in prof.events() if e.name.startswith("##")]
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for e in prof.events():
        if e.name.startswith("##"):
            continue
        for name, r in ranges:
            if r.start <= e.time_range.start and e.time_range.end <= r.end:
                cell = table[e.name][name]
                cell[0] += e.self_cpu_time_total / rounds
                cell[1] += 1 / rounds
                break
    wall = defaultdict(float)
    for name, r in ranges:
        wall[name] += r.elapsed_us() / rounds
    print(
        f"{which} {mode}: wall per step  generated {wall['generated'] / 1e3:.2f} ms"
        f"  hand {wall['hand'] / 1e3:.2f} ms"
    )
    print(f"{'op':40s} {'gen ms':>9s} {'calls':>6s} {'hand ms':>9s} {'calls':>6s} {'diff ms':>9s}")
    rows = []
    for op, cells in table.items():
        g, h = cells.get("generated", [0.0, 0]), cells.get("hand", [0.0, 0])
        rows.append((g[0] - h[0], op, g, h))
    for d, op, g, h in sorted(rows, key=lambda r: -abs(r[0]))[:25]:
        print(
            f"{op[:40]:40s} {g[0] / 1e3:9.3f} {g[1]:6.0f} {h[0] / 1e3:9.3f} {h[1]:6.0f} "
            f"{d / 1e3:9.3f}"
        )


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "seed",
        sys.argv[2] if len(sys.argv) > 2 else "forward",
        int(sys.argv[3]) if len(sys.argv) > 3 else 10,
    )
