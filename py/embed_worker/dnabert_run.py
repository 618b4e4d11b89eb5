"""The worker's DNABERT-S steps (family "dnabert-s"): load, arrange, warm up, size the budget, pool.
worker.py calls these where the family is not ESM-2; everything else (ring, wire, lifecycle) is
shared.

- load: registry.resolve_dnabert finds the folder; dnabert_s.weights loads it strictly (the
  folder's bert_layers.py is never run). CPU, or fp32 on a GPU: the exact reference model
  (dnabert_s/model.py). CUDA in fp16/bf16: gpu/dnabert_s.py's arrangement (Triton ALiBi attention,
  cuBLAS, a Triton GeGLU pass: "triton", the default; `--kernels quack` asks for the GeGLU in
  quack's gated GEMM epilogue, not yet measured on a GPU), unless `--kernels eager` asks for the
  reference.
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


def load(model: str, device, dtype, kernels: str, lap=None):
    """-> (model to call, Shape, registry Resolved, kernels actually used: "quack" | "triton" | "eager").
    `lap(name)`, when given, marks the weights loaded ("load") before the GPU arrangement is made."""
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
    # The default is the arrangement measured fastest on a GPU (docs/PERFORMANCE.md "DNABERT-S"):
    # cuBLAS + the Triton GeGLU pass, add+LN without storing its sum (+2% over storing it, arms
    # interleaved on one H100). quack's fused GeGLU GEMM is parity-tested on CPU but has not run on
    # a GPU yet: only `--kernels quack` takes it.
    fast = arrange(ref, gated="quack" if kernels == "quack" else "triton")
    return fast, shape, resolved, fast.gated


def load_into(w, resolve_layers) -> None:
    """The worker's load_model for DNABERT-S: sets w.M (this module: pooling, warm-up, backend),
    model, mcfg (Shape), resolved, kernels, layers, max_tokens and max_seqs."""
    from .budget import auto_budget
    check_fault(w.cfg.fault)
    w.M = sys.modules[__name__]
    w.model, w.mcfg, w.resolved, w.kernels = load(w.cfg.model, w.device, w.dtype, w.cfg.kernels, w.phases.lap)
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
