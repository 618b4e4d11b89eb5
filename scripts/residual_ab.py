"""The residual add of the out-projection and FC2 in quack's store (epilogues.RESIDUAL_IN_PLACE)
against the GEMM writing its output for the add+LN pass, and LayerNorm deferred into the QKV and
FC1 epilogues (epilogues.DEFERRED_LN), at the GPU's power cap (one H200; needs quack: source
scripts/quack-env).

    python3 scripts/residual_ab.py [--models esm2_t33_650M_UR50D,esm2_t36_3B_UR50D] [--rounds 4]

Step 1, per width: one GEMM + LN pass pair, sustained (quack_tune.sustained_ms), for the
out-projection and FC2 shapes: cuBLAS + add+LN, quack + add+LN, quack adding in place + LN; each
new residual stream checked against an fp32 reference. Step 2, per model: the forward on its
longest `reads` batch, arms alternated round by round (clock drift falls on all), each arm's
last layer compared with the first arm's. One JSON line per measurement.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import torch  # noqa: E402

import gemm_cases  # noqa: E402
from embed_worker import epilogues as E  # noqa: E402
from embed_worker import kernels as K  # noqa: E402
from embed_worker.registry import KNOWN  # noqa: E402
from quack_tune import emit, forward_ab_args, forward_arms, sustained_ms  # noqa: E402

# Forward arms per model: (name, {op: spec} pinned for out/fc2 (None: the product's CONFIGS;
# {}: cuBLAS), residual in place, LayerNorm deferred into the QKV/FC1 epilogues)
ARMS = {
    "esm2_t33_650M_UR50D": [("pinned, add+LN pass", None, False, False), ("pinned, in place", None, True, False),
                            ("pinned, in place, deferred LN", None, True, True)],
    "esm2_t36_3B_UR50D": [("cuBLAS, add+LN pass", {}, False, False), ("cuBLAS, deferred LN", {}, False, True),
                          ("quack 192x128p@1x2, in place", {"out": "192x128p@1x2", "fc2": "192x128p@1x2"}, True, False),
                          ("quack 192x128p@1x2, in place, deferred LN", {"out": "192x128p@1x2", "fc2": "192x128p@1x2"},
                           True, True)],
}


def pairs(D: int, M_: int, sustain: float) -> None:
    case = gemm_cases.layer(D, M_, torch.device("cuda"))
    norm = torch.nn.LayerNorm(D, device=case.x.device, dtype=case.x.dtype)
    x = case.x.clone()
    for op in ("out", "fc2"):
        W, b, a = case.W[op], case.b[op], case.inputs[op]
        ref = case.x.float() + a.float() @ W.float().t() + b.float()
        key = (op, W.shape[1], D)
        for spec in ("192x128p@1x2", "128x192p@2x1"):
            arms = {"cuBLAS + add+LN": (None, False), f"quack {spec} + add+LN": (spec, False),
                    f"quack {spec} in place + LN": (spec, True)}
            for arm, (s, in_place) in arms.items():
                if s is None and spec != "192x128p@1x2":
                    continue
                E.CONFIGS.pop(key, None)
                if s is not None:
                    E.CONFIGS[key] = s
                E.RESIDUAL_IN_PLACE = in_place

                def step():
                    o = E.linear(op, a, W, b, add_to=x)
                    return (x, K.layer_norm(x, norm)) if o is x else K.add_layer_norm(x, o, norm)
                x.copy_(case.x)
                got = step()[0].float()
                ms = sustained_ms(step, sustain, 20)
                emit(D=D, gemm=op, arm=arm, ms=round(ms, 4), rel_l2=float((got - ref).norm() / ref.norm()))
        E.CONFIGS.pop(key, None)


def forward_ab(name: str, rounds: int) -> None:
    cfg = KNOWN[name].cfg
    D, Fd = cfg.embed_dim, cfg.ffn_dim
    keys = {"out": ("out", D, D), "fc2": ("fc2", Fd, D)}
    product, product_flags = dict(E.CONFIGS), (E.RESIDUAL_IN_PLACE, set(E.DEFERRED_LN))

    def switch(table, in_place, deferred):
        E.CONFIGS.clear()
        E.CONFIGS.update(product)
        if table is not None:
            for op in keys:
                E.CONFIGS.pop(keys[op], None)
            E.CONFIGS.update({keys[op]: spec for op, spec in table.items()})
        E.RESIDUAL_IN_PLACE = in_place
        E.DEFERRED_LN = {D} if deferred else set()

    def restore(_model):
        E.CONFIGS.clear()
        E.CONFIGS.update(product)
        E.RESIDUAL_IN_PLACE, E.DEFERRED_LN = product_flags
    forward_arms(name, {arm: lambda m, flags=flags: switch(*flags) for arm, *flags in ARMS[name]}, rounds, restore)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    forward_ab_args(ap, "esm2_t33_650M_UR50D,esm2_t36_3B_UR50D")
    ap.add_argument("--no-pairs", action="store_true")
    a = ap.parse_args()
    t0 = time.time()
    from embed_worker import quack_epi  # noqa: F401  (imports quack: its cost, once)
    emit(measurement="import", s=round(time.time() - t0, 1), gpu=torch.cuda.get_device_name())
    names = [n for n in a.models.split(",") if n]
    if not a.no_pairs:
        for D in sorted({KNOWN[n].cfg.embed_dim for n in names}):
            pairs(D, a.m, a.sustain)
            torch.cuda.empty_cache()
    for n in names:
        forward_ab(n, a.rounds)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
