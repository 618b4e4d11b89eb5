"""GPU time of a callable run back to back (no cache flush, no sync between calls), the way a
forward runs its kernels: the sustained, power-limited case. triton.testing.do_bench flushes L2
and syncs between repetitions instead; kernel_sweep.py uses it for single-kernel bandwidth."""
from __future__ import annotations

import time
from typing import Callable

import torch


def timed(fn: Callable[[], object], iters: int, warmup: int = 3,
          before: Callable[[], object] | None = None) -> float:
    """Milliseconds per call of fn, averaged over `iters` calls between two CUDA events (by the
    host's clock where there is no GPU: the scripts' CPU smoke tests). `before`, if given, is
    queued after the warm-up's sync and right before the timed calls, with no sync between: the
    GPU goes from it straight into fn (a pacer that sets the clock, as a forward's GEMM does for
    the attention that follows it)."""
    for _ in range(warmup):
        fn()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    if before is not None:
        before()
    if not cuda:
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) * 1000 / iters
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters
