"""Registers, spills, shared memory and resident programs per SM of the product's attention kernels
as compiled for Hopper, without a GPU: Triton compiles them to a cubin here (with the launch-time
specialisation a real launch gets: 16-byte-aligned pointers and strides), ptxas allocates the
registers, and Triton's bundled cuobjdump reads them back. Both kernels are latency-bound, so
programs per SM is what their speed follows (docs/decisions/packed-attention.md).

    python3 bench/kernel_occupancy.py [--arch 90] [--extra aligned:64x32x3r80,packed:64x32x2r72]

One JSON line per kernel launch: the product's (kernels.ATTN_* and every row of
kernels.ALIGNED_LAUNCH, at their register limits and without them) and any --extra
KIND:BMxBNxSTAGES[rMAXNREG] (4 warps).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from embed_worker.gpu import attention_kernels as AK  # noqa: E402

SMEM_PER_SM = 228 * 1024  # H100/H200: 228 KB per SM, 1 KB of it reserved per resident block
REGS_PER_SM = 65536

_PTR_AND_STRIDES = {"aligned": (0, 1, 2, 3, 4, 6, 7, 8, 9), "packed": (0, 1, 2, 3, 4, 5, 7, 8, 9, 10)}
_SIGNATURES = {
    "aligned": ("Q K V O".split(), ["TAB"], "n_blocks stride_t stride_h o_stride_t o_stride_h".split()),
    "packed": ("Q K V O".split(), ["SEQ", "CU"], "n_tok stride_t stride_h o_stride_t o_stride_h".split()),
}


def signature(kind: str) -> dict:
    halves, ints, scalars = _SIGNATURES[kind]
    sig = {n: "*fp16" for n in halves} | {n: "*i32" for n in ints} | {n: "i32" for n in scalars}
    meta = ["HEAD_DIM", "BM", "BN"] + (["SPLIT_TAIL"] if kind == "aligned" else [])
    return sig | {"scale": "fp32"} | {n: "constexpr" for n in meta}


def resources(kind: str, bm: int, bn: int, warps: int, stages: int, maxnreg: int | None, arch: int,
              split_tail: bool = True) -> dict:
    """split_tail: the aligned kernel's SPLIT_TAIL (kernels.split_tail of the launch's longest length)."""
    fn = AK._aligned_attn_kernel if kind == "aligned" else AK._packed_attn_kernel
    consts = {"HEAD_DIM": 64, "BM": bm, "BN": bn} | ({"SPLIT_TAIL": split_tail} if kind == "aligned" else {})
    src = ASTSource(fn=fn, signature=signature(kind), constexprs=consts,
                    attrs={(i,): [["tt.divisibility", 16]] for i in _PTR_AND_STRIDES[kind]})
    opts = {"num_warps": warps, "num_stages": stages} | ({"maxnreg": maxnreg} if maxnreg else {})
    c = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=opts)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(c.asm["cubin"])
        f.flush()
        tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True, check=True).stdout
    usage = dict(tok.split(":", 1) for line in out.splitlines() if "REG:" in line for tok in line.split()
                 if ":" in tok and tok.split(":", 1)[1].isdigit())
    regs, smem = int(usage["REG"]), int(c.metadata.shared)
    per_warp = -(-regs * 32 // 256) * 256  # registers are allocated per warp in units of 256
    return {"kernel": kind, "shape": f"{bm}x{bn}x{warps}x{stages}", "maxnreg": maxnreg, "regs": regs,
            "spill_bytes": int(usage.get("STACK", 0)), "smem": smem,
            "programs_by_regs": REGS_PER_SM // (per_warp * warps), "programs_by_smem": SMEM_PER_SM // (smem + 1024)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--extra", default="", help="KIND:BMxBNxSTAGES[rMAXNREG],... (4 warps)")
    a = ap.parse_args()
    launches = [("packed", AK.ATTN_BM, AK.ATTN_BN, AK.ATTN_WARPS, AK.ATTN_STAGES, r, True) for r in (None, AK.ATTN_MAXNREG)]
    launches += [("aligned", AK.ALIGNED_BM, bn, AK.ALIGNED_WARPS, stages, r, AK.split_tail(bn, upto))
                 for upto, bn, stages, regs in AK.ALIGNED_LAUNCH for r in (None, regs)]
    for spec in a.extra.split(",") if a.extra else ():
        kind, shape = spec.split(":")
        dims, _, regs = shape.partition("r")
        bm, bn, stages = map(int, dims.split("x"))
        launches.append((kind, bm, bn, 4, stages, int(regs) if regs else None, True))
    for *launch, split in launches:
        print(json.dumps(resources(*launch, a.arch, split)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
