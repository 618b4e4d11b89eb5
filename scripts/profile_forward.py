"""Where one packed forward's GPU time goes: GEMMs vs attention vs everything else, and how much
of the wall time the GPU is busy (launch gaps). Random weights initialised on the device.

    python3 scripts/profile_forward.py [--models esm2_t33_650M_UR50D,esm2_t36_3B_UR50D] [--budget 65536]
                                       [--kernels eager,compile,triton] [--gaps]

Prints one JSON line per model and the top kernels.
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
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from embed_worker import model as M  # noqa: E402
from embed_worker.registry import KNOWN  # noqa: E402
import workloads  # noqa: E402
from cudatime import timed  # noqa: E402


def category(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "sm90_xmma", "cublas")):
        return "gemm"
    if any(k in n for k in ("flash", "fmha", "attention", "varlen")):
        return "attention"
    if "layer_norm" in n or "layernorm" in n:
        return "layernorm"
    if "copy" in n or "memcpy" in n or "memset" in n:
        return "copy"
    return "elementwise/other"


def pack(seqs: list[str], budget: int, dev):
    """The longest sequences that fit the budget, packed: (tokens [T], cu_seqlens [B+1], max len, T, B)."""
    batch, used = [], 0
    for s in sorted(seqs, key=len, reverse=True):
        if used + len(s) + 2 > budget:
            break
        batch.append(s)
        used += len(s) + 2
    ids = torch.tensor([t for s in batch for t in [0] + [4 + "LAGVSERTIDPKQNFYMHWCXBUZO.-".index(c) for c in s] + [2]], device=dev)
    cu = torch.zeros(len(batch) + 1, dtype=torch.int32)
    torch.cumsum(torch.tensor([len(s) + 2 for s in batch], dtype=torch.int32), 0, out=cu[1:])
    return ids, cu.to(dev), max(len(s) for s in batch) + 2, used, len(batch)


def profile_one(model, name: str, kind: str, ids, cu, mx: int, used: int, nseq: int, gaps: bool = False) -> None:
    cfg = model.cfg
    L = cfg.num_layers
    model.use_kernels(kind)
    wall = timed(lambda: model(ids, cu, mx, [L]), 5) / 1000  # s per forward, back to back
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            model(ids, cu, mx, [L])
        torch.cuda.synchronize()
    per_cat: dict[str, float] = {}
    kernels = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t <= 0 or e.key.startswith("ProfilerStep"):
            continue
        c = category(e.key)
        per_cat[c] = per_cat.get(c, 0.0) + t / 3 / 1000  # ms per forward
        kernels.append((t / 3 / 1000, e.count // 3, e.key[:90], c))
    busy = sum(per_cat.values())
    flops = used * L * (24 * cfg.embed_dim ** 2)  # GEMM FLOPs only
    out = {"model": name, "kernels": kind, "tokens": used, "seqs": nseq, "wall_ms": round(wall * 1000, 2),
           "gpu_busy_ms": round(busy, 2), "busy_fraction": round(busy / (wall * 1000), 3),
           "ms_by_category": {k: round(v, 2) for k, v in sorted(per_cat.items(), key=lambda kv: -kv[1])},
           "gemm_tflops": round(flops / (per_cat.get("gemm", 1e-9) / 1000) / 1e12, 1),
           "tokens_per_s": round(used / wall)}
    print(json.dumps(out), flush=True)
    for t, n, k, c in sorted(kernels, reverse=True)[:14]:
        print(f"  {t:8.2f} ms  x{n:<5} [{c}] {k}")
    if gaps:
        idle_gaps(model, ids, cu, mx, L, name, kind)


def idle_gaps(model, ids, cu, mx: int, L: int, name: str, kind: str) -> None:
    """Where the GPU waits inside one forward: a trace with CPU ops, the idle gaps between
    consecutive kernels, and the CPU op running when each large gap began."""
    import tempfile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            model(ids, cu, mx, [L])
        torch.cuda.synchronize()
    path = tempfile.mktemp(suffix=".json")
    prof.export_chrome_trace(path)
    ev = json.load(open(path))["traceEvents"]
    kern = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in ev
                  if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e)
    cpu = [e for e in ev if e.get("cat") in ("cpu_op", "cuda_runtime", "python_function") and "dur" in e]
    gaps = [(b[0] - a[1], a[1], a[2][:60], b[2][:60]) for a, b in zip(kern, kern[1:]) if b[0] > a[1]]
    span = kern[-1][1] - kern[0][0]
    total = sum(g[0] for g in gaps)
    print(json.dumps({"model": name, "kernels": kind, "gap_analysis": True, "forwards": 2, "kernels_n": len(kern),
                      "span_ms": round(span / 1000, 2), "idle_ms": round(total / 1000, 2),
                      "idle_over_50us_ms": round(sum(g[0] for g in gaps if g[0] > 50) / 1000, 2)}), flush=True)
    for g, at, before, after in sorted(gaps, reverse=True)[:12]:
        running = sorted((e["dur"], e["name"][:50]) for e in cpu if e["ts"] <= at <= e["ts"] + e["dur"])
        print(f"  gap {g / 1000:7.3f} ms after [{before}] before [{after}]; CPU in: {[n for _, n in running[:4]]}")


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="esm2_t33_650M_UR50D,esm2_t36_3B_UR50D")
    ap.add_argument("--budget", type=int, default=65536)
    ap.add_argument("--workload", default="reads")
    ap.add_argument("--kernels", default="eager,compile,triton", help="arrangements to profile (model.use_kernels)")
    ap.add_argument("--gaps", action="store_true", help="also trace CPU ops and list where the GPU sits idle")
    a = ap.parse_args()
    dev = torch.device("cuda", 0)
    seqs = workloads.sequences(a.workload, 20000, seed=9)
    for name in a.models.split(","):
        with torch.device(dev):
            model = M.ESM2(KNOWN[name].cfg)
        model = model.half().eval()
        ids, cu, mx, used, nseq = pack(seqs, a.budget, dev)
        for kind in a.kernels.split(","):
            profile_one(model, name, kind, ids, cu, mx, used, nseq, a.gaps)
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
