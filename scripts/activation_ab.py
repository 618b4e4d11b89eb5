"""What the erf GELU in FC1's epilogue costs at the GPU's power cap: the same GEMM with the
tanh-approximated GELU (one MUFU tanh and a few FMAs per element, against erf's polynomial and
exp2), alone (sustained) and inside the forward (arms alternated round by round). tanh is the
wrong function for ESM-2 (it is the tests' deliberate fault, model.set_activation): this is a
bound on what a cheaper exact erf could win, not a candidate. Needs quack (source scripts/quack-env).

    python3 scripts/activation_ab.py [--models esm2_t33_650M_UR50D] [--rounds 4]
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
from embed_worker.registry import KNOWN  # noqa: E402
from quack_tune import emit, forward_ab_args, forward_arms, sustained_ms  # noqa: E402

ACTIVATIONS = ("erf", "tanh")


def gemm_alone(D: int, M_: int, sustain: float) -> None:
    case = gemm_cases.layer(D, M_, torch.device("cuda"))
    h, W, b = case.h, case.W["fc1"], case.b["fc1"]
    for act in ACTIVATIONS * 2:
        ms = sustained_ms(lambda: E.fc1_act(h, W, b, act), sustain, 20)
        emit(D=D, gemm="fc1", activation=act, ms=round(ms, 4), tflops=round(case.flops["fc1"] / ms / 1e9, 1))


def forward_ab(name: str, rounds: int) -> None:
    forward_arms(name, {act: lambda m, act=act: m.set_activation(act) for act in ACTIVATIONS}, rounds,
                 restore=lambda m: m.set_activation("erf"), compare=False)


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    forward_ab_args(ap, "esm2_t33_650M_UR50D")
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n]
    for D in sorted({KNOWN[n].cfg.embed_dim for n in names}):
        gemm_alone(D, a.m, a.sustain)
    for n in names:
        forward_ab(n, a.rounds)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
