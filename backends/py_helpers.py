"""Plain-Python helpers that generated modules carry, copied by source (no archc import).

Each function equals the sandbox function of the same name (tests compare them on a grid);
KerasNames numbers automatic layer names as the compiler does for `auto_names: keras`.
"""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of divisor, never below 90% of it (MobileNet)."""
    floor = divisor if min_value is None else min_value
    new = max(floor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class KerasNames:
    """Keras' automatic layer names, counted per model rather than per process: the first
    unnamed layer of a class gets the class's snake-case name (conv2d), later ones a number
    (conv2d_1, conv2d_2, ...), in the order the layers are made."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, base: str, name: str | None = None) -> str:
        """`name` when there is one, else the next automatic name of the class `base`."""
        if name is not None:
            return name
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"
