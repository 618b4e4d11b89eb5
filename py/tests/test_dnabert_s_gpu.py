"""DNABERT-S GPU fast path (gpu/alibi_attention.py, gpu/dnabert_s.py) against the reference model.

Without a GPU the Triton kernels run under TRITON_INTERPRET=1 (conftest.py) on CPU tensors, in
fp32 (IEEE dots) and fp16; with a GPU they run compiled on CUDA tensors. References are
dnabert_s/model.py's exact paths in float64 (its alibi_attention, geglu and DNABERT forward),
which test_dnabert_s_model.py checks against an independent one-sequence reference.

Tolerances, as max |got - want| / max |want| over the compared rows:
  attention kernel   fp32 inputs: 1e-5 (measured 1.2e-6 in the interpreter, both tilings)
                     fp16 inputs: 1e-3 (measured 2.7e-4: fp16 output rounding, P rounded to
                     fp16 for the PV dot)
  GeGLU kernel       fp32: 1e-6; fp16: 1e-3 (one fp16 rounding of the result)
  arranged forward   fp32 vs the fp64 reference model, layers 0, 1, 2 and the mean: 1e-5
                     (measured 1.1-1.2e-6; the padded SDPA baseline 1.4e-6)
Each planted bug (slopes reversed, bias sign flipped, GELU on the second half) must push the
same number above 10x its tolerance (measured 0.5-1.5 for the forward, 1.2-1.4 for the kernel).
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from embed_worker.dnabert_s import model as mod  # noqa: E402
from embed_worker.dnabert_s.config import CLS_ID, SEP_ID, DNABERTConfig  # noqa: E402
from embed_worker.dnabert_s.testmodel import make_weights  # noqa: E402
from embed_worker.dnabert_s.weights import build_state  # noqa: E402
from embed_worker.gpu import alibi_attention as A  # noqa: E402
from embed_worker.gpu import dnabert_s as G  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
H, DH = 12, 64
LENGTHS = [1, 2, 17, 64, 65, 130, 33]  # tokens per sequence: singletons, tile edges, longer than two tiles
PACKED, ALIGNED = ("packed", 64, 32, 4, 2), ("aligned", 64, 64, 4, 2)
ATTN_TOL = {torch.float32: 1e-5, torch.float16: 1e-3}
FWD_TOL = 1e-5

# 12 heads (ALiBi's non-power-of-two slope order), head size 16 (tl.dot's smallest), 2 layers.
TINY = DNABERTConfig(hidden_size=192, num_layers=2, num_heads=12, intermediate_size=160, vocab_size=4096)
TINY_LENGTHS = [2, 3, 17, 40, 71, 130]


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.double().cpu()
    return ((got.double().cpu() - want).abs().max() / want.abs().max()).item()


def cu_of(lengths: list[int]) -> torch.Tensor:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths), 0)
    return cu


def random_qkv(lengths: list[int], dtype, seed: int = 0) -> torch.Tensor:
    """[T, 3, H, Dh]: q and k of std 2 (scores of std ~4 after 1/8: the softmax is not flat), v std 1."""
    g = torch.Generator().manual_seed(seed)
    T = sum(lengths)
    x = torch.randn(T, 3, H, DH, generator=g, dtype=torch.float64) * torch.tensor([2.0, 2.0, 1.0]).view(1, 3, 1, 1)
    return x.to(dtype)


def model_attention(qkv: torch.Tensor, lengths: list[int], slopes) -> torch.Tensor:
    """dnabert_s/model.py's exact attention in fp64 on the same (rounded) inputs -> [T, H, Dh]."""
    T = qkv.shape[0]
    out = mod.alibi_attention(qkv.double().reshape(T, 3 * H * DH), H, torch.tensor(slopes, dtype=torch.float64),
                              cu_of(lengths).tolist())
    return out.view(T, H, DH)


def kernel_attention(qkv: torch.Tensor, lengths: list[int], tiles, slopes2=None) -> torch.Tensor:
    qkv = qkv.to(DEV)
    q, k, v = qkv.unbind(1)  # views with equal strides, as the fused projection gives them
    s2 = A.slopes_log2(mod.alibi_slopes(H), DEV) if slopes2 is None else slopes2
    return A.alibi_attention(q, k, v, cu_of(lengths).to(DEV), max(lengths), s2, 0.125, tiles)


@pytest.mark.parametrize("tiles", [PACKED, ALIGNED], ids=["packed", "aligned"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_alibi_kernel_matches_the_fp64_reference(tiles, dtype):
    qkv = random_qkv(LENGTHS, dtype, seed=1)
    got = kernel_attention(qkv, LENGTHS, tiles)
    want = model_attention(qkv, LENGTHS, mod.alibi_slopes(H))
    err = rel(got, want)
    assert got.dtype == dtype and got.shape == (sum(LENGTHS), H, DH)
    assert err <= ATTN_TOL[dtype], f"{tiles[0]} {dtype}: relative error {err:.2e} > {ATTN_TOL[dtype]}"


def test_torch_reference_path_equals_the_model_attention():
    qkv = random_qkv(LENGTHS, torch.float64, seed=2)
    q, k, v = qkv.unbind(1)
    got = A.attention_reference(q, k, v, cu_of(LENGTHS), mod.alibi_slopes(H), 0.125)
    assert rel(got, model_attention(qkv, LENGTHS, mod.alibi_slopes(H))) <= 1e-13


@pytest.mark.parametrize("bug", ["slopes reversed", "bias sign flipped"])
def test_planted_attention_bugs_fail_the_check(bug):
    lengths = [5, 40, 70]
    qkv = random_qkv(lengths, torch.float32, seed=3)
    s2 = A.slopes_log2(mod.alibi_slopes(H), DEV)
    s2 = s2.flip(0) if bug == "slopes reversed" else -s2
    err = rel(kernel_attention(qkv, lengths, PACKED, s2), model_attention(qkv, lengths, mod.alibi_slopes(H)))
    assert err > 10 * ATTN_TOL[torch.float32], f"{bug} not caught: relative error {err:.2e}"


def test_a_tile_does_not_see_the_next_sequence():
    """Two sequences in one packed tile: the first's rows equal the first alone."""
    qkv = random_qkv([20, 30], torch.float32, seed=4)
    both = kernel_attention(qkv, [20, 30], PACKED)
    alone = kernel_attention(qkv[:20].clone(), [20], PACKED)
    assert torch.allclose(both[:20], alone, rtol=0, atol=1e-6)


def test_attention_refuses_what_the_kernel_cannot_take():
    q = torch.zeros(4, H, 8, device=DEV)
    s2 = A.slopes_log2(mod.alibi_slopes(H), DEV)
    with pytest.raises(ValueError, match="head size of 16, 32, 64 or 128; got torch.float32 and 8"):
        A.alibi_attention(q, q, q, cu_of([4]).to(DEV), 4, s2, 0.125)
    q = torch.zeros(4, H, 16, device=DEV)
    with pytest.raises(ValueError, match=r"slopes must be fp32 \[H=12\]"):
        A.alibi_attention(q, q, q, cu_of([4]).to(DEV), 4, s2[:4], 0.125)
    with pytest.raises(ValueError, match="must be 'packed' or 'aligned'"):
        A.alibi_attention(q, q, q, cu_of([4]).to(DEV), 4, s2, 0.125, ("flash", 64, 32, 4, 2))


def test_tiles_for_covers_every_length():
    assert A.tiles_for(41)[0] == "packed" and A.tiles_for(75)[0] == "packed"
    assert A.tiles_for(10_000)[0] == "aligned"


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float16, 1e-3)], ids=["fp32", "fp16"])
def test_geglu_kernel_matches_the_reference(dtype, tol):
    g = torch.Generator().manual_seed(5)
    f = 700  # not a multiple of the block: masked columns
    h = (2 * torch.randn(37, 2 * f, generator=g, dtype=torch.float64)).to(dtype)
    got = G.geglu(h.to(DEV))
    assert got.shape == (37, f) and got.dtype == dtype
    assert rel(got, mod.geglu(h.double(), f)) <= tol
    wrong = mod.gelu(h.double()[:, f:]) * h.double()[:, :f]  # GELU on the second half
    assert rel(got, wrong) > 10 * tol


# --------------------------------------------------------------------------------------------
# the arranged forward


def sequences(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[CLS_ID] + torch.randint(5, 4096, (n - 2,), generator=g).tolist() + [SEP_ID] for n in lengths]


def build(w: dict, dtype) -> mod.DNABERT:
    m = mod.DNABERT(TINY)
    m.load_state_dict(build_state(TINY, w, {k: "<memory>" for k in w}, "<memory>"), strict=True)
    return m.to(dtype).eval()


@pytest.fixture(scope="module")
def tiny():
    w = make_weights(TINY, seed=7, dtype=torch.float64)
    seqs = sequences(TINY_LENGTHS)
    tokens = torch.tensor([t for s in seqs for t in s])
    cu = cu_of(TINY_LENGTHS)
    ref = build(w, torch.float64)(tokens, cu, max(TINY_LENGTHS), repr_layers=[0, 1, 2])
    return {"w": w, "tokens": tokens, "cu": cu, "ref": ref, "fp32": build(w, torch.float32).to(DEV)}


def forward_error(tiny, tiles=None, layers=(0, 1, -1)) -> float:
    fast = G.arrange(tiny["fp32"], tiles)
    out = fast(tiny["tokens"].to(DEV), tiny["cu"].to(DEV), max(TINY_LENGTHS), repr_layers=list(layers))
    assert set(out) == set(layers)
    errs = [rel(out[r], tiny["ref"][r if r >= 0 else r + TINY.num_layers + 1]) for r in layers]
    errs.append(rel(G.mean_all_tokens(out[-1], tiny["cu"].to(DEV)), mod.mean_all_tokens(tiny["ref"][2], tiny["cu"])))
    return max(errs)


@pytest.mark.parametrize("tiles", [None, ALIGNED], ids=["default", "aligned"])
def test_arranged_forward_matches_the_reference_model(tiny, tiles):
    err = forward_error(tiny, tiles)
    assert err <= FWD_TOL, f"relative error {err:.2e} > {FWD_TOL}"


_slopes = mod.alibi_slopes

PLANTED = {
    "slopes reversed": ("alibi_slopes", lambda n: _slopes(n)[::-1]),
    "bias sign flipped": ("alibi_slopes", lambda n: [-s for s in _slopes(n)]),
    "GELU on the second half": ("geglu", lambda h: mod.gelu(h[:, h.shape[1] // 2:]) * h[:, : h.shape[1] // 2]),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_planted_bug_fails_the_forward_check(tiny, monkeypatch, name):
    target, fake = PLANTED[name]
    monkeypatch.setattr(G, target, fake)
    err = forward_error(tiny, layers=(-1,))
    assert err > 10 * FWD_TOL, f"planted bug {name!r} not caught: relative error {err:.2e}"


def test_padded_sdpa_baseline_matches_the_reference_model(tiny):
    model = build(tiny["w"], torch.float32)
    out = G.padded_sdpa_forward(model, tiny["tokens"], tiny["cu"], max(TINY_LENGTHS), repr_layers=[0, -1])
    assert rel(out[0], tiny["ref"][0]) <= FWD_TOL and rel(out[-1], tiny["ref"][2]) <= FWD_TOL


def test_arranged_forward_refuses_what_the_reference_refuses(tiny):
    fast = G.arrange(tiny["fp32"])
    cu = cu_of([3]).to(DEV)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4096\)"):
        fast(torch.tensor([1, 4096, 2], device=DEV), cu, 3)
    with pytest.raises(ValueError, match="repr layer 3 out of range for a 2-layer model"):
        fast(torch.tensor([1, 7, 2], device=DEV), cu, 3, repr_layers=[3])
    with pytest.raises(TypeError, match="takes a dnabert_s.model.DNABERT"):
        G.arrange(torch.nn.Linear(2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 on the compiled kernels needs a CUDA GPU")
def test_fp16_on_the_gpu_tracks_the_fp64_reference(tiny):
    """The product's precision: fp16 weights and activations, fp32 inside the kernels."""
    fast = G.arrange(build(tiny["w"], torch.float16).to("cuda"))
    out = fast(tiny["tokens"].cuda(), tiny["cu"].cuda(), max(TINY_LENGTHS))[-1]
    got = G.mean_all_tokens(out, tiny["cu"].cuda()).double().cpu()
    want = mod.mean_all_tokens(tiny["ref"][2], tiny["cu"])
    assert torch.nn.functional.cosine_similarity(got, want, dim=1).min() >= 0.999


# --------------------------------------------------------------------------------------------
# the post-LN add+LN without the stored sum, and the fused GeGLU GEMM (gated="quack")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_add_layer_norm_only_is_add_layer_norm_without_the_store(dtype):
    from embed_worker.gpu import kernels as K
    g = torch.Generator().manual_seed(11)
    x, d = (torch.randn(37, 192, generator=g).to(dtype).to(DEV) for _ in range(2))
    norm = torch.nn.LayerNorm(192).to(DEV)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.1, generator=None)
        norm.bias.normal_(0.0, 0.1)
    d_before = d.clone()
    got = K.add_layer_norm_only(x, d, norm.to(dtype))
    assert torch.equal(d, d_before), "add_layer_norm_only wrote over its input"
    _, want = K.add_layer_norm(x, d.clone(), norm.to(dtype))
    assert torch.equal(got, want)
    s = (x.double() + d.double()).to(dtype).double()  # the sum as stored, then LN in fp64
    ref = torch.nn.functional.layer_norm(s, (192,), norm.weight.double(), norm.bias.double(), norm.eps)
    assert rel(got, ref) <= (1e-5 if dtype == torch.float32 else 2e-3)


def test_pair_gate_up_interleaves_gate_and_up_rows():
    w = torch.arange(6 * 2, dtype=torch.float32).view(6, 2)  # rows g0 g1 g2 u0 u1 u2
    got = G.pair_gate_up(w)
    assert got[:, 0].tolist() == [0, 6, 2, 8, 4, 10]  # g0 u0 g1 u1 g2 u2
    assert got.is_contiguous() and got.data_ptr() != w.data_ptr()
    with pytest.raises(ValueError, match=r"the gated weight must be \[2F, D\], got shape \[5, 2\]"):
        G.pair_gate_up(torch.zeros(5, 2))


def emulated_geglu_gemm(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """quack_epi.geglu_erf's contract in PyTorch (fp32 accumulator, pairs (2j, 2j + 1) =
    (gate_j, up_j), one rounding to x's dtype): what the fused path runs, without a Hopper GPU."""
    acc = x.float() @ pairs.float().t()
    return (mod.gelu(acc[:, 0::2]) * acc[:, 1::2]).to(x.dtype)


def test_fused_geglu_forward_matches_the_reference_model(tiny, monkeypatch):
    """The fused arrangement's wiring (paired weight copy per layer, the GEMM's half-width output
    into wo) with the epilogue emulated; the real kernel is checked on a GPU below."""
    monkeypatch.setattr(G, "geglu_gemm", emulated_geglu_gemm)
    fast = G.FastDNABERT(tiny["fp32"], gated="quack")
    assert fast.pairs is not None and len(fast.pairs) == TINY.num_layers
    out = fast(tiny["tokens"].to(DEV), tiny["cu"].to(DEV), max(TINY_LENGTHS), repr_layers=[1, -1])
    err = max(rel(out[1], tiny["ref"][1]), rel(out[-1], tiny["ref"][2]))
    assert err <= FWD_TOL, f"relative error {err:.2e} > {FWD_TOL}"
    # the model itself is not touched: its gated weights keep the checkpoint's row order
    assert not torch.equal(fast.pairs[0], tiny["fp32"].layers[0].gated.weight)


@pytest.mark.parametrize("bug", ["rows not paired", "up and gate swapped"])
def test_planted_pairing_bugs_fail_the_fused_forward_check(tiny, monkeypatch, bug):
    monkeypatch.setattr(G, "geglu_gemm", emulated_geglu_gemm)
    real = G.pair_gate_up
    fake = (lambda w: w.detach().clone()) if bug == "rows not paired" else (
        lambda w: real(torch.cat([w[w.shape[0] // 2:], w[: w.shape[0] // 2]])))
    monkeypatch.setattr(G, "pair_gate_up", fake)
    fast = G.FastDNABERT(tiny["fp32"], gated="quack")
    out = fast(tiny["tokens"].to(DEV), tiny["cu"].to(DEV), max(TINY_LENGTHS))[-1]
    err = rel(out, tiny["ref"][2])
    assert err > 10 * FWD_TOL, f"planted bug {bug!r} not caught: relative error {err:.2e}"


def test_gated_choice_falls_back_or_refuses(tiny):
    from embed_worker.gpu import epilogues
    why = epilogues.unavailable(torch.device(DEV), torch.float32)
    assert why is not None  # fp32 is never quack's
    fast = G.arrange(tiny["fp32"])  # gated="auto"
    assert (fast.gated, fast.gated_why, fast.pairs) == ("triton", why, None)
    with pytest.raises(ValueError, match="the fused GeGLU GEMM \\(quack\\) cannot run here: "):
        G.arrange(tiny["fp32"], gated="quack")
    with pytest.raises(ValueError, match="gated must be one of auto, quack, triton; got 'cublas'"):
        G.arrange(tiny["fp32"], gated="cublas")
    assert G.arrange(tiny["fp32"], gated="triton").gated_why == "asked for"


def _quack_here() -> bool:
    if not torch.cuda.is_available():
        return False
    from embed_worker.gpu import epilogues
    return epilogues.unavailable(torch.device("cuda"), torch.float16) is None


@pytest.mark.skipif(not _quack_here(), reason="quack's GEMMs need a Hopper GPU with quack-kernels")
def test_fused_geglu_gemm_on_the_gpu_matches_the_reference():
    g = torch.Generator().manual_seed(12)
    f, d = 3072, 768
    x = torch.randn(1000, d, generator=g, dtype=torch.float64)
    w = torch.randn(2 * f, d, generator=g, dtype=torch.float64) / d ** 0.5
    x16, w16 = x.half().cuda(), w.half().cuda()
    want = mod.geglu(x16.double().cpu() @ w16.double().cpu().t(), f)
    got = G.geglu_gemm(x16, G.pair_gate_up(w16))
    assert got.shape == (1000, f) and got.dtype == torch.float16
    assert rel(got, want) <= 1e-3
    assert rel(G.geglu_gemm(x16, w16.contiguous()), want) > 1e-2  # unpaired rows: caught
