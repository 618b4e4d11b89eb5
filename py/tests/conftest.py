"""Shared fixtures: one tiny random ESM-2 written in both real formats, plus reference models."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import os

import pytest
import torch

# Without a GPU, Triton kernels (embed_worker/gpu/kernels.py and attention_kernels.py) run under Triton's CPU interpreter. The
# switch must be set before anything imports triton (transformers and torch._dynamo do, at import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # py/ (also set by pyproject pythonpath)

# Tests that drive fused.py's wiring with CPU tensors through the Triton kernels: they need the
# interpreter, so they run where CI runs (no GPU); on a GPU host test_fused.py runs the compiled
# kernels and the real quack arrangement instead.
CPU_TRITON = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="Triton on CPU tensors needs TRITON_INTERPRET=1 (set on hosts without a GPU)")

from embed_worker.tools import testmodel  # noqa: E402

NAME = "esm2_t3_test"  # fair-esm's local loader only takes the ESM-2 code path for names starting "esm2"
LAYERS, DIM, HEADS = 3, 64, 4

SEQS = [
    ("one", "M"),
    ("short", "MKTAYIAKQR"),
    ("masked", "MK<mask>AYIAKQRQ<mask>SFVKSHFSRQ"),
    ("long", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLS"),
    ("allmask", "<mask><mask>A"),
    ("odd", "XBUZOACDE"),
]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("models")
    paths = testmodel.write(out, NAME, LAYERS, DIM, HEADS, seed=1, fmt="both")
    # fair-esm's local loader insists on a co-located contact-regression file for esm2 names.
    ck = torch.load(paths["fair-esm"], map_location="cpu", weights_only=False)
    reg = {k.split("encoder.", 1)[1]: v for k, v in ck["model"].items() if "contact_head" in k}
    torch.save({"model": reg}, out / f"{NAME}-contact-regression.pt")
    return {"dir": out, **paths}


@pytest.fixture(scope="session")
def fair(tiny):
    import esm

    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(tiny["fair-esm"])
    return model.eval(), alphabet


@pytest.fixture(scope="session")
def batch(fair):
    """Reference tokens from fair-esm's batch converter, and the same tokens packed."""
    _, alphabet = fair
    _, _, toks = alphabet.get_batch_converter()(SEQS)  # [B, Lmax] padded, BOS + seq + EOS
    lens = (toks != alphabet.padding_idx).sum(1)
    packed = torch.cat([toks[i, : lens[i]] for i in range(len(SEQS))])
    cu = torch.zeros(len(SEQS) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lens, 0)
    return {"padded": toks, "lens": lens, "tokens": packed, "cu": cu, "max": int(lens.max())}


def rel_err_rows(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over rows of ||a - b|| / ||b||."""
    a, b = a.double(), b.double()
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-30)).max())
