"""The seed's `model.summary()` table (copied verbatim from the seed file) and a parser."""

from __future__ import annotations

from pathlib import Path

SEED_TABLE = (Path(__file__).parent / "compiler" / "data" / "seed_summary.txt").read_text()

Row = tuple[str, str, str, str, list[str]]


def seed_rows(text: str) -> list[Row]:
    """Parse a Keras summary table into (name, type, shape, params, connections) rows."""
    rows: list[Row] = []
    for line in text.splitlines()[2:]:
        if not line.strip() or line.startswith(("_", "=", "Total", "Trainable", "Non-")):
            continue
        if line[:33].strip():
            name, kind = line[:33].split()
            rows.append((name, kind.strip("()"), line[33:55].strip(), line[55:67].strip(), []))
        if line[67:].strip():
            rows[-1][4].append(line[67:].strip())
    return rows
