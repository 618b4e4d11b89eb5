"""DNABERT-S reference model: packed fp32 forward vs an independent one-sequence fp64 reference.

The reference below is written from the architecture facts (bert_layers.py, MosaicBERT), not
from embed_worker/dnabert_s/model.py: it reads the checkpoint-named tensors directly, loops over
heads and builds the ALiBi slopes from a literal table. Weights come from
dnabert_s.testmodel.make_weights, scaled so that arithmetic mistakes show (matrices
N(0, 1/fan_in) x 1.5, LayerNorm weights 1 +- 0.3, non-zero biases).

Tolerance: max |model - reference| / max |reference| <= 1e-5, over every token's last hidden
state and over each sequence's mean (fp32 model vs fp64 reference). Each planted mutation of the
model module must push that number above it.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from embed_worker.dnabert_s import model as mod
from embed_worker.dnabert_s.config import CLS_ID, SEP_ID, DNABERTConfig
from embed_worker.dnabert_s.testmodel import make_weights
from embed_worker.dnabert_s.weights import build_state

TOL = 1e-5

# The real head count (12: ALiBi's non-power-of-two branch), small widths for speed.
SMALL = DNABERTConfig(hidden_size=96, num_layers=2, num_heads=12, intermediate_size=160, vocab_size=4096)
LENGTHS = [2, 3, 17, 40, 71]  # tokens per sequence, [CLS] and [SEP] included

# 2^-1 ... 2^-8, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 (MosaicBERT's order for 12 heads).
SLOPES_12 = [2.0 ** -e for e in (1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5)]


# --------------------------------------------------------------------------------------------
# independent reference: one sequence, float64, checkpoint names


def ref_ln(x, w, b, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def reference_one(w: dict, cfg: DNABERTConfig, ids: list[int]) -> torch.Tensor:
    """ids (one framed sequence) -> last hidden states [L, D], float64."""
    assert cfg.num_heads == 12
    W = {k: v.double() for k, v in w.items()}
    D, H, Fi, eps = cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.layer_norm_eps
    dh = D // H
    L = len(ids)
    x = W["embeddings.word_embeddings.weight"][torch.tensor(ids)] + W["embeddings.token_type_embeddings.weight"][0]
    x = ref_ln(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    dist = torch.tensor([[abs(i - j) for j in range(L)] for i in range(L)], dtype=torch.float64)
    for layer in range(cfg.num_layers):
        p = f"encoder.layer.{layer}."
        qkv = x @ W[p + "attention.self.Wqkv.weight"].T + W[p + "attention.self.Wqkv.bias"]  # [L, 3D]
        heads = []
        for h in range(H):
            q = qkv[:, h * dh:(h + 1) * dh]
            k = qkv[:, D + h * dh:D + (h + 1) * dh]
            v = qkv[:, 2 * D + h * dh:2 * D + (h + 1) * dh]
            s = q @ k.T / math.sqrt(dh) - SLOPES_12[h] * dist
            s = torch.exp(s - s.max(dim=1, keepdim=True).values)
            heads.append((s / s.sum(dim=1, keepdim=True)) @ v)
        a = torch.cat(heads, dim=1)  # [L, D]
        x = ref_ln(a @ W[p + "attention.output.dense.weight"].T + W[p + "attention.output.dense.bias"] + x,
                   W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"], eps)
        gu = x @ W[p + "mlp.gated_layers.weight"].T  # [L, 2F]
        g, u = gu[:, :Fi], gu[:, Fi:]
        act = g * 0.5 * (1.0 + torch.special.erf(g / math.sqrt(2.0)))
        x = ref_ln((act * u) @ W[p + "mlp.wo.weight"].T + W[p + "mlp.wo.bias"] + x,
                   W[p + "mlp.layernorm.weight"], W[p + "mlp.layernorm.bias"], eps)
    return x


# --------------------------------------------------------------------------------------------


def sequences(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[CLS_ID] + torch.randint(5, 4096, (n - 2,), generator=g).tolist() + [SEP_ID] for n in lengths]


def pack(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    tokens = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
    cu = torch.tensor([0] + [sum(map(len, seqs[:i + 1])) for i in range(len(seqs))], dtype=torch.int32)
    return tokens, cu, max(map(len, seqs))


def build(cfg: DNABERTConfig, w: dict, dtype=torch.float32) -> mod.DNABERT:
    m = mod.DNABERT(cfg).to(dtype)
    m.load_state_dict(build_state(cfg, {k: v.to(dtype) for k, v in w.items()}, {k: Path("<memory>") for k in w},
                                  "<memory>"), strict=True)
    return m.eval()


def mismatch(cfg: DNABERTConfig, w: dict, seqs: list[list[int]]) -> float:
    """max over (token rows, sequence means) of max|model - ref| / max|ref|: fp32 model vs fp64 reference."""
    model = build(cfg, w)
    tokens, cu, mx = pack(seqs)
    hidden = model(tokens, cu, mx)[-1]
    pooled = mod.mean_all_tokens(hidden, cu)
    refs = [reference_one(w, cfg, s) for s in seqs]
    ref_h = torch.cat(refs)
    ref_m = torch.stack([r.mean(dim=0) for r in refs])
    rel_h = ((hidden.double() - ref_h).abs().max() / ref_h.abs().max()).item()
    rel_m = ((pooled.double() - ref_m).abs().max() / ref_m.abs().max()).item()
    return max(rel_h, rel_m)


@pytest.fixture(scope="module")
def small():
    return make_weights(SMALL, seed=3, dtype=torch.float64), sequences(LENGTHS)


def test_slopes_match_the_twelve_head_table_and_the_power_of_two_formula():
    assert mod.alibi_slopes(12) == pytest.approx(SLOPES_12, rel=1e-15)
    assert mod.alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    assert mod.alibi_slopes(16) == pytest.approx([2.0 ** -(0.5 * (i + 1)) for i in range(16)], rel=1e-15)


def test_packed_forward_matches_the_reference_on_mixed_lengths(small):
    w, seqs = small
    err = mismatch(SMALL, w, seqs)
    assert err <= TOL, f"relative error {err:.2e} > {TOL}"


def test_real_width_one_layer_matches_the_reference():
    """The released widths (768, 12 heads of 64, intermediate 3072), one layer to stay fast."""
    cfg = DNABERTConfig(num_layers=1)
    w = make_weights(cfg, seed=5, dtype=torch.float64)
    err = mismatch(cfg, w, sequences([2, 33, 90], seed=1))
    assert err <= TOL, f"relative error {err:.2e} > {TOL}"


def test_packing_does_not_leak_between_sequences(small):
    """Each sequence alone gives the same rows as inside the packed batch (fp32, same kernels)."""
    w, seqs = small
    model = build(SMALL, w)
    tokens, cu, mx = pack(seqs)
    packed = model(tokens, cu, mx)[-1]
    for i, s in enumerate(seqs):
        t1, cu1, mx1 = pack([s])
        alone = model(t1, cu1, mx1)[-1]
        assert torch.allclose(packed[cu[i]:cu[i + 1]], alone, rtol=0, atol=1e-5)


_orig_slopes = mod.alibi_slopes
_orig_gelu = mod.gelu

MUTATIONS = {
    # 2^-0.5, 2^-1, 2^-1.5, ...: the slopes right but in plain descending order
    "alibi slope order": ("alibi_slopes", lambda n: sorted(_orig_slopes(n), reverse=True)),
    "tanh GELU": ("gelu", lambda x: F.gelu(x, approximate="tanh")),
    "GeGLU halves swapped": ("geglu", lambda h, f: _orig_gelu(h[:, f:]) * h[:, :f]),
    "no token_type[0]": ("DNABERT.embed", lambda self, t: self.emb_norm(self.word_embeddings(t))),
    "mean without CLS/SEP": ("mean_all_tokens",
                             lambda h, cu: torch.stack([h[int(s) + 1:int(e) - 1].float().mean(0) if e - s > 2
                                                        else h[int(s):int(e)].float().mean(0)
                                                        for s, e in zip(cu[:-1], cu[1:])])),
    "positive ALiBi bias": ("alibi_slopes", lambda n: [-s for s in _orig_slopes(n)]),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_planted_mutation_fails_the_parity_check(small, monkeypatch, name):
    target, fake = MUTATIONS[name]
    if target.startswith("DNABERT."):
        monkeypatch.setattr(mod.DNABERT, target.split(".", 1)[1], fake)
    else:
        monkeypatch.setattr(mod, target, fake)
    w, seqs = small
    err = mismatch(SMALL, w, seqs)
    assert err > 10 * TOL, f"mutation {name!r} not caught: relative error {err:.2e}"


# --------------------------------------------------------------------------------------------
# bert_layers.py's own formulation, re-derived: a PADDED batch, an additive key mask
# (1 - mask) * -10000 plus a precomputed ALiBi matrix slopes * -|j - i|, q k^T / sqrt(Dh),
# 'b s (t h d)' qkv split; then BertSelfOutput and BertGatedLinearUnitMLP on every row.


def mosaic_slopes(n: int) -> list[float]:
    """The slope recursion as bert_layers.py writes it (start * ratio**i, start = 2^(-2^-(log2 n - 3)))."""
    def pow2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return pow2(n)
    c = 2 ** math.floor(math.log2(n))
    return pow2(c) + mosaic_slopes(2 * c)[0::2][:n - c]


def padded_first_layer(w: dict, cfg: DNABERTConfig, seqs: list[list[int]]) -> list[torch.Tensor]:
    W = {k: v.double() for k, v in w.items()}
    B, S, D, H = len(seqs), max(map(len, seqs)), cfg.hidden_size, cfg.num_heads
    dh, Fi, eps = D // H, cfg.intermediate_size, cfg.layer_norm_eps
    ids = torch.zeros(B, S, dtype=torch.long)
    mask = torch.zeros(B, S)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    x = F.layer_norm(W["embeddings.word_embeddings.weight"][ids] + W["embeddings.token_type_embeddings.weight"][0],
                     (D,), W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    ctx = torch.arange(S)[:, None]
    mem = torch.arange(S)[None, :]
    alibi = torch.tensor(mosaic_slopes(H), dtype=torch.float64)[:, None, None] * -(mem - ctx).abs()  # [H, S, S]
    bias = (1.0 - mask.double())[:, None, None, :] * -10000.0 + alibi[None]  # [B, H, S, S]
    p = "encoder.layer.0."
    qkv = (x @ W[p + "attention.self.Wqkv.weight"].T + W[p + "attention.self.Wqkv.bias"]).view(B, S, 3, H, dh)
    q, k, v = (qkv[:, :, t].permute(0, 2, 1, 3) for t in range(3))  # [B, H, S, dh]
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)
    a = (probs @ v).permute(0, 2, 1, 3).reshape(B, S, D)
    x = F.layer_norm(a @ W[p + "attention.output.dense.weight"].T + W[p + "attention.output.dense.bias"] + x,
                     (D,), W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"], eps)
    gu = x @ W[p + "mlp.gated_layers.weight"].T
    h = F.gelu(gu[..., :Fi], approximate="none") * gu[..., Fi:]
    x = F.layer_norm(h @ W[p + "mlp.wo.weight"].T + W[p + "mlp.wo.bias"] + x,
                     (D,), W[p + "mlp.layernorm.weight"], W[p + "mlp.layernorm.bias"], eps)
    return [x[b, :len(s)] for b, s in enumerate(seqs)]


def test_mosaic_slope_recursion_gives_the_same_slopes():
    for n in (4, 8, 12, 16, 24):
        assert mod.alibi_slopes(n) == pytest.approx(mosaic_slopes(n), rel=1e-14)


def test_first_layer_equals_the_padded_masked_formulation(small):
    """fp64 model, layer 1 on the packed batch == bert_layers.py's padded computation on valid rows."""
    w, seqs = small
    model = build(SMALL, w, dtype=torch.float64)
    tokens, cu, mx = pack(seqs)
    ours = model(tokens, cu, mx, repr_layers=[1])[1]
    theirs = torch.cat(padded_first_layer(w, SMALL, seqs))
    assert (ours - theirs).abs().max().item() <= 1e-10 * theirs.abs().max().item()


# --------------------------------------------------------------------------------------------
# layers, pooling and input checks


def test_repr_layers_embeddings_and_negative_indices(small):
    w, seqs = small
    model = build(SMALL, w)
    tokens, cu, mx = pack(seqs)
    out = model(tokens, cu, mx, repr_layers=[0, 1, 2, -1])
    assert set(out) == {0, 1, 2, -1} and out[2] is out[-1]
    W = {k: v.float() for k, v in w.items()}
    emb = F.layer_norm(W["embeddings.word_embeddings.weight"][tokens] + W["embeddings.token_type_embeddings.weight"][0],
                       (SMALL.hidden_size,), W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"],
                       SMALL.layer_norm_eps)
    assert torch.allclose(out[0], emb, atol=1e-6)
    assert not torch.allclose(out[1], out[2])
    with pytest.raises(ValueError, match="repr layer 3 out of range"):
        model(tokens, cu, mx, repr_layers=[3])


def test_pooling_helpers():
    h = torch.arange(24, dtype=torch.float32).view(6, 4)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    assert torch.equal(mod.mean_all_tokens(h, cu), torch.stack([h[0:2].mean(0), h[2:6].mean(0)]))
    assert torch.equal(mod.token_rows(h, cu), h)
    assert torch.equal(mod.token_rows(h, cu, specials=False), h[3:5])
    with pytest.raises(ValueError, match="\\[CLS\\] and \\[SEP\\]"):
        mod.token_rows(h, torch.tensor([0, 1, 6], dtype=torch.int32), specials=False)


@pytest.mark.parametrize("cu, mx, match", [
    ([0, 3, 5], 4, "must be 1-D, start at 0 and end at T=6"),
    ([0, 3, 3, 6], 4, "empty sequence at index 1"),
    ([0, 1, 6], 4, "5 tokens exceeds max_seqlen=4"),
])
def test_bad_packing_is_refused(small, cu, mx, match):
    model = build(SMALL, small[0])
    with pytest.raises(ValueError, match=match):
        model(torch.full((6,), 7), torch.tensor(cu, dtype=torch.int32), mx)


def test_out_of_vocabulary_ids_are_refused(small):
    model = build(SMALL, small[0])
    with pytest.raises(ValueError, match="token ids must lie in \\[0, 4096\\)"):
        model(torch.tensor([1, 4096, 2]), torch.tensor([0, 3], dtype=torch.int32), 3)
