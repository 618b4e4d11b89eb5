"""Triton attention kernels for the GPU fast path: softmax(scale q kᵀ) v within each packed
sequence, for batches where the varlen flash kernel's one tile per sequence leaves most of each
tile empty.

  packed_attention(q, k, v, seq_id, cu)  for batches of short sequences (tiles of consecutive
                                       packed tokens, keys masked to the row's sequence)
  aligned_attention(q, k, v, cu, scale, table, max_seqlen)  the same on tiles of one sequence's
                                       rows (block_table), keys of that sequence only

Arithmetic is fp32 inside (online softmax in base 2); results are stored in q's dtype. This file
imports only torch and triton (no package modules): bench/bench.py loads another revision's copy
of it by path (--base-kernels) to A/B the kernels and their launch options.

Importing this module needs `triton`; without a GPU the kernels run under TRITON_INTERPRET=1.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _softmax_init(BM: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Running max (base 2, scaled), denominator and accumulator of an online softmax over BM rows."""
    return tl.full([BM], -1.0e30, tl.float32), tl.zeros([BM], tl.float32), tl.zeros([BM, HEAD_DIM], tl.float32)


@triton.jit
def _softmax_step(q, k, v, keep, qk_scale, m_i, l_i, acc, MASK: tl.constexpr):
    """One online-softmax step of a [BM, Dh] query tile against keys k and values v [BN, Dh],
    where `keep` ([BM, BN] or [1, BN]) allows (MASK; without it every score counts). Returns the
    updated running max (base 2, scaled), denominator and fp32 accumulator. At Dh = 64 the
    exponentials and the per-score fp32 work cost as much as the two dots, so each score takes one
    max, one FMA (scale and shift), one exp2 and one add here, and the accumulator is rescaled into
    the PV dot's own accumulation."""
    s = tl.dot(q, tl.trans(k))  # [BM, BN] fp32, unscaled
    if MASK:
        s = tl.where(keep, s, float("-inf"))
    return _softmax_scores(s, v, qk_scale, m_i, l_i, acc)


@triton.jit
def _softmax_scores(s, v, qk_scale, m_i, l_i, acc):
    """_softmax_step from its scores on: s [BM, BN] fp32 unscaled (masked to -inf where not kept)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1) * qk_scale)  # qk_scale > 0
    p = tl.math.exp2(s * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_new, l_i, acc


@triton.jit
def _load_kv(K, V, cols, cmask, h, d, stride_t, stride_h, BOUNDS: tl.constexpr):
    """Keys and values [BN, Dh] at token rows `cols` ([BN]) of head h; BOUNDS: load only where
    cmask ([BN]: in range; zeros elsewhere; None without BOUNDS)."""
    koff = cols.to(tl.int64)[:, None] * stride_t + h * stride_h + d[None, :]
    if BOUNDS:
        return tl.load(K + koff, mask=cmask[:, None], other=0.0), tl.load(V + koff, mask=cmask[:, None], other=0.0)
    return tl.load(K + koff), tl.load(V + koff)


@triton.jit
def _attend_keys(q, K, V, cols, cmask, keep, h, d, stride_t, stride_h, qk_scale, m_i, l_i, acc,
                 BOUNDS: tl.constexpr, MASK: tl.constexpr):
    """_softmax_step against the keys/values at `cols` ([BN]) of head h (_load_kv; keep is None
    without MASK)."""
    k, v = _load_kv(K, V, cols, cmask, h, d, stride_t, stride_h, BOUNDS)
    return _softmax_step(q, k, v, keep, qk_scale, m_i, l_i, acc, MASK)


@triton.jit
def _attend_tail(q, K, V, k0, end, h, d, stride_t, stride_h, qk_scale, m_i, l_i, acc, BT: tl.constexpr):
    """_attend_keys against the last keys [k0, end) of a sequence in one masked block of BT keys."""
    cols = k0 + tl.arange(0, BT)
    cmask = cols < end
    return _attend_keys(q, K, V, cols, cmask, cmask[None, :], h, d, stride_t, stride_h, qk_scale,
                        m_i, l_i, acc, BOUNDS=True, MASK=True)


@triton.jit
def _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h):
    """acc / l for the tile's rows in range (rows with no keys, past T, store zeros)."""
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    ooff = rows.to(tl.int64)[:, None] * o_stride_t + h * o_stride_h + d[None, :]
    tl.store(O + ooff, out.to(O.dtype.element_ty), mask=rmask[:, None])


@triton.jit(do_not_specialize=["n_tok"])
def _packed_attn_kernel(Q, K, V, O, SEQ, CU, n_tok, stride_t, stride_h, o_stride_t, o_stride_h, scale,
                        HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    """softmax(scale q k^T) v for BM consecutive packed tokens of one head, against the keys of
    every sequence those tokens belong to (block-diagonal mask by sequence id)."""
    r0 = tl.program_id(0) * BM
    h = tl.program_id(1)
    rows = r0 + tl.arange(0, BM)  # [BM]
    rmask = rows < n_tok
    d = tl.arange(0, HEAD_DIM)
    seq_q = tl.load(SEQ + rows, mask=rmask, other=-1)  # [BM]
    first = tl.load(SEQ + r0)
    last = tl.load(SEQ + tl.minimum(r0 + BM, n_tok) - 1)
    k_lo = tl.load(CU + first)
    k_hi = tl.load(CU + last + 1)
    qoff = rows.to(tl.int64)[:, None] * stride_t + h * stride_h + d[None, :]
    q = tl.load(Q + qoff, mask=rmask[:, None], other=0.0)  # [BM, Dh]
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    qk_scale = scale * 1.4426950408889634  # softmax in base 2
    k_full = k_lo + (k_hi - k_lo) // BN * BN  # whole key blocks first, loaded without bounds
    for start in range(k_lo, k_full, BN):
        cols = start + tl.arange(0, BN)  # [BN]
        seq_k = tl.load(SEQ + cols)
        m_i, l_i, acc = _attend_keys(q, K, V, cols, None, seq_q[:, None] == seq_k[None, :], h, d,
                                     stride_t, stride_h, qk_scale, m_i, l_i, acc, BOUNDS=False, MASK=True)
    if k_full < k_hi:
        cols = k_full + tl.arange(0, BN)
        cmask = cols < k_hi
        seq_k = tl.load(SEQ + cols, mask=cmask, other=-2)
        m_i, l_i, acc = _attend_keys(q, K, V, cols, cmask, seq_q[:, None] == seq_k[None, :], h, d, stride_t,
                                     stride_h, qk_scale, m_i, l_i, acc, BOUNDS=True, MASK=True)
    _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h)


# Best of 36 launch shapes on an H200 for reads and short (docs/decisions/packed-attention.md):
# 0.58 ms vs the flash kernel's 0.89 ms per 3B layer on reads, 0.85 vs 1.12 on short; at
# uniprot lengths (max 1024) flash is ahead (2.36 vs 2.43 ms), hence the length limit. Two
# stages once the registers are held to ATTN_MAXNREG (below).
ATTN_BM, ATTN_BN, ATTN_WARPS, ATTN_STAGES = 64, 32, 4, 2
PACKED_ATTN_MAX_LEN = 256  # longer batches go to the varlen flash kernel

# Registers per thread on Hopper. Both attention kernels are latency-bound (a few short key
# loops per program), so programs resident per SM is what sets their speed; with Triton's own
# allocation (110 registers for the aligned kernel at 64x64, 88-92 for the packed one on sm_90)
# only 4 and 5 fit. Held to 96 and 80 (no spill at these launches; bench/kernel_occupancy.py),
# 5 and 6 fit: measured per batch on an H200 (docs/decisions/packed-attention.md), aligned 5-8%
# faster on every batch, packed 1-3%. Other GPUs keep ptxas's choice (measured on Hopper only).
ATTN_MAXNREG = 80


def _maxnreg(device: torch.device, head_dim: int, n: int) -> dict:
    """Launch options holding a kernel to n registers per thread where that was measured (sm_90,
    Dh = 64: ESM-2 650M and 3B; at Dh = 128 the accumulator alone needs 64 registers)."""
    if (head_dim <= 64 and device.type == "cuda"
            and _capability(device.index if device.index is not None else torch.cuda.current_device()) == 9):
        return {"maxnreg": n}
    return {}


_capabilities: dict[int, int] = {}


def _capability(index: int) -> int:
    if index not in _capabilities:
        _capabilities[index] = torch.cuda.get_device_capability(index)[0]
    return _capabilities[index]


def _attention_tiles_fit(dtype: torch.dtype, head_dim: int) -> bool:
    """What both Triton attention kernels need: half precision, a power-of-two head size (16..128)."""
    return dtype in (torch.float16, torch.bfloat16) and head_dim in (16, 32, 64, 128)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> None:
    if not (q.stride() == k.stride() == v.stride() and q.stride(2) == 1):
        raise ValueError(f"{kernel} attention takes q, k, v with equal strides and a contiguous head dim")


def packed_attention_fits(dtype: torch.dtype, head_dim: int, max_seqlen: int) -> bool:
    """Whether packed_attention serves this batch: half precision, a power-of-two head size
    (16..128), and short sequences, where the flash kernel's one-tile-per-sequence launch wastes
    most of each tile."""
    return _attention_tiles_fit(dtype, head_dim) and max_seqlen <= PACKED_ATTN_MAX_LEN


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_id: torch.Tensor,
                     cu_seqlens: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Packed self-attention within each sequence, softmax(scale q kᵀ) (scale 1: q pre-scaled).

    q, k, v [T, H, Dh] with equal strides and a unit last stride (views of the fused projection
    are fine); seq_id [T] int32 (each token's sequence), cu_seqlens [B+1] int32 -> [T, H, Dh].
    """
    T, H, Dh = q.shape
    _check_qkv(q, k, v, "packed")
    o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
    if T:
        _packed_attn_kernel[(triton.cdiv(T, ATTN_BM), H)](
            q, k, v, o, seq_id, cu_seqlens, T, q.stride(0), q.stride(1), o.stride(0), o.stride(1),
            float(scale), HEAD_DIM=Dh, BM=ATTN_BM, BN=ATTN_BN, num_warps=ATTN_WARPS, num_stages=ATTN_STAGES,
            **_maxnreg(q.device, Dh, ATTN_MAXNREG))
    return o


@triton.jit
def _aligned_tile(Q, TAB, n_blocks, stride_t, stride_h, HEAD_DIM: tl.constexpr, BM: tl.constexpr):
    """This program's tile of the block table: (head h, its sequence's [start, end), the tile's
    rows and their mask, the head offsets d, q [BM, Dh] (zeros past end)); TAB [3, n_blocks]
    int32 holds (r0, end, start) per tile (zeros: nothing to do)."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    r0 = tl.load(TAB + b)
    end = tl.load(TAB + n_blocks + b)
    start = tl.load(TAB + 2 * n_blocks + b)
    rows = r0 + tl.arange(0, BM)
    rmask = rows < end
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + rows.to(tl.int64)[:, None] * stride_t + h * stride_h + d[None, :], mask=rmask[:, None], other=0.0)
    return h, start, end, rows, rmask, d, q


@triton.jit(do_not_specialize=["n_blocks"])
def _aligned_attn_kernel(Q, K, V, O, TAB, n_blocks, stride_t, stride_h, o_stride_t, o_stride_h, scale,
                         HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, SPLIT_TAIL: tl.constexpr):
    """softmax(scale q k^T) v for rows [r0, min(r0 + BM, end)) of one sequence [start, end), one
    head (the tile _aligned_tile reads from the block table). SPLIT_TAIL: the last keys in the
    smallest block of BN, BN/2 or BN/4 (at least 16) that holds them, else in BN."""
    h, start, end, rows, rmask, d, q = _aligned_tile(Q, TAB, n_blocks, stride_t, stride_h, HEAD_DIM, BM)
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    qk_scale = scale * 1.4426950408889634  # softmax in base 2
    k_full = start + (end - start) // BN * BN  # whole key blocks: no bounds, no mask
    for k0 in range(start, k_full, BN):
        cols = k0 + tl.arange(0, BN)
        m_i, l_i, acc = _attend_keys(q, K, V, cols, None, None, h, d, stride_t, stride_h,
                                     qk_scale, m_i, l_i, acc, BOUNDS=False, MASK=False)
    if k_full < end:
        if SPLIT_TAIL and BN // 4 >= 16:
            if end - k_full <= BN // 4:
                m_i, l_i, acc = _attend_tail(q, K, V, k_full, end, h, d, stride_t, stride_h, qk_scale,
                                             m_i, l_i, acc, BN // 4)
            elif end - k_full <= BN // 2:
                m_i, l_i, acc = _attend_tail(q, K, V, k_full, end, h, d, stride_t, stride_h, qk_scale,
                                             m_i, l_i, acc, BN // 2)
            else:
                m_i, l_i, acc = _attend_tail(q, K, V, k_full, end, h, d, stride_t, stride_h, qk_scale,
                                             m_i, l_i, acc, BN)
        elif SPLIT_TAIL and BN // 2 >= 16:
            if end - k_full <= BN // 2:
                m_i, l_i, acc = _attend_tail(q, K, V, k_full, end, h, d, stride_t, stride_h, qk_scale,
                                             m_i, l_i, acc, BN // 2)
            else:
                m_i, l_i, acc = _attend_tail(q, K, V, k_full, end, h, d, stride_t, stride_h, qk_scale,
                                             m_i, l_i, acc, BN)
        else:
            m_i, l_i, acc = _attend_tail(q, K, V, k_full, end, h, d, stride_t, stride_h, qk_scale,
                                         m_i, l_i, acc, BN)
    _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h)


# Sequence-aligned tiles, measured on an H200 over uniprot's batches (docs/decisions/packed-attention.md): 17-26% faster than the varlen flash
# kernel for longest sequences of 300-460 tokens, even elsewhere up to 1,024 (D = 1280); faster
# than FA4 up to 1,024 since the register limits, and than the packed kernel on short batches past 88 tokens
# or filling their tiles well (below).
ALIGNED_BM, ALIGNED_WARPS = 64, 4
ALIGNED_ATTN_MAX_LEN = 1024  # the measured range; longer batches go to the varlen flash kernel
# Launch options by the batch's longest sequence: (up to this many tokens, BN, stages, registers
# per thread on Hopper at Dh <= 64); BM stays 64, so one block table serves every row. Measured per
# batch on an H200 (docs/decisions/packed-attention.md): one key block of 64 with one stage is best up
# to 64 tokens (9-11% over two stages); 32-key blocks, three stages and 80 registers (6 programs
# per SM, no spill) from 65 to ~320 (3-13% over 64x64); 64x64, two stages, 96 registers beyond.
ALIGNED_LAUNCH = ((64, 64, 1, 96), (320, 32, 3, 80), (None, 64, 2, 96))


def aligned_launch(max_seqlen: int | None) -> tuple[int, int, int]:
    """(BN, stages, maxnreg) of the aligned kernel for a batch whose longest sequence is
    max_seqlen tokens (None: unknown, the long-batch options)."""
    for upto, bn, stages, regs in ALIGNED_LAUNCH:
        if upto is None or (max_seqlen is not None and max_seqlen <= upto):
            return bn, stages, regs
    raise ValueError("ALIGNED_LAUNCH must end with an open-ended row")


def split_tail(bn: int, max_seqlen: int | None) -> bool:
    """Whether the aligned kernel runs a sequence's last keys in a block of BN/2 or BN/4 when they
    fit one: where sequences can be longer than one key block (~4% fewer scores at uniprot's
    lengths; whole workloads +0.2-0.3%, within noise: docs/decisions/packed-attention.md). Where a
    whole sequence fits one block (the <= 64-token launch) the branches would only cost registers
    (ptxas spilled 40 bytes there with them)."""
    return max_seqlen is None or max_seqlen > bn


def aligned_launch_lengths() -> list[int]:
    """One longest-sequence length per row of ALIGNED_LAUNCH (each row's upper end; the open
    row's lower end): the batch shapes that compile every launch (the worker's warm-up)."""
    ends = [upto for upto, *_ in ALIGNED_LAUNCH[:-1]]
    return ends + [ends[-1] + 1 if ends else ALIGNED_ATTN_MAX_LEN]


# Below PACKED_ATTN_MAX_LEN the aligned kernel wins where the batch's sequences fill their 64-row
# tiles well (the planner sorts by length, so a batch's sequences are about as long as its longest),
# and whatever the fill past 88 tokens (its 32-key launch): measured per batch on an H200
# (docs/decisions/packed-attention.md): faster at 49-64 tokens (fill >= 0.77: up to 9%) and from 92
# tokens on (5-25%); slower at 33-47 and 71-82 (fills 0.52-0.73: up to 20%).
ALIGNED_OVER_PACKED_MIN_FILL = 0.78
ALIGNED_OVER_PACKED_ANY_FILL = 88  # longer: aligned whatever the fill


def aligned_beats_packed(max_seqlen: int) -> bool:
    """Whether a batch the packed kernel could take runs faster on aligned tiles."""
    tiles = -(-max_seqlen // ALIGNED_BM)
    return (max_seqlen > ALIGNED_OVER_PACKED_ANY_FILL
            or max_seqlen >= ALIGNED_OVER_PACKED_MIN_FILL * tiles * ALIGNED_BM)


def aligned_attention_fits(dtype: torch.dtype, head_dim: int, max_seqlen: int) -> bool:
    """Whether aligned_attention serves this batch: half precision, a power-of-two head size
    (16..128), sequences up to ALIGNED_ATTN_MAX_LEN."""
    return _attention_tiles_fit(dtype, head_dim) and max_seqlen <= ALIGNED_ATTN_MAX_LEN


def block_table(cu_seqlens: torch.Tensor, n_tok: int, bm: int | None = None) -> torch.Tensor:
    """[3, NB] int32 (first row, sequence end, sequence start) of every BM-row tile of every
    sequence, padded with zero tiles to NB = ceil(T / BM) + B, a bound on sum ceil(L_i / BM)
    known on the host: built on the GPU with no sync, once per batch for all layers."""
    bm = ALIGNED_BM if bm is None else bm
    cu = cu_seqlens.long()
    return tile_table(cu, (cu[1:] - cu[:-1] + bm - 1) // bm, bm, -(-n_tok // bm) + cu.numel() - 1)


def tile_table(cu: torch.Tensor, nb: torch.Tensor, bm: int, n_blocks: int) -> torch.Tensor:
    """block_table's [3, n_blocks] int32 for the first nb[i] BM-row tiles of each sequence i
    (cu int64 [B+1], nb int64 [B]; n_blocks >= sum(nb), the rest zero tiles)."""
    n_seq = cu.numel() - 1
    last = torch.cumsum(nb, 0)  # one past each sequence's last tile
    blk = torch.arange(n_blocks, device=cu.device)
    seq = torch.searchsorted(last, blk, right=True)
    valid = seq < n_seq
    s = seq.clamp(max=n_seq - 1)
    r0 = cu[s] + (blk - (last[s] - nb[s])) * bm
    zero = torch.zeros_like(r0)
    return torch.stack([torch.where(valid, r0, zero), torch.where(valid, cu[s + 1], zero),
                        torch.where(valid, cu[s], zero)]).to(torch.int32).contiguous()


def aligned_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                      scale: float = 1.0, table: torch.Tensor | None = None,
                      max_seqlen: int | None = None) -> torch.Tensor:
    """Packed self-attention within each sequence, softmax(scale q kᵀ), on tiles aligned to
    sequence starts. q, k, v as packed_attention takes them; table: block_table(cu_seqlens, T)
    (built here when not given); max_seqlen (the longest sequence, when the caller knows it)
    picks the launch options (aligned_launch) -> [T, H, Dh]."""
    T, H, Dh = q.shape
    _check_qkv(q, k, v, "aligned")
    o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
    if T:
        tab = block_table(cu_seqlens, T) if table is None else table
        bn, stages, regs = aligned_launch(max_seqlen)
        _aligned_attn_kernel[(tab.shape[1], H)](
            q, k, v, o, tab, tab.shape[1], q.stride(0), q.stride(1), o.stride(0), o.stride(1), float(scale),
            HEAD_DIM=Dh, BM=ALIGNED_BM, BN=bn, SPLIT_TAIL=split_tail(bn, max_seqlen), num_warps=ALIGNED_WARPS,
            num_stages=stages, **_maxnreg(q.device, Dh, regs))
    return o
