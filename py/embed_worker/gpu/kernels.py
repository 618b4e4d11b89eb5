"""Triton kernels for the GPU fast path: the memory-bound passes between the GEMMs.

The GEMMs (cuBLAS) run near the H200's ceiling; what is left of an ESM-2 layer besides attention
(attention_kernels.py) is moving [T, D] activations through HBM. These kernels make each such
step one pass:

  add_layer_norm(x, d, ln) -> (s, h)   s = x + d (written over d), h = LN(s)      [T, D]
  add_layer_norm_only(x, d, ln) -> h   the same h, s not stored (post-LN)          [T, D]
  layer_norm(x, ln)        -> h        h = LN(x)                                   [T, D]
  rotary_(qkv, pos, table, heads, q_scale)   in place on the fused projection [T, 3D]:
                                       q = rotary(q * q_scale), k = rotary(k); v untouched

Arithmetic is fp32 inside every kernel; results are stored in the activations' dtype. LayerNorm is
taken of the sum as stored (rounded to the dtype), so h is exactly LN of the residual stream the
next layer adds to. The rotary cos/sin come from a table computed by PyTorch in fp32 (the same
values the reference computes), not from an approximate in-kernel cos.

Importing this module needs `triton`; on a machine without a GPU the kernels run under
TRITON_INTERPRET=1 (the tests do this), so they are checked in CI against the plain PyTorch path.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


# Token counts vary per batch: do_not_specialize keeps one compiled kernel for all of them
# (Triton would otherwise compile a variant for counts divisible by 16 on first sight, mid-run).
@triton.jit(do_not_specialize=["n_rows"])
def _add_ln_kernel(X, D, W, B, S, H, n_rows, n_cols, eps,
                   HAS_DELTA: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr, STORE_SUM: tl.constexpr = True):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]  # [ROWS, 1]
    cols = tl.arange(0, BLOCK)[None, :]  # [1, BLOCK]
    cmask = cols < n_cols
    mask = (rows < n_rows) & cmask
    off = rows.to(tl.int64) * n_cols + cols
    x = tl.load(X + off, mask=mask, other=0.0)
    if HAS_DELTA:
        x = (x.to(tl.float32) + tl.load(D + off, mask=mask, other=0.0).to(tl.float32)).to(S.dtype.element_ty)
        if STORE_SUM:
            tl.store(S + off, x, mask=mask)
    x = x.to(tl.float32)
    mean = tl.sum(x, axis=1) / n_cols  # [ROWS]
    xc = tl.where(cmask, x - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / n_cols
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    tl.store(H + off, (xc * rstd[:, None] * w + b).to(H.dtype.element_ty), mask=mask)


# Launch shapes, measured on a GPU as single calls, at the power cap and inside the forward
# (docs/decisions/triton-layernorm.md). LayerNorm: one row per program
# at 650M's and 3B's widths, one warp per 1,024 padded elements (32 per thread): the plain pass
# (650M's boundaries) at 3.75-3.8 TB/s (2 warps at D = 1280; 4 at 2560) against 3.1 with 8 warps
# (650M forward -1.0% for 8 -> 4 warps, commit 8f15bc7; 4 -> 2 at D = 1280 another -0.1 to -0.7%,
# a11e010); add+LN runs at 4.1 TB/s with any of these (docs/decisions/triton-layernorm.md).
LN_ELEMS = 2048  # elements per program (rows x padded width; one row when a row is wider)
LN_WARP_ELEMS = 1024  # one warp per this many of the program's elements
ROT_TOKENS, ROT_PAIRS, ROT_WARPS = 8, 256, 4


def _ln_launch(n_cols: int, elems: int = LN_ELEMS, warps: int | None = None) -> tuple[int, int, int]:
    """(rows per program, block width, warps) for rows of n_cols; `elems` per program and `warps`
    (None: one per LN_WARP_ELEMS) are arguments for experiments, the defaults what runs."""
    block = triton.next_power_of_2(n_cols)
    rows = max(1, elems // block)
    warps = warps or max(1, min(8, rows * block // LN_WARP_ELEMS))
    return rows, block, warps


def _add_ln(x: torch.Tensor, d: torch.Tensor | None, norm: torch.nn.LayerNorm,
            store_sum: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, LN(s)) for s = x, or x + d stored over d (store_sum=False: d is left as it was and
    only LN(s) is meaningful)."""
    if not x.is_contiguous() or (d is not None and not d.is_contiguous()) or x.dim() != 2:
        raise ValueError("layer norm kernel takes contiguous [T, D] tensors")
    n_rows, n_cols = x.shape
    s = d if d is not None else x
    h = torch.empty_like(x)
    rows, block, warps = _ln_launch(n_cols)
    if n_rows:
        _add_ln_kernel[(triton.cdiv(n_rows, rows),)](
            x, s, norm.weight, norm.bias, s, h, n_rows, n_cols, norm.eps,
            HAS_DELTA=d is not None, ROWS=rows, BLOCK=block, STORE_SUM=store_sum, num_warps=warps)
    return s, h


def add_layer_norm(x: torch.Tensor, d: torch.Tensor, norm: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, LN(s)) with s = x + d stored over d's memory (x is left untouched). [T, D] each."""
    return _add_ln(x, d, norm)


def add_layer_norm_only(x: torch.Tensor, d: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """LN(x + d) [T, D] without storing the sum (post-LN models, whose residual stream is the LN
    output): reads x and d, writes h, one [T, D] write fewer than add_layer_norm. The sum is
    rounded to the dtype before the LN, as there, so h is bit-equal to add_layer_norm's."""
    return _add_ln(x, d, norm, store_sum=False)[1]


def layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """LN(x) [T, D] in one pass."""
    return _add_ln(x, None, norm)[1]


@triton.jit(do_not_specialize=["n_tok"])
def _rotary_kernel(QKV, POS, COS, SIN, n_tok, dim, q_scale,
                   HALF: tl.constexpr, BT: tl.constexpr, BJ: tl.constexpr):
    t = tl.program_id(0) * BT + tl.arange(0, BT)[:, None]  # [BT, 1] token
    j = tl.program_id(1) * BJ + tl.arange(0, BJ)[None, :]  # [1, BJ] index into the D/2 rotated pairs
    part = tl.program_id(2)  # 0 = q, 1 = k
    tmask = t < n_tok
    jmask = j < dim // 2
    mask = tmask & jmask
    i = j % HALF  # frequency index inside the head
    col = part * dim + (j // HALF) * (2 * HALF) + i
    off = t.to(tl.int64) * (3 * dim) + col
    x1 = tl.load(QKV + off, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(QKV + off + HALF, mask=mask, other=0.0).to(tl.float32)
    if part == 0:
        x1 = x1 * q_scale
        x2 = x2 * q_scale
    pos = tl.load(POS + t, mask=tmask, other=0)
    toff = pos * HALF + i
    c = tl.load(COS + toff, mask=mask, other=0.0)
    s = tl.load(SIN + toff, mask=mask, other=0.0)
    tl.store(QKV + off, (x1 * c - x2 * s).to(QKV.dtype.element_ty), mask=mask)
    tl.store(QKV + off + HALF, (x2 * c + x1 * s).to(QKV.dtype.element_ty), mask=mask)


def rotary_(qkv: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            heads: int, q_scale: float) -> torch.Tensor:
    """In place on qkv [T, 3D] (rows [q | k | v], heads of Dh = D/heads): q = rot(q * q_scale),
    k = rot(k). pos [T] int32 (position inside its sequence); cos, sin [P, Dh/2] fp32 tables with
    P > max(pos)."""
    n_tok, three_d = qkv.shape
    dim = three_d // 3
    half = dim // heads // 2
    if not qkv.is_contiguous() or three_d != 3 * dim or cos.shape[1] != half:
        raise ValueError("rotary kernel takes a contiguous [T, 3D] projection and [P, Dh/2] tables")
    bt, bj = ROT_TOKENS, ROT_PAIRS
    if n_tok:
        _rotary_kernel[(triton.cdiv(n_tok, bt), triton.cdiv(dim // 2, bj), 2)](
            qkv, pos, cos, sin, n_tok, dim, q_scale, HALF=half, BT=bt, BJ=bj, num_warps=ROT_WARPS)
    return qkv
