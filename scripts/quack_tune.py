"""Tile configs for the quack GEMMs of one model width, measured the way a forward runs them, then
the winners A/B inside the whole model forward (one H200; needs quack: source scripts/quack-env).

    python3 scripts/quack_tune.py [--dims 1280] [--m 65494] [--configs all|SPEC,...] [--model esm2_t33_650M_UR50D]

Step 1, per width D: FC1+GELU (gemm_act) and QKV+rotary (epilogues.qkv_rope) over every SM90
tile/cluster choice (epilogues.parse_config specs), plus quack's plain GEMM with bias for the
out-projection and FC2 (cuBLAS runs those today) and cuBLAS itself; each timed back to back
(cudatime.timed: sustained, no L2 flush) and checked against an fp32 reference of the same fp16
inputs (a config with error above 2× the default's is marked bad). Step 2: the model's forward on
its longest `reads` batch with quack's default configs vs the step-1 winners pinned in
epilogues.CONFIGS, alternated A/B/A/B so clock drift falls on both. One JSON line per measurement.
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
import torch.nn.functional as F  # noqa: E402

import gemm_cases  # noqa: E402
import workloads  # noqa: E402
from cudatime import timed  # noqa: E402
from embed_worker import epilogues as E  # noqa: E402
from embed_worker import model as M  # noqa: E402
from embed_worker.registry import KNOWN  # noqa: E402
from profile_forward import pack  # noqa: E402

COOP = ["256x128c", "256x160c", "256x192c", "256x208c", "128x224c", "128x256c"]
PINGPONG = ["128x128p", "128x160p", "128x192p", "128x208p", "192x128p"]


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def all_specs() -> list[str]:
    """quack's SM90 autotune space without swap_ab (M ≫ N here): tiles × clusters, and the
    default tile with the dynamic persistent scheduler."""
    return [f"{t}@{c}" for t in COOP + PINGPONG for c in ("2x1", "1x2")] + ["128x192p@2x1+d"]


def likely_specs() -> list[str]:
    """The part of all_specs() that came within 5% of the best on a first pass (650M, one H200:
    docs/BENCHMARKS.md, session 6): pingpong tiles, and the default tile with the dynamic
    scheduler; cooperative tiles lost 5-20% on every GEMM but FC2."""
    return [f"{t}@{c}" for t in PINGPONG for c in ("2x1", "1x2")] + ["128x192p@2x1+d", "256x128c@2x1"]


def sustained_ms(fn, seconds: float, iters: int) -> float:
    """ms per call: `iters` calls back to back, or, with seconds > 0, enough calls to span that
    long after as long a warm-up (the GPU settles at its power cap within ~100 ms of load, as the
    whole forward runs; a 20-call burst may still be at boost clocks)."""
    if seconds <= 0:
        return timed(fn, iters)
    est = timed(fn, 3, warmup=1)
    n = max(iters, int(seconds * 1000 / max(est, 1e-3)))
    return timed(fn, n, warmup=n)


def sweep_width(D: int, M_: int, specs: list[str], iters: int, sustain: float) -> dict[str, str]:
    """Step 1 for one width; returns {op: best spec} for the ops where a spec beat the default."""
    from quack.gemm_interface import gemm_act, gemm_tuned

    from embed_worker import quack_epi
    dev, dt = torch.device("cuda"), torch.float16
    case = gemm_cases.layer(D, M_, dev, dt)
    W, b, h, inputs, flops = case.W, case.b, case.h, case.inputs, case.flops
    rope = gemm_cases.qkv_rope(case, 52)
    lin, freq, pos = rope.lin, rope.freq, rope.posf

    def ref(k):
        return inputs[k].float() @ W[k].float().t() + b[k].float()
    refs = {"fc1": F.gelu(ref("fc1")), "qkv": rope.want, "out": ref("out"), "fc2": ref("fc2")}

    def plain(k, cfg):
        out = torch.empty(M_, W[k].shape[0], dtype=dt, device=dev)
        gemm_tuned.fn(inputs[k], W[k].t(), out, None, bias=b[k], config=cfg)
        return out

    fns = {
        "fc1": lambda cfg: gemm_act(h, W["fc1"].t(), bias=b["fc1"], activation="gelu_erf",
                                    store_preact=False, tuned=False, config=cfg)[1],
        "qkv": lambda cfg: quack_epi.qkv_rope_bias(h, lin.weight.t(), tuned=False, config=cfg, pos=pos,
                                                     freq=freq, bias=lin.bias)["D"],
        "out": lambda cfg: plain("out", cfg),
        "fc2": lambda cfg: plain("fc2", cfg),
    }
    # what each GEMM runs on today: cuBLAS for out/FC2, quack's default config for FC1/QKV
    best: dict[str, tuple[float, str]] = {}
    for k in ("out", "fc2", "fc1", "qkv"):
        ms = sustained_ms(lambda k=k: F.linear(inputs[k], W[k], b[k]), sustain, iters)
        emit(D=D, op=k, impl="cublas", ms=round(ms, 4), tflops=round(flops[k] / ms / 1e9, 1))
        if k in ("out", "fc2"):
            best[k] = (ms, "cublas")
    for k, fn in fns.items():
        base_err = None
        for spec in ["default"] + specs:
            cfg = None if spec == "default" else E.gemm_config(spec)
            try:
                t0 = time.time()
                e = gemm_cases.err(fn(cfg), refs[k])["rel_l2"]
                torch.cuda.synchronize()
                compile_s = time.time() - t0
                ms = sustained_ms(lambda: fn(cfg), sustain, iters)
            except Exception as ex:  # one config failing must not lose the others
                emit(D=D, op=k, impl="quack", config=spec, error=f"{type(ex).__name__}: {str(ex)[:300]}")
                continue
            base_err = e if base_err is None else base_err
            ok = e <= 2 * base_err + 1e-6
            emit(D=D, op=k, impl="quack", config=spec, ms=round(ms, 4), tflops=round(flops[k] / ms / 1e9, 1),
                 rel_l2=e, ok=ok, compile_s=round(compile_s, 1))
            if ok and spec != "default" and (k not in best or ms < best[k][0]):
                best[k] = (ms, spec)
            elif spec == "default" and k in ("fc1", "qkv"):
                best[k] = (ms, spec)
    winners = {k: spec for k, (ms, spec) in best.items() if spec not in ("default", "cublas")}
    emit(D=D, measurement="winners", winners=winners, best={k: [v[1], round(v[0], 4)] for k, v in best.items()})
    return winners


def reads_forward(name: str):
    """A random-weight fp16 model of a registered config under "quack", and its longest `reads`
    batch: (model, cfg, (ids, cu, max_len), tokens)."""
    dev = torch.device("cuda")
    cfg = KNOWN[name].cfg
    with torch.device(dev):
        model = M.ESM2(cfg)
    model = model.half().eval()
    model.use_kernels("quack")
    ids, cu, mx, used, _ = pack(workloads.sequences("reads", 20000, seed=9), 65536, dev)
    return model, cfg, (ids, cu, mx), used


def forward_ab_args(ap, models: str) -> None:
    """The options every in-forward A/B script takes: models, the GEMMs' token count, rounds of
    alternated arms, and how long a GEMM alone runs (sustained_ms)."""
    ap.add_argument("--models", default=models)
    ap.add_argument("--m", type=int, default=65494)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sustain", type=float, default=0.3)


def forward_arms(name: str, arms: dict, rounds: int, restore, compare: bool = True) -> None:
    """The forward of the model's longest `reads` batch (reads_forward) under each arm, the arms
    alternated round by round so clock drift falls on all: arms maps a label to a callable that
    switches the process to that arm (given the model); with compare, the first round also checks
    each arm's last layer against the first arm's. restore(model) puts the product back; then
    emit_medians."""
    model, cfg, (ids, cu, mx), used = reads_forward(name)
    L = cfg.num_layers
    res: dict[str, list[float]] = {}
    ref = None
    for r in range(rounds):
        for arm, switch in arms.items():
            switch(model)
            res.setdefault(arm, []).append(timed(lambda: model(ids, cu, mx, [L]), 5))
            if r == 0 and compare:
                got = model(ids, cu, mx, [L])[L].float()
                ref = got if ref is None else ref
                emit(model=name, arm=arm, max_abs_vs_first=float((got - ref).abs().max()),
                     rel_l2_vs_first=float((got - ref).norm() / ref.norm()))
    restore(model)
    emit_medians(name, res, used)


def emit_medians(name: str, res: dict[str, list[float]], tokens: int) -> None:
    """One line per arm: its ms per forward in every round, the median, tokens/s at the median."""
    for arm, v in res.items():
        ms = sorted(v)[len(v) // 2]
        emit(model=name, arm=arm, ms_per_forward=[round(x, 2) for x in v], median_ms=round(ms, 2),
             tokens=tokens, tokens_per_s=round(tokens / ms * 1000))


def ab_model(name: str, winners: dict[str, str], rounds: int, iters: int) -> None:
    """Step 2: the forward as it runs today (A) vs each winner pinned alone and all together,
    alternated round by round."""
    model, cfg, (ids, cu, mx), used = reads_forward(name)
    L, D = cfg.num_layers, cfg.embed_dim
    shape = {"qkv": (D, 3 * D), "out": (D, D), "fc1": (D, cfg.ffn_dim), "fc2": (cfg.ffn_dim, D)}
    pinned = {(op, *shape[op]): spec for op, spec in winners.items()}
    ref = model(ids, cu, mx, [L])[L].float()
    arms = {"default": {}}
    if len(pinned) > 1:
        arms.update({f"{k[0]} {v}": {k: v} for k, v in pinned.items()})
    if pinned:
        arms["all pinned"] = pinned
    res: dict[str, list[float]] = {a: [] for a in arms}
    for r in range(rounds):
        for arm, table in arms.items():
            E.CONFIGS.clear()
            E.CONFIGS.update(table)
            ms = timed(lambda: model(ids, cu, mx, [L]), iters)
            res[arm].append(ms)
            if r == 0:
                got = model(ids, cu, mx, [L])[L].float()
                emit(model=name, arm=arm, pinned={f"{k[0]} {k[1]}x{k[2]}": v for k, v in table.items()},
                     max_abs_vs_default=float((got - ref).abs().max()))
    E.CONFIGS.clear()
    emit_medians(name, res, used)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="1280")
    ap.add_argument("--m", type=int, default=65494)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--configs", default="all", help="all (quack's SM90 space), likely, or SPEC,SPEC,...")
    ap.add_argument("--model", default="esm2_t33_650M_UR50D", help="A/B the winners in this model ('' skips)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sustain", type=float, default=0.3, help="seconds each config runs (after as long a warm-up); "
                    "0: --iters calls")
    a = ap.parse_args()
    t0 = time.time()
    from embed_worker import quack_epi  # noqa: F401  (imports quack: its cost, once)
    emit(measurement="import", s=round(time.time() - t0, 1), gpu=torch.cuda.get_device_name())
    specs = {"all": all_specs, "likely": likely_specs}.get(a.configs, lambda: a.configs.split(","))()
    winners = {}
    for D in map(int, a.dims.split(",")):
        winners[D] = sweep_width(D, a.m, specs, a.iters, a.sustain)
        torch.cuda.empty_cache()
    if a.model:
        D = KNOWN[a.model].cfg.embed_dim
        ab_model(a.model, winners.get(D, {}), a.rounds, 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
