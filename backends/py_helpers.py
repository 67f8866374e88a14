"""Plain-Python helpers that generated modules carry, copied by source (no archc import).

Each equals the sandbox function of the same name (tests compare them on a grid).
"""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of divisor, never below 90% of it (MobileNet)."""
    floor = divisor if min_value is None else min_value
    new = max(floor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new
