"""Where deferred LayerNorm's time went (650M: −5.5% on workloads, session 7): the QKV and FC1
GEMMs alone, sustained at the power cap, as the product runs them and with deferred LN's epilogue
operands added one kind at a time (scripts/ln_epi_variants.py), plus the LN pass against the
statistics pass that would replace it. Arms alternate round by round so clock drift falls on all.
Needs quack (source scripts/quack-env).

    python3 scripts/ln_epilogue_probe.py [--dims 1280,2560] [--m 65494] [--rounds 3] [--sustain 0.3]

One JSON line per arm and round, then one per arm with the median.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import torch  # noqa: E402

import gemm_cases  # noqa: E402
from embed_worker import epilogues as E  # noqa: E402
from embed_worker import kernels as K  # noqa: E402
from quack_tune import emit, sustained_ms  # noqa: E402


# arms that compute the same thing as another (checked before timing)
SAME_AS = {"qkv deferred": "qkv product", "fc1 frontend": "fc1 product", "fc1 deferred": "fc1 product"}


def arms(D: int, M_: int) -> dict:
    """{name: callable} for one width."""
    import ln_epi_variants as V
    from embed_worker import quack_epi as Q
    dev = torch.device("cuda")
    case = gemm_cases.layer(D, M_, dev)
    rope = gemm_cases.qkv_rope(case, 52)
    lin, freq, pos = rope.lin, rope.freq, rope.posf
    x = case.x
    norm = torch.nn.LayerNorm(D, device=dev, dtype=x.dtype)
    fc1 = torch.nn.Linear(D, 4 * D, device=dev, dtype=x.dtype)
    with torch.no_grad():
        for p in (norm.weight, norm.bias):
            p.copy_(1 + 0.1 * torch.randn_like(p) if p is norm.weight else 0.1 * torch.randn_like(p))
        fc1.weight.copy_(case.W["fc1"])
        fc1.bias.copy_(case.b["fc1"])
    h = K.layer_norm(x, norm)
    _, ls, lt = K.ln_stats(x, norm.eps)
    qw, qg, qb = E.fold_norm(norm, lin)
    fw, fg, fb = E.fold_norm(norm, fc1)
    cfg_q, cfg_f = E.config_for("qkv", lin.weight), E.config_for("fc1", fc1.weight)

    def qkv(epi, **ops):
        return lambda: epi(x if "ls" in ops else h, (qw if "ls" in ops or "wg" in ops else lin.weight).t(),
                           tuned=False, config=cfg_q, pos=pos, freq=freq, **ops)["D"]

    def fc(epi, **ops):
        return lambda: epi(x if "ls" in ops else h, (fw if "ls" in ops or "wg" in ops else fc1.weight).t(),
                           tuned=False, config=cfg_f, **ops)["D"]
    fns = {
        "ln pass": lambda: K.layer_norm(x, norm),
        "stats pass": lambda: K.ln_stats(x, norm.eps),
        "qkv product": lambda: E.qkv_rope(h, lin.weight, lin.bias, pos, freq),
        "qkv no rotary": lambda: V.qkv_bias(h, lin.weight.t(), tuned=False, config=cfg_q, bias=lin.bias)["D"],
        "qkv +row scale": qkv(V.qkv_rope_rowscale, ls=ls, wb=qb),
        "qkv +col vector": qkv(V.qkv_rope_cols, wg=qg, wb=qb),
        "qkv deferred": qkv(Q.qkv_rope_ln, ls=ls, lt=lt, wg=qg, wb=qb),
        "fc1 product": lambda: E.fc1_act(h, fc1.weight, fc1.bias, "erf"),
        "fc1 frontend": lambda: V.fc1_gelu(h, fc1.weight.t(), tuned=False, config=cfg_f, bias=fc1.bias)["D"],
        "fc1 +row scale": fc(V.fc1_gelu_rowscale, ls=ls, wb=fb),
        "fc1 +col vector": fc(V.fc1_gelu_cols, wg=fg, wb=fb),
        "fc1 deferred": fc(Q.fc1_ln_gelu_erf, ls=ls, lt=lt, wg=fg, wb=fb),
    }
    return fns


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="1280,2560")
    ap.add_argument("--m", type=int, default=65494)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sustain", type=float, default=0.3)
    a = ap.parse_args()
    for D in map(int, a.dims.split(",")):
        fns = arms(D, a.m)
        out = {}
        for name, fn in list(fns.items()):  # compile each once; one failing must not lose the rest
            try:
                out[name] = fn()
                torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001
                emit(D=D, arm=name, error=f"{type(e).__name__}: {str(e)[:300]}")
                del fns[name]
        for name, ref in SAME_AS.items():
            if name in out and ref in out:
                emit(D=D, arm=name, vs=ref, **gemm_cases.err(out[name], out[ref].float()))
        out = None
        res: dict[str, list[float]] = {}
        for r in range(a.rounds):
            for name, fn in fns.items():
                ms = sustained_ms(fn, a.sustain, 20)
                res.setdefault(name, []).append(ms)
                emit(D=D, arm=name, round=r, ms=round(ms, 4))
        for name, v in res.items():
            emit(D=D, arm=name, median_ms=round(sorted(v)[len(v) // 2], 4), ms=[round(t, 4) for t in v])
        fns = None
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
