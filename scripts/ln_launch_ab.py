"""LayerNorm pass launch shapes at the GPU's power cap: the plain LN pass (650M's boundaries, after
the residual add in quack's store) and the add+LN pass (3B's), each launch shape sustained
(quack_tune.sustained_ms) with shapes alternated round by round; then the best shapes inside the
forward of each model's longest `reads` batch, arms alternated round by round. kernels.LN_ELEMS and
LN_WARPS (elements per program, warps) were first chosen for add+LN with L2-flushed single calls
(kernel_sweep.py); the plain pass, which moves half the bytes per row, wanted fewer warps
(session 10). Also quack's CuTe-DSL LayerNorm kernel (quack.rmsnorm.layernorm_fwd) as a plain
LN pass, where quack loads. Needs quack for step 2 (source scripts/quack-env).

    python3 scripts/ln_launch_ab.py [--models esm2_t33_650M_UR50D,esm2_t36_3B_UR50D] [--rounds 4]
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import torch  # noqa: E402

from embed_worker import epilogues as E  # noqa: E402
from embed_worker import kernels as K  # noqa: E402
from embed_worker.registry import KNOWN  # noqa: E402
from quack_tune import emit, forward_ab_args, forward_arms, sustained_ms  # noqa: E402

SHAPES = [(e, w) for e in (2048, 4096, 8192) for w in (2, 4, 8)]
QUACK = "quack"  # the arm that swaps the plain LN pass for quack's CuTe-DSL LayerNorm kernel
_OURS = K.layer_norm


PRODUCT = (K.LN_ELEMS, K.LN_WARPS)  # the launch shape the product runs
_F32: dict[torch.nn.LayerNorm, tuple[torch.Tensor, torch.Tensor]] = {}


def quack_layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """LN(x) by quack's norm kernel (quack.rmsnorm.layernorm_fwd: mean, then the variance of
    x - mean, as ours; rsqrt instead of 1/sqrt; its own launch heuristic). It takes float32
    weight and bias: copies made once per LayerNorm."""
    from quack.rmsnorm import layernorm_fwd
    if norm not in _F32:
        _F32[norm] = (norm.weight.float(), norm.bias.float())
    return layernorm_fwd(x, *_F32[norm], norm.eps)


def quack_loads() -> bool:
    try:
        importlib.import_module("quack.rmsnorm")
        return True
    except Exception as e:  # noqa: BLE001  (no quack here: the Triton shapes alone)
        emit(arm=QUACK, error=f"{type(e).__name__}: {str(e)[:200]}")
        return False


def use(arm) -> None:
    """Make the plain LN pass (and add+LN's launch) what this arm says: a Triton launch shape
    (elements per program, warps), or QUACK (the Triton passes at the product's shape)."""
    K.LN_ELEMS, K.LN_WARPS = PRODUCT if arm == QUACK else arm
    K.layer_norm = quack_layer_norm if arm == QUACK else _OURS


def label(arm) -> str:
    name = "quack LayerNorm" if arm == QUACK else f"elems={arm[0]} warps={arm[1] or 'by width'}"
    return name + (" (product)" if arm == PRODUCT else "")


def alone(D: int, T: int, rounds: int, sustain: float, with_quack: bool) -> dict[str, list]:
    """Per pass kind, the arms by median sustained time (fastest first)."""
    x = torch.randn(T, D, device="cuda", dtype=torch.float16) * 3
    d = torch.randn_like(x)
    norm = torch.nn.LayerNorm(D, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.1)
        norm.bias.normal_(0.0, 0.1)
    kinds = {"ln": (lambda: K.layer_norm(x, norm), 2, SHAPES + ([QUACK] if with_quack else [])),
             "add+ln": (lambda: K.add_layer_norm(x, d, norm), 4, SHAPES)}
    if with_quack:
        ours = _OURS(x, norm).float()
        emit(D=D, arm=QUACK, max_abs_vs_triton=float((quack_layer_norm(x, norm).float() - ours).abs().max()))
    ranked = {}
    for kind, (fn, transfers, arms) in kinds.items():
        res: dict = {}
        for r in range(rounds):
            for arm in arms:
                use(arm)
                res.setdefault(arm, []).append(sustained_ms(fn, sustain, 20))
        med = {a: sorted(v)[len(v) // 2] for a, v in res.items()}
        for a, ms in sorted(med.items(), key=lambda kv: kv[1]):
            emit(D=D, step=kind, arm=label(a), median_ms=round(ms, 4), ms=[round(t, 4) for t in res[a]],
                 TBps=round(transfers * T * D * 2 / ms / 1e9, 2))
        ranked[kind] = sorted(med, key=med.get)
    use(PRODUCT)
    return ranked


def forward_ab(name: str, arms: list, rounds: int) -> None:
    forward_arms(name, {label(arm): lambda m, arm=arm: use(arm) for arm in arms}, rounds,
                 restore=lambda m: use(PRODUCT))


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    forward_ab_args(ap, "esm2_t33_650M_UR50D,esm2_t36_3B_UR50D")
    ap.add_argument("--alone-rounds", type=int, default=3)
    a = ap.parse_args()
    with_quack = quack_loads()
    for n in (n for n in a.models.split(",") if n):
        D = KNOWN[n].cfg.embed_dim
        ranked = alone(D, a.m, a.alone_rounds, a.sustain, with_quack)
        # the pass this model's boundaries run: plain LN where FC2 adds into the stream in quack's
        # store (650M), else add+LN
        kind = "ln" if E.RESIDUAL_IN_PLACE and ("fc2", KNOWN[n].cfg.ffn_dim, D) in E.CONFIGS else "add+ln"
        arms = [PRODUCT] + [s for s in ranked[kind][:2] if s != PRODUCT]
        if kind == "ln" and with_quack and QUACK not in arms:
            arms.append(QUACK)
        forward_ab(n, arms, a.rounds)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
