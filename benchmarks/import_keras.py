"""`archc import keras --prove` over keras.applications: the acceptance table.

For each model (built with weights=None, offline), one process runs
`archc import keras keras.applications:NAME -o NAME.yaml --prove`: the import, check (counts
equal the Keras model's), compile of both backends, verify, the Keras model's weights moved
into the generated PyTorch model through a Keras weights file, and the original's outputs
against the PyTorch model's. The table (model, status, spec lines, blocks found, layers,
max|Δ| of the outputs, wall seconds) goes to benchmarks/results/import_keras.json and .md. A
model that cannot be imported is listed with the layer that stops it. `--lines` runs only the
imports, flat and structured, for the lines and the blocks found (no proof; rows keep the
proof measured before). Usage:
  .venv/bin/python benchmarks/import_keras.py [--timeout S] [--lines] [NAME ...]   (default: all)
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(
    PYTHONPATH=str(ROOT),
    TF_CPP_MIN_LOG_LEVEL="3",
    TF_ENABLE_ONEDNN_OPTS="0",
    CUDA_VISIBLE_DEVICES="",
)


# the models measured first (the rest follow by name)
FIRST = [
    "ResNet50",
    "ResNet50V2",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "DenseNet121",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "ConvNeXtTiny",
    "InceptionResNetV2",
    "VGG16",
    "Xception",
    "NASNetMobile",
    "InceptionV3",
    "MobileNetV3Large",
]


def applications() -> list[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import keras; print(' '.join(n for n in dir(keras.applications) if n[:1].isupper()))",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def run(name: str, timeout: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / f"{name.lower()}.yaml"
        cmd = [
            sys.executable,
            "-m",
            "archc",
            "import",
            "keras",
            f"keras.applications:{name}",
            "-o",
            str(spec),
            "--prove",
            "--out-dir",
            tmp,
        ]
        start = time.perf_counter()
        try:
            done = subprocess.run(
                cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"model": name, "status": f"not finished in {timeout:.0f} s"}
        seconds = round(time.perf_counter() - start, 1)
        row: dict[str, object] = {"model": name, "seconds": seconds}
        text = done.stdout
        m = re.search(r"written: (\d+) layers, (\d+) lines(?:, \d+ blocks?: (.*))?\)", text)
        if m:
            row["layers"], row["spec_lines"] = int(m.group(1)), int(m.group(2))
            row["blocks"] = m.group(3) or ""
            row["proven_spec"] = "structured" if m.group(3) else "flat"
            row["structured_lines"] = int(m.group(2))
        m = re.search(r"^outputs: .* max\|Δ\| = (\S+) \(max\|y\| = (\S+)\)", text, re.M)
        if m:
            row["max_abs_diff"] = float(m.group(1))
            row["max_abs_output"] = float(m.group(2))
        m = re.search(r"^weights: (\d+) arrays moved .*? \((.*?)\) \(", text, re.M)
        if m:
            row["arrays_moved"], row["weights_route"] = int(m.group(1)), m.group(2)
        m = re.search(r"^check: counts equal the Keras model's: ([\d,]+)", text, re.M)
        if m:
            row["params"] = int(m.group(1).replace(",", ""))
        if done.returncode == 0 and "max_abs_diff" in row:
            row["status"] = "proven"
        else:
            errors = [line for line in done.stderr.splitlines() if "error[" in line]
            row["status"] = f"exit {done.returncode}: " + (
                errors[0] if errors else done.stderr.strip()[-300:]
            )
        return row


def lines(name: str, timeout: float) -> dict[str, object]:
    """The import alone, flat and structured: lines, layers and blocks found."""
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for flag in ("--flat", None):
            spec = Path(tmp) / "spec.yaml"
            cmd = [sys.executable, "-m", "archc", "import", "keras"]
            cmd += [f"keras.applications:{name}", "-o", str(spec)] + ([flag] if flag else [])
            try:
                done = subprocess.run(
                    cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                return out
            m = re.search(
                r"written: (\d+) layers, (\d+) lines(?:, \d+ blocks?: (.*))?\)", done.stdout
            )
            if m is None:
                return out
            if flag:
                out["flat_lines"] = int(m.group(2))
            else:
                out["structured_lines"], out["blocks"] = int(m.group(2)), m.group(3) or ""
    return out


def table(rows: list[dict[str, object]]) -> str:
    out = [
        "| model | params | lines: flat / structured | blocks found | layers "
        "| max\\|Δ\\| (outputs) | max\\|Δ\\| / max\\|y\\| | seconds | result |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        diff = r.get("max_abs_diff")
        top = r.get("max_abs_output")
        rel = diff / top if isinstance(diff, float) and isinstance(top, float) and top else None
        params = r.get("params")
        flat, structured = r.get("flat_lines") or "-", r.get("structured_lines") or "-"
        status = str(r["status"])
        if status == "proven" and r.get("blocks") and r.get("proven_spec", "flat") == "flat":
            status += " (flat spec)"
        out.append(
            f"| {r['model']} | {f'{params:,}' if isinstance(params, int) else ''} "
            f"| {flat} / {structured} | {r.get('blocks', '') or 'none'} | {r.get('layers', '')} "
            f"| {f'{diff:.2g}' if isinstance(diff, float) else ''} "
            f"| {f'{rel:.2g}' if rel is not None else ''} | {r.get('seconds', '')} "
            f"| {status} |"
        )
    return "\n".join(out)


def main(argv: list[str]) -> None:
    timeout = 1200.0
    if argv[:1] == ["--timeout"]:
        timeout, argv = float(argv[1]), argv[2:]
    only_lines = argv[:1] == ["--lines"]
    argv = argv[1:] if only_lines else argv
    names = argv or sorted(
        applications(), key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0, n)
    )
    # rows measured before for models not run now are kept (a run of a few adds to the table)
    earlier = RESULTS / "import_keras.json"
    kept = json.loads(earlier.read_text())["models"] if earlier.exists() else []
    if only_lines:
        by_name = {row["model"]: row for row in kept}
        for name in names:
            row = by_name.setdefault(name, {"model": name, "status": "not run"})
            row.update(lines(name, timeout))
            print(json.dumps(row, ensure_ascii=False), flush=True)
            write(list(by_name.values()))
        print(table(list(by_name.values())))
        return
    rows = [row for row in kept if row["model"] not in names]
    for name in names:
        row = {
            k: v
            for k, v in next((r for r in kept if r["model"] == name), {}).items()
            if k in ("flat_lines", "structured_lines")
        }
        row.update(run(name, timeout))
        print(json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
        write(rows)  # after each model: a long run leaves what it measured
    print(table(rows))


def write(rows: list[dict[str, object]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "command": "archc import keras keras.applications:NAME -o NAME.yaml --prove",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.system()}",
        "tolerance": "outputs: max|Δ| <= 1e-5 * max|y| (relative)",
        "models": rows,
    }
    (RESULTS / "import_keras.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "import_keras.md").write_text(table(rows) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
