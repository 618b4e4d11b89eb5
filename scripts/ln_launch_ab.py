"""LayerNorm pass launch shapes at the GPU's power cap: the plain LN pass (650M's boundaries, after
the residual add in quack's store) and the add+LN pass (3B's), each launch shape sustained
(quack_tune.sustained_ms) with shapes alternated round by round; then the best shapes inside the
forward of each model's longest `reads` batch, arms alternated round by round. kernels.LN_ELEMS and
LN_WARPS (elements per program, warps) were first chosen for add+LN with L2-flushed single calls
(kernel_sweep.py); the plain pass, which moves half the bytes per row, wanted fewer warps
(session 10). Needs quack for step 2 (source scripts/quack-env).

    python3 scripts/ln_launch_ab.py [--models esm2_t33_650M_UR50D,esm2_t36_3B_UR50D] [--rounds 4]
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import torch  # noqa: E402

from cudatime import timed  # noqa: E402
from embed_worker import epilogues as E  # noqa: E402
from embed_worker import kernels as K  # noqa: E402
from embed_worker.registry import KNOWN  # noqa: E402
from quack_tune import emit, emit_medians, forward_ab_args, reads_forward, sustained_ms  # noqa: E402

SHAPES = [(e, w) for e in (2048, 4096, 8192) for w in (2, 4, 8)]


def launch(shape: tuple[int, int]) -> None:
    K.LN_ELEMS, K.LN_WARPS = shape


def alone(D: int, T: int, rounds: int, sustain: float) -> dict[str, list[tuple[int, int]]]:
    """Per pass kind, the launch shapes by median sustained time (fastest first)."""
    product = (K.LN_ELEMS, K.LN_WARPS)
    x = torch.randn(T, D, device="cuda", dtype=torch.float16) * 3
    d = torch.randn_like(x)
    norm = torch.nn.LayerNorm(D, device=x.device, dtype=x.dtype)
    kinds = {"ln": (lambda: K.layer_norm(x, norm), 2), "add+ln": (lambda: K.add_layer_norm(x, d, norm), 4)}
    ranked = {}
    for kind, (fn, transfers) in kinds.items():
        res: dict[tuple[int, int], list[float]] = {}
        for r in range(rounds):
            for shape in SHAPES:
                launch(shape)
                res.setdefault(shape, []).append(sustained_ms(fn, sustain, 20))
        med = {s: sorted(v)[len(v) // 2] for s, v in res.items()}
        for s, ms in sorted(med.items(), key=lambda kv: kv[1]):
            emit(D=D, step=kind, elems=s[0], warps=s[1], median_ms=round(ms, 4),
                 ms=[round(t, 4) for t in res[s]], TBps=round(transfers * T * D * 2 / ms / 1e9, 2),
                 product=s == product)
        ranked[kind] = sorted(med, key=med.get)
    launch(product)
    return ranked


def forward_ab(name: str, shapes: list[tuple[int, int]], rounds: int) -> None:
    model, cfg, (ids, cu, mx), used = reads_forward(name)
    L = cfg.num_layers
    product = (K.LN_ELEMS, K.LN_WARPS)
    res: dict[str, list[float]] = {}
    ref = None
    for r in range(rounds):
        for shape in shapes:
            launch(shape)
            arm = f"elems={shape[0]} warps={shape[1]}" + (" (product)" if shape == product else "")
            res.setdefault(arm, []).append(timed(lambda: model(ids, cu, mx, [L]), 5))
            if r == 0:
                got = model(ids, cu, mx, [L])[L].float()
                ref = got if ref is None else ref
                emit(model=name, arm=arm, max_abs_vs_first=float((got - ref).abs().max()))
    launch(product)
    emit_medians(name, res, used)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    forward_ab_args(ap, "esm2_t33_650M_UR50D,esm2_t36_3B_UR50D")
    ap.add_argument("--alone-rounds", type=int, default=3)
    a = ap.parse_args()
    product = (K.LN_ELEMS, K.LN_WARPS)
    for n in (n for n in a.models.split(",") if n):
        D = KNOWN[n].cfg.embed_dim
        ranked = alone(D, a.m, a.alone_rounds, a.sustain)
        # the pass this model's boundaries run: plain LN where FC2 adds into the stream in quack's
        # store (650M), else add+LN
        kind = "ln" if E.RESIDUAL_IN_PLACE and ("fc2", KNOWN[n].cfg.ffn_dim, D) in E.CONFIGS else "add+ln"
        arms = [product] + [s for s in ranked[kind][:2] if s != product]
        forward_ab(n, arms, a.rounds)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
