"""Whole-process wall time of `archc check` on the seed spec, against an import floor.

The floor is `python -c "import pydantic, yaml, jinja2"`: the least any Python tool built on
those libraries pays. Both run alternately in one session, N times each; we report medians
and their ratio (target: <= 2.5). Usage: .venv/bin/python benchmarks/check_startup.py [N]
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ARCHC = [PY, "-m", "compiler", "check", "specs/resnet_preact.yaml"]
FLOOR = [PY, "-c", "import pydantic, yaml, jinja2"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(n: int = 9) -> dict[str, object]:
    wall(ARCHC), wall(FLOOR)  # warm the file cache
    check, floor = [], []
    for _ in range(n):
        check.append(wall(ARCHC))
        floor.append(wall(FLOOR))
    result = {
        "runs": n,
        "archc_check_median_s": round(statistics.median(check), 4),
        "import_floor_median_s": round(statistics.median(floor), 4),
        "ratio": round(statistics.median(check) / statistics.median(floor), 2),
        "target_ratio": 2.5,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    return result


if __name__ == "__main__":
    res = main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
    print(json.dumps(res, indent=2))
    out = ROOT / "benchmarks" / "results" / "check_startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
