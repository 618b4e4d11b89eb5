"""Ways to move a memory-mapped fp32 checkpoint to the GPU as fp16, timed, arms interleaved.

    python3 bench/checkpoint_upload.py FILE.pt [--rounds 2]

Arms: `a-to` (what `model.to(device, dtype)` does: cast on the CPU, copy from pageable memory),
`b-gpu-cast` (copy fp32, cast on the GPU), `c-threads8` (that, on 8 threads), `upload4/8/16`
(py/embed_worker/upload.py: pinned buffers, threads, cast on the GPU), `e-cpu16` (cast on 16 CPU
threads, then copy). Every arm's tensors are compared with the first one's (`equal`). One JSON
line per arm and round; the first round also reads the file into the page cache. Needs a CUDA GPU.
docs/PERFORMANCE.md "Start-up" has the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "py"))
from embed_worker.checkpoint import torch_load  # noqa: E402
from embed_worker.upload import upload  # noqa: E402


def read(path: str) -> tuple[dict, float]:
    """The .pt's tensors, memory-mapped, and the seconds it took."""
    t = time.perf_counter()
    data = torch_load(path)
    state = data["model"] if "model" in data else data
    return {k: v for k, v in state.items() if torch.is_tensor(v)}, time.perf_counter() - t


def arms(dev: torch.device) -> dict:
    half = torch.float16

    def threads8(state):
        with ThreadPoolExecutor(8) as ex:
            return dict(ex.map(lambda kv: (kv[0], kv[1].to(dev).half()), state.items()))

    def cpu16(state):
        torch.set_num_threads(16)
        try:
            return {k: v.half().to(dev) for k, v in state.items()}
        finally:
            torch.set_num_threads(1)

    return {
        "a-to": lambda s: {k: v.to(device=dev, dtype=half) for k, v in s.items()},
        "b-gpu-cast": lambda s: {k: v.to(dev).half() for k, v in s.items()},
        "c-threads8": threads8,
        "upload4": lambda s: upload(s, dev, half, 4),
        "upload8": lambda s: upload(s, dev, half, 8),
        "upload16": lambda s: upload(s, dev, half, 16),
        "e-cpu16": cpu16,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a fair-esm .pt (or a plain state dict) of float32 tensors")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench/checkpoint_upload.py needs a CUDA GPU", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.zeros(1, device=dev)  # the CUDA context, outside the timings
    ref = None
    for r in range(a.rounds):
        for name, f in arms(dev).items():
            state, t_read = read(a.checkpoint)
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = f(state)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
            nbytes = sum(v.numel() * v.element_size() for v in state.values())
            same = None if ref is None else all(torch.equal(ref[k], out[k]) for k in ref)
            ref = ref or {k: v.clone() for k, v in out.items()}
            print(json.dumps({"round": r, "arm": name, "read_s": round(t_read, 3), "upload_s": round(dt, 3),
                              "GB": round(nbytes / 1e9, 2), "GBps": round(nbytes / 1e9 / dt, 2), "equal": same}), flush=True)
            del out, state
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
