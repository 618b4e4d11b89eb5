"""Speed benchmark, all implementations in one process on one device (issue 4):

  python3 bench/bench.py --out DIR [--models esm2_t33_650M_UR50D,esm2_t36_3B_UR50D]
                           [--workloads reads,short,uniprot] [--tokens 5200000] [--hf-tokens 1000000]
                           [--impls embed,hf-sorted,hf-input]
                           [--interleave] [--base-kernels FILE]

Measures the fp16 matmul ceiling (a large GEMM), then per model and workload: embed's packed
worker forward (varlen attention, mean pooled on the device, means copied back), Hugging Face
`EsmModel` fp16 (sdpa) on length-sorted padded token-budget batches and in input order. Random
weights of the real configs (speed does not depend on weight values). Reports tokens/s, seqs/s,
MFU = tokens/s x FLOPs/token / ceiling (FLOPs/token = sum over layers of 24 D^2 + 4 L D, with L the
token-weighted mean sequence length), peak memory, packing density. A correctness gate compares
embed's fast path with an fp32 Hugging Face reference on a stratified sample (mean-pooled cosine
>= 0.9999 median, >= 0.999 min, no NaN/Inf) and fails the run if broken.
With --interleave, embed's arrangements run batch by batch in turn, each batch twice in a
palindrome (A B B A): an A/B whose arms see the same clock drift (at the power cap the GPU's clock
moves 1-2% between windows seconds apart) and the same positions.
Sizes: --tokens per (model, workload) for embed's arms; the default, 5.2M, makes `reads` 100k+
sequences as issue 4 defines it, and arms of 12-50 s: the steady state of a GPU at its power cap
(over 2-3 s windows a cool H200 reads 2-3% faster than it holds: docs/decisions/benchmark-method.md).
The Hugging Face arms run on the workload's first --hf-tokens (the same sequences, a prefix in
input order), so that both models' baselines fit one device call.
Writes DIR/bench.jsonl (one object per measurement, appended as it goes) and DIR/bench.md.
On a machine without CUDA it runs the same code on the CPU in fp32 (a smoke test).
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch  # noqa: E402

from embed_worker.esm2 import model as M  # noqa: E402
from embed_worker.gpu.arrange import arrange, compile_blocks  # noqa: E402
from embed_worker.tools import testmodel  # noqa: E402
from embed_worker.esm2.weights import load_model  # noqa: E402
import workloads  # noqa: E402

AA = "LAGVSERTIDPKQNFYMHWCXBUZO.-"
CUDA = torch.cuda.is_available()
DEV = torch.device("cuda", 0) if CUDA else torch.device("cpu")
HALF = torch.float16 if CUDA else torch.float32


def model_spec(name: str) -> tuple[str, int | None]:
    """(released name, layers or None) of a --models entry: NAME, or NAME@L for NAME's width and
    heads at L layers."""
    base, _, depth = name.partition("@")
    if depth and not depth.removesuffix("L").isdigit():
        raise ValueError(f"{name}: after @ comes a number of layers, e.g. esm2_t48_15B_UR50D@6L")
    return base, int(depth.removesuffix("L")) if depth else None


def sync():
    if CUDA:
        torch.cuda.synchronize()


def encode(seq: str) -> list[int]:
    return [0] + [4 + AA.index(c) for c in seq] + [2]


def matmul_ceiling(n: int = 8192, iters: int = 30) -> float:
    """fp16 TFLOP/s of one large square GEMM (the ceiling MFU is measured against)."""
    if not CUDA:
        n, iters = 512, 3
    a = torch.randn(n, n, device=DEV, dtype=HALF)
    b = torch.randn(n, n, device=DEV, dtype=HALF)
    for _ in range(3):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def flops_per_token(cfg, lens: list[int]) -> float:
    """Forward FLOPs per token: per layer 24 D^2 (QKV, out, FFN GEMMs) + 4 L D (QK^T and PV)."""
    d = cfg.embed_dim
    l_eff = sum(x * x for x in lens) / sum(lens)
    return cfg.num_layers * (24 * d * d + 4 * l_eff * d)


KERNELS = {"embed": "eager", "embed-compiled": "compile", "embed-triton": "triton", "embed-quack": "quack",
           "embed-quack-nofa4": "quack",  # quack GEMMs, FlashAttention-4 off (long batches)
           "embed-quack-noaligned": "quack",  # quack, the aligned attention kernel off (mid-length batches)
           "embed-quack-addln": "quack",  # quack, out-proj/FC2 outputs written and added in the LN pass
           # quack, each batch's means left on the device until the last batch has run: no sync
           # between batches, so no GPU idle between them; against embed-quack, what the worker's
           # batch-by-batch loop (sync, copy out, receive, launch the next) costs
           "embed-quack-nosync": "quack"}
_compiled_step = None
_product: dict = {}  # the settings the impls change, as the product has them (taken on first use)
# what an impl named ...@base takes from the base revision's kernels.py: the attention launchers
# (kernels and their launch options) and the routing between them
ATTN_FUNCTIONS = ("packed_attention", "aligned_attention", "aligned_beats_packed")
_base = None  # --base-kernels: another revision's kernels.py, whose attention kernels impls named ...@base run
_base_long_min_len = None  # --base-long-min-len: attention.LONG_MIN_LEN for impls named ...@base


def load_base_kernels(path: str):
    """attention_kernels.py of another revision (e.g. `git show
    HEAD~1:py/embed_worker/gpu/attention_kernels.py > /tmp/k.py`; before the package had folders,
    py/embed_worker/kernels.py)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("embed_kernels_base", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def set_kernels(model, kind: str, impl: str = "") -> None:
    """Switch one loaded model between arrangements; the compiled step is built once and reused."""
    global _compiled_step
    arrange(model, "eager")  # also restores the q/k row order "quack" interleaves
    if kind == "compile":
        if _compiled_step is None:
            compile_blocks(model)
            _compiled_step = model.step
        model.step, model.kernels = _compiled_step, "compile"
    elif kind in ("triton", "quack"):
        # the addln arm: out-proj/FC2 results written, then added in the LN pass
        arrange(model, kind, residual_in_place=impl != "embed-quack-addln")


def _base_function(name: str):
    """The base revision's attention launcher or routing rule, called as this revision calls it
    (older launchers take no max_seqlen; revisions before the aligned-over-packed rule never
    prefer aligned tiles for short batches)."""
    f = getattr(_base, name, None)
    if name == "aligned_beats_packed":
        return f or (lambda max_seqlen: False)
    if name == "aligned_attention" and "max_seqlen" not in inspect.signature(f).parameters:
        return lambda q, k, v, cu, scale=1.0, table=None, max_seqlen=None: f(q, k, v, cu, scale, table)
    return f


def set_impl(model, impl: str) -> None:
    base = impl.endswith("@base")
    impl = impl.removesuffix("@base")
    if base and _base is None:
        raise SystemExit(f"{impl}@base needs --base-kernels FILE")
    set_kernels(model, KERNELS[impl], impl)
    if impl == "embed-quack-nofa4":
        model.long_attention = None
    if KERNELS[impl] in ("triton", "quack"):
        # Lab arms swap the attention launchers and thresholds by module attribute (the product
        # never changes them): restored to the product's own on every switch.
        from embed_worker.gpu import attention_kernels as AK
        from embed_worker.gpu import long_attention as LA
        if not _product:
            _product.update(aligned_max=AK.ALIGNED_ATTN_MAX_LEN, attn={n: getattr(AK, n) for n in ATTN_FUNCTIONS},
                            long_min=LA.LONG_MIN_LEN)
        for n in ATTN_FUNCTIONS:
            setattr(AK, n, _base_function(n) if base else _product["attn"][n])
        LA.LONG_MIN_LEN = (_base_long_min_len or _product["long_min"]) if base else _product["long_min"]
        AK.ALIGNED_ATTN_MAX_LEN = 0 if impl == "embed-quack-noaligned" else _product["aligned_max"]


# ---- implementations: each returns (means fp32 [N, D] in input order, seconds, batches, real tokens, padded tokens)

def plan(seqs, budget) -> list[list[int]]:
    """Indices into seqs in token-budget batches, longest sequences first (as the planner packs)."""
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i))
    batches, cur, used = [], [], 0
    for i in order:
        n = len(seqs[i]) + 2
        if cur and used + n > budget:
            batches.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        batches.append(cur)
    return batches


def prepare(seqs, budget) -> list:
    """embed's batches as (indices, ids (pinned on CUDA), cu_seqlens, longest): host-side batch
    building is the orchestrator's job and overlaps in production, so it is done before timing."""
    prepared = []
    for b in plan(seqs, budget):
        ids = torch.tensor([t for i in b for t in encode(seqs[i])], dtype=torch.long)
        lens = torch.tensor([len(seqs[i]) + 2 for i in b], dtype=torch.int32)
        cu = torch.zeros(len(b) + 1, dtype=torch.int32)
        torch.cumsum(lens, 0, out=cu[1:])
        prepared.append((b, ids.pin_memory() if CUDA else ids, cu, int(lens.max())))
    return prepared


def batch_means(model, ids, cu, mx, layer) -> torch.Tensor:
    """One batch through the forward, its means pooled on the device (left there)."""
    h = model(ids.to(DEV, non_blocking=True), cu.to(DEV, non_blocking=True), mx, [layer])[layer]
    return M.mean_residues(h, cu.to(DEV))


def prefix(seqs: list[str], tokens: int) -> list[str]:
    """The first sequences of seqs (input order) up to about `tokens` tokens, BOS and EOS counted;
    at least one."""
    total = 0
    for i, s in enumerate(seqs):
        total += len(s) + 2
        if total >= tokens:
            return seqs[: i + 1]
    return seqs


def embed_packed(model, seqs, budget, layer, sync_each: bool = True):
    """embed's forward over length-sorted token-budget batches, means pooled on the device; with
    sync_each (the worker's way) each batch's means are copied back before the next batch starts,
    else all at the end."""
    prepared = prepare(seqs, budget)
    out = torch.empty(len(seqs), model.cfg.embed_dim)
    sync()
    t0 = time.perf_counter()
    held = []
    for b, ids, cu, mx in prepared:
        means = batch_means(model, ids, cu, mx, layer)
        if sync_each:
            out[b] = means.cpu()
        else:
            held.append((b, means))
    for b, means in held:
        out[b] = means.cpu()
    sync()
    secs = time.perf_counter() - t0
    toks = sum(len(s) + 2 for s in seqs)
    return out, secs, len(prepared), toks, toks


def embed_interleaved(model, impls: list[str], seqs, budget, layer) -> dict:
    """embed's arrangements alternated batch by batch (--interleave): every arm runs every batch
    twice, in a palindrome (A B B A; the first half's order rotated by one from batch to batch), so
    every arm's mean position within a batch is the same; each run set up (set_impl) outside the
    timed part and timed alone between two syncs, as the worker's batch-by-batch loop runs. Arms
    timed in separate windows see the GPU's clock drift apart by 1-2% at its power cap; here each
    batch's runs are a few hundred ms apart. (With one pass in rotated order, the same code on
    both arms read 0.15-0.5% apart, the arm named first ahead: docs/decisions/benchmark-method.md.)
    Returns {impl: embed_packed's tuple} for one pass (the two runs' mean time)."""
    prepared = prepare(seqs, budget)
    out = {impl: torch.empty(len(seqs), model.cfg.embed_dim) for impl in impls}
    secs = dict.fromkeys(impls, 0.0)
    for j, (b, ids, cu, mx) in enumerate(prepared):
        order = impls[j % len(impls):] + impls[:j % len(impls)]
        for impl in order + order[::-1]:
            set_impl(model, impl)
            sync()
            t0 = time.perf_counter()
            out[impl][b] = batch_means(model, ids, cu, mx, layer).cpu()
            sync()
            secs[impl] += time.perf_counter() - t0
    toks = sum(len(s) + 2 for s in seqs)
    return {impl: (out[impl], secs[impl] / 2, len(prepared), toks, toks) for impl in impls}


def hf_padded(hf, seqs, budget, sort: bool):
    """Padded batches under a token budget counting padding (what a careful user writes when
    sorted; what most write when not)."""
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i]), i)) if sort else list(range(len(seqs)))
    batches, cur, mx = [], [], 0
    for i in order:
        L = len(seqs[i]) + 2
        if cur and max(mx, L) * (len(cur) + 1) > budget:
            batches.append(cur)
            cur, mx = [], 0
        cur.append(i)
        mx = max(mx, L)
    if cur:
        batches.append(cur)
    prepared, padded = [], 0
    for b in batches:
        L = max(len(seqs[i]) for i in b) + 2
        ids = torch.ones(len(b), L, dtype=torch.long)
        mask = torch.zeros(len(b), L, dtype=torch.long)
        for r, i in enumerate(b):
            e = encode(seqs[i])
            ids[r, : len(e)] = torch.tensor(e)
            mask[r, : len(e)] = 1
        padded += len(b) * L
        prepared.append((b, ids, mask))
    out = torch.empty(len(seqs), hf.config.hidden_size)
    sync()
    t0 = time.perf_counter()
    for b, ids, mask in prepared:
        ids, mask = ids.to(DEV, non_blocking=True), mask.to(DEV, non_blocking=True)
        h = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        res = mask.clone()
        res[:, 0] = 0
        res[torch.arange(len(b), device=DEV), mask.sum(1) - 1] = 0  # drop BOS and EOS
        means = (h.float() * res[..., None]).sum(1) / res.sum(1, keepdim=True).clamp_min(1)
        out[b] = means.cpu()
    sync()
    secs = time.perf_counter() - t0
    return out, secs, len(batches), sum(len(s) + 2 for s in seqs), padded


def load_hf(path, dtype, attn):
    from transformers import EsmModel
    try:
        m = EsmModel.from_pretrained(path, add_pooling_layer=False, attn_implementation=attn, dtype=dtype)
    except Exception:
        m = EsmModel.from_pretrained(path, add_pooling_layer=False, attn_implementation="eager", dtype=dtype)
    return m.to(DEV).eval()


def gate(fast, ref) -> dict:
    cos = torch.nn.functional.cosine_similarity(fast.double(), ref.double(), dim=1).tolist()
    nonfinite = int((~torch.isfinite(fast)).sum())
    med, mn = statistics.median(cos), min(cos)
    return {"n": len(cos), "min": round(mn, 7), "median": round(med, 7), "nonfinite": nonfinite,
            "ok": med >= 0.9999 and mn >= 0.999 and nonfinite == 0}


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="esm2_t33_650M_UR50D,esm2_t36_3B_UR50D",
                    help="released names; NAME@L (e.g. esm2_t48_15B_UR50D@6L) runs NAME's width and heads at "
                         "L layers (tokens/s scales as 1/layers; MFU does not depend on depth)")
    ap.add_argument("--workloads", default="reads,short,uniprot")
    ap.add_argument("--impls", default="embed,embed-compiled,embed-triton,hf-sorted,hf-input")
    ap.add_argument("--tokens", type=int, default=5_200_000, help="tokens per (model, workload) for embed's arms "
                    "(5.2M: 100k+ `reads` sequences, the issue's size, and windows long enough for the steady state)")
    ap.add_argument("--hf-tokens", type=int, default=1_000_000, help="the Hugging Face arms run on the workload's "
                    "first sequences up to this many tokens (a prefix, in input order)")
    ap.add_argument("--budget", type=int, default=65536, help="embed's token budget")
    ap.add_argument("--hf-budget", type=int, default=16384, help="HF padded batches: tokens incl. padding")
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--base-kernels", default="", help="kernels.py of another revision: impls named "
                    "IMPL@base (e.g. embed-quack@base) run its attention kernels")
    ap.add_argument("--interleave", action="store_true", help="run embed's arms (all but -nosync) batch by "
                    "batch in turn, each batch twice in a palindrome (A B B A), instead of one after the other: "
                    "an A/B whose arms see the same clock drift and the same positions")
    ap.add_argument("--base-long-min-len", type=int, default=0,
                    help="attention.LONG_MIN_LEN for the @base impls (default: this revision's)")
    a = ap.parse_args()
    try:  # name as given -> (released name, layers or None)
        models = {name: model_spec(name) for name in a.models.split(",")}
    except ValueError as e:
        ap.error(f"--models {e}")
    global _base, _base_long_min_len
    if a.base_kernels:
        _base = load_base_kernels(a.base_kernels)
        _base_long_min_len = a.base_long_min_len
    os.makedirs(a.out, exist_ok=True)
    jsonl = open(os.path.join(a.out, "bench.jsonl"), "a")
    gpu = torch.cuda.get_device_name(DEV) if CUDA else "cpu"
    date = datetime.date.today().isoformat()
    ceiling = matmul_ceiling()
    rows = []

    def record(obj):
        obj.update({"gpu": gpu, "date": date, "command": a.command, "torch": torch.__version__})
        jsonl.write(json.dumps(obj) + "\n")
        jsonl.flush()
        print(json.dumps(obj), flush=True)
        rows.append(obj)

    record({"measurement": "matmul_ceiling", "tflops": round(ceiling, 1)})
    ok = True
    for name, (base_name, depth) in models.items():
        paths = testmodel.write_like("/tmp/embed-models", base_name, fmt="hf", layers=depth)
        ours, mcfg, _ = load_model(paths["hf"], DEV, HALF)
        layer = mcfg.num_layers
        hf = load_hf(paths["hf"], HALF, "sdpa") if ("hf-sorted" in a.impls or "hf-input" in a.impls) else None
        tokens = a.tokens
        for w in a.workloads.split(","):
            n = max(64, tokens // (workloads.lengths(w, 2000, seed=5) and
                                   int(statistics.mean(workloads.lengths(w, 2000, seed=5))) + 2))
            seqs = workloads.sequences(w, n, seed=5)
            lens = [len(s) + 2 for s in seqs]
            fpt = flops_per_token(mcfg, lens)
            hf_seqs = prefix(seqs, a.hf_tokens)
            hf_fpt = flops_per_token(mcfg, [len(s) + 2 for s in hf_seqs])
            # warm-up on 2,000 sequences spread over the workload's lengths, in ten groups of
            # neighbouring lengths, so that every kernel variant a batch's longest sequence picks
            # (the attention launches) compiles before anything is timed
            sample = sorted(seqs[:: max(1, len(seqs) // 2000)], key=len)

            def warm(model):
                for i in range(0, len(sample), max(1, len(sample) // 10)):
                    embed_packed(model, sample[i: i + max(1, len(sample) // 10)], a.budget, layer)
            warm(ours)
            fast = {}
            # Compiling and the Triton kernels only pay (and only behave) on CUDA.
            impls = [i for i in a.impls.split(",") if CUDA or i.removesuffix("@base") in ("embed", "hf-sorted", "hf-input")]
            if a.interleave:
                impls = list(dict.fromkeys(impls))  # an arm named twice would only run twice per batch
            together, together_peak = {}, None
            arms = [i for i in impls if i.startswith("embed") and "-nosync" not in i]
            if a.interleave and len(arms) > 1:
                if CUDA:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(DEV)
                for impl in arms:
                    set_impl(ours, impl)
                    warm(ours)  # every arm compiled and warm before the first timed batch
                together = embed_interleaved(ours, arms, seqs, a.budget, layer)
                together_peak = round(torch.cuda.max_memory_allocated(DEV) / 2**30, 2) if CUDA else None
            for impl in impls:
                if CUDA:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(DEV)
                if impl in together:
                    res = together[impl]
                    fast[impl] = res[0]
                elif impl.startswith("embed"):
                    set_impl(ours, impl)
                    if impl != "embed":
                        warm(ours)  # compile + warm-up
                    res = embed_packed(ours, seqs, a.budget, layer, sync_each="-nosync" not in impl)
                    fast[impl] = res[0]
                elif impl == "hf-sorted":
                    hf_padded(hf, hf_seqs[:500], a.hf_budget, True)  # warm-up
                    res = hf_padded(hf, hf_seqs, a.hf_budget, True)
                else:
                    res = hf_padded(hf, hf_seqs, a.hf_budget, False)
                _, secs, nb, real, padded = res
                m, f = (n, fpt) if impl.startswith("embed") else (len(hf_seqs), hf_fpt)
                wall_end = time.time()  # the timed part ended as the call returned: its window, for
                wall = ({"interleaved": True, "runs_per_batch": 2} if impl in together  # no window: its batches ran between the other arms'
                        else {"wall_start": round(wall_end - secs, 3), "wall_end": round(wall_end, 3)})  # bench/energy.py
                peak = together_peak if impl in together else (
                    round(torch.cuda.max_memory_allocated(DEV) / 2**30, 2) if CUDA else None)
                budget = a.budget if impl.startswith("embed") else a.hf_budget
                record({"model": name, "workload": w, "implementation": impl, "seqs": m, "tokens": real,
                        "seconds": round(secs, 3), "tokens_per_s": round(real / secs), "seqs_per_s": round(m / secs),
                        "mfu": round(real / secs * f / (ceiling * 1e12), 4), "flops_per_token": round(f),
                        "peak_mem_gib": peak, "batches": nb, "budget": budget, "density": round(real / (nb * budget), 4),
                        "padding_overhead": round(padded / real - 1, 4), **wall})
            if fast:
                # Correctness gate: stratified sample vs an fp32 HF reference on the same weights,
                # for each of embed's arrangements.
                ref_model = load_hf(paths["hf"], torch.float32, "eager")
                idx = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))[:: max(1, len(seqs) // 64)]
                sub = [seqs[i] for i in idx]
                ref, *_ = hf_padded(ref_model, sub, 8192, True)
                for impl, means in fast.items():
                    g = gate(means[idx], ref)
                    record({"model": name, "workload": w, "implementation": impl, "measurement": "correctness_gate", **g})
                    ok = ok and g["ok"]
                del ref_model
        del ours, hf
        if CUDA:
            torch.cuda.empty_cache()
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(f"ceiling {ceiling:.0f} TFLOP/s fp16 on {gpu}\n\n")
        f.write("| model | workload | implementation | tokens/s | seqs/s | MFU | peak GiB | density |\n|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            if "tokens_per_s" in r:
                f.write(f"| {r['model']} | {r['workload']} | {r['implementation']} | {r['tokens_per_s']:,} | "
                        f"{r['seqs_per_s']:,} | {r['mfu']:.1%} | {r['peak_mem_gib']} | {r['density']:.3f} |\n")
        if any(r.get("interleaved") for r in rows):
            f.write("\nInterleaved arms (each batch A B B A between syncs): compare them with each other only; "
                    "their absolute tokens/s read 2-3% above a sustained run on the same GPU "
                    "(docs/decisions/benchmark-method.md).\n")
        for r in rows:
            if r.get("measurement") == "correctness_gate":
                f.write(f"\ngate {r['model']} {r['workload']} {r['implementation']}: "
                        f"{json.dumps({k: v for k, v in r.items() if k not in ('gpu', 'date', 'command', 'torch')})}")
    print(open(os.path.join(a.out, "bench.md")).read())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
