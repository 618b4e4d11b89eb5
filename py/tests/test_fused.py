"""The GPU fast path (fused.py + Triton kernels) equals the reference arrangement of ESM2.

Without a GPU the Triton kernels run under TRITON_INTERPRET=1 (set in conftest.py) on CPU tensors, so CI checks the
same kernel code that runs on the H200; with a GPU they run compiled (and the CUDA tests below
compare against the CPU fp32 reference).
"""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")

from conftest import LAYERS, SEQS, rel_err_rows  # noqa: E402
from embed_worker.gpu import attention_kernels as AK  # noqa: E402
from embed_worker.gpu import kernels as K  # noqa: E402
from embed_worker.esm2 import model as M  # noqa: E402
from embed_worker.gpu.arrange import arrange  # noqa: E402
from embed_worker.esm2.weights import load_model  # noqa: E402

ALL = list(range(LAYERS + 1))
DEV = "cuda" if torch.cuda.is_available() else "cpu"
# Triton's CPU interpreter computes tl.dot on bfloat16 as raw bits (numpy has no bfloat16): the
# attention kernel's bf16 cases only mean something compiled on a GPU.
BF16_DOT = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                              reason="tl.dot on bfloat16 is not emulated by the Triton interpreter")


def _norm(d: int, dtype) -> torch.nn.LayerNorm:
    g = torch.Generator().manual_seed(d)
    ln = torch.nn.LayerNorm(d, eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(1 + 0.1 * torch.randn(d, generator=g))
        ln.bias.copy_(0.1 * torch.randn(d, generator=g))
    return ln.to(DEV, dtype)


@pytest.mark.parametrize("T,D", [(1, 64), (37, 96), (130, 1280), (5, 2560)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float16, 2e-3)])
def test_add_layer_norm_matches_torch(T, D, dtype, tol):
    g = torch.Generator().manual_seed(T * D)
    x = (3 * torch.randn(T, D, generator=g) + 1).to(DEV, dtype)
    d = torch.randn(T, D, generator=g).to(DEV, dtype)
    x0, d0 = x.clone(), d.clone()
    ln = _norm(D, dtype)
    s, h = K.add_layer_norm(x, d, ln)
    want_s = x0 + d0  # rounded to dtype, as the residual stream is
    assert torch.equal(x, x0), "x must not be written"
    assert s.data_ptr() == d.data_ptr() and torch.allclose(s.float(), want_s.float(), atol=tol, rtol=tol)
    want_h = torch.nn.functional.layer_norm(want_s.float(), (D,), ln.weight.float(), ln.bias.float(), ln.eps)
    assert rel_err_rows(h.float(), want_h) <= tol
    h2 = K.layer_norm(x0, ln)
    want_h2 = torch.nn.functional.layer_norm(x0.float(), (D,), ln.weight.float(), ln.bias.float(), ln.eps)
    assert rel_err_rows(h2.float(), want_h2) <= tol


def plain_norm(d: int, dtype) -> torch.nn.LayerNorm:
    return torch.nn.LayerNorm(d, eps=1e-5).to(DEV, dtype)


def test_layer_norm_rejects_non_contiguous():
    x = torch.randn(8, 64, device=DEV)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        K.layer_norm(x, _norm(32, torch.float32))


@pytest.mark.parametrize("H,Dh", [(4, 16), (3, 64), (20, 64)])
def test_rotary_matches_reference(H, Dh):
    """q scaled then rotated, k rotated, v untouched; positions restart per sequence."""
    D = H * Dh
    cu = torch.tensor([0, 3, 10, 11, 40], dtype=torch.int32)
    T = int(cu[-1])
    g = torch.Generator().manual_seed(H)
    qkv = torch.randn(T, 3 * D, generator=g, dtype=torch.float64)
    inv = M.default_inv_freq(Dh)
    _, pos = M.positions_from_cu(cu, T)
    # reference: model.Block's arithmetic in fp64
    freqs = pos.double()[:, None] * inv.double()[None, :]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    q, k, v = qkv.split(D, -1)
    q = (q * Dh ** -0.5).view(T, H, Dh)
    k = k.reshape(T, H, Dh)
    want_q = q * cos + M.rotate_half(q) * sin
    want_k = k * cos + M.rotate_half(k) * sin
    p = torch.arange(64, dtype=torch.float32)[:, None] * inv[None, :]
    got = qkv.float().to(DEV)
    K.rotary_(got, pos.to(DEV), p.cos().to(DEV), p.sin().to(DEV), H, Dh ** -0.5)
    gq, gk, gv = got.cpu().double().split(D, -1)
    assert (gq.view(T, H, Dh) - want_q).abs().max() < 1e-5
    assert (gk.view(T, H, Dh) - want_k).abs().max() < 1e-5
    assert torch.equal(gv, qkv[:, 2 * D:].float().double())


@pytest.fixture(scope="module")
def packed(batch):
    return batch["tokens"].to(DEV), batch["cu"].to(DEV), batch["max"]


@pytest.mark.parametrize("fmt", ["fair-esm", "hf"])
def test_fused_forward_equals_eager_fp32(tiny, packed, fmt):
    """Every layer, including token dropout (<mask> rows) and emb_layer_norm_after, within 1e-5."""
    toks, cu, mx = packed
    ref, _, _ = load_model(tiny[fmt], DEV, torch.float32)
    fast, _, _ = load_model(tiny[fmt], DEV, torch.float32)
    arrange(fast, "triton")
    a = ref(toks, cu, mx, ALL)
    b = fast(toks, cu, mx, ALL)
    for layer in ALL:
        assert rel_err_rows(b[layer], a[layer]) <= 1e-5, layer
    assert rel_err_rows(M.mean_residues(b[LAYERS], cu), M.mean_residues(a[LAYERS], cu)) <= 1e-5


def test_fused_partial_and_negative_layers(tiny, packed):
    """Stopping early (no emb_layer_norm_after) and asking for -1 and 1 together."""
    toks, cu, mx = packed
    ref, _, _ = load_model(tiny["hf"], DEV, torch.float32)
    fast, _, _ = load_model(tiny["hf"], DEV, torch.float32)
    arrange(fast, "triton")
    for layers in ([1], [2, 0], [-1, 1]):
        a, b = ref(toks, cu, mx, layers), fast(toks, cu, mx, layers)
        assert sorted(a) == sorted(b)
        for r in layers:
            assert rel_err_rows(b[r], a[r]) <= 1e-5, (layers, r)


def test_activation_setting_reaches_both_arrangements(tiny, packed):
    """set_activation("tanh") (the worker's tanh-gelu fault) changes the eager and the fused
    blocks alike: they still agree with each other, and no longer with the erf model."""
    toks, cu, mx = packed
    erf, _, _ = load_model(tiny["hf"], DEV, torch.float32)
    ref, _, _ = load_model(tiny["hf"], DEV, torch.float32)
    fast, _, _ = load_model(tiny["hf"], DEV, torch.float32)
    arrange(fast, "triton")
    for m in (ref, fast):
        m.set_activation("tanh")
    a, b, c = ref(toks, cu, mx, [LAYERS]), fast(toks, cu, mx, [LAYERS]), erf(toks, cu, mx, [LAYERS])
    assert rel_err_rows(b[LAYERS], a[LAYERS]) <= 1e-5
    assert rel_err_rows(a[LAYERS], c[LAYERS]) > 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=BF16_DOT)])
def test_fused_half_close_to_fp32_reference(tiny, packed, dtype):
    toks, cu, mx = packed
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    fast, _, _ = load_model(tiny["hf"], DEV, dtype)
    arrange(fast, "triton")
    a = ref(toks.cpu(), cu.cpu(), mx, [LAYERS])[LAYERS]
    b = fast(toks, cu, mx, [LAYERS])[LAYERS]
    assert b.dtype == dtype and torch.isfinite(b).all()
    ma, mb = M.mean_residues(a, cu.cpu()), M.mean_residues(b, cu).cpu()
    cos = torch.nn.functional.cosine_similarity(ma, mb, dim=-1)
    assert cos.min() > 0.999, float(cos.min())


def _quack_or_skip(dtype=torch.float16):
    from embed_worker.gpu.epilogues import unavailable
    why = unavailable(torch.device(DEV), dtype)
    if why:
        pytest.skip(f"fused FC1+GELU GEMM: {why}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_quack_fc1_close_to_fp32_reference_and_to_cublas(tiny, packed, dtype):
    """The "quack" arrangement (FC1 + GELU as one quack GEMM) against the fp32 CPU reference, as
    tightly as "triton" is held, and every layer against "triton" in the same dtype."""
    _quack_or_skip(dtype)
    toks, cu, mx = packed
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    tri, _, _ = load_model(tiny["hf"], DEV, dtype)
    fast, _, _ = load_model(tiny["hf"], DEV, dtype)
    arrange(tri, "triton")
    arrange(fast, "quack")
    assert fast.kernels == "quack"
    a = ref(toks.cpu(), cu.cpu(), mx, [LAYERS])[LAYERS]
    b = fast(toks, cu, mx, ALL)
    c = tri(toks, cu, mx, ALL)
    assert b[LAYERS].dtype == dtype and torch.isfinite(b[LAYERS]).all()
    ma, mb = M.mean_residues(a, cu.cpu()), M.mean_residues(b[LAYERS], cu).cpu()
    cos = torch.nn.functional.cosine_similarity(ma, mb, dim=-1)
    assert cos.min() > 0.999, float(cos.min())
    tol = 5e-3 if dtype == torch.float16 else 3e-2
    for layer in ALL:
        assert rel_err_rows(b[layer].float(), c[layer].float()) <= tol, layer


@pytest.mark.parametrize("in_place", [True, False])
def test_quack_pinned_out_and_fc2_close_to_triton(tiny, packed, monkeypatch, in_place):
    """Out-projection and FC2 on quack's GEMM where epilogues.CONFIGS pins a tile config for
    their shape (as it does for 650M): every layer as close to "triton" (cuBLAS) as quack's FC1
    path is held, quack's GEMM really ran (one config lookup per pinned GEMM and layer), and with
    residual_in_place it added into the residual stream in place (2 per layer) without touching
    any layer already handed out (all layers are requested, so each is kept while later ones run)."""
    _quack_or_skip()
    from embed_worker.gpu import epilogues as E
    toks, cu, mx = packed
    tri, _, _ = load_model(tiny["hf"], DEV, torch.float16)
    fast, _, _ = load_model(tiny["hf"], DEV, torch.float16)
    arrange(tri, "triton")
    d, f = fast.cfg.embed_dim, fast.cfg.ffn_dim
    pinned = {**E.CONFIGS, ("out", d, d): "192x128p@1x2", ("fc2", f, d): "128x160p@2x1"}
    arrange(fast, "quack", configs=pinned, residual_in_place=in_place)
    built, adds = [], []
    real, real_linear = E.gemm_config, E.linear
    monkeypatch.setattr(E, "gemm_config", lambda spec: built.append(spec) or real(spec))

    def spy(op, a, weight, bias, add_to=None, **options):
        out = real_linear(op, a, weight, bias, add_to, **options)
        adds.append(out is add_to)
        return out
    monkeypatch.setattr(E, "linear", spy)
    b = fast(toks, cu, mx, ALL)
    c = tri(toks, cu, mx, ALL)
    assert built.count("192x128p@1x2") == LAYERS and built.count("128x160p@2x1") == LAYERS
    assert adds == [in_place] * (2 * LAYERS)
    for layer in ALL:
        assert torch.isfinite(b[layer]).all()
        assert rel_err_rows(b[layer].float(), c[layer].float()) <= 5e-3, layer
    alone = {j: fast(toks, cu, mx, [j])[j] for j in ALL}  # nothing after layer j ran
    for layer in ALL:
        assert torch.equal(b[layer], alone[layer]), layer


def test_quack_residual_in_place_equals_the_add_ln_pass(tiny, packed):
    """The reduce-add store computes the add+LN kernel's x + o: every layer equal to the
    arrangement that writes o and adds it in the LN pass, up to a rare double-rounding tie."""
    _quack_or_skip()
    from embed_worker.gpu import epilogues as E
    toks, cu, mx = packed
    fast, _, _ = load_model(tiny["hf"], DEV, torch.float16)
    d, f = fast.cfg.embed_dim, fast.cfg.ffn_dim
    pinned = {**E.CONFIGS, ("out", d, d): "192x128p@1x2", ("fc2", f, d): "192x128p@1x2"}
    got = {}
    for in_place in (True, False):
        arrange(fast, "quack", configs=pinned, residual_in_place=in_place)
        got[in_place] = fast(toks, cu, mx, ALL)
    for layer in ALL:
        assert rel_err_rows(got[True][layer].float(), got[False][layer].float()) <= 1e-3, layer


def test_quack_fc1_follows_the_activation_setting(tiny, packed):
    """The tanh-gelu fault reaches the GEMM epilogue too: quack with tanh agrees with triton with
    tanh, and not with quack with erf."""
    _quack_or_skip()
    toks, cu, mx = packed
    models = {}
    for kernels, act in (("quack", "erf"), ("quack", "tanh"), ("triton", "erf"), ("triton", "tanh")):
        m, _, _ = load_model(tiny["hf"], DEV, torch.float16)
        arrange(m, kernels)
        m.set_activation(act)
        models[kernels, act] = m(toks, cu, mx, [LAYERS])[LAYERS].float()
    assert rel_err_rows(models["quack", "tanh"], models["triton", "tanh"]) <= 5e-3
    assert_fault_moves_as_in_triton(models["quack", "tanh"], models["quack", "erf"], models["triton", "tanh"],
                                    models["triton", "erf"])


def assert_fault_moves_as_in_triton(fault: torch.Tensor, clean: torch.Tensor, tri_fault: torch.Tensor,
                                    tri_clean: torch.Tensor) -> None:
    """The tanh-gelu fault moves an arrangement's output as far as it moves the triton
    arrangement's (within 2x): it reaches that arrangement's FC1 epilogue. Measured within one
    arrangement, the move is the fault's alone (the same kernels otherwise, deterministic); it is
    about as small as the noise between arrangements on the tiny model (~1e-3), so comparing
    across arrangements could not tell it apart."""
    moved, tri_moved = rel_err_rows(fault, clean), rel_err_rows(tri_fault, tri_clean)
    assert tri_moved > 1e-4, tri_moved
    assert 0.5 * tri_moved <= moved <= 2 * tri_moved, (moved, tri_moved)


def test_quack_unavailable_says_why():
    from embed_worker.gpu.epilogues import unavailable
    assert unavailable(torch.device("cpu"), torch.float16) == "needs a CUDA GPU"
    if torch.cuda.is_available():
        assert "fp16/bf16" in unavailable(torch.device("cuda", 0), torch.float32)


def test_unknown_kernels_rejected(tiny):
    model, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    with pytest.raises(ValueError, match="unknown kernels"):
        arrange(model, "fast")
    model.step = object()  # as if compiled earlier
    arrange(model, "eager")
    assert model.kernels == "eager" and model.step is M.block_step


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=BF16_DOT)])
@pytest.mark.parametrize("lens,H,Dh", [([3, 70, 1, 130, 64, 65, 2], 3, 32), ([1], 2, 16), ([5] * 40, 2, 64),
                                       ([200, 7, 129], 1, 128)])
def test_packed_attention_matches_exact(lens, H, Dh, dtype):
    """Tiles that start and end mid-sequence, sequences longer than a tile, one-token sequences;
    q/k/v as strided views of a fused projection, as fused.py passes them."""
    from embed_worker.esm2 import attention

    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    T = int(cu[-1])
    qkv = torch.randn(T, 3, H, Dh, generator=torch.Generator().manual_seed(T + Dh)).to(dtype)
    q, k, v = qkv.unbind(1)
    seq_id, _ = M.positions_from_cu(cu, T)
    got = AK.packed_attention(q.to(DEV), k.to(DEV), v.to(DEV), seq_id.int().to(DEV), cu.to(DEV))
    ref = attention._exact(q.double(), k.double(), v.double(), cu)
    tol = 4e-3 if dtype == torch.float16 else 3e-2
    assert got.dtype == dtype and (got.cpu().double() - ref).abs().max() <= tol


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=BF16_DOT)])
@pytest.mark.parametrize("lens,H,Dh", [([3, 70, 1, 130, 64, 65, 2], 3, 32), ([1], 2, 16), ([300, 257, 5, 90], 2, 64),
                                       ([129, 7, 128], 1, 128), ([64, 100, 3, 128], 2, 64), ([64, 50, 1], 2, 64),
                                       ([320, 3, 200], 2, 64)])
def test_aligned_attention_matches_exact(lens, H, Dh, dtype):
    """Sequences shorter than, equal to and longer than a tile (64 rows), one-token sequences,
    key tails that fit a quarter, a half and a whole key block,
    strided q/k/v views; with the block table built inside and passed in, and with the longest
    length given (each of kernels.ALIGNED_LAUNCH's launches)."""
    from embed_worker.esm2 import attention

    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    T = int(cu[-1])
    qkv = torch.randn(T, 3, H, Dh, generator=torch.Generator().manual_seed(T + Dh + 1)).to(dtype).to(DEV)
    q, k, v = qkv.unbind(1)
    ref = attention._exact(q.cpu().double(), k.cpu().double(), v.cpu().double(), cu, 0.3)
    tol = 4e-3 if dtype == torch.float16 else 3e-2
    table = AK.block_table(cu.to(DEV), T)
    for tab, mx in ((None, None), (table, None), (table, max(lens))):
        got = AK.aligned_attention(q, k, v, cu.to(DEV), 0.3, tab, mx)
        assert got.dtype == dtype and (got.cpu().double() - ref).abs().max() <= tol


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=BF16_DOT)])
def test_attention_kernels_rescale_when_late_keys_score_far_higher(dtype):
    """Online softmax when late keys score far above (and others slightly above) the first
    blocks' maximum: without the rescale the probabilities overflow fp16 (2^30 here); the weights
    must stay exact. (A lazy rescale, only past a growth of 2^8, was measured slower: docs/decisions/attention-variants.md.)"""
    from embed_worker.esm2 import attention
    lens = [230, 100, 5]
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    T, H, Dh = int(cu[-1]), 2, 64
    g = torch.Generator().manual_seed(11)
    q = torch.randn(T, H, Dh, generator=g)
    k = torch.randn(T, H, Dh, generator=g) * 0.2
    k[150:200] *= 4.0  # modest growth: kept below the lazy threshold for many rows
    k[200:230] *= 30.0  # a jump far past it in the last blocks
    v = torch.randn(T, H, Dh, generator=g)
    q, k, v = (t.to(dtype).contiguous() for t in (q, k, v))
    ref = attention._exact(q.double(), k.double(), v.double(), cu, 0.125)
    seq_id, _ = M.positions_from_cu(cu, T)
    tol = 4e-3 if dtype == torch.float16 else 3e-2
    dq, dk, dv, dcu = q.to(DEV), k.to(DEV), v.to(DEV), cu.to(DEV)
    for got in (AK.packed_attention(dq, dk, dv, seq_id.int().to(DEV), dcu, 0.125),
                AK.aligned_attention(dq, dk, dv, dcu, 0.125)):
        assert got.dtype == dtype and (got.cpu().double() - ref).abs().max() <= tol


@pytest.mark.parametrize("lens", [[1], [64], [65], [3, 70, 1, 130, 64, 65, 2], [1000, 24]])
@pytest.mark.parametrize("bm", [16, 64])
def test_block_table_tiles_every_row_once_within_its_sequence(lens, bm):
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    T = int(cu[-1])
    r0, end, start = AK.block_table(cu, T, bm).long()
    assert r0.numel() == -(-T // bm) + len(lens)  # the host-side bound the grid uses
    real = end > r0
    assert int(real.sum()) == sum(-(-n // bm) for n in lens)
    assert (r0[~real] == 0).all() and (end[~real] == 0).all()  # spare tiles do nothing
    covered = torch.zeros(T, dtype=torch.long)
    for a, e, s0 in zip(r0[real].tolist(), end[real].tolist(), start[real].tolist()):
        assert s0 in cu.tolist() and e == cu[cu.tolist().index(s0) + 1] and s0 <= a < e and (a - s0) % bm == 0
        covered[a:min(a + bm, e)] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("lens,aligned", [([AK.PACKED_ATTN_MAX_LEN + 40, 3, 90], True), ([124, 3, 90], True),
                                          ([138, 3, 90], True), ([62, 3, 30], True), ([92, 3, 40], True),
                                          ([82, 3, 40], False), ([45, 3, 20], False)])
def test_fused_routes_mid_length_batches_to_aligned_attention(tiny, monkeypatch, lens, aligned):
    """A half-precision batch whose longest sequence is past the packed kernel's limit (and
    below FA4's, or with FA4 absent), or shorter but filling aligned tiles well, runs every
    layer's attention through the aligned kernel, with one block table for all layers; a short
    batch that fills them badly does not; the result matches the fp32 reference either way."""
    assert AK.aligned_beats_packed(max(lens)) == aligned or max(lens) > AK.PACKED_ATTN_MAX_LEN
    g = torch.Generator().manual_seed(5)
    toks = torch.cat([torch.cat([torch.tensor([0]), torch.randint(4, 24, (n - 2,), generator=g), torch.tensor([2])])
                      for n in lens])
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    mx = max(lens)
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    fast, _, _ = load_model(tiny["hf"], DEV, torch.float16)
    arrange(fast, "triton")
    calls, tables = [], set()
    real = AK.aligned_attention

    def counted(q, k, v, cu_seqlens, scale=1.0, table=None, max_seqlen=None):
        calls.append((scale, max_seqlen))
        tables.add(None if table is None else id(table))
        return real(q, k, v, cu_seqlens, scale, table, max_seqlen)
    monkeypatch.setattr(AK, "aligned_attention", counted)
    got = fast(toks.to(DEV), cu.to(DEV), mx, [LAYERS])[LAYERS]
    if aligned:
        assert calls == [(1.0, mx)] * LAYERS and len(tables) == 1 and None not in tables
    else:
        assert calls == []
    want = ref(toks, cu, mx, [LAYERS])[LAYERS]
    cos = torch.nn.functional.cosine_similarity(M.mean_residues(want, cu), M.mean_residues(got, cu.to(DEV)).cpu().float(),
                                                dim=-1)
    assert cos.min() > 0.999, float(cos.min())


def test_aligned_tiles_take_short_batches_that_fill_them():
    """Below the packed kernel's limit, aligned tiles win when the longest sequence fills >= 78%
    of its 64-row tiles, and at any fill past 88 tokens (measured per batch: docs/decisions/packed-attention.md)."""
    assert AK.ALIGNED_BM == 64
    wins = [n for n in range(1, AK.PACKED_ATTN_MAX_LEN + 1) if AK.aligned_beats_packed(n)]
    assert {50, 51, 62, 64, 89, 92, 100, 104, 124, 128, 129, 131, 138, 144, 151, 172, 189, 193, 231, 256} <= set(wins)
    assert not {1, 33, 45, 47, 49, 65, 66, 72, 82, 88} & set(wins)


def test_aligned_launch_by_length():
    """One 64-key block and one stage up to 64 tokens, 32-key blocks and three stages to 320, 64-key
    blocks and two stages beyond or when the length is not known; 64 rows per tile throughout
    (one block table)."""
    assert [AK.aligned_launch(n)[:2] for n in (1, 64, 65, 320, 321, 1024, None)] == \
        [(64, 1), (64, 1), (32, 3), (32, 3), (64, 2), (64, 2), (64, 2)]
    warm = AK.aligned_launch_lengths()  # the worker compiles each launch on these before READY
    assert warm == [64, 320, 321] and {AK.aligned_launch(n) for n in warm} == {row[1:] for row in AK.ALIGNED_LAUNCH}


def test_attention_register_limits_apply_where_measured():
    """maxnreg only on Hopper at Dh <= 64 (measured there; at Dh = 128 the 80-register limit spills the
    accumulator); never under the interpreter or on other GPUs."""
    assert AK._maxnreg(torch.device("cpu"), 64, AK.ATTN_MAXNREG) == {}
    if DEV == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
        hopper = torch.cuda.get_device_capability(dev)[0] == 9
        assert AK._maxnreg(dev, 64, 96) == ({"maxnreg": 96} if hopper else {})
        assert AK._maxnreg(torch.device("cuda"), 64, 96) == AK._maxnreg(dev, 64, 96)  # no index: the current one
        assert AK._maxnreg(dev, 128, 96) == {}


def test_attention_register_limits_buy_resident_programs_without_spills():
    """bench/kernel_occupancy.py compiles every attention launch the product makes for sm_90 here
    (Triton's ptxas, no GPU needed; a subprocess, as the interpreter's kernels cannot compile):
    at its register limit each fits more programs per SM than without it and spills at most a few
    words (a change that made them spill would cost 3-6x: docs/decisions/packed-attention.md)."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, str(root / "bench" / "kernel_occupancy.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    launches = {(r["kernel"], r["shape"]) for r in rows}
    assert ("packed", f"{AK.ATTN_BM}x{AK.ATTN_BN}x{AK.ATTN_WARPS}x{AK.ATTN_STAGES}") in launches
    assert len([k for k in launches if k[0] == "aligned"]) == len(AK.ALIGNED_LAUNCH)
    for kernel, shape in launches:
        free, held = sorted((r for r in rows if (r["kernel"], r["shape"]) == (kernel, shape)),
                            key=lambda r: r["maxnreg"] is not None)
        assert free["maxnreg"] is None and held["regs"] <= held["maxnreg"] and held["spill_bytes"] <= 32, held
        assert min(held["programs_by_regs"], held["programs_by_smem"]) > \
            min(free["programs_by_regs"], free["programs_by_smem"]), (held, free)


def test_aligned_attention_selection():
    assert AK.aligned_attention_fits(torch.float16, 64, AK.ALIGNED_ATTN_MAX_LEN)
    assert not AK.aligned_attention_fits(torch.float16, 64, AK.ALIGNED_ATTN_MAX_LEN + 1)
    assert not AK.aligned_attention_fits(torch.float32, 64, 300)
    assert not AK.aligned_attention_fits(torch.float16, 24, 300)


def test_packed_attention_selection():
    assert AK.packed_attention_fits(torch.float16, 64, 72)
    assert not AK.packed_attention_fits(torch.float32, 64, 72)  # fp32 takes the exact path
    assert not AK.packed_attention_fits(torch.float16, 24, 72)  # esm2_t12_35M: Dh = 24
    assert not AK.packed_attention_fits(torch.float16, 64, AK.PACKED_ATTN_MAX_LEN + 1)


def test_fused_forward_with_a_head_size_that_is_not_a_power_of_two(tmp_path, packed):
    """esm2_t12_35M has Dh = 480 / 20 = 24: rotary and LayerNorm kernels take it, attention goes to
    the reference path (packed_attention_fits is false); fp32 and fp16 both match eager."""
    from embed_worker.tools import testmodel

    paths = testmodel.write(tmp_path, "esm2_t2_odd", 2, 48, 2, seed=3, fmt="hf")
    toks, cu, mx = packed
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-2)):
        ref, _, _ = load_model(paths["hf"], DEV, dtype)
        fast, _, _ = load_model(paths["hf"], DEV, dtype)
        arrange(fast, "triton")
        assert fast.layers[0].head_dim == 24 and not AK.packed_attention_fits(dtype, 24, mx)
        a, b = ref(toks, cu, mx, [0, 1, 2]), fast(toks, cu, mx, [0, 1, 2])
        for layer in (0, 1, 2):
            assert rel_err_rows(b[layer].float(), a[layer].float()) <= tol, (dtype, layer)


def _flash4_or_skip():
    from embed_worker.gpu.long_attention import flash4
    if DEV != "cuda" or torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("FlashAttention-4's sm90 path needs a Hopper GPU")
    fn, why = flash4()
    if fn is None:
        pytest.skip(why)
    return fn


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lens,H,Dh", [([600, 3, 1024, 1, 513, 777], 4, 64), ([900, 20], 2, 128), ([700], 3, 32)])
def test_flash4_matches_exact_on_long_sequences(lens, H, Dh, dtype):
    """FlashAttention-4 (long batches under "quack") on strided q/k/v views of a fused projection,
    with a softmax scale, against fp64 per-sequence attention."""
    fa4 = _flash4_or_skip()
    from embed_worker.esm2 import attention
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    T = int(cu[-1])
    qkv = torch.randn(T, 3, H, Dh, generator=torch.Generator().manual_seed(T + Dh)).to(dtype)
    q, k, v = qkv.unbind(1)
    got = fa4(q.to(DEV), k.to(DEV), v.to(DEV), cu.to(DEV), max(lens), Dh ** -0.5)
    ref = attention._exact(q.double(), k.double(), v.double(), cu, Dh ** -0.5)
    tol = 4e-3 if dtype == torch.float16 else 3e-2
    assert got.dtype == dtype and (got.cpu().double() - ref).abs().max() <= tol


def test_quack_with_flash4_on_long_batches_close_to_fp32_reference(tiny, monkeypatch):
    """The "quack" arrangement with every batch sent to FlashAttention-4 (threshold lowered):
    the forward stays as close to the fp32 reference as with the varlen kernel."""
    _quack_or_skip()
    _flash4_or_skip()
    from embed_worker.gpu import long_attention as attention
    lens = [300, 3, 57, 180]
    toks = torch.cat([torch.tensor([0] + [4 + (i * 7 + j) % 20 for j in range(L - 2)] + [2]) for i, L in enumerate(lens)])
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    fast, _, _ = load_model(tiny["hf"], DEV, torch.float16)
    arrange(fast, "quack")
    assert fast.long_attention is not None
    monkeypatch.setattr(attention, "LONG_MIN_LEN", 0)
    calls = []
    real = fast.long_attention
    fast.long_attention = lambda *a: calls.append(a[4]) or real(*a)
    a = ref(toks, cu, max(lens), [LAYERS])[LAYERS]
    b = fast(toks.to(DEV), cu.to(DEV), max(lens), [LAYERS])[LAYERS]
    assert calls == [max(lens)] * LAYERS
    cos = torch.nn.functional.cosine_similarity(M.mean_residues(a, cu), M.mean_residues(b, cu.to(DEV)).cpu(), dim=-1)
    assert torch.isfinite(b).all() and cos.min() > 0.999, float(cos.min())
