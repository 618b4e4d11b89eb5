"""DNABERT-S (MosaicBERT with ALiBi) on a packed token stream, in one flat file.

The batch is a single row of T tokens holding B sequences back to back, each framed by the
tokenizer as [CLS] tokens... [SEP]; cu_seqlens [B+1] (int32) marks where each starts. Nothing is
padded and no sequence sees another.

The arithmetic is that of the model folder's bert_layers.py (BertModel, MosaicBERT), step by step:
  x = LN_emb(word_embeddings[ids] + token_type_embeddings[0])    (no position embeddings)
  for each layer (post-LayerNorm):
    q | k | v = x Wqkv + b          Wqkv: D -> 3D, blocks q, k, v; inside a block head-major (h, d)
    s_h[i, j] = q_h[i] . k_h[j] / sqrt(Dh) - slope_h * |i - j|    (ALiBi, symmetric, per sequence)
    a = softmax_j(s) v
    x = LN_attn(dense(a) + x)
    g | u = x gated_layers            gated_layers: D -> 2F, no bias; g the FIRST half
    x = LN_mlp(wo(gelu_erf(g) * u) + x)
  no final LayerNorm; the pooler (dense + tanh on [CLS]) is not part of the embedding.
Representations: layer 0 = embeddings after LN_emb, layer i = output of layer i.
VirNucPro's sequence embedding is the mean over ALL tokens of the last layer, [CLS] and [SEP]
included (mean_all_tokens).

The attention here is the exact path: per sequence, in fp32 (or fp64 for fp64 models), the
ALiBi bias built for that sequence's length. It is the reference that faster arrangements are
checked against, and what runs on CPU. Two things to know when comparing with bert_layers.py
itself: it pads the batch and masks padded keys with an additive -10000 (exp underflows to 0, so
this equals leaving them out; tests/test_dnabert_s_model.py re-derives that formulation), and on
CUDA with its Triton kernel importable it runs attention in fp16 even for an fp32 model, so
compare against its PyTorch path (Triton absent) for fp32 parity.

Shapes: T tokens, B sequences, D = hidden_size, H heads, Dh = D / H, F = intermediate_size.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .config import DNABERTConfig


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi head slopes in MosaicBERT's order.

    For a power of two n: 2^(-8/n), 2^(-16/n), ..., 2^(-8). Otherwise the slopes of the nearest
    lower power of two p come first, then every other slope of the 2p-head set, up to n in all.
    For the real 12 heads: 2^-1 ... 2^-8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
    """
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if n_heads & (n_heads - 1) == 0:
        return power_of_two(n_heads)
    p = 1 << (n_heads.bit_length() - 1)
    return power_of_two(p) + alibi_slopes(2 * p)[0::2][: n_heads - p]


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU: the MLP's nn.GELU(approximate='none'), whatever config.hidden_act says."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def geglu(h: torch.Tensor, f: int) -> torch.Tensor:
    """[T, 2F] -> [T, F]: GELU of the first half, times the second half."""
    return gelu(h[:, :f]) * h[:, f:]


def alibi_attention(qkv: torch.Tensor, n_heads: int, slopes: torch.Tensor, cu_seqlens: list[int]) -> torch.Tensor:
    """Exact self-attention with ALiBi, one sequence at a time.

    qkv [T, 3D] (blocks q, k, v; head-major inside each), slopes [H] (fp32/fp64), cu_seqlens as
    a host list [B+1] -> [T, D] in qkv's dtype. Scores and softmax run in at least fp32.
    """
    T, three_d = qkv.shape
    d = three_d // 3
    dh = d // n_heads
    acc = torch.promote_types(qkv.dtype, torch.float32)
    q, k, v = qkv.view(T, 3, n_heads, dh).to(acc).unbind(1)  # [T, H, Dh] each
    out = torch.empty(T, n_heads, dh, dtype=acc, device=qkv.device)
    slopes = slopes.to(device=qkv.device, dtype=acc)
    for s, e in zip(cu_seqlens[:-1], cu_seqlens[1:]):
        pos = torch.arange(e - s, device=qkv.device, dtype=acc)
        dist = (pos[:, None] - pos[None, :]).abs()  # [L, L]
        bias = -slopes[:, None, None] * dist  # [H, L, L]
        qs, ks, vs = q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1)  # [H, L, Dh]
        scores = qs @ ks.transpose(1, 2) / math.sqrt(dh) + bias  # [H, L, L]
        out[s:e] = (scores.softmax(dim=-1) @ vs).transpose(0, 1)  # [L, H, Dh]
    return out.reshape(T, d).to(qkv.dtype)


class Layer(nn.Module):
    """One MosaicBERT layer (checkpoint names in comments)."""

    def __init__(self, cfg: DNABERTConfig):
        super().__init__()
        D, F, eps = cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps
        self.n_heads, self.f = cfg.num_heads, F
        self.Wqkv = nn.Linear(D, 3 * D)                    # attention.self.Wqkv
        self.attn_out = nn.Linear(D, D)                    # attention.output.dense
        self.attn_norm = nn.LayerNorm(D, eps=eps)          # attention.output.LayerNorm
        self.gated = nn.Linear(D, 2 * F, bias=False)       # mlp.gated_layers
        self.wo = nn.Linear(F, D)                          # mlp.wo
        self.mlp_norm = nn.LayerNorm(D, eps=eps)           # mlp.layernorm

    def forward(self, x: torch.Tensor, slopes: torch.Tensor, cu: list[int]) -> torch.Tensor:
        a = alibi_attention(self.Wqkv(x), self.n_heads, slopes, cu)  # [T, D]
        x = self.attn_norm(self.attn_out(a) + x)  # [T, D]
        h = geglu(self.gated(x), self.f)  # [T, F]
        return self.mlp_norm(self.wo(h) + x)  # [T, D]


class DNABERT(nn.Module):
    def __init__(self, cfg: DNABERTConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.hidden_size
        # Random init except on the meta device, where the loader builds the model only to assign
        # the checkpoint: nn.init.normal_ on meta tensors imports torch._dynamo (1.2 s of a
        # worker's load on the development VM, as for ESM-2).
        self.word_embeddings = nn.Embedding(cfg.vocab_size, D, _weight=torch.empty(cfg.vocab_size, D))  # embeddings.word_embeddings
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, D,
                                                  _weight=torch.empty(cfg.type_vocab_size, D))  # embeddings.token_type_embeddings
        if not self.word_embeddings.weight.is_meta:
            self.word_embeddings.reset_parameters()
            self.token_type_embeddings.reset_parameters()
        self.emb_norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)              # embeddings.LayerNorm
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))  # encoder.layer.{i}

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [T] -> [T, D]. Every token is segment A (token type 0), as when embedding."""
        return self.emb_norm(self.word_embeddings(tokens) + self.token_type_embeddings.weight[0])

    def _check(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int) -> list[int]:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D (packed), got shape {list(tokens.shape)}")
        cu = [int(c) for c in cu_seqlens.tolist()]
        T = tokens.shape[0]
        if cu_seqlens.dim() != 1 or len(cu) < 2 or cu[0] != 0 or cu[-1] != T:
            raise ValueError(f"cu_seqlens must be 1-D, start at 0 and end at T={T}; got {cu[:4]}...{cu[-2:]}")
        lens = [e - s for s, e in zip(cu[:-1], cu[1:])]
        if min(lens) < 1:
            raise ValueError(f"cu_seqlens has an empty sequence at index {lens.index(min(lens))}")
        if max(lens) > max_seqlen:
            raise ValueError(f"a sequence of {max(lens)} tokens exceeds max_seqlen={max_seqlen}")
        if T and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.cfg.vocab_size}); got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        return cu

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                repr_layers: Sequence[int] = (-1,)) -> dict[int, torch.Tensor]:
        """tokens [T] (long), cu_seqlens [B+1] (int32) -> {layer: hidden [T, D]} per requested layer.

        Layers are 0..num_layers or negative (-1 = num_layers, the last); keyed as requested.
        """
        want = wanted_layers(repr_layers, self.num_layers)
        cu = self._check(tokens, cu_seqlens, max_seqlen)
        slopes = torch.tensor(alibi_slopes(self.cfg.num_heads), dtype=torch.float64)  # [H]
        out: dict[int, torch.Tensor] = {}
        x = self.embed(tokens)  # [T, D]
        for r in want.get(0, ()):
            out[r] = x
        for i, layer in enumerate(self.layers[: max(want, default=0)]):
            x = layer(x, slopes, cu)  # [T, D]
            for r in want.get(i + 1, ()):
                out[r] = x
        return out


def wanted_layers(repr_layers: Sequence[int], n: int) -> dict[int, list[int]]:
    """Layer index 0..n -> the requested keys naming it (negative: from the end, -1 = n); one
    reader for the reference and gpu/dnabert_s.py, so both refuse the same layers alike."""
    want: dict[int, list[int]] = {}
    for r in repr_layers:
        j = r + n + 1 if r < 0 else r
        if not 0 <= j <= n:
            raise ValueError(f"repr layer {r} out of range for a {n}-layer model")
        want.setdefault(j, []).append(r)
    return want


# --------------------------------------------------------------------------------------------
# pooling: hidden [T, D] + cu_seqlens [B+1] -> fp32


def mean_all_tokens(hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Mean over every token of each sequence, [CLS] and [SEP] included (VirNucPro) -> [B, D] fp32."""
    cu = cu_seqlens.to(hidden.device).long()
    lens = cu[1:] - cu[:-1]  # [B]
    seq = torch.repeat_interleave(torch.arange(lens.numel(), device=hidden.device), lens,
                                  output_size=hidden.shape[0])  # [T]
    sums = torch.zeros(lens.numel(), hidden.shape[1], dtype=torch.float32, device=hidden.device)
    sums.index_add_(0, seq, hidden.float())
    return sums / lens.clamp(min=1).to(torch.float32)[:, None]


def token_rows(hidden: torch.Tensor, cu_seqlens: torch.Tensor, specials: bool = True) -> torch.Tensor:
    """Per-token rows in sequence order -> [N, D] fp32; without `specials`, each sequence's first
    ([CLS]) and last ([SEP]) rows are left out (every sequence must then hold at least 2 tokens)."""
    if specials:
        return hidden.float()
    cu = cu_seqlens.to(hidden.device).long()
    keep = torch.ones(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    if bool(((cu[1:] - cu[:-1]) < 2).any()):
        raise ValueError("token_rows(specials=False) needs every sequence to hold [CLS] and [SEP]")
    keep[cu[:-1]] = False
    keep[cu[1:] - 1] = False
    return hidden[keep].float()
