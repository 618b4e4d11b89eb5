"""The worker's DNABERT-S steps (family "dnabert-s"): load, arrange, warm up, size the budget, pool.
worker.py calls these where the family is not ESM-2; everything else (ring, wire, lifecycle) is
shared.

- load: registry.resolve_dnabert finds the folder; dnabert_s.weights loads it strictly (the
  folder's bert_layers.py is never run). CPU, or fp32 on a GPU: the exact reference model
  (dnabert_s/model.py). CUDA in fp16/bf16: gpu/dnabert_s.py's arrangement (Triton ALiBi attention,
  and the gated projection + GeGLU as quack's GEMM with the GeGLU in its epilogue, 14% less time
  than cuBLAS + a Triton GeGLU pass on an H100; `--kernels auto` takes it where quack runs and the
  run is long enough to pay back quack's import, gpu.arrange.gpu_kernels with QUACK_GAIN below,
  else the Triton pass: "triton"), unless `--kernels eager` asks for the reference.
- pooling (protocol POOLING): `mean` = mean over ALL tokens, [CLS] and [SEP] included (VirNucPro);
  `bos` = the [CLS] row; `residues` = one row per BPE token, [CLS]/[SEP] left out.
- layers: 0 = the embedding output (after its LayerNorm), 1..N the blocks, -1 the last (there is
  no final LayerNorm).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .errors import BadCheckpoint, EmbedWorkerError

FAMILY = "dnabert-s"
QUACK_GAIN = 0.13
"""Embedding time quack's fused GeGLU GEMM saves (0.914 s vs 1.062 s a pass of 2M tokens of
150-bp reads, 0.922 vs 1.066 at 300 bp; one H100, docs/PERFORMANCE.md "DNABERT-S")."""


@dataclass(frozen=True)
class Shape:
    """What the worker reads of a loaded model's config, named as ESM2Config names it."""
    name: str
    num_layers: int
    embed_dim: int
    attention_heads: int
    ffn_dim: int  # F = intermediate_size; the gated projection is 2F wide


def check_family(want: str, model: str) -> None:
    """The worker is told its family; a checkpoint of another is refused before loading anything."""
    from .registry import family_of
    got = family_of(model)
    if got != want:
        raise BadCheckpoint(f"model {model!r} is a {got} checkpoint, but this run embeds with the {want} family",
                            "pass a model of the run's family (the orchestrator picks the family from --model); "
                            "this is a bug if --model was not changed between resolving and starting workers")


def matrix_flops_per_token(shape: Shape) -> float:
    """2 x the block's weights per token (Wqkv 3D^2, dense D^2, gated 2DF, wo FD) over all layers:
    226.5 M for DNABERT-S."""
    d, f = shape.embed_dim, shape.ffn_dim
    return 2.0 * shape.num_layers * (4 * d * d + 3 * d * f)


def gated_for(kernels: str, device, dtype, shape: Shape, expected_tokens: int | None) -> str:
    """The arrangement's `gated` for a GPU worker's --kernels: "quack" asks for the fused GeGLU
    GEMM; "auto" takes it ("auto": after gpu/dnabert_s.py's probe, else the Triton pass) where quack
    runs and the run pays back its import (gpu.arrange.gpu_kernels, this family's QUACK_GAIN),
    else "triton"; anything else "triton"."""
    if kernels != "auto":
        return "quack" if kernels == "quack" else "triton"
    from .gpu.arrange import gpu_kernels
    from . import log
    got, notes = gpu_kernels("auto", device, dtype, expected_tokens=expected_tokens,
                             flops_per_token=matrix_flops_per_token(shape), gain=QUACK_GAIN)
    log.notes(notes)
    return "auto" if got == "quack" else "triton"


def load(model: str, device, dtype, kernels: str, lap=None, expected_tokens: int | None = None):
    """-> (model to call, Shape, registry Resolved, kernels actually used: "quack" | "triton" | "eager").
    `lap(name)`, when given, marks the weights loaded ("load") before the GPU arrangement is made.
    `expected_tokens`: this GPU's share of the input, for "auto"'s choice (gpu.arrange.short_run)."""
    from .registry import resolve_dnabert
    from .dnabert_s.weights import load_model
    resolved = resolve_dnabert(model)
    ref, cfg = load_model(resolved.path, device, dtype, name=resolved.name)
    if lap is not None:
        lap("load")
    shape = Shape(resolved.name, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size)
    if kernels not in ("auto", "quack", "triton", "compile", "eager"):
        raise EmbedWorkerError(f"unknown kernels {kernels!r}", "use auto, quack, triton, compile or eager")
    import torch
    if device.type != "cuda" or kernels == "eager" or dtype not in (torch.float16, torch.bfloat16):
        return ref, shape, resolved, "eager"
    from .gpu.dnabert_s import arrange
    gated = gated_for(kernels, device, dtype, shape, expected_tokens)
    fast = arrange(ref, gated=gated)
    return fast, shape, resolved, fast.gated


def load_into(w, resolve_layers) -> None:
    """The worker's load_model for DNABERT-S: sets w.M (this module: pooling, warm-up, backend),
    model, mcfg (Shape), resolved, kernels, layers, max_tokens and max_seqs."""
    from .budget import auto_budget
    check_fault(w.cfg.fault)
    w.M = sys.modules[__name__]
    w.model, w.mcfg, w.resolved, w.kernels = load(w.cfg.model, w.device, w.dtype, w.cfg.kernels, w.phases.lap,
                                                   expected_tokens=w.cfg.expected_tokens)
    apply_fault(w)
    w.layers = resolve_layers(w.cfg.layers, w.mcfg.num_layers)
    w.phases.lap("kernels")  # the GPU arrangement (importing Triton and the kernels' modules)
    esize = w.torch.finfo(w.dtype).bits // 8
    w.max_tokens = w.cfg.max_tokens or auto_budget(w.torch, None, w.mcfg, w.device, esize,
                                                   per_token_bytes(w.mcfg, esize, len(w.layers)))
    w.max_seqs = max(1, w.max_tokens // 3)  # [CLS] x [SEP]: the shortest sequence is 3 tokens


FAULTS = {
    "specials-out-of-mean": "the mean leaves out [CLS] and [SEP] (ESM-2's residue mean) instead of averaging every token",
    "attention-across-sequences": "attention spans the whole packed batch instead of each sequence",
}
"""Deliberate DNABERT-S bugs, switched on by EMBED_FAULT in tests to prove that `embed validate`
catches them: a pooling ported from ESM-2, and a packed batch whose sequences see each other
(what the contamination check, alone vs packed, exists for). Never used otherwise."""


def check_fault(fault: str | None) -> None:
    """Refuse a fault that is not DNABERT-S's before loading anything."""
    if not fault or fault in FAULTS:
        return
    from .faults import ESM2_FAULTS
    if fault in ESM2_FAULTS:
        raise EmbedWorkerError(f"fault {fault!r} applies to ESM-2 only", f"DNABERT-S's: {', '.join(FAULTS)}; or unset EMBED_FAULT",
                               name="BadOptions")
    raise EmbedWorkerError(f"unknown fault {fault!r}", f"DNABERT-S's: {', '.join(FAULTS)}", name="BadOptions")


def apply_fault(w) -> None:
    """Swap in the faulty mean pooling or the leaking forward (see FAULTS)."""
    fault = w.cfg.fault
    if not fault:
        return
    from . import log
    log.warn("FAULT INJECTED: results are wrong on purpose", fault=fault, effect=FAULTS[fault])
    if fault == "specials-out-of-mean":
        def residue_mean(h, cu, pool):
            # mean over all L tokens x L, less the [CLS] and [SEP] rows, over L - 2 tokens
            lens = (cu[1:] - cu[:-1]).long().unsqueeze(1).float()  # [B, 1]
            ends = h[cu[:-1].long()].float() + h[cu[1:].long() - 1].float()  # [B, D]
            return (pool.mean(h) * lens - ends) / (lens - 2).clamp_min(1)
        w.pool_mean = residue_mean
    elif fault == "attention-across-sequences":
        model = w.model

        def leaking(tokens, cu, max_len, layers):
            # one sequence as long as the whole batch: every token attends to every other
            n = tokens.shape[0]
            return model(tokens, cu.new_tensor([0, n]), n, layers)
        w.model = leaking


def per_token_bytes(shape: Shape, esize: int, kept_layers: int) -> int:
    """Activation bytes per packed token inside one block at its widest, x2 for allocator slack:
    x, qkv (3D), attention out (D), the dense/wo outputs (2D), the gated projection (2F: the
    6,144-wide GeGLU input of the released model) and its product (F); plus every kept layer's
    [T, D] hidden state."""
    d, f = shape.embed_dim, shape.ffn_dim
    return 2 * esize * (d + 3 * d + d + 2 * d + 2 * f + f) + esize * d * kept_layers


def warmup(model, device, layers: list[int]) -> None:
    """One tiny packed forward ([CLS] a b c [SEP], [CLS] d [SEP]) before READY: it compiles the
    Triton kernels of the GPU arrangement."""
    import torch
    tokens = torch.tensor([1, 5, 6, 7, 2, 1, 8, 2], device=device)
    cu = torch.tensor([0, 5, 8], dtype=torch.int32, device=device)
    model(tokens, cu, 5, layers)


def backend(device, kernels: str) -> str:
    if device.type != "cuda":
        return "exact-alibi"  # per-sequence fp32 attention (dnabert_s/model.py)
    return "triton-alibi" if kernels in ("triton", "quack") else "exact-alibi"


class Pooling:
    """worker.py's pooling interface (mean / bos / residues of hidden [T, D] -> fp32 rows) with
    DNABERT-S's meanings; cu [B+1] int32 on the device."""

    def __init__(self, cu, n_tokens: int, device) -> None:
        self.cu = cu

    def mean(self, h):
        from .dnabert_s.model import mean_all_tokens
        return mean_all_tokens(h, self.cu)

    def bos(self, h):
        return h[self.cu[:-1].long()].float()

    def residues(self, h):
        from .dnabert_s.model import token_rows
        return token_rows(h, self.cu, specials=False)
