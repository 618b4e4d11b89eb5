"""Variable-length (packed) self-attention with one backend chosen at import.

Inputs are packed: q, k, v are [T, H, Dh] where the T rows hold B sequences
back to back, delimited by cu_seqlens [B+1] (int32, cu_seqlens[0] = 0,
cu_seqlens[B] = T). Each sequence attends only to itself (no mask, no
causality). The softmax scale is 1.0 because ESM scales q before rotary.

Backends, picked once, at the first CUDA use (nothing printed; CPU workers never import the
CUDA kernels: torch.nn.attention.varlen alone imports torch._dynamo, seconds of start-up):
  "flash-attn"    flash_attn.flash_attn_varlen_func        CUDA, fp16/bf16
  "torch-varlen"  torch.nn.attention.varlen.varlen_attn     CUDA, fp16/bf16 (torch >= 2.10)
  "exact"         per-sequence matmul + fp32 softmax        any device / dtype
The exact path is used on CPU always, and on CUDA for fp32 (the fused kernels
only take half precision). The GPU arrangements (embed_worker.gpu) add their own Triton kernels
and FlashAttention-4 for batches of long sequences; the reference model needs only these.
"""
from __future__ import annotations

import functools

import torch

from ..errors import BackendUnavailable

EXACT = "exact"


@functools.cache
def _cuda_kernels() -> tuple[str | None, object]:
    """(name, varlen function) of the CUDA backend, or (None, None) when neither imports."""
    try:  # pragma: no cover - depends on the machine
        from flash_attn import flash_attn_varlen_func  # type: ignore
        return "flash-attn", flash_attn_varlen_func
    except Exception:  # ImportError, or a broken CUDA build
        pass
    try:
        from torch.nn.attention.varlen import varlen_attn  # type: ignore
        return "torch-varlen", varlen_attn
    except Exception:
        return None, None


def __getattr__(name: str):
    """CUDA_BACKEND (the CUDA half-precision backend's name, or None) and BACKEND_NAME (it, or
    the exact path), resolved on first access."""
    if name == "CUDA_BACKEND":
        return _cuda_kernels()[0]
    if name == "BACKEND_NAME":
        return _cuda_kernels()[0] or EXACT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_HALF = (torch.float16, torch.bfloat16)


def backend_for(device, dtype: torch.dtype | None = None) -> str:
    """Name of the backend that will run attention for tensors on `device` (and `dtype`, if given)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return EXACT
    if dtype is not None and dtype not in _HALF:
        return EXACT
    return _cuda_kernels()[0] or "unavailable"


def _exact(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
           scale: float = 1.0) -> torch.Tensor:
    """Reference path: one sequence at a time, scores in the input dtype, softmax in fp32 (as fair-esm)."""
    out = torch.empty_like(q)  # [T, H, Dh]
    bounds = cu_seqlens.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e == s:
            continue
        qs = q[s:e].transpose(0, 1)  # [H, L, Dh]
        ks = k[s:e].transpose(0, 1)  # [H, L, Dh]
        vs = v[s:e].transpose(0, 1)  # [H, L, Dh]
        scores = torch.matmul(qs, ks.transpose(1, 2))  # [H, L, L]
        probs = torch.softmax(scores.float() * scale, dim=-1).to(q.dtype)  # [H, L, L]
        out[s:e] = torch.matmul(probs, vs).transpose(0, 1)  # [L, H, Dh]
    return out


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens: torch.Tensor, max_seqlen: int, scale: float = 1.0) -> torch.Tensor:
    """softmax(scale q k^T) v within each packed sequence (scale 1: q comes pre-scaled, as
    fair-esm scales it). q, k, v: [T, H, Dh] -> [T, H, Dh]."""
    if backend_for(q.device, q.dtype) == EXACT:
        return _exact(q, k, v, cu_seqlens, scale)
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    name, kernel = _cuda_kernels()
    if name == "flash-attn":
        return kernel(q, k, v, cu, cu, max_seqlen, max_seqlen, dropout_p=0.0, softmax_scale=scale, causal=False)
    if name == "torch-varlen":
        return kernel(q, k, v, cu, cu, max_seqlen, max_seqlen, scale=scale)
    raise BackendUnavailable(
        f"no variable-length attention kernel for CUDA {q.dtype} (torch {torch.__version__})",
        "install flash-attn (pip install flash-attn) or upgrade to torch >= 2.10, or use --precision fp32")
