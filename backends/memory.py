"""Will a model fit? What building and running it once needs, against what the machine allows.

A spec may describe a model larger than any one machine (GPT-3 has 175 billion parameters);
`archc check` counts it without building anything, and the backends ask here before they
build. Where it does not fit, the PyTorch backend builds on the `meta` device (shapes, no
values: counts and output shapes are still proven) and commands that need values say so with
a located error instead of meeting the out-of-memory killer.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from math import prod

from archc.compiler.ir import Graph

BYTES = 4  # float32, as both backends build
HEADROOM = 1.5  # allocator slack, framework bookkeeping, a copy while initialising


@dataclass(frozen=True)
class Shortfall:
    """A build needs `needed` bytes; `available` are left (by free memory or a ulimit)."""

    needed: int
    available: int
    largest: str  # the layer with the most parameters: where an error points

    def describe(self) -> str:
        return f"needs about {gib(self.needed)} to build and run once, {gib(self.available)} free"


def gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def needed_bytes(graph: Graph, batch: int = 1, models: int = 1) -> int:
    """Weights of `models` built models, plus every layer's output for one forward pass at
    `batch` each (the frameworks keep few of them alive at once: an upper bound), times the
    headroom."""
    weights = graph.counts.total
    activations = batch * sum(prod(n.shape) for n in graph.nodes if n.shape is not None)
    return int(BYTES * models * (weights + activations) * HEADROOM)


def available_bytes() -> int:
    """Free memory as the kernel reports it (MemAvailable), lowered to what an address-space
    limit (`ulimit -v`) still allows this process to map."""
    free = _meminfo("MemAvailable")
    if free is None:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else -1
        free = pages * os.sysconf("SC_PAGE_SIZE") if pages > 0 else 2**62
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit != resource.RLIM_INFINITY:
        used = _status("VmSize") or 0
        free = min(free, max(0, limit - used))
    return free


SKIP_VARIABLE = "ARCHC_MEMORY_CHECK"  # =off: build anyway (the estimate is an upper bound)


def shortfall(graph: Graph, batch: int = 1, models: int = 1) -> Shortfall | None:
    """None when `models` builds of the model fit (or the check is off); else how much they
    need and what is free."""
    if os.environ.get(SKIP_VARIABLE, "").lower() in ("off", "0", "no"):
        return None
    needed = needed_bytes(graph, batch, models)
    free = available_bytes()
    if needed <= free:
        return None
    largest = max(graph.nodes, key=lambda n: n.counts.total)
    return Shortfall(needed, free, largest.name)


def _meminfo(key: str) -> int | None:
    return _kib_field("/proc/meminfo", key)


def _status(key: str) -> int | None:
    return _kib_field("/proc/self/status", key)


def _kib_field(path: str, key: str) -> int | None:
    """A 'Key:   123 kB' line of a /proc file, in bytes (None where there is no /proc)."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
