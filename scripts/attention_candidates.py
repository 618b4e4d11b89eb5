"""Candidate attention kernels for batches of short packed sequences, measured by
scripts/attention_sweep.py (--candidates) against the product's packed-tile kernel
(embed_worker/kernels.py) before any of them moves into the product.

heads(G): the packed-tile kernel with G heads per program. The product's kernel looks
latency-bound (about 4 resident programs per SM, 4 short k-tile iterations each, no prefetch:
docs/BENCHMARKS.md, session 5); every head of a token tile shares that tile's key range, so one
program can issue G heads' loads and dots per iteration (batched [G, BM, BN] dots) for more
memory-level parallelism per program, at G times the registers. Measured on an H200 (session 6):
slower than the product's kernel at every G and shape (reads 0.46-1.37 vs 0.28 ms per 65k tokens).

aligned(BM, BN, warps, stages): kernels.aligned_attention (tiles aligned to sequence starts) at
other launch shapes. Measured (session 6): no faster than the packed kernel on reads/short (less
score area, but that kernel is not compute-bound), 17-26% faster than the varlen flash kernel on
uniprot batches of 300-460 tokens; it moved into kernels.py for 256 < max length <= 1024.

aligned_tma(BM, BN, warps, stages, ws): the aligned kernel with q/k/v tiles fetched by the Tensor
Memory Accelerator (tensor descriptors made on the device) instead of per-thread address
arithmetic and cp.async, and with ws, Triton's automatic warp specialisation of the key loop
(producer warps issuing TMA loads, consumer warps doing the dots and the softmax: the FA3-style
overlap; Triton supports it on Hopper for non-causal attention with device-side descriptors).
Written in session 8 (no device time left to measure it); same arithmetic as the product's kernel
(kernels._softmax_step), same contract as kernels.aligned_attention. Measured (session 9): 19-50%
slower than the product's aligned kernel on uniprot and short, warp-specialised or not; dropped.

aligned_exp(mode): the product's aligned kernel with the score exponentials done another way, to
find out whether the MUFU (the special-function unit: 16 exp2 per clock per SM, against 128 fp32
FMAs) binds at Dh = 64. "f32": the product's arithmetic (control). "f16x2": the shifted scores
rounded to fp16 and exponentiated two at a time (ex2.approx.f16x2: half the MUFU issues; P is
rounded to fp16 for the PV dot anyway, the denominator sums the same fp16 P). "none": no
exponential at all (a linear stand-in: WRONG results, a timing bound only). Measured (session 9,
uniprot, D = 1280, ms per 65k tokens): f32 0.609, f16x2 0.664, none 0.616 — the exponentials do
not bind; dropped.

regs(kind, BM, BN, warps, stages, maxnreg): the product's packed or aligned kernel with ptxas held
to maxnreg registers per thread, for more programs per SM (both kernels are latency-bound: at
110 registers (aligned, 64x64, 2 stages) only 4 programs fit on an SM, at 92 (packed) 5;
scripts/kernel_occupancy.py counts them from the compiled cubin).

aligned_pipe: the product's aligned kernel with the next key block's QK dot issued before the
current block's softmax and PV dot (software pipelining by hand: Hopper's wgmma is asynchronous,
so the tensor cores can work on block j+1's scores while the other units exponentiate block j's).

aligned_qtail(TBM, warps): the product's aligned kernel, its launch options and split key tails,
with a sequence's last tile run as a TBM-row tile in a second launch when it has at most TBM rows.
64-row tiles pad each sequence's rows to a multiple of 64: 6.6% of the scores at uniprot's lengths
and 10-25% at short's are padding rows (the key side's equivalent went in session 11). Written in
session 11 with no device time left; to be measured (attention_sweep.py --aligned-qtail).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from embed_worker.kernels import (_aligned_tile, _load_kv, _softmax_init, _softmax_scores,  # the product's
                                  _softmax_step, _store_rows)  # (py/ on sys.path)

EXP_MODES = {"f32": 0, "f16x2": 1, "none": 2}


@triton.jit(do_not_specialize=["n_tok"])
def _packed_attn_heads_kernel(Q, K, V, O, SEQ, CU, n_tok, n_heads, stride_t, stride_h, o_stride_t, o_stride_h,
                              scale, HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, G: tl.constexpr):
    r0 = tl.program_id(0) * BM
    g = tl.program_id(1) * G + tl.arange(0, G)  # [G] heads
    gmask = g < n_heads
    rows = r0 + tl.arange(0, BM)  # [BM]
    rmask = rows < n_tok
    d = tl.arange(0, HEAD_DIM)
    seq_q = tl.load(SEQ + rows, mask=rmask, other=-1)
    first = tl.load(SEQ + r0)
    last = tl.load(SEQ + tl.minimum(r0 + BM, n_tok) - 1)
    k_lo = tl.load(CU + first)
    k_hi = tl.load(CU + last + 1)
    head = g.to(tl.int64)[:, None, None] * stride_h  # [G, 1, 1]
    qmask = gmask[:, None, None] & rmask[None, :, None]
    q = tl.load(Q + rows.to(tl.int64)[None, :, None] * stride_t + head + d[None, None, :], mask=qmask, other=0.0)
    m_i = tl.full([G, BM], -1.0e30, tl.float32)
    l_i = tl.zeros([G, BM], tl.float32)
    acc = tl.zeros([G, BM, HEAD_DIM], tl.float32)
    qk_scale = scale * 1.4426950408889634
    for start in range(k_lo, k_hi, BN):
        cols = start + tl.arange(0, BN)
        cmask = cols < k_hi
        seq_k = tl.load(SEQ + cols, mask=cmask, other=-2)
        koff = cols.to(tl.int64)[None, :, None] * stride_t + head + d[None, None, :]  # [G, BN, Dh]
        kmask = gmask[:, None, None] & cmask[None, :, None]
        k = tl.load(K + koff, mask=kmask, other=0.0)
        v = tl.load(V + koff, mask=kmask, other=0.0)
        s = tl.dot(q, tl.permute(k, (0, 2, 1)))  # [G, BM, BN] fp32
        same = (seq_q[:, None] == seq_k[None, :])[None, :, :]
        s = tl.where(same, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=2))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, :, None])
        l_i = l_i * alpha + tl.sum(p, axis=2)
        acc = acc * alpha[:, :, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, :, None]
    ooff = rows.to(tl.int64)[None, :, None] * o_stride_t + g.to(tl.int64)[:, None, None] * o_stride_h + d[None, None, :]
    tl.store(O + ooff, out.to(O.dtype.element_ty), mask=qmask)


def heads(G: int, bm: int = 64, bn: int = 32, warps: int = 4, stages: int = 1):
    """softmax(scale q kᵀ) v within each packed sequence, G heads per program; same contract as
    embed_worker.kernels.packed_attention."""
    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_id: torch.Tensor, cu_seqlens: torch.Tensor,
            scale: float = 1.0) -> torch.Tensor:
        T, H, Dh = q.shape
        o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
        if T:
            _packed_attn_heads_kernel[(triton.cdiv(T, bm), triton.cdiv(H, G))](
                q, k, v, o, seq_id, cu_seqlens, T, H, q.stride(0), q.stride(1), o.stride(0), o.stride(1),
                float(scale), HEAD_DIM=Dh, BM=bm, BN=bn, G=G, num_warps=warps, num_stages=stages)
        return o
    return run


def aligned(bm: int = 64, bn: int = 64, warps: int = 4, stages: int = 1):
    """kernels.aligned_attention at launch shape (BM, BN, warps, stages), with the same contract
    as kernels.packed_attention plus an optional prebuilt block_table (run.bm rows per tile)."""
    from embed_worker import kernels as K

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_id: torch.Tensor, cu_seqlens: torch.Tensor,
            scale: float = 1.0, table: torch.Tensor | None = None) -> torch.Tensor:
        saved = K.ALIGNED_BM, K.ALIGNED_WARPS, K.ALIGNED_LAUNCH
        K.ALIGNED_BM, K.ALIGNED_WARPS, K.ALIGNED_LAUNCH = bm, warps, ((None, bn, stages, None),)
        try:
            return K.aligned_attention(q, k, v, cu_seqlens, scale, table)
        finally:
            K.ALIGNED_BM, K.ALIGNED_WARPS, K.ALIGNED_LAUNCH = saved
    run.bm = bm
    return run


@triton.jit(do_not_specialize=["n_blocks", "n_tok"])
def _aligned_tma_kernel(Q, K, V, O, TAB, n_blocks, n_tok, width, stride_t, o_stride_t, o_stride_h, scale,
                        HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, WS: tl.constexpr):
    """kernels._aligned_attn_kernel with TMA tiles: rows past a sequence's end (the next
    sequence's, or zeros past T) are fetched and masked out of the scores, never stored."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    r0 = tl.load(TAB + b)
    end = tl.load(TAB + n_blocks + b)
    start = tl.load(TAB + 2 * n_blocks + b)
    dq = tl.make_tensor_descriptor(Q, shape=[n_tok, width], strides=[stride_t, 1], block_shape=[BM, HEAD_DIM])
    dk = tl.make_tensor_descriptor(K, shape=[n_tok, width], strides=[stride_t, 1], block_shape=[BN, HEAD_DIM])
    dv = tl.make_tensor_descriptor(V, shape=[n_tok, width], strides=[stride_t, 1], block_shape=[BN, HEAD_DIM])
    col = h * HEAD_DIM
    q = dq.load([r0, col])
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    qk_scale = scale * 1.4426950408889634
    k_full = start + (end - start) // BN * BN
    for k0 in tl.range(start, k_full, BN, warp_specialize=WS):
        k = dk.load([k0, col])
        v = dv.load([k0, col])
        m_i, l_i, acc = _softmax_step(q, k, v, None, qk_scale, m_i, l_i, acc, MASK=False)
    if k_full < end:
        k = dk.load([k_full, col])
        v = dv.load([k_full, col])
        cols = k_full + tl.arange(0, BN)
        m_i, l_i, acc = _softmax_step(q, k, v, (cols < end)[None, :], qk_scale, m_i, l_i, acc, MASK=True)
    rows = r0 + tl.arange(0, BM)
    _store_rows(O, acc, l_i, rows, rows < end, h, tl.arange(0, HEAD_DIM), o_stride_t, o_stride_h)


def _scratch(size: int, alignment: int, stream):
    """Global memory for the tensor descriptors kernels make on the device."""
    return torch.empty(size, dtype=torch.int8, device="cuda" if torch.cuda.is_available() else "cpu")


def aligned_tma(bm: int = 64, bn: int = 64, warps: int = 4, stages: int = 2, ws: bool = False):
    """kernels.aligned_attention on TMA tiles (and with ws, warp-specialised), same contract; q/k/v
    must be views whose rows are 16-byte aligned with heads contiguous in a row (as fused.py's are)."""
    from embed_worker import kernels as K
    triton.set_allocator(_scratch)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_id: torch.Tensor, cu_seqlens: torch.Tensor,
            scale: float = 1.0, table: torch.Tensor | None = None) -> torch.Tensor:
        T, H, Dh = q.shape
        K._check_qkv(q, k, v, "aligned_tma")
        if q.stride(1) != Dh:
            raise ValueError("aligned_tma takes q, k, v [T, H, Dh] with heads contiguous in each row")
        o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
        if T:
            tab = K.block_table(cu_seqlens, T, bm) if table is None else table
            _aligned_tma_kernel[(tab.shape[1], H)](
                q, k, v, o, tab, tab.shape[1], T, H * Dh, q.stride(0), o.stride(0), o.stride(1), float(scale),
                HEAD_DIM=Dh, BM=bm, BN=bn, WS=ws, num_warps=warps, num_stages=stages)
        return o
    run.bm = bm
    return run



@triton.jit
def _exp2_f16x2(x):
    """2^x of fp16 x, two lanes per MUFU issue."""
    return tl.inline_asm_elementwise("ex2.approx.f16x2 $0, $1;", "=r,r", [x], dtype=tl.float16,
                                     is_pure=True, pack=2)


@triton.jit
def _softmax_step_exp(q, k, v, keep, qk_scale, m_i, l_i, acc, MASK: tl.constexpr, EXP: tl.constexpr):
    """kernels._softmax_step with the score exponentials per EXP_MODES."""
    s = tl.dot(q, tl.trans(k))
    if MASK:
        s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1) * qk_scale)
    x = s * qk_scale - m_new[:, None]
    if EXP == 0:
        p = tl.math.exp2(x)
        l_i = l_i * tl.math.exp2(m_i - m_new) + tl.sum(p, axis=1)
        p16 = p.to(v.dtype)
    elif EXP == 1:
        p16 = _exp2_f16x2(tl.maximum(x, -24.0).to(tl.float16))  # 2^-24: fp16's smallest subnormal
        l_i = l_i * tl.math.exp2(m_i - m_new) + tl.sum(p16.to(tl.float32), axis=1)
    else:
        p = tl.maximum(x * 0.0625 + 1.0, 0.0)
        l_i = l_i * tl.math.exp2(m_i - m_new) + tl.sum(p, axis=1)
        p16 = p.to(v.dtype)
    acc = tl.dot(p16, v, acc * tl.math.exp2(m_i - m_new)[:, None])
    return m_new, l_i, acc


@triton.jit(do_not_specialize=["n_blocks"])
def _aligned_exp_kernel(Q, K, V, O, TAB, n_blocks, stride_t, stride_h, o_stride_t, o_stride_h, scale,
                        HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, EXP: tl.constexpr):
    """kernels._aligned_attn_kernel with _softmax_step_exp."""
    h, start, end, rows, rmask, d, q = _aligned_tile(Q, TAB, n_blocks, stride_t, stride_h, HEAD_DIM, BM)
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    qk_scale = scale * 1.4426950408889634
    k_full = start + (end - start) // BN * BN
    for k0 in range(start, k_full, BN):
        k, v = _load_kv(K, V, k0 + tl.arange(0, BN), None, h, d, stride_t, stride_h, BOUNDS=False)
        m_i, l_i, acc = _softmax_step_exp(q, k, v, None, qk_scale, m_i, l_i, acc, MASK=False, EXP=EXP)
    if k_full < end:
        cols = k_full + tl.arange(0, BN)
        cmask = cols < end
        k, v = _load_kv(K, V, cols, cmask, h, d, stride_t, stride_h, BOUNDS=True)
        m_i, l_i, acc = _softmax_step_exp(q, k, v, cmask[None, :], qk_scale, m_i, l_i, acc, MASK=True, EXP=EXP)
    _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h)


def _aligned_launcher(kernel, name: str, bm: int, **meta):
    """A launcher with kernels.aligned_attention's contract (plus an optional prebuilt block_table
    of bm-row tiles: run.bm) for an aligned-tile kernel that takes the product kernel's arguments;
    meta: its launch options besides HEAD_DIM and BM."""
    from embed_worker import kernels as K

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_id: torch.Tensor, cu_seqlens: torch.Tensor,
            scale: float = 1.0, table: torch.Tensor | None = None) -> torch.Tensor:
        T, H, Dh = q.shape
        K._check_qkv(q, k, v, name)
        o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
        if T:
            tab = K.block_table(cu_seqlens, T, bm) if table is None else table
            kernel[(tab.shape[1], H)](
                q, k, v, o, tab, tab.shape[1], q.stride(0), q.stride(1), o.stride(0), o.stride(1), float(scale),
                HEAD_DIM=Dh, BM=bm, **meta)
        return o
    run.bm = bm
    return run


def aligned_exp(mode: str):
    """kernels.aligned_attention (its launch shape) with the exponentials of EXP_MODES[mode]."""
    from embed_worker import kernels as K
    return _aligned_launcher(_aligned_exp_kernel, "aligned_exp", K.ALIGNED_BM, BN=64, EXP=EXP_MODES[mode],
                             num_warps=K.ALIGNED_WARPS, num_stages=2)


@triton.jit(do_not_specialize=["n_blocks"])
def _aligned_pipe_kernel(Q, K, V, O, TAB, n_blocks, stride_t, stride_h, o_stride_t, o_stride_h, scale,
                         HEAD_DIM: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    """kernels._aligned_attn_kernel with block j+1's QK dot issued before block j's softmax."""
    h, start, end, rows, rmask, d, q = _aligned_tile(Q, TAB, n_blocks, stride_t, stride_h, HEAD_DIM, BM)
    m_i, l_i, acc = _softmax_init(BM, HEAD_DIM)
    qk_scale = scale * 1.4426950408889634
    k_full = start + (end - start) // BN * BN
    if start < k_full:
        k, v = _load_kv(K, V, start + tl.arange(0, BN), None, h, d, stride_t, stride_h, BOUNDS=False)
        s = tl.dot(q, tl.trans(k))
        for k0 in range(start + BN, k_full, BN):
            koff = (k0 + tl.arange(0, BN)).to(tl.int64)[:, None] * stride_t + h * stride_h + d[None, :]
            s_next = tl.dot(q, tl.trans(tl.load(K + koff)))
            m_i, l_i, acc = _softmax_scores(s, v, qk_scale, m_i, l_i, acc)
            v = tl.load(V + koff)
            s = s_next
        m_i, l_i, acc = _softmax_scores(s, v, qk_scale, m_i, l_i, acc)
    if k_full < end:
        cols = k_full + tl.arange(0, BN)
        cmask = cols < end
        k, v = _load_kv(K, V, cols, cmask, h, d, stride_t, stride_h, BOUNDS=True)
        s = tl.where(cmask[None, :], tl.dot(q, tl.trans(k)), float("-inf"))
        m_i, l_i, acc = _softmax_scores(s, v, qk_scale, m_i, l_i, acc)
    _store_rows(O, acc, l_i, rows, rmask, h, d, o_stride_t, o_stride_h)


def aligned_pipe(bm: int = 64, bn: int = 64, warps: int = 4, stages: int = 2):
    """kernels.aligned_attention with the QK dot pipelined by hand (_aligned_pipe_kernel), same contract."""
    return _aligned_launcher(_aligned_pipe_kernel, "aligned_pipe", bm, BN=bn, num_warps=warps, num_stages=stages)


def regs(kind: str, bm: int, bn: int, warps: int, stages: int, maxnreg: int):
    """The product's packed (kind "packed") or aligned kernel at this launch shape, compiled with at
    most maxnreg registers per thread; same contract as kernels.packed_attention/aligned_attention."""
    from embed_worker import kernels as K
    shape = dict(BN=bn, num_warps=warps, num_stages=stages, maxnreg=maxnreg)
    if kind != "packed":
        return _aligned_launcher(K._aligned_attn_kernel, "regs", bm, SPLIT_TAIL=True, **shape)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_id: torch.Tensor, cu_seqlens: torch.Tensor,
            scale: float = 1.0) -> torch.Tensor:
        T, H, Dh = q.shape
        K._check_qkv(q, k, v, "regs")
        o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
        if T:
            K._packed_attn_kernel[(triton.cdiv(T, bm), H)](
                q, k, v, o, seq_id, cu_seqlens, T, q.stride(0), q.stride(1), o.stride(0), o.stride(1),
                float(scale), HEAD_DIM=Dh, BM=bm, **shape)
        return o
    return run


def qtail_tables(cu_seqlens: torch.Tensor, n_tok: int, bm: int, tail_bm: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(main, tail): kernels.block_table's [3, ceil(T/bm) + B] of every bm-row tile except a
    sequence's last when it has at most tail_bm rows, and [3, B] with that last tile (first row,
    end, start) for each sequence that has one (zero tiles elsewhere). Built on the device, no sync."""
    from embed_worker import kernels as K
    cu = cu_seqlens.long()
    n_seq = cu.numel() - 1
    lens = cu[1:] - cu[:-1]
    nb = (lens + bm - 1) // bm
    small = (lens > 0) & (lens - (nb - 1) * bm <= tail_bm)
    main = K.tile_table(cu, nb - small.long(), bm, -(-n_tok // bm) + n_seq)
    zero = torch.zeros_like(lens)
    tail = torch.stack([torch.where(small, cu[:-1] + (nb - 1) * bm, zero), torch.where(small, cu[1:], zero),
                        torch.where(small, cu[:-1], zero)]).to(torch.int32).contiguous()
    return main, tail


def aligned_qtail(tail_bm: int = 32, tail_warps: int = 4):
    """kernels.aligned_attention with short last tiles in a second launch of tail_bm rows (see the
    module's notes). run(q, k, v, cu_seqlens, scale, tables=None, max_seqlen=None) -> [T, H, Dh];
    tables: run.tables(cu_seqlens, T), built once per batch."""
    from embed_worker import kernels as K

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, scale: float = 1.0,
            tables: tuple[torch.Tensor, torch.Tensor] | None = None, max_seqlen: int | None = None) -> torch.Tensor:
        T, H, Dh = q.shape
        K._check_qkv(q, k, v, "aligned_qtail")
        o = torch.empty(T, H, Dh, dtype=q.dtype, device=q.device)
        if T:
            main, tail = run.tables(cu_seqlens, T) if tables is None else tables
            bn, stages, regs = K.aligned_launch(max_seqlen)
            # the tail launch keeps ptxas's register choice: held to the 64-row tile's limit, 32-row
            # tiles spill 120-216 bytes (scripts/kernel_occupancy.py, sm_90)
            for tab, bm, warps, limit in ((main, K.ALIGNED_BM, K.ALIGNED_WARPS, K._maxnreg(q.device, Dh, regs)),
                                          (tail, tail_bm, tail_warps, {})):
                K._aligned_attn_kernel[(tab.shape[1], H)](
                    q, k, v, o, tab, tab.shape[1], q.stride(0), q.stride(1), o.stride(0), o.stride(1),
                    float(scale), HEAD_DIM=Dh, BM=bm, BN=bn, SPLIT_TAIL=K.split_tail(bn, max_seqlen),
                    num_warps=warps, num_stages=stages, **limit)
        return o
    run.tables = lambda cu, n_tok: qtail_tables(cu, n_tok, K.ALIGNED_BM, tail_bm)
    return run
