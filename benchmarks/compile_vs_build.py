"""`archc compile` (verify on) against building the same model directly in the framework.

Each case runs two whole processes, alternately, N times each: `archc compile SPEC --backend B`
into a temporary folder, and a Python one-liner that imports the framework and builds the
model itself (Keras: keras.applications; PyTorch, and Keras models keras.applications does
not have: the generated module's build_model, the framework build that compile verifies).
We report the medians of each one's CPU time (user + system, children included) and its
peak resident memory (ru_maxrss, from wait4), and compile's ratio to the build
(target: <= 1.2 for both). What users get is measured: the children run without
PYTHONDONTWRITEBYTECODE (a sandbox may set it; every start would compile every module again),
and each command runs once first (byte-code caches written, files cached). On a shared machine
single runs vary by 20-40% and PyTorch's worker threads spin while others hold the cores:
compare the ratios of one run (the runs alternate). Usage:
  .venv/bin/python benchmarks/compile_vs_build.py [N] [case ...]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET = 1.2
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def generated_build(spec: str, backend: str, variant: str | None = None) -> str:
    """Build the model from the committed generated module (its build_model)."""
    stem = Path(spec).stem + (f"_{variant}" if variant else "")
    path = ROOT / "generated" / f"{stem}_{backend}.py"
    args = f"**m.VARIANTS[{variant!r}]" if variant else ""
    return (
        "from archc.backends.codegen import import_source; import pathlib; "
        f"m = import_source(pathlib.Path({str(path)!r}).read_text(), 'bench'); "
        f"m.build_model({args})"
    )


# name -> (spec, backend, variant, the framework's own build)
CASES: dict[str, tuple[str, str, str | None, str]] = {
    "keras_resnet50": (
        "specs/resnet50.yaml",
        "keras",
        None,
        "import keras; keras.applications.ResNet50(weights=None)",
    ),
    "keras_efficientnet_b7": (
        "specs/efficientnet.yaml",
        "keras",
        "b7",
        "import keras; keras.applications.EfficientNetB7(weights=None)",
    ),
    "torch_resnet50": ("specs/resnet50.yaml", "torch", None, ""),
    "torch_vit": ("specs/vit.yaml", "torch", None, ""),
    "torch_gpt": ("specs/gpt.yaml", "torch", None, ""),
    "keras_vit": ("specs/vit.yaml", "keras", None, ""),
    "keras_gpt": ("specs/gpt.yaml", "keras", None, ""),
}


def run(cmd: list[str]) -> tuple[float, int]:
    """CPU seconds (children included) and peak RSS in MiB of one run of cmd."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def case(name: str, n: int) -> dict[str, object]:
    spec, backend, variant, direct = CASES[name]
    direct = direct or generated_build(spec, backend, variant)
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as out:
        compile_cmd = [PY, "-m", "archc", "compile", spec, "--backend", backend, "-o", out]
        compile_cmd += ["--variant", variant] if variant else []
        build_cmd = [PY, "-c", direct]
        run(compile_cmd), run(build_cmd)  # byte-code caches written, files cached
        compiled, built = [], []
        for _ in range(n):
            compiled.append(run(compile_cmd))
            built.append(run(build_cmd))
    c_cpu = statistics.median(c for c, _ in compiled)
    b_cpu = statistics.median(c for c, _ in built)
    c_mem = statistics.median(m for _, m in compiled)
    b_mem = statistics.median(m for _, m in built)
    return {
        "compile": " ".join(["archc", *(a for a in compile_cmd[3:] if a not in ("-o", out))]),
        "build": direct,
        "compile_cpu_s": round(c_cpu, 2),
        "build_cpu_s": round(b_cpu, 2),
        "cpu_ratio": round(c_cpu / b_cpu, 2),
        "compile_peak_mib": c_mem,
        "build_peak_mib": b_mem,
        "memory_ratio": round(c_mem / b_mem, 2),
        "runs": n,
        "commit": _commit(),
    }


def _commit() -> str:
    """The checkout measured (with '+' where it has changes not committed)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
        capture_output=True,
        text=True,
    )
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def main(n: int, names: list[str]) -> dict[str, object]:
    results = {}
    for name in names:
        results[name] = case(name, n)
        print(name, json.dumps(results[name]), flush=True)
    return {
        "runs": n,
        "measure": "CPU seconds (user + system) and peak RSS, medians of alternating runs",
        "cases": results,
        "target_ratio": TARGET,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cpus",
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    names = sys.argv[2:] or list(CASES)
    res = main(n, names)
    print(json.dumps(res, indent=2))
    out = ROOT / "benchmarks" / "results" / "compile_vs_build.json"
    out.parent.mkdir(exist_ok=True)
    if out.exists() and sys.argv[2:]:  # some cases run again: the others' results are kept
        old = json.loads(out.read_text())
        res["cases"] = {**old.get("cases", {}), **res["cases"]}
    out.write_text(json.dumps(res, indent=2) + "\n")
