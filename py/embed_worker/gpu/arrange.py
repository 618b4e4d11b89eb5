"""GPU arrangements of a loaded ESM-2: what `--kernels` picks and what it does to the model.

  eager    the reference loop of esm2/model.py, PyTorch ops (every CPU worker runs this)
  compile  the same loop with torch.compile of one block graph
  triton   fused.run_blocks: cuBLAS GEMMs, varlen attention and the Triton kernels
  quack    fused.run_blocks with FC1+GELU and QKV+rotary as quack GEMMs with fused epilogues
           (epilogues.py), and FlashAttention-4 for batches of long sequences (long_attention.py)

The worker's order: load the model (esm2/weights.py), `gpu_kernels` says which arrangement this
GPU can run, `arrange` applies it, warm-up compiles what batches will need (`warm_attention`). The
reference model knows none of this: an arrangement installs its block loop (`run_blocks`) or its
block step (`step`) on the model, and keeps its own state there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

KINDS = ("eager", "compile", "triton", "quack")


@dataclass(frozen=True)
class QuackGemms:
    """What the "quack" arrangement runs its out-projection and FC2 GEMMs with: tile configs by
    (GEMM, K, N) (epilogues.CONFIGS: a shape with none stays on cuBLAS), and whether a quack GEMM
    adds into the residual stream in place (False: an A/B arm of bench.py)."""
    configs: Mapping[tuple[str, int, int], str]
    residual_in_place: bool = True


# When "auto" leaves quack's GEMMs unloaded: importing quack-kernels and the CuTe DSL costs
# QUACK_IMPORT_S of start-up (measured on an H200: docs/PERFORMANCE.md "Start-up"), and its GEMMs
# save QUACK_GAIN of the embedding time (+5% tokens/s on 3B, +14% on 650M: the smaller figure).
# A run whose embedding is estimated at under QUACK_IMPORT_S / QUACK_GAIN seconds per GPU finishes
# sooner without them. The estimate: the orchestrator's token count (from the input's size) times
# the model's matrix FLOPs per token at GPU_FLOPS (3B ran at ~5.7e14 FLOP/s on an H200).
QUACK_IMPORT_S = 10.0
QUACK_GAIN = 0.05
GPU_FLOPS = 5.0e14


def embedding_seconds(tokens: int, flops_per_token: float) -> float:
    """A run's embedding time on one GPU, estimated from its tokens (for the kernel choice only)."""
    return tokens * flops_per_token / GPU_FLOPS


def short_run(expected_tokens: int | None, flops_per_token: float | None, gain: float = QUACK_GAIN) -> float | None:
    """The estimated embedding seconds when they are too few for quack's import to pay back (it
    saves `gain` of them: the family's figure), else None (unknown sizes count as long: the choice
    is then what it always was)."""
    if expected_tokens is None or flops_per_token is None:
        return None
    est = embedding_seconds(expected_tokens, flops_per_token)
    return est if est * gain < QUACK_IMPORT_S else None


def gpu_kernels(want: str, device: torch.device, dtype: torch.dtype, *, expected_tokens: int | None = None,
                flops_per_token: float | None = None, gain: float = QUACK_GAIN) -> tuple[str, list[tuple[str, str, str]]]:
    """What a GPU worker asked for `want` (auto | quack | triton | compile | eager) runs: "auto"
    and "quack" take "quack" where epilogues.unavailable allows it, else "triton"; "auto" also
    takes "triton", without importing quack, when the run is short (short_run: `expected_tokens`
    for this GPU, the model's `flops_per_token`). "triton" and "quack" need Triton, else
    torch.compile. Also returns what to tell the user, as (level, message, hint): a warning where
    an explicit choice cannot be honoured."""
    notes: list[tuple[str, str, str]] = []
    short = short_run(expected_tokens, flops_per_token, gain) if want == "auto" else None
    if short is not None:
        notes.append(("info", f"quack's fused-epilogue GEMMs not loaded: this run is short (about {short:.0f} s of "
                              f"embedding per GPU, estimated from the input's size), and importing them costs about "
                              f"{QUACK_IMPORT_S:.0f} s of start-up, more than the {gain:.0%} they save; "
                              "running --kernels triton (cuBLAS)",
                      "pass --kernels quack to load them anyway"))
        want = "triton"
    if want in ("auto", "quack"):
        from . import epilogues
        why = epilogues.unavailable(device, dtype)
        if why is not None:
            notes.append(("warn" if want == "quack" else "info",
                          f"quack's fused-epilogue GEMMs off: {why}; running --kernels triton (cuBLAS)",
                          "pip install quack-kernels==0.6.5 'nvidia-cutlass-dsl[cu13]' (Hopper GPUs; 5-14% faster)"))
        want = "quack" if why is None else "triton"
    if want in ("triton", "quack"):
        try:
            import triton  # noqa: F401
        except ImportError:
            notes.append(("warn", "triton is not installed; running the blocks with torch.compile instead",
                          "pip install triton (it ships with CUDA builds of torch)"))
            return "compile", notes
    return want, notes


def arrange(model, kind: str, longest: int | None = None, *, configs: Mapping | None = None,
            residual_in_place: bool = True) -> None:
    """Make `model` (an esm2.model.ESM2) run its blocks as `kind` (KINDS). "quack" keeps each q and
    k head's projection rows in interleaved rotary order (epilogues.interleave_qk_rows) while it
    is on; any other choice restores the checkpoint's order exactly. `longest` (tokens, BOS and
    EOS included; None: unknown) leaves FlashAttention-4 out where no batch can need it (the
    default truncation never does): importing and compiling it costs seconds of start-up.
    `configs` (None: epilogues.CONFIGS) and `residual_in_place` set quack's out/FC2 GEMMs."""
    from ..esm2.model import block_step
    if kind not in KINDS:
        raise ValueError(f"unknown kernels {kind!r}")
    run_blocks = None
    if kind in ("triton", "quack"):
        from .fused import run_blocks  # needs triton: fail here, not mid-run
    if kind == "quack" and model.kernels != "quack":
        from . import quack_epi  # noqa: F401  (needs quack: likewise)
        from .long_attention import LONG_MIN_LEN, flash4
        from .epilogues import quack_freq
        _interleave_qk(model, inverse=False)
        quack_freq(model)
        model.long_attention, model.long_attention_off = (
            flash4() if longest is None or longest > LONG_MIN_LEN else (None, None))
    elif kind != "quack" and model.kernels == "quack":
        _interleave_qk(model, inverse=True)
        model.long_attention, model.long_attention_off = None, None
    if kind == "quack":
        from .epilogues import CONFIGS
        model.arrangement = QuackGemms(CONFIGS if configs is None else configs, residual_in_place)
    else:
        model.arrangement = None
    model.run_blocks = run_blocks
    model.step = block_step
    if kind == "compile":
        compile_blocks(model)
    model.kernels = kind


def compile_blocks(model) -> None:
    """torch.compile the block (dynamic shapes: token count and max length vary per batch).
    Inductor fuses LayerNorm, rotary, bias+erf-GELU and residual adds around the cuBLAS GEMMs and
    the varlen attention kernel; measured +29% (3B) and +48% (650M) tokens/s on an H200
    (docs/decisions/triton-layernorm.md)."""
    from ..esm2.model import block_step
    model.step = torch.compile(block_step, dynamic=True)


def _interleave_qk(model, inverse: bool) -> None:
    from .epilogues import interleave_qk_rows
    for layer in model.layers:
        interleave_qk_rows(layer.qkv, layer.n_heads, layer.head_dim, inverse=inverse)


# ---- warm-up: compile what batches will need before READY


def attention_probe(model, length: int, device: torch.device, dtype: torch.dtype):
    """Random q, k, v (views of one [T, 3, H, Dh], as fused.py passes them) for two sequences of
    `length` tokens, and their int32 cu_seqlens: a batch shape to compile attention on."""
    first = model.layers[0]
    qkv = torch.randn(2 * length, 3, first.n_heads, first.head_dim, device=device, dtype=dtype)
    cu = torch.tensor([0, length, 2 * length], dtype=torch.int32, device=device)
    return qkv[:, 0], qkv[:, 1], qkv[:, 2], cu


def warm_aligned_attention(model, device: torch.device, dtype: torch.dtype) -> None:
    """Compile the sequence-aligned attention kernel (mid-length batches: fused.run_blocks), every
    launch of attention_kernels.ALIGNED_LAUNCH, so that the first such batch does not pay Triton's
    compile inside the run."""
    if model.kernels not in ("triton", "quack"):
        return
    from . import attention_kernels as AK  # needs Triton, as these arrangements do
    first = model.layers[0]
    if not AK.aligned_attention_fits(dtype, first.head_dim, 300):
        return
    for length in AK.aligned_launch_lengths():
        q, k, v, cu = attention_probe(model, length, device, dtype)
        AK.aligned_attention(q, k, v, cu, first.head_dim ** -0.5, None, length)


def warm_long_attention(model, device: torch.device, dtype: torch.dtype) -> str | None:
    """Compile FlashAttention-4 (batches of long sequences only). If it fails, it is turned off
    (those batches take the varlen flash kernel) and the failure is returned, for the worker to
    report; None otherwise."""
    if model.long_attention is None:
        return None
    first = model.layers[0]
    # two 1,024-token sequences: a tiny batch compiles a different variant (measured: the first
    # long batch then took 2.1 s instead of 0.17, commit a6293fe)
    q, k, v, cu = attention_probe(model, 1024, device, dtype)
    try:
        model.long_attention(q, k, v, cu, 1024, first.head_dim ** -0.5)
    except Exception as e:
        model.long_attention, model.long_attention_off = None, f"failed at warm-up: {type(e).__name__}"
        return f"{type(e).__name__}: {str(e)[:300]}"
    return None
