"""GPU time of a callable run back to back (no cache flush, no sync between calls), the way a
forward runs its kernels: the sustained, power-limited case. triton.testing.do_bench flushes L2
and syncs between repetitions instead; kernel_sweep.py uses it for single-kernel bandwidth."""
from __future__ import annotations

import time
from typing import Callable

import torch


def timed(fn: Callable[[], object], iters: int, warmup: int = 3) -> float:
    """Milliseconds per call of fn, averaged over `iters` calls between two CUDA events (by the
    host's clock where there is no GPU: the scripts' CPU smoke tests)."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1000 / iters
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters
