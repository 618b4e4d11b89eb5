"""ESM-2 GEMMs with their elementwise work in the GEMM's epilogue (quack-kernels' CuTe-DSL Hopper
GEMMs), for the "quack" kernels arrangement (fused.py):

  fc1_act   act(h W1ᵀ + b1): the GELU runs on the fp32 accumulator, so the [T, 4D] activation is
            stored once instead of stored, read and stored again by a separate GELU pass.
  qkv_rope  h Wqkvᵀ + b with rotary applied to the q and k columns in the epilogue (per-row
            positions, angles computed in-kernel in turns; v columns have zero frequency and
            pass through bitwise), instead of a separate rotary pass over [T, 2D].

quack's epilogue rotates adjacent column pairs (2j, 2j+1); ESM-2 rotates (j, j + Dh/2)
(rotate_half). interleave_qk_rows permutes each q and k head's projection rows into adjacent
pairs once at load (use_kernels("quack")); attention scores q·k are unchanged by applying the
same permutation to q and k, and v is not touched. q's Dh^-0.5 moves into the attention kernels'
softmax scale (scaling the fp32 scores instead of the fp16 q).

Measured on an H200 (docs/decisions/quack-epilogues.md), per 65k-token layer: 3B
FC1+GELU 5.24 ms vs cuBLAS + in-place GELU 6.08, QKV+rotary 3.80 vs cuBLAS + rotary pass 3.89;
650M 1.31 vs 1.89 and 0.87 vs 1.08. quack's residual-add GEMMs were not faster than cuBLAS + the
add for the out-projection and FC2. Those stay on cuBLAS unless CONFIGS pins a quack tile config
for their shape that won inside the whole forward at the GPU's power cap (650M: both,
docs/decisions/quack-epilogues.md).
"""
from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Mapping

import torch

# model.ACTIVATIONS name -> quack's epilogue activation of the same function
QUACK_ACTIVATIONS = {"erf": "gelu_erf", "tanh": "gelu_tanh_approx"}

# Tile configs per (GEMM, K, N) as config specs (parse_config), measured at the power cap
# inside the whole forward (docs/decisions/quack-epilogues.md). "fc1" and "qkv" run on quack always (no entry: quack's SM90 default,
# 128x192 pingpong, cluster 2x1); an "out" or "fc2" entry moves that GEMM from cuBLAS to quack.
# Frozen: an experiment passes its own table to gpu.arrange.arrange(..., configs=...).
CONFIGS: Mapping[tuple[str, int, int], str] = MappingProxyType({
    # 650M (D = 1280): at the power cap both beat cuBLAS by 1-2% alone and the forward by 0.65%
    # (158.1 -> 157.1 ms per 65k-token batch, A/B inside one run; commit b3fc3c4)
    ("out", 1280, 1280): "192x128p@1x2",
    ("fc2", 5120, 1280): "192x128p@1x2",
})


def parse_config(spec: str) -> dict:
    """quack SM90 GemmConfig fields from "TMxTN" + p (pingpong) | c (cooperative), then optional
    "@CMxCN" (cluster, default 2x1) and "+d" (dynamic persistent scheduler): 192x128p@1x2."""
    import re
    m = re.fullmatch(r"(\d+)x(\d+)([pc])(?:@(\d+)x(\d+))?(\+d)?", spec)
    if m is None:
        raise ValueError(f"quack config {spec!r}: expected TMxTN then p or c, optional @CMxCN and +d "
                         "(e.g. 192x128p@1x2)")
    tm, tn, kind, cm, cn, dyn = m.groups()
    return {"tile_m": int(tm), "tile_n": int(tn), "pingpong": kind == "p", "cluster_m": int(cm or 2),
            "cluster_n": int(cn or 1), "is_dynamic_persistent": dyn is not None, "device_capacity": 9}


@functools.lru_cache(maxsize=None)
def gemm_config(spec: str):
    """quack's GemmConfig for a config spec (parse_config); one object per spec."""
    from quack.gemm_config import GemmConfig
    return GemmConfig(**parse_config(spec))


def config_for(op: str, weight: torch.Tensor, configs: Mapping[tuple[str, int, int], str] = CONFIGS):
    """The pinned GemmConfig for this GEMM's shape (weight [N, K]) in `configs`, or None (quack's
    default for FC1/QKV; cuBLAS for out/FC2)."""
    spec = configs.get((op, weight.shape[1], weight.shape[0]))
    return None if spec is None else gemm_config(spec)


def unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the quack GEMMs cannot run here (None when they can): quack's kernels are for 16-bit
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

        from . import quack_epi  # noqa: F401
    except Exception as e:  # ImportError, or the CuTe DSL failing to load its libraries
        return f"quack-kernels does not import ({type(e).__name__}: {e})"
    return None


def linear(op: str, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           add_to: torch.Tensor | None = None, *, configs: Mapping[tuple[str, int, int], str] = CONFIGS,
           in_place: bool = True) -> torch.Tensor:
    """a Wᵀ + b for the out-projection or FC2: quack's GEMM where `configs` pins one for this
    shape, else cuBLAS (F.linear); a new [T, N] tensor.

    add_to: the residual stream x [T, N], contiguous, same dtype. Where quack runs this GEMM and
    `in_place` holds (what runs; False writes the result out for the add+LN pass to read back,
    an A/B arm of bench.py), x += a Wᵀ + b happens in place through the epilogue's TMA reduce-add
    store and x itself is returned: the
    epilogue rounds a Wᵀ + b to x's dtype and the store adds it to x (one 16-bit add, rounded to
    nearest: the arithmetic of the add+LN kernel's x + o, without writing o and reading x and o
    back). Callers tell the cases apart by `result is add_to`."""
    cfg = config_for(op, weight, configs)
    if cfg is None:
        return torch.nn.functional.linear(a, weight, bias)
    from quack.gemm_interface import gemm_tuned
    if add_to is not None and in_place:
        gemm_tuned.fn(a, weight.t(), add_to, None, bias=bias, add_to_output=True, config=cfg)
        return add_to
    out = torch.empty(a.shape[0], weight.shape[0], dtype=a.dtype, device=a.device)
    gemm_tuned.fn(a, weight.t(), out, None, bias=bias, config=cfg)
    return out


def fc1_act(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """act(h Wᵀ + b) [T, F] for h [T, D], weight [F, D] as checkpoints store it (passed to the
    kernel as a (D, F) view, no copy). activation: a model.ACTIVATIONS name."""
    from quack.gemm_interface import gemm_act
    _, out = gemm_act(h, weight.t(), bias=bias, activation=QUACK_ACTIVATIONS[activation],
                      store_preact=False, tuned=False, config=config_for("fc1", weight))
    return out


def interleave_order(head_dim: int) -> torch.Tensor:
    """Row order [0, Dh/2, 1, Dh/2 + 1, ...] of one head: rotate_half's pair (j, j + Dh/2) becomes
    the adjacent pair (2j, 2j + 1)."""
    half = head_dim // 2
    return torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)


def interleave_qk_rows(qkv: torch.nn.Linear, n_heads: int, head_dim: int, inverse: bool = False) -> None:
    """Permute, in place, the q and k rows of a fused [3D, D] projection (weight and bias) into
    interleaved rotary pairs per head (inverse=True restores the checkpoint's order exactly)."""
    d = n_heads * head_dim
    order = interleave_order(head_dim)
    rows = (order[None, :] + head_dim * torch.arange(2 * n_heads)[:, None]).reshape(-1)  # [2D]
    rows = rows.to(qkv.weight.device)
    with torch.no_grad():
        for p in (qkv.weight, qkv.bias):
            if p is None:
                continue
            qk = p[: 2 * d]
            if inverse:
                restored = torch.empty_like(qk)
                restored[rows] = qk
                qk.copy_(restored)
            else:
                qk.copy_(qk[rows])  # advanced indexing reads a copy first


def rope_freq_table(inv_freq: torch.Tensor, n_heads: int, head_dim: int, device: torch.device) -> torch.Tensor:
    """Per-output-column frequencies of the fused projection for qkv_rope: each q and k head's
    interleaved pairs carry inv_freq[j] / 2π as two float32 (hi, lo), v columns zero. [3D] fp32."""
    from .quack_epi import make_interleaved_inv_freq
    d = n_heads * head_dim
    return make_interleaved_inv_freq(inv_freq.double(), 2 * d, d).float().to(device)


def qkv_rope(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pos: torch.Tensor,
             freq: torch.Tensor) -> torch.Tensor:
    """[T, 3D] = h Wᵀ + b with q and k rotated by each row's position (pos [T] float32, freq from
    rope_freq_table; weight's q/k rows interleaved by interleave_qk_rows). q is not scaled."""
    from .quack_epi import qkv_rope_bias
    return qkv_rope_bias(h, weight.t(), tuned=False, config=config_for("qkv", weight), pos=pos, freq=freq,
                         bias=bias)["D"]


def quack_freq(model) -> torch.Tensor:
    """The fused projection's per-column rotary frequencies for the quack QKV epilogue, made once
    per inv_freq (the model's `derived` tables, which set_inv_freq empties)."""
    freq = model.derived.get("quack_freq")
    if freq is None:
        first = model.layers[0]
        freq = model.derived["quack_freq"] = rope_freq_table(model.inv_freq, first.n_heads, first.head_dim,
                                                             first.qkv.weight.device)
    return freq
