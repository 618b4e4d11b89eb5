"""ESM-2 on a packed token stream, in one flat file.

The batch is a single row of T tokens holding B sequences back to back, each
already framed as <cls> residues... <eos>; cu_seqlens [B+1] (int32) marks where
each sequence starts. Nothing is padded, so no work is spent on padding and no
sequence can see another (attention is per sequence, see attention.py).

The arithmetic follows fair-esm's ``esm.model.esm2.ESM2`` step by step:
  x = embed_tokens(tokens)                         (embed_scale = 1)
  token dropout: zero <mask> rows, scale each sequence by 0.88 / (1 - #mask/len)
  for each block (pre-LayerNorm):
    h = LN(x); q = (h Wq + bq) * Dh^-0.5; k = h Wk + bk; v = h Wv + bv
    q, k = rotary(q), rotary(k)   (positions restart at 0 at every <cls>)
    x = x + out_proj(attention(q, k, v))
    x = x + fc2(gelu_erf(fc1(LN(x))))
  x = emb_layer_norm_after(x)                      (only after the last block)
Representations: layer 0 = embeddings after token dropout, layer i = output of
block i, layer num_layers = after emb_layer_norm_after.

Shapes: T tokens, B sequences, D = embed_dim, H heads, Dh = D / H, F = 4 D.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .attention import varlen_attention
from .registry import ESM2Config, absolute_layer

# ESM-1b / ESM-2 alphabet ids
CLS_IDX = 0
PAD_IDX = 1
EOS_IDX = 2
MASK_IDX = 32
MASK_RATIO_TRAIN = 0.15 * 0.8  # fraction of tokens that were <mask> during training


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, written as fair-esm writes it."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x, approximate="tanh")


# name -> (out of place, for the eager/compiled block; in place, for gpu/fused.py). Only "erf" is
# ESM-2; "tanh" exists so that tests can inject the bug VirNucPro shipped (worker FAULTS).
ACTIVATIONS = {
    "erf": (gelu, torch._C._nn.gelu_),
    "tanh": (_tanh_gelu, lambda f: f.copy_(_tanh_gelu(f))),
}


def default_inv_freq(head_dim: int) -> torch.Tensor:
    """Rotary inverse frequencies 1 / 10000^(2i/Dh), fp32, [Dh/2]."""
    return 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device="cpu").float() / head_dim))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def positions_from_cu(cu_seqlens: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(seq_id [T], pos [T]): which sequence each token belongs to and its index inside it."""
    cu = cu_seqlens.long()
    lens = cu[1:] - cu[:-1]  # [B]
    seq_id = torch.repeat_interleave(torch.arange(lens.numel(), device=cu.device), lens, output_size=total)  # [T]
    pos = torch.arange(total, device=cu.device) - cu[:-1][seq_id]  # [T]
    return seq_id, pos


class Block(nn.Module):
    """One pre-LN transformer layer with fused q/k/v projection."""

    def __init__(self, cfg: ESM2Config):
        super().__init__()
        d, f = cfg.embed_dim, cfg.ffn_dim
        self.n_heads = cfg.attention_heads
        self.head_dim = d // cfg.attention_heads
        self.attn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.qkv = nn.Linear(d, 3 * d)  # rows: [q; k; v]
        self.out_proj = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(d, f)
        self.fc2 = nn.Linear(f, d)
        self.act, self.act_ = ACTIVATIONS["erf"]  # see ESM2.set_activation

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
        T, D = x.shape
        H, Dh = self.n_heads, self.head_dim
        # --- attention ---
        h = self.attn_norm(x)  # [T, D]
        q, k, v = self.qkv(h).split(D, dim=-1)  # 3 x [T, D]
        q = q * (Dh ** -0.5)  # scale before rotary (as fair-esm)
        q = q.view(T, H, Dh)
        k = k.view(T, H, Dh)
        v = v.view(T, H, Dh)
        q = q * cos + rotate_half(q) * sin  # [T, H, Dh]; cos/sin are [T, 1, Dh]
        k = k * cos + rotate_half(k) * sin
        a = varlen_attention(q, k, v, cu_seqlens, max_seqlen)  # [T, H, Dh]
        x = x + self.out_proj(a.reshape(T, D))  # [T, D]
        # --- feed-forward ---
        h = self.ffn_norm(x)  # [T, D]
        x = x + self.fc2(self.act(self.fc1(h)))  # [T, F] -> [T, D]
        return x


def block_step(layer: "Block", x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """One block; a free function so that one compiled graph serves every layer (the layer's
    parameters are graph inputs, not constants)."""
    return layer(x, cos, sin, cu_seqlens, max_seqlen)


class ESM2(nn.Module):
    def __init__(self, cfg: ESM2Config):
        super().__init__()
        self.cfg = cfg
        self.num_layers = cfg.num_layers
        # Random init (what benchmarks' random weights use) except on the meta device, where the
        # loader builds the model only to assign the checkpoint: nn.init.normal_ on meta tensors
        # imports torch._dynamo, 1-3 s of every worker's start-up.
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD_IDX,
                                         _weight=torch.empty(cfg.vocab_size, cfg.embed_dim))
        if not self.embed_tokens.weight.is_meta:
            self.embed_tokens.reset_parameters()
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.emb_layer_norm_after = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        # Rotary inverse frequencies: a plain fp32 CPU tensor, not a buffer, so that casting the
        # model to fp16/bf16 never touches it. weights.py replaces it with the checkpoint's values.
        self.inv_freq = default_inv_freq(cfg.embed_dim // cfg.attention_heads)  # [Dh/2]
        self._rot_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.activation = "erf"  # the FFN activation's ACTIVATIONS name (see set_activation)
        # How the blocks run: this file's loop, self.step on each block, unless a GPU arrangement
        # (embed_worker.gpu.arrange, which the worker applies; this package never imports it)
        # installs its own. The fields below are the arrangement's, kept on the model so that one
        # object carries them; the reference model only reads `step` and `run_blocks`.
        self.kernels = "eager"  # eager | compile | triton | quack: the arrangement's name
        self.step = block_step  # one block (the "compile" arrangement compiles it)
        self.run_blocks = None  # a replacement for the whole loop (forward's call below), or None
        self.long_attention = None  # attention for batches of long sequences, or None
        self.long_attention_off: str | None = None  # why it is None where it was wanted
        self.arrangement = None  # the arrangement's own settings (opaque here)
        self.derived: dict[str, torch.Tensor] = {}  # tables derived from inv_freq (set_inv_freq empties it)

    def set_activation(self, name: str) -> None:
        """The FFN activation of every block, in every arrangement: "erf" (ESM-2's, the default)
        or "tanh" (a deliberate fault for tests)."""
        for layer in self.layers:
            layer.act, layer.act_ = ACTIVATIONS[name]
        self.activation = name

    def set_inv_freq(self, inv_freq: torch.Tensor) -> None:
        self.inv_freq = inv_freq.detach().to(device="cpu", dtype=torch.float32).clone()
        self._rot_tables = {}
        self.derived = {}

    def rotary_tables(self, n_pos: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [P, Dh/2] fp32 of position x inverse frequency for positions 0..P-1
        (P >= n_pos, grown in steps of 1024): the one source of rotary angles for every
        arrangement."""
        tab = self._rot_tables.get(device)
        if tab is None or tab[0].shape[0] < n_pos:
            P = -(-max(n_pos, 1) // 1024) * 1024
            freqs = torch.arange(P, dtype=torch.float32)[:, None] * self.inv_freq[None, :]  # [P, Dh/2]
            tab = self._rot_tables[device] = (freqs.cos().to(device), freqs.sin().to(device))
        return tab

    def rotary(self, pos: torch.Tensor, max_seqlen: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [T, 1, Dh] for positions [T] (< max_seqlen): the fp32 table rows, cast to `dtype`."""
        cos, sin = self.rotary_tables(max_seqlen, pos.device)
        c, s = cos[pos], sin[pos]  # [T, Dh/2]
        return torch.cat((c, c), dim=-1).to(dtype)[:, None, :], torch.cat((s, s), dim=-1).to(dtype)[:, None, :]

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                repr_layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """tokens [T] (long), cu_seqlens [B+1] (int32) -> {layer: hidden [T, D]} for each requested layer.

        Layers may be 0..num_layers or negative (-1 = num_layers); results are keyed as requested.
        """
        n = self.num_layers
        want: dict[int, list[int]] = {}
        for r in repr_layers:
            j = absolute_layer(r, n)
            if not 0 <= j <= n:
                raise ValueError(f"repr layer {r} out of range for a {n}-layer model")
            want.setdefault(j, []).append(r)
        out: dict[int, torch.Tensor] = {}

        def keep(j: int, h: torch.Tensor) -> bool:
            for r in want.get(j, ()):
                out[r] = h
            return j in want

        T = tokens.shape[0]
        cu_seqlens = cu_seqlens.to(tokens.device)
        seq_id, pos = positions_from_cu(cu_seqlens, T)  # [T], [T]

        x = self.embed_tokens(tokens)  # [T, D]
        if self.cfg.token_dropout:
            is_mask = tokens == MASK_IDX  # [T]
            x = x.masked_fill(is_mask[:, None], 0.0)
            lens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()  # [B] (incl. <cls> and <eos>)
            n_mask = torch.zeros_like(lens).index_add_(0, seq_id, is_mask.long())  # [B]
            ratio = n_mask.to(x.dtype) / lens  # [B]
            x = x * (1 - MASK_RATIO_TRAIN) / (1 - ratio)[seq_id][:, None]  # [T, D]
        kept0 = keep(0, x)

        last = max(want) if want else 0
        if last > 0 and self.run_blocks is not None:
            self.run_blocks(self, x.clone() if kept0 else x, pos, seq_id, cu_seqlens, max_seqlen, last, keep)
        elif last > 0:
            cos, sin = self.rotary(pos, max_seqlen, x.dtype)  # [T, 1, Dh] each
            for i, layer in enumerate(self.layers[:last]):
                x = self.step(layer, x, cos, sin, cu_seqlens, max_seqlen)  # [T, D]
                if i + 1 < n:
                    keep(i + 1, x)
            if last == n:
                keep(n, self.emb_layer_norm_after(x))
        return out


# --------------------------------------------------------------------------------------------
# pooling: hidden [T, D] + cu_seqlens [B+1] -> fp32


class Pooling:
    """Which rows of one packed batch each output takes, worked out once per batch and reused for
    every layer and output kind, without a device sync (no boolean indexing: the residue count
    is T - 2B, known on the host, since every sequence carries <cls> and <eos>)."""

    def __init__(self, cu_seqlens: torch.Tensor, total: int, device) -> None:
        cu = cu_seqlens.to(device).long()
        self.n_seqs = cu.numel() - 1
        lens = cu[1:] - cu[:-1]  # [B], each >= 2
        n_res = total - 2 * self.n_seqs
        self.seq_of_residue = torch.repeat_interleave(torch.arange(self.n_seqs, device=device), lens - 2,
                                                      output_size=n_res)  # [R]
        # residue r of sequence b sits after b's <cls> and the 2b special rows before it
        self.residues_at = torch.arange(n_res, device=device) + 2 * self.seq_of_residue + 1  # [R]
        self.bos_at = cu[:-1]  # [B]
        self.counts = (lens - 2).clamp(min=1).to(torch.float32)[:, None]  # [B, 1]

    def mean(self, hidden: torch.Tensor) -> torch.Tensor:
        """Mean over each sequence's residue rows (excluding <cls> and <eos>) -> [B, D] fp32; a
        sequence with no residues gives a zero vector."""
        sums = torch.zeros(self.n_seqs, hidden.shape[1], dtype=torch.float32, device=hidden.device)
        sums.index_add_(0, self.seq_of_residue, self.residues(hidden))
        return sums / self.counts

    def bos(self, hidden: torch.Tensor) -> torch.Tensor:
        """Each sequence's <cls> row -> [B, D] fp32."""
        return hidden.index_select(0, self.bos_at).float()

    def residues(self, hidden: torch.Tensor) -> torch.Tensor:
        """All residue rows (no <cls>/<eos>), concatenated in sequence order -> [sum(L_i), D] fp32."""
        return hidden.index_select(0, self.residues_at).float()


def mean_residues(hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Pooling(...).mean for one output."""
    return Pooling(cu_seqlens, hidden.shape[0], hidden.device).mean(hidden)


def bos_rows(hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Pooling(...).bos for one output."""
    return Pooling(cu_seqlens, hidden.shape[0], hidden.device).bos(hidden)


def residue_rows(hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Pooling(...).residues for one output."""
    return Pooling(cu_seqlens, hidden.shape[0], hidden.device).residues(hidden)
