"""Memory-bound steps of one ESM-2 layer at a 65,536-token batch: achieved HBM bandwidth of each
kernel arrangement (Triton launch shapes, PyTorch eager, torch.compile), fp16, on one GPU.

    python3 scripts/kernel_sweep.py [--tokens 65536] [--dims 1280,2560]

Prints one JSON line per measurement: step, variant, ms, GB/s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from embed_worker import kernels as K  # noqa: E402
from embed_worker import model as M  # noqa: E402


def report(step: str, variant: str, ms: float, nbytes: int) -> None:
    print(json.dumps({"step": step, "variant": variant, "ms": round(ms, 4), "GBps": round(nbytes / ms / 1e6)}), flush=True)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--dims", default="1280,2560")
    ap.add_argument("--steps", default="ln", help="any of ln,fc1 (ln includes the GELU and rotary sweeps; "
                    "attention: scripts/attention_sweep.py)")
    a = ap.parse_args()
    T = a.tokens
    steps = set(a.steps.split(","))
    for D in map(int, a.dims.split(",")):
        if "fc1" in steps:
            fc1_gelu(T, D)
        if "ln" not in steps:
            continue
        x = torch.randn(T, D, device="cuda", dtype=torch.float16)
        d = torch.randn_like(x)
        ln = torch.nn.LayerNorm(D).cuda().half()
        nb = 4 * T * D * 2  # read x, d; write s, h
        product = K.LN_ELEMS, K.LN_WARPS
        for elems in (2048, 4096, 8192, 16384):
            for warps in (4, 8, 16):
                if elems < triton_block(D):
                    continue
                K.LN_ELEMS, K.LN_WARPS = elems, warps
                report(f"add_ln D={D}", f"triton elems={elems} warps={warps}",
                       do_bench(lambda: K.add_layer_norm(x, d, ln)), nb)
        K.LN_ELEMS, K.LN_WARPS = product
        report(f"add_ln D={D}", "eager add + F.layer_norm", do_bench(lambda: F.layer_norm(x + d, (D,), ln.weight, ln.bias)), nb)
        comp = torch.compile(lambda x, d: (lambda s: (s, F.layer_norm(s, (D,), ln.weight, ln.bias)))(x + d), dynamic=True)
        comp(x, d)
        report(f"add_ln D={D}", "torch.compile", do_bench(lambda: comp(x, d)), nb)
        # erf GELU over [T, 4D]
        f = torch.randn(T, 4 * D, device="cuda", dtype=torch.float16)
        nbf = 2 * T * 4 * D * 2
        report(f"gelu T x {4 * D}", "torch gelu_ (in place)", do_bench(lambda: torch._C._nn.gelu_(f)), nbf)
        report(f"gelu T x {4 * D}", "F.gelu (out of place)", do_bench(lambda: F.gelu(f)), nbf)
        comp_g = torch.compile(lambda f: f * 0.5 * (1.0 + torch.erf(f / 1.4142135623730951)), dynamic=True)
        comp_g(f)
        report(f"gelu T x {4 * D}", "torch.compile fair-esm gelu", do_bench(lambda: comp_g(f)), nbf)
        # rotary over q, k of [T, 3D]
        H = D // 64
        qkv = torch.randn(T, 3 * D, device="cuda", dtype=torch.float16)
        pos = torch.randint(0, 60, (T,), device="cuda")
        p = torch.arange(1024, dtype=torch.float32)[:, None] * M.default_inv_freq(64)[None, :]
        cos, sin = p.cos().cuda(), p.sin().cuda()
        nbr = 2 * 2 * T * D * 2
        for bt in (4, 8, 16, 32):
            for bj in (128, 256, 512):
                for warps in (4, 8):
                    K.ROT_TOKENS, K.ROT_PAIRS, K.ROT_WARPS = bt, bj, warps
                    report(f"rotary D={D}", f"triton bt={bt} bj={bj} warps={warps}",
                           do_bench(lambda: K.rotary_(qkv, pos, cos, sin, H, 0.125)), nbr)
        K.ROT_TOKENS, K.ROT_PAIRS, K.ROT_WARPS = 8, 256, 4
    return 0


def fc1_gelu(T: int, D: int) -> None:
    """FC1 + bias + erf GELU: cuBLAS (bias epilogue) then a GELU pass, against Inductor's
    max-autotune Triton GEMM templates with the GELU fused into the epilogue."""
    import time

    import torch._inductor.config as icfg

    h = torch.randn(T, D, device="cuda", dtype=torch.float16)
    w = torch.randn(4 * D, D, device="cuda", dtype=torch.float16) * D ** -0.5
    b = torch.randn(4 * D, device="cuda", dtype=torch.float16)
    flops = 2 * T * D * 4 * D
    step = f"fc1+gelu T={T} D={D}"

    def tf(ms: float) -> float:
        return round(flops / ms / 1e9)

    ms = do_bench(lambda: F.linear(h, w, b))
    print(json.dumps({"step": step, "variant": "cuBLAS linear only", "ms": round(ms, 3), "TFLOPs": tf(ms)}), flush=True)
    ms = do_bench(lambda: torch._C._nn.gelu_(F.linear(h, w, b)))
    print(json.dumps({"step": step, "variant": "cuBLAS + gelu_", "ms": round(ms, 3), "TFLOPs": tf(ms)}), flush=True)
    ref = F.gelu(F.linear(h, w, b).float())
    for name, opts in (("inductor max-autotune", {}),
                       ("inductor max-autotune + persistent TMA", {"triton.enable_persistent_tma_matmul": True})):
        torch._dynamo.reset()
        with icfg.patch({"max_autotune_gemm_backends": "TRITON", **opts}):
            fn = torch.compile(lambda h, w, b: F.gelu(F.linear(h, w, b)), mode="max-autotune-no-cudagraphs", dynamic=False)
            t0 = time.perf_counter()
            try:
                out = fn(h, w, b)
            except Exception as e:  # report and go on
                print(json.dumps({"step": step, "variant": name, "error": repr(e)[:300]}), flush=True)
                continue
            took = time.perf_counter() - t0
            err = float((out.float() - ref).abs().max())
            ms = do_bench(lambda: fn(h, w, b))
            print(json.dumps({"step": step, "variant": name, "ms": round(ms, 3), "TFLOPs": tf(ms),
                              "compile_s": round(took, 1), "max_abs_err": err}), flush=True)


def triton_block(d: int) -> int:
    import triton
    return triton.next_power_of_2(d)


if __name__ == "__main__":
    sys.exit(main())
