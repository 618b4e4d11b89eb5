"""Does running a layer's MLP in token chunks pay? FC1 -> erf GELU in place -> FC2 over the whole
batch writes and re-reads the [T, 4D] activation through HBM (2.7 GB per 3B layer at 65k tokens);
in chunks of C tokens the activation ([C, 4D], 42 MB at C = 2048, D = 2560) can stay in the
H200's L2 between the three kernels, at the price of smaller GEMMs and more launches.

    python3 scripts/mlp_chunk_sweep.py [--dims 1280,2560] [--tokens 65494] [--chunks 0,16384,8192,4096,2048]

chunk 0 = the whole batch (what fused.py does). Prints one JSON line per (D, chunk): ms per MLP,
and the ratio to the whole-batch time. Also checks every chunked result equals the whole-batch one.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from cudatime import timed

gelu_ = torch._C._nn.gelu_


def mlp(h, w1, b1, w2, b2, chunk: int, out: torch.Tensor) -> torch.Tensor:
    T = h.shape[0]
    step = chunk or T
    for s in range(0, T, step):
        f = F.linear(h[s: s + step], w1, b1)
        gelu_(f)
        torch.addmm(b2, f, w2.t(), out=out[s: s + step])
    return out


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="1280,2560")
    ap.add_argument("--tokens", type=int, default=65494)
    ap.add_argument("--chunks", default="0,16384,8192,4096,2048")
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    dev, dt = torch.device("cuda"), torch.float16
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "l2_mib": torch.cuda.get_device_properties(0).L2_cache_size / 2**20}))
    for D in map(int, a.dims.split(",")):
        h = torch.randn(a.tokens, D, device=dev, dtype=dt)
        w1, b1 = torch.randn(4 * D, D, device=dev, dtype=dt) * 0.02, torch.randn(4 * D, device=dev, dtype=dt) * 0.02
        w2, b2 = torch.randn(D, 4 * D, device=dev, dtype=dt) * 0.02, torch.randn(D, device=dev, dtype=dt) * 0.02
        ref = mlp(h, w1, b1, w2, b2, 0, torch.empty_like(h))
        base = None
        for c in map(int, a.chunks.split(",")):
            out = torch.empty_like(h)
            ms = timed(lambda: mlp(h, w1, b1, w2, b2, c, out), a.iters)
            base = base or ms
            diff = (out.float() - ref.float()).abs().max().item()
            print(json.dumps({"D": D, "tokens": a.tokens, "chunk": c or a.tokens, "ms": round(ms, 3),
                              "vs_whole": round(ms / base, 4), "max_abs_diff_vs_whole": diff}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
