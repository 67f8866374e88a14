"""CPU time of `archc check` on every spec in specs/, against an import floor.

The floor is `python -c "import pydantic, yaml, jinja2"`: the least any Python tool built on
those libraries pays. Each spec's check and the floor run alternately (pairs), N pairs per
spec; the figure is the process's CPU time (user + system, its children included: what the
machine spends, not what a busy machine makes it wait), and we report medians and their
ratio (target: <= 2.0 for every spec). What users get is measured: the children run without
PYTHONDONTWRITEBYTECODE (which a sandbox may set, and which makes every start compile every
module again), and each command runs once first, so that its byte-code caches are written and
its files cached, as an installed tool's are; `python -m archc` is the console script's path
(archc.cli.main without argv). On a shared machine single runs vary by 20-40%: compare the
ratios of one run (pairs alternate, so both sides see the same load). A second table checks
that `check` stays linear in depth: a spec of `depth` repeated conv/bn/activation items at
three depths, its CPU time above the floor per item, and what each item added since the
depth before costs (which stays flat where check is linear).
Usage: .venv/bin/python benchmarks/check_startup.py [N]
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
FLOOR = [PY, "-c", "import pydantic, yaml, jinja2"]
TARGET = 2.0
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(ROOT)

DEEP = """archc: 1
name: deep
inputs: [{{name: x, shape: [32, 32, 3]}}]
layers:
  - repeat: {depth}
    body:
      - {{op: conv2d, name: 'c${{i}}', filters: 8, kernel: 3, padding: same}}
      - {{op: batch_norm, name: 'b${{i}}'}}
      - {{op: activation, name: 'a${{i}}', fn: relu}}
  - {{op: global_avg_pool2d}}
  - {{op: dense, units: 10}}
"""


def cpu(cmd: list[str]) -> float:
    """CPU seconds (user + system) of one run of cmd, its children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def paired(cmd: list[str], n: int) -> tuple[float, float]:
    """Medians of cmd's and the floor's CPU time, run alternately n times each."""
    cpu(cmd), cpu(FLOOR)  # byte-code caches written, files cached
    mine, floor = [], []
    for _ in range(n):
        mine.append(cpu(cmd))
        floor.append(cpu(FLOOR))
    return statistics.median(mine), statistics.median(floor)


def check(spec: Path | str) -> list[str]:
    return [PY, "-m", "archc", "check", str(spec)]


def main(n: int = 9) -> dict[str, object]:
    specs = {}
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        mine, floor = paired(check(spec.relative_to(ROOT)), n)
        specs[spec.name] = {
            "check_cpu_s": round(mine, 4),
            "floor_cpu_s": round(floor, 4),
            "ratio": round(mine / floor, 2),
        }
        print(spec.name, specs[spec.name], flush=True)
    depth = {}
    with tempfile.TemporaryDirectory(prefix="archc-deep-") as folder:
        for d in (50, 100, 200):
            path = Path(folder) / f"deep{d}.yaml"
            path.write_text(DEEP.format(depth=d), encoding="utf-8")
            mine, floor = paired(check(path), n)
            depth[str(d)] = {
                "check_cpu_s": round(mine, 4),
                "floor_cpu_s": round(floor, 4),
                "ms_per_item_above_floor": round(1000 * (mine - floor) / (3 * d), 3),
            }
            print("depth", d, depth[str(d)], flush=True)
    # linear in depth: what each further item costs, between one depth and the next
    sizes = sorted(depth, key=int)
    for a, b in itertools.pairwise(sizes):
        more = depth[b]["check_cpu_s"] - depth[a]["check_cpu_s"]
        depth[b]["ms_per_item_added"] = round(1000 * more / (3 * (int(b) - int(a))), 3)
    ratios = [v["ratio"] for v in specs.values()]
    return {
        "runs": n,
        "measure": "CPU seconds (user + system), median of alternating pairs",
        "floor": " ".join(FLOOR[1:]),
        "specs": specs,
        "worst_ratio": max(ratios),
        "best_ratio": min(ratios),
        "target_ratio": TARGET,
        "depth": depth,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cpus",
    }


if __name__ == "__main__":
    res = main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
    print(json.dumps(res, indent=2))
    out = ROOT / "benchmarks" / "results" / "check_startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
