"""DNABERT-S on the GPU fast path: the blocks of dnabert_s.model.DNABERT, arranged for packed fp16.

    arrange(model) -> FastDNABERT      same forward(tokens, cu_seqlens, max_seqlen, repr_layers)
                                       -> {layer: hidden [T, D]} as the reference, same errors

What replaces which block of the reference (dnabert_s/model.py), per layer, T packed tokens:

  embeddings  word[ids] + token_type[0], LN     one gather from a table with token_type[0]
                                                 pre-added (in fp32, rounded once), then the
                                                 LayerNorm kernel (kernels.layer_norm)
  Wqkv        nn.Linear                          cuBLAS (F.linear, bias in its epilogue)  [T, 3D]
  attention   exact per-sequence loop            alibi_attention.Plan on views of qkv: Triton
                                                 packed/aligned tiles with the ALiBi term,
                                                 chosen once per batch                  [T, H, Dh]
  attn_out + residual, attn_norm (post-LN)       cuBLAS, then one add+LN pass
                                                 (kernels.add_layer_norm: the sum is written
                                                 over the GEMM's output, x is not touched)
  gated       D -> 2F, no bias                   cuBLAS                                  [T, 2F]
  GeGLU       gelu_erf(first half) * second half one Triton pass (geglu below)           [T, F]
  wo + residual, mlp_norm                        cuBLAS, then one add+LN pass

Every layer's output is a fresh tensor (post-LN writes LN(x + d) to new memory), so kept layers
are never written afterwards. mean_all_tokens (VirNucPro's pooling, [CLS]/[SEP] included) is
the reference's own function, re-exported.

padded_sdpa_forward is the baseline this path is measured against: the Hugging Face way (a
padded [B, S] batch, an additive ALiBi + key-padding bias, torch's scaled_dot_product_attention),
in eager PyTorch on the same weights (bench/dnabert_s.py).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..dnabert_s.model import DNABERT, alibi_slopes, mean_all_tokens  # noqa: F401  (mean_all_tokens re-exported)
from . import kernels as K
from .alibi_attention import Plan, default_scale, slopes_log2

# GeGLU launch: ROWS x BLOCK elements per program (memory-bound: 2 reads + 1 write of fp16).
GEGLU_ROWS, GEGLU_BLOCK, GEGLU_WARPS = 4, 512, 4


@triton.jit(do_not_specialize=["n_rows"])
def _geglu_kernel(X, Y, n_rows, f, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """Y[r, c] = gelu_erf(X[r, c]) * X[r, f + c] for X [n_rows, 2f], Y [n_rows, f]; fp32 inside."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]  # [ROWS, 1]
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)[None, :]  # [1, BLOCK]
    mask = (rows < n_rows) & (cols < f)
    xo = rows.to(tl.int64) * (2 * f) + cols
    g = tl.load(X + xo, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(X + xo + f, mask=mask, other=0.0).to(tl.float32)
    y = 0.5 * g * (1.0 + tl.math.erf(g * 0.7071067811865476)) * u
    tl.store(Y + rows.to(tl.int64) * f + cols, y.to(Y.dtype.element_ty), mask=mask)


def geglu(h: torch.Tensor) -> torch.Tensor:
    """[T, 2F] -> [T, F]: exact (erf) GELU of the first half times the second half, one pass."""
    if h.dim() != 2 or h.shape[1] % 2 or not h.is_contiguous():
        raise ValueError(f"geglu takes a contiguous [T, 2F] tensor, got shape {list(h.shape)}")
    n, f = h.shape[0], h.shape[1] // 2
    y = torch.empty(n, f, dtype=h.dtype, device=h.device)
    if n:
        _geglu_kernel[(triton.cdiv(n, GEGLU_ROWS), triton.cdiv(f, GEGLU_BLOCK))](
            h, y, n, f, ROWS=GEGLU_ROWS, BLOCK=GEGLU_BLOCK, num_warps=GEGLU_WARPS)
    return y


def _wanted(repr_layers: Sequence[int], n: int) -> dict[int, list[int]]:
    """layer index 0..n -> the requested keys naming it (negative: from the end), as the reference."""
    want: dict[int, list[int]] = {}
    for r in repr_layers:
        j = r + n + 1 if r < 0 else r
        if not 0 <= j <= n:
            raise ValueError(f"repr layer {r} out of range for a {n}-layer model")
        want.setdefault(j, []).append(r)
    return want


class FastDNABERT:
    """A loaded dnabert_s.model.DNABERT (on a CUDA device, or on CPU under TRITON_INTERPRET=1)
    run through cuBLAS GEMMs and the Triton kernels. Holds the model's own parameters (no
    copies) plus the embedding table with token_type[0] added and the ALiBi slopes in base 2.
    `tiles` forces the attention launch (alibi_attention.tiles_for's tuple), for measurements."""

    def __init__(self, model: DNABERT, tiles: tuple[str, int, int, int, int] | None = None):
        self.model, self.cfg, self.tiles = model, model.cfg, tiles
        w = model.word_embeddings.weight
        self.table = (w.float() + model.token_type_embeddings.weight[0].float()).to(w.dtype)  # [V, D]
        self.slopes2 = slopes_log2(alibi_slopes(model.cfg.num_heads), w.device)  # [H] fp32
        self.scale = default_scale(model.cfg.head_dim)

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                repr_layers: Sequence[int] = (-1,)) -> dict[int, torch.Tensor]:
        """tokens [T] (long), cu_seqlens [B+1] (int32) -> {layer: hidden [T, D]} per requested
        layer (0..num_layers or negative), keyed as requested; the reference's checks and errors."""
        m, n = self.model, self.num_layers
        want = _wanted(repr_layers, n)
        m._check(tokens, cu_seqlens, max_seqlen)
        dev = self.table.device
        tokens = tokens.to(dev)
        T = tokens.shape[0]
        H, Dh, D = self.cfg.num_heads, self.cfg.head_dim, self.cfg.hidden_size
        attend = Plan(cu_seqlens.to(dev), T, max_seqlen, self.slopes2, self.scale, self.tiles)
        out: dict[int, torch.Tensor] = {}
        x = K.layer_norm(self.table[tokens], m.emb_norm)  # [T, D]
        for r in want.get(0, ()):
            out[r] = x
        for i, layer in enumerate(m.layers[: max(want, default=0)]):
            qkv = F.linear(x, layer.Wqkv.weight, layer.Wqkv.bias)  # [T, 3D]
            q, k, v = qkv.view(T, 3, H, Dh).unbind(1)  # 3 x [T, H, Dh] views
            a = attend(q, k, v)  # [T, H, Dh]
            del qkv, q, k, v
            _, x = K.add_layer_norm(x, F.linear(a.view(T, D), layer.attn_out.weight, layer.attn_out.bias),
                                    layer.attn_norm)  # [T, D]
            f = geglu(F.linear(x, layer.gated.weight))  # [T, F]
            _, x = K.add_layer_norm(x, F.linear(f, layer.wo.weight, layer.wo.bias), layer.mlp_norm)  # [T, D]
            del f
            for r in want.get(i + 1, ()):
                out[r] = x
        return out

    __call__ = forward


def arrange(model: DNABERT, tiles: tuple[str, int, int, int, int] | None = None) -> FastDNABERT:
    """The GPU arrangement of a loaded DNABERT-S model (fp16/bf16 on CUDA for speed; any dtype
    under TRITON_INTERPRET=1 for tests). Arrange after the model has its device and dtype: the
    embedding table and slopes are derived here, once."""
    if not isinstance(model, DNABERT):
        raise TypeError(f"arrange takes a dnabert_s.model.DNABERT, got {type(model).__name__}")
    return FastDNABERT(model, tiles)


# --------------------------------------------------------------------------------------------
# the baseline: padded batch + additive bias + torch SDPA, eager


def alibi_bias(slopes: Sequence[float], lens: torch.Tensor, s: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, H, S, S] additive mask: -slope_h |i - j| on valid keys, -inf on padded keys."""
    pos = torch.arange(s, device=lens.device)
    sl = torch.as_tensor(slopes, dtype=torch.float32, device=lens.device)
    bias = -sl[:, None, None] * (pos[:, None] - pos[None, :]).abs().float()  # [H, S, S]
    valid = pos[None, :] < lens[:, None]  # [B, S]
    return torch.where(valid[:, None, None, :], bias[None], float("-inf")).to(dtype)


@torch.inference_mode()
def padded_sdpa_forward(model: DNABERT, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                        repr_layers: Sequence[int] = (-1,)) -> dict[int, torch.Tensor]:
    """The same forward on a padded [B, S] batch with an additive ALiBi + padding bias through
    F.scaled_dot_product_attention, all else eager PyTorch; returns packed {layer: [T, D]} like
    FastDNABERT (padding rows dropped). No input checks: a baseline for measurements."""
    cfg = model.cfg
    n, H, Dh, D, Fi = cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.hidden_size, cfg.intermediate_size
    want = _wanted(repr_layers, n)
    dev = model.word_embeddings.weight.device
    cu = cu_seqlens.to(dev).long()
    lens = cu[1:] - cu[:-1]  # [B]
    B, S, T = lens.numel(), max_seqlen, tokens.shape[0]
    seq = torch.repeat_interleave(torch.arange(B, device=dev), lens, output_size=T)  # [T]
    pos = torch.arange(T, device=dev) - cu[seq]  # [T]
    ids = torch.zeros(B, S, dtype=torch.long, device=dev)
    ids[seq, pos] = tokens.to(dev)
    bias = alibi_bias(alibi_slopes(H), lens, S, model.word_embeddings.weight.dtype)  # [B, H, S, S]
    x = model.embed(ids.view(-1)).view(B, S, D)
    out: dict[int, torch.Tensor] = {}
    for r in want.get(0, ()):
        out[r] = x[seq, pos]
    for i, layer in enumerate(model.layers[: max(want, default=0)]):
        qkv = layer.Wqkv(x).view(B, S, 3, H, Dh).permute(2, 0, 3, 1, 4)  # [3, B, H, S, Dh]
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)  # [B, H, S, Dh]
        x = layer.attn_norm(layer.attn_out(a.transpose(1, 2).reshape(B, S, D)) + x)
        gu = layer.gated(x)
        x = layer.mlp_norm(layer.wo(F.gelu(gu[..., :Fi]) * gu[..., Fi:]) + x)
        for r in want.get(i + 1, ()):
            out[r] = x[seq, pos]
    return out
