"""DNABERT-S on the GPU fast path: the blocks of dnabert_s.model.DNABERT, arranged for packed fp16.

    arrange(model, gated="auto") -> FastDNABERT   same forward(tokens, cu_seqlens, max_seqlen,
                                       repr_layers) -> {layer: hidden [T, D]} as the reference,
                                       same errors; gated picks the MLP's first half (below)

What replaces which block of the reference (dnabert_s/model.py), per layer, T packed tokens:

  embeddings  word[ids] + token_type[0], LN     one gather from a table with token_type[0]
                                                 pre-added (in fp32, rounded once), then the
                                                 LayerNorm kernel (kernels.layer_norm)
  Wqkv        nn.Linear                          cuBLAS (F.linear, bias in its epilogue)  [T, 3D]
  attention   exact per-sequence loop            alibi_attention.Plan on views of qkv: Triton
                                                 packed/aligned tiles with the ALiBi term,
                                                 chosen once per batch                  [T, H, Dh]
  attn_out + residual, attn_norm (post-LN)       cuBLAS, then one add+LN pass
                                                 (kernels.add_layer_norm_only: the sum is
                                                 not stored, post-LN needs only LN(x + d))
  gated + GeGLU  D -> 2F, no bias, then          gated="quack": one quack GEMM whose epilogue
                 gelu_erf(first half) * second   takes gelu_erf(gate) * up on the fp32
                 half                            accumulator (quack_epi.geglu_erf) over a copy
                                                 of the weight with gate and up rows
                                                 interleaved (pair_gate_up)             [T, F]
                                                 gated="triton": cuBLAS [T, 2F], then one
                                                 Triton pass (geglu below)              [T, F]
  wo + residual, mlp_norm                        cuBLAS, then one add+LN pass

Bytes per layer at T tokens, fp16 (F = 3072): the split GeGLU writes the [T, 2F] product, reads
it back and writes [T, F] (10F bytes a token, 805 + 805 + 403 MB at T = 65,536); the fused
epilogue writes [T, F] only (2F bytes a token): 1.6 GB a layer less, about 0.5 ms at 3.3 TB/s.
Not storing the add+LN sums saves 2 x 2D bytes a token a layer (200 MB at T = 65,536).

gated="auto" takes "quack" where epilogues.unavailable allows it (Hopper, fp16/bf16, quack
imports) and a probe GEMM at arrange time compiles and matches the split path; else "triton".
The choice and the reason are on the arrangement (.gated, .gated_why).

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

from ..dnabert_s.model import DNABERT, alibi_slopes, mean_all_tokens, wanted_layers  # noqa: F401  (mean_all_tokens re-exported)
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


def pair_gate_up(weight: torch.Tensor) -> torch.Tensor:
    """The gated projection's weight [2F, D] (rows: F gate, then F up) as a new tensor with rows
    gate_0, up_0, gate_1, up_1, ...: the adjacent column pairs (2j, 2j + 1) of quack's gated
    epilogue. Costs 2F x D more parameters (9.4 MB a layer in fp16 at F = 3072)."""
    two_f = weight.shape[0]
    if weight.dim() != 2 or two_f % 2:
        raise ValueError(f"the gated weight must be [2F, D], got shape {list(weight.shape)}")
    f = two_f // 2
    order = torch.stack([torch.arange(f), torch.arange(f) + f], dim=1).reshape(-1).to(weight.device)
    return weight.detach()[order].contiguous()


def geglu_gemm(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """gelu_erf(x Wgᵀ) * (x Wuᵀ) [T, F] in one quack GEMM (epilogue quack_epi.geglu_erf); pairs
    from pair_gate_up, passed as its (D, 2F) view."""
    from .quack_epi import geglu_erf
    return geglu_erf(x, pairs.t(), tuned=False, store_d=False)["postact"]


GATED = ("auto", "quack", "triton")


def gated_choice(model: DNABERT, want: str) -> tuple[str, str | None]:
    """("quack" | "triton", why quack is not used or None) for arrange's `gated`. "quack" refuses
    (ValueError) where it cannot run; "auto" falls back to "triton" with the reason."""
    if want not in GATED:
        raise ValueError(f"gated must be one of {', '.join(GATED)}; got {want!r}")
    if want == "triton":
        return "triton", "asked for"
    from . import epilogues
    w = model.word_embeddings.weight
    why = epilogues.unavailable(w.device, w.dtype)
    if why is None:
        why = _probe(model)
    if why is not None and want == "quack":
        raise ValueError(f"the fused GeGLU GEMM (quack) cannot run here: {why}")
    return ("triton", why) if why is not None else ("quack", None)


# The probe's bound on max |fused - split| / max |split| over a [256, D] batch: the split path
# rounds the [T, 2F] product to fp16 before the GELU, the epilogue works on fp32, so they differ
# by a few fp16 ulps (~1e-3 relative); a lost pairing or a wrong half is O(1).
PROBE_TOL = 2e-2


def _probe(model: DNABERT) -> str | None:
    """Compile the fused GEMM on the first layer and compare it with the split path: the reason
    to fall back (exception or mismatch), or None."""
    layer = model.layers[0]
    w = layer.gated.weight
    g = torch.Generator(device=w.device).manual_seed(0)
    x = torch.randn(256, w.shape[1], device=w.device, generator=g).to(w.dtype)
    try:
        with torch.inference_mode():
            got = geglu_gemm(x, pair_gate_up(w)).float()
            want = geglu(F.linear(x, w)).float()
    except Exception as e:  # the CuTe DSL failing to compile or launch
        return f"the probe GEMM failed ({type(e).__name__}: {str(e)[:200]})"
    err = ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    if not err <= PROBE_TOL:
        return f"the probe GEMM differs from the split path by {err:.2e} (relative; bound {PROBE_TOL})"
    return None


class FastDNABERT:
    """A loaded dnabert_s.model.DNABERT (on a CUDA device, or on CPU under TRITON_INTERPRET=1)
    run through cuBLAS GEMMs and the Triton kernels. Holds the model's own parameters (no
    copies) plus the embedding table with token_type[0] added and the ALiBi slopes in base 2, and
    for gated="quack" the gated weights with rows paired (pair_gate_up). `tiles` forces the
    attention launch (alibi_attention.tiles_for's tuple), for measurements. `keep_sums` stores
    the add+LN sums as before (an A/B arm of bench/dnabert_s.py; the outputs are bit-equal)."""

    def __init__(self, model: DNABERT, tiles: tuple[str, int, int, int, int] | None = None,
                 gated: str = "triton", gated_why: str | None = None, keep_sums: bool = False):
        self.model, self.cfg, self.tiles = model, model.cfg, tiles
        self.gated, self.gated_why, self.keep_sums = gated, gated_why, keep_sums
        self.pairs = [pair_gate_up(layer.gated.weight) for layer in model.layers] if gated == "quack" else None
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
        want = wanted_layers(repr_layers, n)
        m._check(tokens, cu_seqlens, max_seqlen)
        dev = self.table.device
        tokens = tokens.to(dev)
        T = tokens.shape[0]
        H, Dh, D = self.cfg.num_heads, self.cfg.head_dim, self.cfg.hidden_size
        attend = Plan(cu_seqlens.to(dev), T, max_seqlen, self.slopes2, self.scale, self.tiles)
        out: dict[int, torch.Tensor] = {}
        add_ln = (lambda x_, d_, n_: K.add_layer_norm(x_, d_, n_)[1]) if self.keep_sums else K.add_layer_norm_only
        x = K.layer_norm(self.table[tokens], m.emb_norm)  # [T, D]
        for r in want.get(0, ()):
            out[r] = x
        for i, layer in enumerate(m.layers[: max(want, default=0)]):
            qkv = F.linear(x, layer.Wqkv.weight, layer.Wqkv.bias)  # [T, 3D]
            q, k, v = qkv.view(T, 3, H, Dh).unbind(1)  # 3 x [T, H, Dh] views
            a = attend(q, k, v)  # [T, H, Dh]
            del qkv, q, k, v
            x = add_ln(x, F.linear(a.view(T, D), layer.attn_out.weight, layer.attn_out.bias),
                       layer.attn_norm)  # [T, D]
            if self.pairs is None:
                f = geglu(F.linear(x, layer.gated.weight))  # [T, 2F] -> [T, F]
            else:
                f = geglu_gemm(x, self.pairs[i])  # [T, F]
            x = add_ln(x, F.linear(f, layer.wo.weight, layer.wo.bias), layer.mlp_norm)  # [T, D]
            del f
            for r in want.get(i + 1, ()):
                out[r] = x
        return out

    __call__ = forward


def arrange(model: DNABERT, tiles: tuple[str, int, int, int, int] | None = None, gated: str = "auto",
            keep_sums: bool = False) -> FastDNABERT:
    """The GPU arrangement of a loaded DNABERT-S model (fp16/bf16 on CUDA for speed; any dtype
    under TRITON_INTERPRET=1 for tests). Arrange after the model has its device and dtype: the
    embedding table, slopes and paired gated weights are derived here, once. gated: "auto"
    (quack's fused GeGLU GEMM where it runs and its probe passes, else "triton"), "quack" (that
    or a ValueError), "triton" (cuBLAS + the Triton GeGLU pass). The model is not modified."""
    if not isinstance(model, DNABERT):
        raise TypeError(f"arrange takes a dnabert_s.model.DNABERT, got {type(model).__name__}")
    kind, why = gated_choice(model, gated)
    return FastDNABERT(model, tiles, kind, why, keep_sums)


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
    want = wanted_layers(repr_layers, n)
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
