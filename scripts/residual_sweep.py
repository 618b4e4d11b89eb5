"""The residual add around the out-projection and FC2, two ways, fp16, back to back on one GPU:

  now       o = F.linear(a, W, b) (bias in cuBLAS's epilogue); x, h = add_layer_norm(x, o)
            -> the add+LN pass reads x and o, writes x and h (4 x [T, D] of traffic)
  addmm     x = torch.addmm(x, a, Wᵀ) (cuBLAS adds x in its epilogue, fp32, one rounding);
            h = LN(x + pending bias) -> the LN pass reads x, writes h (2 x [T, D])
  quack     the out-projection as quack's plain GEMM (bias epilogue) + add_layer_norm

    python3 scripts/residual_sweep.py [--dims 1280,2560] [--m 65494] [--iters 30]

Prints one JSON line per (D, GEMM, arrangement): ms for GEMM + LN pass, and the rel. L2 error of
the new residual stream against an fp32 reference of x + a Wᵀ + b.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cudatime import timed  # noqa: E402
from embed_worker import kernels as K  # noqa: E402


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="1280,2560")
    ap.add_argument("--m", type=int, default=65494)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--quack", action="store_true", help="also time quack's plain GEMM")
    a = ap.parse_args()
    dev, dt, M = torch.device("cuda"), torch.float16, a.m
    for D in map(int, a.dims.split(",")):
        g = torch.Generator(device=dev).manual_seed(0)

        def rnd(*shape, scale=1.0):
            return (torch.randn(*shape, device=dev, dtype=torch.float32, generator=g) * scale).to(dt)

        norm = torch.nn.LayerNorm(D, device=dev, dtype=dt)
        x = rnd(M, D, scale=3.0)
        for name, Kdim in (("out", D), ("fc2", 4 * D)):
            W, b, inp = rnd(D, Kdim, scale=Kdim ** -0.5), rnd(D, scale=0.1), rnd(M, Kdim)
            ref = x.float() + inp.float() @ W.float().t() + b.float()
            Wt = W.t()

            def now():
                o = F.linear(inp, W, b)
                return K.add_layer_norm(x, o, norm)[0]

            def addmm():
                s = torch.addmm(x, inp, Wt)
                K.layer_norm(s, norm)  # the pending bias rides this pass at no extra traffic
                return s

            arms = {"now": now, "addmm": addmm,
                    "gemm-only cuBLAS linear+bias": lambda: F.linear(inp, W, b),
                    "gemm-only cuBLAS addmm(x)": lambda: torch.addmm(x, inp, Wt)}
            if a.quack:
                from quack.gemm_interface import gemm

                def quack_now():
                    o = gemm(inp, Wt, bias=b, tuned=False)
                    return K.add_layer_norm(x, o, norm)[0]
                arms["quack+add_ln"] = quack_now
                arms["gemm-only quack+bias"] = lambda: gemm(inp, Wt, bias=b, tuned=False)
            for arm, fn in arms.items():
                try:
                    got = fn()
                    ms = timed(fn, a.iters)
                except Exception as e:  # noqa: BLE001
                    emit(D=D, gemm=name, arm=arm, error=f"{type(e).__name__}: {e}"[:300])
                    continue
                row = {"D": D, "gemm": name, "arm": arm, "ms": round(ms, 4)}
                if arm in ("now", "addmm", "quack+add_ln"):
                    full = got.float() + (b.float() if arm == "addmm" else 0)  # addmm: the bias the LN pass carries
                    d = full - ref
                    row["rel_l2"] = float(d.norm() / ref.norm())
                    row["max_abs"] = float(d.abs().max())
                emit(**row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
