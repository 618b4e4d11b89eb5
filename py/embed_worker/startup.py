"""A worker's start-up, timed phase by phase (reported in READY and the run summary).

Measured on an H200 (docs/decisions/startup-import-thread.md): importing quack-kernels and the CuTe DSL
takes ~10 s of a GPU worker's ~20 s, all of it Python holding the GIL, so it does not overlap
with loading the weights on a side thread (the load slows by what the import gains)."""
from __future__ import annotations

import time


class Phases:
    """Milliseconds per named phase, each from the end of the one before."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round((now - self._t) * 1000, 1)
        self._t = now

    def line(self) -> str:
        """"torch 2.9 s, device 1.0 s, ..." for the ready log line."""
        return ", ".join(f"{k} {v / 1000:.1f} s" for k, v in self.ms.items())
