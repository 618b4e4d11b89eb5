"""Packed self-attention with an ALiBi bias, for DNABERT-S (MosaicBERT) on short sequences.

    s_h[i, j] = scale * q_h[i] . k_h[j] - slope_h * |i - j|     within each sequence only
    o_h[i]    = softmax_j(s_h[i, :]) v_h

Neither torch's FlashAttention build nor varlen_attn takes a bias, and FlexAttention with a
document mask and a score_mod was slower than plain varlen attention without ALiBi (H100:
0.82-1.04M vs 1.35-1.47M tokens/s for the whole model), so this is a Triton kernel in the house
pattern of attention_kernels.packed_attention / aligned_attention, with one more term per score.

Two facts keep that term cheap:
  - inside one sequence |i - j| is the distance of the two rows in the packed stream, so the bias
    needs no position table: |row - col| of the tile's own indices;
  - the softmax runs in base 2, so each score costs one multiply-add: s * (scale * log2 e) -
    (slope_h * log2 e) * |row - col|, with the slopes pre-multiplied by log2 e on the host
    (slopes_log2).

Tiles: "packed" takes BM consecutive packed tokens against the keys of every sequence they touch
(block-diagonal mask by sequence id), which suits reads of 30-40 tokens; "aligned" takes BM rows
of one sequence against that sequence's keys (attention_kernels.block_table), which suits sequences that
fill a tile. tiles_for picks one per batch (DNABERT-S reads: 150 bp -> 30-40 tokens, 300 bp ->
58-73 tokens with [CLS]/[SEP]).

Arithmetic is fp32 (fp32 accumulators, exp2 softmax); q, k, v may be fp16, bf16 or fp32 (fp32
dots in IEEE precision, for the CPU interpreter tests and fp32 parity). attention_reference is the
exact PyTorch path the kernel is tested against.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .attention_kernels import _aligned_tile, _load_kv, _softmax_init, _store_rows, block_table

LOG2E = 1.4426950408889634


@triton.jit
def _alibi_step(q, k, v, rows, cols, keep, qk_scale, slope2, m_i, l_i, acc, IEEE: tl.constexpr):
    """One online-softmax step of a [BM, Dh] query tile (token rows `rows` [BM]) against keys k
    and values v [BN, Dh] at token rows `cols` [BN]; `keep` ([BM, BN] or [1, BN]) allows a score.
    Scores are in base 2: s * qk_scale - slope2 * |row - col| (qk_scale = scale * log2 e, slope2 =
    slope * log2 e). Returns the running max, denominator and fp32 accumulator."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")  # [BM, BN] fp32
    else:
        s = tl.dot(q, tl.trans(k))
    dist = tl.abs(rows[:, None] - cols[None, :]).to(tl.float32)  # [BM, BN]
    s = tl.where(keep, s * qk_scale - slope2 * dist, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    if IEEE:
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision="ieee")
    else:
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_new, l_i, acc


@triton.jit(do_not_specialize=["n_tok"])
def _alibi_packed_kernel(Q, K, V, O, SEQ, CU, SLOPES, n_tok, stride_t, stride_h, o_stride_t, o_stride_h, qk_scale,
                         HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, IEEE: tl.constexpr):
    """BM consecutive packed tokens of head h against the keys of every sequence they belong to
    (block-diagonal mask by sequence id), with head h's ALiBi term."""
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
    q = tl.load(Q + rows.to(tl.int64)[:, None] * stride_t + h * stride_h + d[None, :], mask=rmask[:, None], other=0.0)
    slope2 = tl.load(SLOPES + h)
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    k_full = k_lo + (k_hi - k_lo) // BN * BN  # whole key blocks first, loaded without bounds
    for start in range(k_lo, k_full, BN):
        cols = start + tl.arange(0, BN)  # [BN]
        seq_k = tl.load(SEQ + cols)
        k, v = _load_kv(K, V, cols, None, h, d, stride_t, stride_h, BOUNDS=False)
        m_i, l_i, acc = _alibi_step(q, k, v, rows, cols, seq_q[:, None] == seq_k[None, :], qk_scale, slope2,
                                    m_i, l_i, acc, IEEE)
    if k_full < k_hi:
        cols = k_full + tl.arange(0, BN)
        cmask = cols < k_hi
        seq_k = tl.load(SEQ + cols, mask=cmask, other=-2)
        k, v = _load_kv(K, V, cols, cmask, h, d, stride_t, stride_h, BOUNDS=True)
        m_i, l_i, acc = _alibi_step(q, k, v, rows, cols, seq_q[:, None] == seq_k[None, :], qk_scale, slope2,
                                    m_i, l_i, acc, IEEE)
    _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h)


@triton.jit(do_not_specialize=["n_blocks"])
def _alibi_aligned_kernel(Q, K, V, O, TAB, SLOPES, n_blocks, stride_t, stride_h, o_stride_t, o_stride_h, qk_scale,
                          HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, IEEE: tl.constexpr):
    """Rows [r0, min(r0 + BM, end)) of one sequence [start, end) (a block_table tile), head h,
    against that sequence's keys, with head h's ALiBi term."""
    h, start, end, rows, rmask, d, q = _aligned_tile(Q, TAB, n_blocks, stride_t, stride_h, HEAD_DIM, BM)
    slope2 = tl.load(SLOPES + h)
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    for k0 in range(start, end, BN):
        cols = k0 + tl.arange(0, BN)
        cmask = cols < end
        k, v = _load_kv(K, V, cols, cmask, h, d, stride_t, stride_h, BOUNDS=True)
        m_i, l_i, acc = _alibi_step(q, k, v, rows, cols, cmask[None, :], qk_scale, slope2, m_i, l_i, acc, IEEE)
    _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h)


# Launch shapes per batch by its longest sequence: (up to this many tokens, tiles, BM, BN, warps,
# stages). Measured on an H100 as whole-model tokens/s (bench/dnabert_s.py --tiles, 2M tokens of
# 65,536-token batches; attention is a few % of the forward, so the spread is small):
#   150 bp (longest 41):  packed 64x32 1.84M, packed 64x64 1.86M, packed 128x64 1.76M,
#                         aligned 64x64 1.83M, aligned 128x64 1.77M, aligned 32x32 1.77M
#   300 bp (longest 75):  packed 64x32 1.84M, packed 64x64 1.82M, packed 128x64 1.74M,
#                         aligned 64x64 1.80M, aligned 128x64 1.78M, aligned 32x32 1.74M
# Past 256 tokens the aligned tiles take over, as for ESM-2 (attention_kernels.PACKED_ATTN_MAX_LEN:
# a packed tile then spans keys of several long sequences); not measured with ALiBi there.
TILES = ((256, "packed", 64, 32, 4, 2), (None, "aligned", 64, 64, 4, 2))


def tiles_for(max_seqlen: int) -> tuple[str, int, int, int, int]:
    """(kind "packed" | "aligned", BM, BN, warps, stages) for a batch whose longest sequence is
    max_seqlen tokens."""
    for upto, *launch in TILES:
        if upto is None or max_seqlen <= upto:
            return tuple(launch)
    raise ValueError("TILES must end with an open-ended row")


def kernel_fits(dtype: torch.dtype, head_dim: int) -> bool:
    """Whether the Triton kernels take these tensors: fp16, bf16 or fp32, a power-of-two head
    size from 16 to 128 (tl.dot's shapes)."""
    return dtype in (torch.float16, torch.bfloat16, torch.float32) and head_dim in (16, 32, 64, 128)


def slopes_log2(slopes, device) -> torch.Tensor:
    """ALiBi slopes [H] (model.alibi_slopes' order) times log2 e, fp32 on `device`: the kernels'
    bias per unit distance in base 2."""
    return (torch.as_tensor(slopes, dtype=torch.float64) * LOG2E).to(device=device, dtype=torch.float32)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes2: torch.Tensor) -> None:
    if q.dim() != 3 or not (q.shape == k.shape == v.shape):
        raise ValueError(f"ALiBi attention takes q, k, v of one shape [T, H, Dh]; got {list(q.shape)}, "
                         f"{list(k.shape)}, {list(v.shape)}")
    if not (q.stride() == k.stride() == v.stride() and q.stride(2) == 1):
        raise ValueError("ALiBi attention takes q, k, v with equal strides and a contiguous head dim")
    if not kernel_fits(q.dtype, q.shape[2]):
        raise ValueError(f"ALiBi attention kernel takes fp16/bf16/fp32 and a head size of 16, 32, 64 or 128; "
                         f"got {q.dtype} and {q.shape[2]}")
    if slopes2.shape != (q.shape[1],) or slopes2.dtype != torch.float32:
        raise ValueError(f"slopes must be fp32 [H={q.shape[1]}] (slopes_log2); got {slopes2.dtype} {list(slopes2.shape)}")


class Plan:
    """The attention of one packed batch, chosen and prepared once for all layers: the tile kind
    and launch shape (tiles_for), and the batch's sequence ids or block table, built on the GPU
    without a host sync. Call it as plan(q, k, v) -> [T, H, Dh]."""

    def __init__(self, cu_seqlens: torch.Tensor, n_tok: int, max_seqlen: int, slopes2: torch.Tensor,
                 scale: float, tiles: tuple[str, int, int, int, int] | None = None):
        self.kind, self.bm, self.bn, self.warps, self.stages = tiles or tiles_for(max_seqlen)
        if self.kind not in ("packed", "aligned"):
            raise ValueError(f"ALiBi attention tiles must be 'packed' or 'aligned', not {self.kind!r}")
        self.cu = cu_seqlens.to(torch.int32)
        self.n_tok, self.slopes2, self.qk_scale = n_tok, slopes2, float(scale) * LOG2E
        if self.kind == "packed":
            lens = (self.cu[1:] - self.cu[:-1]).long()
            self.seq_id = torch.repeat_interleave(torch.arange(lens.numel(), device=self.cu.device, dtype=torch.int32),
                                                  lens, output_size=n_tok)  # [T]
        else:
            self.table = block_table(self.cu, n_tok, self.bm)  # [3, NB]

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        _check(q, k, v, self.slopes2)
        T, H, Dh = q.shape
        if T != self.n_tok:
            raise ValueError(f"this attention plan is for {self.n_tok} tokens, got {T}")
        o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
        if T == 0:
            return o
        ieee = q.dtype == torch.float32
        if self.kind == "packed":
            _alibi_packed_kernel[(triton.cdiv(T, self.bm), H)](
                q, k, v, o, self.seq_id, self.cu, self.slopes2, T, q.stride(0), q.stride(1), o.stride(0),
                o.stride(1), self.qk_scale, HEAD_DIM=Dh, BM=self.bm, BN=self.bn, IEEE=ieee,
                num_warps=self.warps, num_stages=self.stages)
        else:
            tab = self.table
            _alibi_aligned_kernel[(tab.shape[1], H)](
                q, k, v, o, tab, self.slopes2, tab.shape[1], q.stride(0), q.stride(1), o.stride(0),
                o.stride(1), self.qk_scale, HEAD_DIM=Dh, BM=self.bm, BN=self.bn, IEEE=ieee,
                num_warps=self.warps, num_stages=self.stages)
        return o


def alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                    slopes2: torch.Tensor, scale: float, tiles: tuple[str, int, int, int, int] | None = None
                    ) -> torch.Tensor:
    """softmax(scale q kᵀ - slope_h |i - j|) v within each packed sequence, one call (Plan for
    many layers of one batch). q, k, v [T, H, Dh] with equal strides and a unit last stride
    (views of the fused projection are fine); cu_seqlens [B+1]; slopes2 = slopes_log2(...)."""
    return Plan(cu_seqlens, q.shape[0], max_seqlen, slopes2, scale, tiles)(q, k, v)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                        slopes, scale: float) -> torch.Tensor:
    """The exact path, one sequence at a time in at least fp32 (fp64 for fp64 inputs): scores
    scale q kᵀ - slope_h |i - j|, softmax, times v -> [T, H, Dh] in q's dtype. slopes [H] as
    model.alibi_slopes gives them (not times log2 e)."""
    acc = torch.promote_types(q.dtype, torch.float32)
    sl = torch.as_tensor(slopes, dtype=torch.float64).to(device=q.device, dtype=acc)
    out = torch.empty(q.shape, dtype=acc, device=q.device)
    bounds = [int(c) for c in cu_seqlens.tolist()]
    for s, e in zip(bounds[:-1], bounds[1:]):
        pos = torch.arange(e - s, device=q.device, dtype=acc)
        bias = -sl[:, None, None] * (pos[:, None] - pos[None, :]).abs()  # [H, L, L]
        qs, ks, vs = (t[s:e].to(acc).transpose(0, 1) for t in (q, k, v))  # [H, L, Dh]
        out[s:e] = torch.softmax(qs @ ks.transpose(1, 2) * scale + bias, dim=-1).matmul(vs).transpose(0, 1)
    return out.to(q.dtype)


def default_scale(head_dim: int) -> float:
    """MosaicBERT's softmax scale, 1 / sqrt(Dh) (1/8 at Dh = 64)."""
    return 1.0 / math.sqrt(head_dim)
