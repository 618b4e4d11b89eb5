"""DNABERT-S's gated projection and GeGLU in one Triton kernel (no quack, no CuTe DSL import).

    geglu_linear(x [T, D], weight [2F, D]) -> gelu_erf(x Wgᵀ) * (x Wuᵀ)  [T, F]

weight is the checkpoint's `gated_layers.weight` as it is (rows: F gate, then F up). Each program
computes one [BLOCK_M, BLOCK_N] tile of the output with two fp32 accumulators, gate and up, over
the same loads of x (a dual GEMM: columns n of the gate half and n of the up half side by side),
then applies the exact (erf) GELU to the gate, multiplies, and rounds once to x's dtype. The
[T, 2F] product never reaches memory: against cuBLAS + the separate GeGLU pass (gpu/dnabert_s.py
geglu), a token costs 2F bytes a layer instead of 10F in fp16 (the [T, 2F] product written and
read back, then [T, F] written). What it may lose is GEMM speed, Triton's Hopper code against
cuBLAS's: bench/dnabert_s.py measures the two as arms.

CONFIG is the launch (block sizes, warps, pipeline stages); bench/dnabert_s.py's --geglu-configs
times others. Tiles are grouped along M (GROUP_M rows of tiles share their weight tiles in L2).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# BLOCK_M, BLOCK_N, BLOCK_K, warps, stages: two 128 x 64 fp32 accumulators per program (the
# registers of one 128 x 128 tile), 32 KB of shared memory per stage.
CONFIG = (128, 64, 64, 4, 4)
GROUP_M = 8


@triton.jit(do_not_specialize=["M"])
def _geglu_gemm_kernel(X, W, Y, M, F, K, stride_xm, stride_wn, stride_ym,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       GROUP: tl.constexpr):
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(F, BLOCK_N)
    per_group = GROUP * tiles_n
    first_m = (pid // per_group) * GROUP
    group_m = min(tiles_m - first_m, GROUP)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM] output rows (tokens)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN] output columns (gate j / up j)
    rk = tl.arange(0, BLOCK_K)
    row_ok = rm[:, None] < M
    col_ok = rn[None, :] < F
    xp = X + rm[:, None].to(tl.int64) * stride_xm + rk[None, :]  # [BM, BK]
    gp = W + rn[None, :].to(tl.int64) * stride_wn + rk[:, None]  # [BK, BN]: Wg tile, transposed view
    up = gp + F * stride_wn  # the up half's rows, F rows further
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        k_ok = (k + rk) < K
        a = tl.load(xp, mask=row_ok & k_ok[None, :], other=0.0)
        bg = tl.load(gp, mask=col_ok & k_ok[:, None], other=0.0)
        bu = tl.load(up, mask=col_ok & k_ok[:, None], other=0.0)
        acc_g = tl.dot(a, bg, acc_g)
        acc_u = tl.dot(a, bu, acc_u)
        xp += BLOCK_K
        gp += BLOCK_K
        up += BLOCK_K
    y = 0.5 * acc_g * (1.0 + tl.math.erf(acc_g * 0.7071067811865476)) * acc_u
    tl.store(Y + rm[:, None].to(tl.int64) * stride_ym + rn[None, :], y.to(Y.dtype.element_ty), mask=row_ok & col_ok)


def geglu_linear(x: torch.Tensor, weight: torch.Tensor, config: tuple[int, int, int, int, int] = CONFIG) -> torch.Tensor:
    """gelu_erf(x Wgᵀ) * (x Wuᵀ) [T, F] for x [T, D] and the gated weight [2F, D] (gate rows, then
    up rows), both contiguous and of one dtype; fp32 accumulation, one rounding at the end."""
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[1] != x.shape[1] or weight.shape[0] % 2:
        raise ValueError(f"geglu_linear takes x [T, D] and weight [2F, D]; got {list(x.shape)} and {list(weight.shape)}")
    if x.dtype != weight.dtype or not x.is_contiguous() or not weight.is_contiguous():
        raise ValueError("geglu_linear needs contiguous x and weight of one dtype")
    m, k = x.shape
    f = weight.shape[0] // 2
    y = torch.empty(m, f, dtype=x.dtype, device=x.device)
    if m:
        bm, bn, bk, warps, stages = config
        grid = (triton.cdiv(m, bm) * triton.cdiv(f, bn),)
        _geglu_gemm_kernel[grid](x, weight, y, m, f, k, x.stride(0), weight.stride(0), y.stride(0),
                                 BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP=GROUP_M,
                                 num_warps=warps, num_stages=stages)
    return y
