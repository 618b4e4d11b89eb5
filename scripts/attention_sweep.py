"""Attention over whole workloads, per kernel: the packed-tile Triton kernel (at other launch
shapes too), candidates from attention_candidates.py (--heads, --aligned: the sequence-aligned
kernel at other shapes), PyTorch's varlen flash kernel and FlashAttention-4's CuTe-DSL varlen
kernel (flash-attn-4, sm90 path), cuDNN's ragged (varlen) fused attention through
torch.ops.aten._cudnn_attention_forward (--cudnn), and another revision's packed and aligned kernels
(--base-kernels), on the batches the planner would make (lengths sorted longest first,
65,536-token budget), Dh = 64, fp16, each batch timed back to back.

    python3 scripts/attention_sweep.py [--dims 1280,2560] [--tokens 400000] [--iters 20]

Prints one JSON line per (workload, D, batch, variant): ms, and the max abs error against the
varlen flash kernel's output; then one summary line per (workload, D, variant) with the total
ms per 65,536 tokens. A variant that cannot run a batch (packed: sequences > 256) is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import torch  # noqa: E402

import attention_candidates  # noqa: E402
import workloads  # noqa: E402
from cudatime import timed  # noqa: E402
from embed_worker import kernels as K  # noqa: E402
from embed_worker import model as M  # noqa: E402
from embed_worker.attention import varlen_attention  # noqa: E402
from embed_worker.fused import attention_kernel  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a smoke test under TRITON_INTERPRET=1


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def batches(workload: str, tokens: int, budget: int, pick: int) -> list[list[int]]:
    """The planner's batches over `tokens` tokens of the workload (longest first); with pick > 0,
    that many of them spread evenly from the longest to the shortest."""
    lens, total = [], 0
    for L in workloads.lengths(workload, tokens // 20, seed=3):  # in the workload's order
        if total >= tokens:
            break
        lens.append(L + 2)
        total += L + 2
    lens.sort(reverse=True)
    out, cur, used = [], [], 0
    for L in lens:
        if used + L > budget:
            out.append(cur)
            cur, used = [], 0
        cur.append(L)
        used += L
    out.append(cur)
    if 0 < pick < len(out):
        out = [out[round(i * (len(out) - 1) / (pick - 1))] for i in range(pick)] if pick > 1 else out[:1]
    return out


def fa4_variant(tile=None):
    """FlashAttention-4's varlen forward (its default sm90 tile, or tile_mn through the private
    _flash_attn_fwd), or None if it does not import."""
    try:
        from flash_attn.cute import flash_attn_varlen_func
        from flash_attn.cute.interface import _flash_attn_fwd
    except Exception as e:  # noqa: BLE001
        emit(variant="fa4", error=f"import: {type(e).__name__}: {e}"[:300])
        return None

    def run(q, k, v, cu, mx, scale):
        if tile is None:
            return flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=mx,
                                          max_seqlen_k=mx, softmax_scale=scale)[0]
        return _flash_attn_fwd(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=mx,
                               max_seqlen_k=mx, softmax_scale=scale, tile_mn=tile)[0]
    return run


def cudnn_varlen(q, k, v, cu, mx, scale):
    """cuDNN's fused attention over packed sequences (q, k, v [T, H, Dh], cu int32 [B + 1])."""
    return torch.ops.aten._cudnn_attention_forward(q, k, v, None, cu, cu, mx, mx, False, 0.0, False, False,
                                                   scale=scale)[0]


def cudnn_fe_variant():
    """cuDNN's fused attention through its own frontend (nvidia-cudnn-frontend), or None if it does
    not import: one graph per batch over the packed layout as the QKV GEMM leaves it (t3hd: q, k, v
    views of [T, 3, H, Dh] with ragged offsets at the sequence starts, padding mask from the lengths),
    built on the batch's first call; the timed calls only execute it."""
    try:
        import cudnn
    except Exception as e:  # noqa: BLE001
        emit(variant="cudnn-fe", error=f"import: {type(e).__name__}: {e}"[:300])
        return None
    emit(measurement="cudnn-fe import", backend=cudnn.backend_version_string())
    handle = cudnn.create_handle()
    dt = cudnn.data_type

    def build(q, k, v, cu, mx, scale):
        T, H, Dh = q.shape
        B = cu.numel() - 1
        row, orow = q.stride(0), H * Dh
        g = cudnn.pygraph(io_data_type=dt.HALF, intermediate_data_type=dt.FLOAT, compute_data_type=dt.FLOAT,
                          handle=handle)
        offsets = {"qkv": (cu.long() * row).view(B + 1, 1, 1, 1), "o": (cu.long() * orow).view(B + 1, 1, 1, 1)}
        lens = (cu[1:] - cu[:-1]).view(B, 1, 1, 1).contiguous()
        pack = {}

        def ragged(name, key):
            t = g.tensor(name=name, dim=[B + 1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=dt.INT64)
            pack[t] = offsets[key]
            return t

        def operand(name, data):
            t = g.tensor(name=name, dim=[B, H, mx, Dh], stride=[mx * row, Dh, row, 1], data_type=dt.HALF)
            t.set_ragged_offset(ragged("r" + name, "qkv"))
            pack[t] = data
            return t
        tq, tk, tv = operand("q", q), operand("k", k), operand("v", v)
        sq = g.tensor(name="sq", dim=[B, 1, 1, 1], stride=[1, 1, 1, 1], data_type=dt.INT32)
        skv = g.tensor(name="skv", dim=[B, 1, 1, 1], stride=[1, 1, 1, 1], data_type=dt.INT32)
        pack[sq] = pack[skv] = lens
        o, _ = g.sdpa(name="sdpa", q=tq, k=tk, v=tv, generate_stats=False, attn_scale=scale,
                      use_padding_mask=True, seq_len_q=sq, seq_len_kv=skv)
        out = torch.empty(T, H, Dh, device=q.device, dtype=q.dtype)
        o.set_output(True).set_dim([B, H, mx, Dh]).set_stride([mx * orow, Dh, orow, 1])
        o.set_ragged_offset(ragged("ro", "o"))
        pack[o] = out
        g.validate()
        g.build_operation_graph()
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        g.check_support()
        g.build_plans()
        ws = torch.empty(max(1, g.get_workspace_size()), device=q.device, dtype=torch.uint8)
        cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
        return g, pack, ws, out

    def run(q, k, v, cu, mx, scale, graph):
        g, pack, ws, out = graph
        g.execute(pack, ws, handle=handle)
        return out
    return build, run


def settle(fn, args, ms: float) -> None:
    """Run fn(*args) back to back for about ms milliseconds (the GPU's clock settles under load)."""
    t_end = time.time() + ms / 1000
    while time.time() < t_end:
        for _ in range(5):
            fn(*args)
        if DEV == "cuda":
            torch.cuda.synchronize()


def pacer(tokens: int, D: int, ms: float):
    """None for ms <= 0; else a callable that queues about ms milliseconds of fp16 GEMMs of the
    forward's QKV shape ([tokens, D] x [D, 3D]) without syncing (calls per pace measured once)."""
    if ms <= 0:
        return None
    gpu = DEV == "cuda"  # on the CPU (smoke test) a small fp32 GEMM: the interpreter is slow enough
    x = torch.randn(tokens if gpu else 64, D, device=DEV, dtype=torch.float16 if gpu else torch.float32)
    w = torch.randn(D, 3 * D, device=DEV, dtype=x.dtype) * D ** -0.5
    n = max(1, round(ms / timed(lambda: x @ w, 5)))

    def run() -> None:
        for _ in range(n):
            x @ w
    return run


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="1280,2560")
    ap.add_argument("--tokens", type=int, default=400_000)
    ap.add_argument("--budget", type=int, default=65_536)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1, help="time every variant this many times per batch, the "
                    "order rotated by one each round, each round after a settling run (--settle-ms); each "
                    "variant's mean counts. A single round favours the variants timed first by up to 4-7%% "
                    "(docs/BENCHMARKS.md, sessions 10-11): give as many rounds as there are variants")
    ap.add_argument("--settle-ms", type=float, default=200.0, help="with --rounds > 1: run the first variant "
                    "this long before each round, so every round starts at the loaded clock")
    ap.add_argument("--pace-ms", type=float, default=0.0, help="before every timed window, run a GEMM of "
                    "the forward's QKV shape (the budget's tokens x D -> 3D) for about this long with no sync "
                    "in between, so each variant starts from the state a forward leaves it in. Even so, identical "
                    "kernels came out up to ~5%% apart per batch (docs/BENCHMARKS.md, session 12): reject "
                    "candidates with a sweep, adopt them with an interleaved bench.py A/B")
    ap.add_argument("--workloads", default="reads,short,uniprot")
    ap.add_argument("--pick", type=int, default=0, help="time this many batches spread over the plan")
    ap.add_argument("--fa4-tiles", default="", help="extra FA4 tiles, e.g. 128x128,128x64")
    ap.add_argument("--packed-shapes", default="", help="extra packed-kernel launch shapes BMxBNxWARPSxSTAGES")
    ap.add_argument("--heads", default="", help="candidate: G heads per program (attention_candidates.heads), "
                    "G or GxBMxBNxWARPSxSTAGES, e.g. 2,4,2x64x32x8x1")
    ap.add_argument("--aligned", default="", help="candidate: tiles aligned to sequence starts "
                    "(attention_candidates.aligned), BMxBNxWARPSxSTAGES,...")
    ap.add_argument("--aligned-tma", default="", help="candidate: the aligned kernel on TMA tiles "
                    "(attention_candidates.aligned_tma), BMxBNxWARPSxSTAGES[w],... (w: warp-specialised)")
    ap.add_argument("--aligned-exp", default="", help="candidate: the aligned kernel's exponentials another way "
                    "(attention_candidates.aligned_exp): f32,f16x2,none (none: a timing bound, wrong results)")
    ap.add_argument("--aligned-pipe", default="", help="candidate: the aligned kernel with the next QK dot "
                    "issued before the softmax (attention_candidates.aligned_pipe), BMxBNxWARPSxSTAGES,...")
    ap.add_argument("--aligned-qtail", default="", help="candidate: the product's aligned kernel with short "
                    "last tiles in a second launch (attention_candidates.aligned_qtail), TBMxWARPS,... e.g. 32x4,32x2")
    ap.add_argument("--regs", default="", help="candidate: the product's kernels held to fewer registers "
                    "(attention_candidates.regs), KIND:BMxBNxWARPSxSTAGESrMAXNREG,... e.g. aligned:64x64x4x2r96")
    ap.add_argument("--packed-max-len", type=int, default=0,
                    help="let the packed kernel run batches up to this length (default: kernels.py's limit)")
    ap.add_argument("--no-fa4", action="store_true")
    ap.add_argument("--base-kernels", default="", help="kernels.py of another revision: its packed and "
                    "aligned kernels run as 'packed@base' and 'aligned@base' next to this revision's")
    ap.add_argument("--cudnn", action="store_true", help="also time cuDNN's varlen attention (strided q/k/v views "
                    "and contiguous copies)")
    ap.add_argument("--cudnn-fe", action="store_true", help="also time cuDNN's fused attention through "
                    "nvidia-cudnn-frontend (one graph per batch on the packed QKV layout, built untimed)")
    a = ap.parse_args()
    t0 = time.time()
    if a.packed_max_len:
        K.PACKED_ATTN_MAX_LEN = a.packed_max_len
        K.ALIGNED_ATTN_MAX_LEN = max(K.ALIGNED_ATTN_MAX_LEN, a.packed_max_len)
    fa4 = None if a.no_fa4 else fa4_variant()
    emit(measurement="fa4 import", s=round(time.time() - t0, 1), ok=fa4 is not None)

    def packed(shape=None):
        """The packed-tile kernel at its launch shape, or at shape = (BM, BN, warps, stages)."""
        def run(q, k, v, cu, mx, scale, seq32):
            saved = K.ATTN_BM, K.ATTN_BN, K.ATTN_WARPS, K.ATTN_STAGES
            if shape:
                K.ATTN_BM, K.ATTN_BN, K.ATTN_WARPS, K.ATTN_STAGES = shape
            try:
                return K.packed_attention(q, k, v, seq32, cu, scale)
            finally:
                K.ATTN_BM, K.ATTN_BN, K.ATTN_WARPS, K.ATTN_STAGES = saved
        return run

    variants = {"torch-varlen": lambda q, k, v, cu, mx, s, _: varlen_attention(q, k, v, cu, mx, s),
                "packed": packed()}
    for shape in a.packed_shapes.split(",") if a.packed_shapes else ():
        variants[f"packed {shape}"] = packed(tuple(map(int, shape.split("x"))))
    for spec in a.heads.split(",") if a.heads else ():
        fn = attention_candidates.heads(*map(int, spec.split("x")))
        variants[f"packed-heads {spec}"] = lambda q, k, v, cu, mx, s, seq32, fn=fn: fn(q, k, v, seq32, cu, s)
    tables: dict = {}  # per batch (cleared at each), as a forward builds its tables once for all layers

    def table(key, build):
        """tables[key], built by build() on the batch's first call."""
        if key not in tables:
            tables[key] = build()
        return tables[key]

    def with_table(fn, bm=None):
        """An aligned-tile kernel with its block table (of fn.bm or bm rows per tile) built once per
        batch, as a forward does."""
        bm = bm or fn.bm
        return lambda q, k, v, cu, mx, s, seq32: fn(q, k, v, seq32, cu, s,
                                                    table(bm, lambda: K.block_table(cu, q.shape[0], bm)))

    def aligned_of(mod, key):
        """mod.aligned_attention (this revision's kernels.py or the base's) at its launch options
        for the batch, on mod's block table built once per batch (tables[key])."""
        return lambda q, k, v, cu, mx, s, seq32: mod.aligned_attention(
            q, k, v, cu, s, table(key, lambda: mod.block_table(cu, q.shape[0], mod.ALIGNED_BM)), mx)
    product_aligned = aligned_of(K, K.ALIGNED_BM)
    variants["aligned"] = product_aligned  # the product's kernel, at its launch options for this batch
    for spec in a.aligned.split(",") if a.aligned else ():
        variants[f"aligned {spec}"] = with_table(attention_candidates.aligned(*map(int, spec.split("x"))))
    for spec in a.aligned_tma.split(",") if a.aligned_tma else ():
        variants[f"aligned-tma {spec}"] = with_table(attention_candidates.aligned_tma(
            *map(int, spec.rstrip("w").split("x")), ws=spec.endswith("w")))
    for mode in a.aligned_exp.split(",") if a.aligned_exp else ():
        variants[f"aligned-exp {mode}"] = with_table(attention_candidates.aligned_exp(mode))
    for spec in a.aligned_pipe.split(",") if a.aligned_pipe else ():
        variants[f"aligned-pipe {spec}"] = with_table(attention_candidates.aligned_pipe(*map(int, spec.split("x"))))
    for spec in a.aligned_qtail.split(",") if a.aligned_qtail else ():
        def qtail(q, k, v, cu, mx, s, seq32, fn=attention_candidates.aligned_qtail(*map(int, spec.split("x"))),
                  key=("qtail", spec)):
            return fn(q, k, v, cu, s, table(key, lambda: fn.tables(cu, q.shape[0])), mx)
        variants[f"aligned-qtail {spec}"] = qtail
    for spec in a.regs.split(",") if a.regs else ():
        kind, shape = spec.split(":")
        dims, maxnreg = shape.split("r")
        fn = attention_candidates.regs(kind, *map(int, dims.split("x")), int(maxnreg))
        if kind == "packed":
            variants[f"packed {shape}"] = lambda q, k, v, cu, mx, s, seq32, fn=fn: fn(q, k, v, seq32, cu, s)
        else:
            variants[f"aligned {shape}"] = with_table(fn)
    if fa4 is not None:
        variants["fa4"] = lambda q, k, v, cu, mx, s, _: fa4(q, k, v, cu, mx, s)
        for tile in a.fa4_tiles.split(",") if a.fa4_tiles else ():
            fn = fa4_variant(tuple(map(int, tile.split("x"))))
            variants[f"fa4 {tile}"] = lambda q, k, v, cu, mx, s, _, fn=fn: fn(q, k, v, cu, mx, s)

    def product(q, k, v, cu, mx, s, seq32):
        """What a forward runs for this batch (fused.attention_kernel, FA4 where loaded)."""
        kind = attention_kernel(q.dtype, q.shape[2], mx, fa4 is not None)
        if kind == "packed":
            return K.packed_attention(q, k, v, seq32, cu, s)
        if kind == "long":
            return fa4(q, k, v, cu, mx, s)
        if kind == "aligned":
            return product_aligned(q, k, v, cu, mx, s, seq32)
        return varlen_attention(q, k, v, cu, mx, s)
    variants["product"] = product
    if a.base_kernels:
        from bench import load_base_kernels
        base = load_base_kernels(a.base_kernels)
        variants["packed@base"] = lambda q, k, v, cu, mx, s, seq32: base.packed_attention(q, k, v, seq32, cu, s)
        variants["aligned@base"] = aligned_of(base, ("base", base.ALIGNED_BM))
    if a.cudnn:
        variants["cudnn"] = lambda q, k, v, cu, mx, s, _: cudnn_varlen(q, k, v, cu, mx, s)
        variants["cudnn contiguous"] = lambda q, k, v, cu, mx, s, _: cudnn_varlen(
            q.contiguous(), k.contiguous(), v.contiguous(), cu, mx, s)
    fe = cudnn_fe_variant() if a.cudnn_fe else None
    if fe is not None:
        build_fe, run_fe = fe
        variants["cudnn-fe"] = lambda q, k, v, cu, mx, s, _: run_fe(
            q, k, v, cu, mx, s, table("cudnn-fe", lambda: build_fe(q, k, v, cu, mx, s)))
    for w in a.workloads.split(","):
        plan = batches(w, a.tokens, a.budget, a.pick)
        for D in map(int, a.dims.split(",")):
            H, Dh = D // 64, 64
            total = {name: 0.0 for name in variants}
            ran = {name: 0 for name in variants}
            best = 0.0
            n_tok = 0
            pace = pacer(a.budget, D, a.pace_ms)
            for bi, lens in enumerate(plan):
                T = sum(lens)
                n_tok += T
                cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
                cu[1:] = torch.cumsum(torch.tensor(lens), 0)
                cu = cu.to(DEV)
                mx = max(lens)
                qkv = torch.randn(T, 3, H, Dh, device=DEV, dtype=torch.float16)
                q, k, v = qkv.unbind(1)
                seq32 = M.positions_from_cu(cu, T)[0].int()
                scale = Dh ** -0.5
                ref = varlen_attention(q, k, v, cu, mx, scale).float()
                tables.clear()
                first: dict[str, tuple[float, float]] = {}  # first call (compiles): seconds, max |error|
                for name, fn in variants.items():
                    if name.startswith("packed") and not K.packed_attention_fits(q.dtype, Dh, mx):
                        continue
                    if name.startswith("aligned") and not K.aligned_attention_fits(q.dtype, Dh, mx):
                        continue
                    t1 = time.time()
                    try:
                        got = fn(q, k, v, cu, mx, scale, seq32)
                        first[name] = (time.time() - t1, float((got.float() - ref).abs().max()))
                    except Exception as ex:  # noqa: BLE001
                        emit(workload=w, D=D, batch=bi, variant=name, error=f"{type(ex).__name__}: {ex}"[:300])
                order = [(name, fn) for name, fn in variants.items() if name in first]
                samples: dict[str, list[float]] = {name: [] for name, _ in order}
                for r in range(a.rounds):
                    if a.rounds > 1:
                        settle(order[0][1], (q, k, v, cu, mx, scale, seq32), a.settle_ms)
                    for name, fn in order[r % len(order):] + order[:r % len(order)]:
                        samples[name].append(timed(lambda: fn(q, k, v, cu, mx, scale, seq32), a.iters, before=pace))
                times = {name: sum(v) / len(v) for name, v in samples.items()}
                for name, ms in times.items():
                    emit(workload=w, D=D, batch=bi, tokens=T, seqs=len(lens), max_len=mx, variant=name,
                         ms=round(ms, 4), max_abs_err_vs_torch_varlen=first[name][1],
                         first_call_s=round(first[name][0], 2))
                    total[name] += ms
                    ran[name] += 1
                best += min(times.values())
            per = a.budget / n_tok
            emit(workload=w, D=D, summary=True, batches=len(plan), tokens=n_tok,
                 ms_per_65k={k: round(v * per, 3) for k, v in total.items() if ran[k] == len(plan)},
                 best_per_batch_ms_per_65k=round(best * per, 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
