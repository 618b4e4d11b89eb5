"""FC1 and its GELU as one GEMM: quack-kernels' CuTe-DSL Hopper GEMM computes h W1ᵀ + b1 and
applies the GELU to the fp32 accumulator in its epilogue, so the [T, 4D] activation is written
once instead of written, read and written again by a separate GELU pass.

Measured on an H200 (docs/BENCHMARKS.md, scripts/epilogue_sweep.py): 3B FC1+GELU 5.24 ms vs
cuBLAS + in-place GELU 6.08 ms per 65k-token layer; 650M 1.31 vs 1.89 ms. Only FC1: quack's plain
and residual-add GEMMs were not faster than cuBLAS for ESM-2's other three GEMMs.

The "quack" kernels arrangement uses this; "triton" keeps cuBLAS + model.ACTIVATIONS' GELU.
"""
from __future__ import annotations

import torch

# model.ACTIVATIONS name -> quack's epilogue activation of the same function
QUACK_ACTIVATIONS = {"erf": "gelu_erf", "tanh": "gelu_tanh_approx"}


def unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the fused FC1 cannot run here (None when it can): quack's kernels are for 16-bit
    inputs, and only the Hopper (sm90) path has been measured and checked against the
    reference."""
    if device.type != "cuda":
        return "needs a CUDA GPU"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"runs fp16/bf16 only, not {str(dtype).removeprefix('torch.')}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) != (9, 0):
        return f"measured on Hopper (sm90) only; this GPU is sm{major}{minor}"
    try:
        from quack.gemm_interface import gemm_act  # noqa: F401
    except Exception as e:  # ImportError, or the CuTe DSL failing to load its libraries
        return f"quack-kernels does not import ({type(e).__name__}: {e})"
    return None


def fc1_act(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """act(h Wᵀ + b) [T, F] for h [T, D], weight [F, D] as checkpoints store it (passed to the
    kernel as a (D, F) view, no copy). activation: a model.ACTIVATIONS name."""
    from quack.gemm_interface import gemm_act
    _, out = gemm_act(h, weight.t(), bias=bias, activation=QUACK_ACTIVATIONS[activation],
                      store_preact=False, tuned=False)
    return out
