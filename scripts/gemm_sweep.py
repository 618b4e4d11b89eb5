"""How fast cuBLAS runs each GEMM of an ESM-2 layer, by token count and weight layout.

The block loop spends ~84% of a forward in four GEMMs per layer (QKV D→3D, out D→D, FC1 D→4D,
FC2 4D→D). This measures each one alone and the four back to back (the sustained, power-limited
case), for several token counts M (the planner's budget, and rounded variants) and layouts:
  linear  F.linear(x, W, b), W [out, in] as checkpoints store it (what fused.py does)
  nn      torch.addmm(b, x, Wt), Wt [in, out] contiguous (a transposed copy made once at load)
  lt      F.linear with torch.backends.cuda.preferred_blas_library("cublaslt")

    python3 scripts/gemm_sweep.py [--dims 1280,2560] [--ms 65494,65536,131072]

Prints one JSON line per measurement (ms, TFLOP/s) and a summary table.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from bench import matmul_ceiling
from cudatime import timed


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="1280,2560")
    ap.add_argument("--ms", default="65494,65536,131072")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--variants", default="linear,nn,lt")
    a = ap.parse_args()
    dev, dt = torch.device("cuda"), torch.float16
    top = matmul_ceiling()
    print(json.dumps({"measurement": "ceiling", "tflops": round(top, 1), "gpu": torch.cuda.get_device_name()}), flush=True)
    rows = []
    for D in map(int, a.dims.split(",")):
        shapes = {"qkv": (D, 3 * D), "out": (D, D), "fc1": (D, 4 * D), "fc2": (4 * D, D)}
        W = {k: torch.randn(o, i, device=dev, dtype=dt) * 0.02 for k, (i, o) in shapes.items()}
        Wt = {k: w.t().contiguous() for k, w in W.items()}
        bias = {k: torch.randn(o, device=dev, dtype=dt) for k, (i, o) in shapes.items()}
        for M in map(int, a.ms.split(",")):
            X = {k: torch.randn(M, i, device=dev, dtype=dt) for k, (i, o) in shapes.items()}
            for v in a.variants.split(","):
                lib = torch.backends.cuda.preferred_blas_library()
                if v == "lt":
                    torch.backends.cuda.preferred_blas_library("cublaslt")

                def op(k, v=v):
                    if v == "nn":
                        return torch.addmm(bias[k], X[k], Wt[k])
                    return F.linear(X[k], W[k], bias[k])

                try:
                    total_flops, total_ms = 0.0, 0.0
                    for k, (i, o) in shapes.items():
                        ms = timed(lambda k=k: op(k), a.iters)
                        fl = 2 * M * i * o
                        total_flops += fl
                        total_ms += ms
                        r = {"D": D, "M": M, "variant": v, "gemm": k, "ms": round(ms, 3), "tflops": round(fl / ms / 1e9, 1)}
                        rows.append(r)
                        print(json.dumps(r), flush=True)
                    layer_ms = timed(lambda: [op(k) for k in shapes], a.iters)
                    r = {"D": D, "M": M, "variant": v, "gemm": "layer (4 back to back)", "ms": round(layer_ms, 3),
                         "tflops": round(total_flops / layer_ms / 1e9, 1), "sum_alone_ms": round(total_ms, 3)}
                    rows.append(r)
                    print(json.dumps(r), flush=True)
                finally:
                    torch.backends.cuda.preferred_blas_library(lib)
            del X
        del W, Wt
        torch.cuda.empty_cache()
    print(f"\nceiling {top:.0f} TFLOP/s\n\n| D | M | variant | qkv | out | fc1 | fc2 | layer (back to back) |\n|---|---|---|---|---|---|---|---|")
    key = {}
    for r in rows:
        key.setdefault((r["D"], r["M"], r["variant"]), {})[r["gemm"]] = r
    for (D, M, v), g in key.items():
        cells = [f"{g[k]['ms']:.3f} ms {g[k]['tflops']:.0f}" for k in ("qkv", "out", "fc1", "fc2", "layer (4 back to back)")]
        print(f"| {D} | {M} | {v} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
