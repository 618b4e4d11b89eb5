"""FlashAttention-4 for batches of long sequences, under the "quack" arrangement.

The "quack" arrangement adds FlashAttention-4's CuTe-DSL varlen
kernel (package flash-attn-4, imported as flash_attn.cute; it needs the CuTe DSL that quack
needs): `flash4()` loads it. Measured per batch on an H200 (docs/decisions/flashattention4-long.md): 20-30% faster than torch's varlen kernel once the longest sequence
passes ~512 tokens, slower below that (its 192-row tiles waste more on shorter sequences); the
sequence-aligned Triton kernel (kernels.aligned_attention) now beats it up to 1,024, hence
LONG_MIN_LEN.
"""
from __future__ import annotations

import torch

# Batches whose longest sequence (with <cls>/<eos>) exceeds this go to flash4() where loaded; up to
# it the aligned Triton kernel is faster (docs/decisions/flashattention4-long.md: 5-7% at 823-998 tokens,
# even at 1,024 for D = 1280 and 7% faster for D = 2560), so with ESM-2's default truncation
# (1,022 residues) FA4 takes only sequences longer than the aligned kernel's range.
LONG_MIN_LEN = 1024


def flash4():
    """(f, None) with f(q, k, v, cu_seqlens int32, max_seqlen, scale) FlashAttention-4's varlen
    forward, or (None, why) when it cannot load. Importing it takes seconds (the CuTe DSL), so
    only the "quack" arrangement calls this."""
    try:
        from flash_attn.cute import flash_attn_varlen_func
    except Exception as e:  # ImportError, or the CuTe DSL failing to load its libraries
        return None, f"flash-attn-4 does not import ({type(e).__name__}: {str(e)[:200]})"

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
            max_seqlen: int, scale: float = 1.0) -> torch.Tensor:
        return flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens,
                                      max_seqlen_q=max_seqlen, max_seqlen_k=max_seqlen,
                                      softmax_scale=scale)[0]
    return run, None
