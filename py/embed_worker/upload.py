"""A checkpoint's tensors onto a GPU in the model's dtype, fast.

`model.to("cuda", torch.float16)` on a memory-mapped fp32 checkpoint converts each tensor on the
CPU (a blocking copy casts on the source side) and then copies it from pageable memory, one
tensor after another, on one thread that also takes every page fault of the mapping. `upload`
instead has a few threads copy chunks of the mapped tensors into their own pinned buffers (the
page faults and memcpy in parallel), send each buffer on the thread's own stream and cast on the
GPU. Same values: a cast is a cast wherever it runs (round to nearest even, IEEE). CPU devices
keep the plain path.
"""
from __future__ import annotations

import threading

import torch

CHUNK_BYTES = 64 << 20
"""Bytes a thread stages at a time (one pinned buffer and one GPU buffer of this size each)."""
THREADS = 8


def upload(state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype,
           threads: int = THREADS) -> dict[str, torch.Tensor]:
    """`state` with every floating tensor on `device` as `dtype` (other tensors: moved as they
    are). On a CPU device: plain `.to`. Raises what a CUDA copy raises (out of memory)."""
    if device.type != "cuda":
        return {k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device) for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    jobs: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []
    for k, v in state.items():
        want = dtype if v.is_floating_point() else v.dtype
        if v.device.type != "cpu" or not v.is_contiguous() or v.numel() == 0:
            out[k] = v.to(device=device, dtype=want)
            continue
        out[k] = torch.empty(v.shape, dtype=want, device=device)
        step = max(1, CHUNK_BYTES // v.element_size())
        for a in range(0, v.numel(), step):
            jobs.append((v.reshape(-1), out[k].view(-1), a, min(v.numel(), a + step)))
    if not jobs:
        return out
    lock = threading.Lock()
    pending = iter(jobs)
    inference = torch.is_inference_mode_enabled()  # thread-local: the threads write `out` in the caller's mode
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode(inference), torch.cuda.device(device):
                pinned = torch.empty(CHUNK_BYTES, dtype=torch.uint8, pin_memory=True)
                stage = torch.empty(CHUNK_BYTES, dtype=torch.uint8, device=device)
                stream = torch.cuda.Stream(device)
                sent = None
                while not errors:
                    with lock:
                        job = next(pending, None)
                    if job is None:
                        break
                    src, dst, a, b = job
                    if sent is not None:
                        sent.synchronize()  # the buffers are free again
                    n = (b - a) * src.element_size()
                    host = pinned[:n].view(src.dtype)
                    host.copy_(src[a:b])
                    with torch.cuda.stream(stream):
                        gpu = stage[:n].view(src.dtype)
                        gpu.copy_(host, non_blocking=True)
                        dst[a:b].copy_(gpu)
                        sent = torch.cuda.Event()
                        sent.record(stream)
                stream.synchronize()
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
            errors.append(e)

    workers = [threading.Thread(target=run, daemon=True) for _ in range(max(1, min(threads, len(jobs))))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return out  # every thread synchronized its stream: the tensors are complete
