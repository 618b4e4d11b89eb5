"""What the "quack" arrangement changes around its GEMMs, checked on CPU without quack: the q/k row
interleave (exactly reversible; attention unchanged when rotary rotates adjacent pairs of the
permuted projection) and the softmax scale that replaces q's pre-scaling in every attention path.
The quack kernels themselves run on GPUs only (test_fused.py, skipped here)."""
from __future__ import annotations


import pytest
import torch

from conftest import CPU_TRITON
from embed_worker.esm2 import model as M
from embed_worker.esm2.attention import _exact
from embed_worker.gpu.epilogues import interleave_order, interleave_qk_rows
from embed_worker.esm2.weights import load_model
from embed_worker.gpu import arrange as arrange_module
from embed_worker.gpu.arrange import QuackGemms, _interleave_qk, arrange

H, DH, D = 4, 16, 64


def _proj(seed: int = 0) -> torch.nn.Linear:
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(D, 3 * D).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3 * D, D, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(3 * D, generator=g, dtype=torch.float64))
    return lin


def test_interleave_order_pairs_j_with_j_plus_half():
    assert interleave_order(8).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_interleave_is_exactly_reversible_and_leaves_v_alone():
    lin = _proj()
    w0, b0 = lin.weight.clone(), lin.bias.clone()
    interleave_qk_rows(lin, H, DH)
    assert not torch.equal(lin.weight[: 2 * D], w0[: 2 * D])
    assert torch.equal(lin.weight[2 * D:], w0[2 * D:]) and torch.equal(lin.bias[2 * D:], b0[2 * D:])
    # each head's rows are a permutation of its own rows
    for h in range(2 * H):
        got = lin.weight[h * DH:(h + 1) * DH].sum(0)
        assert torch.allclose(got, w0[h * DH:(h + 1) * DH].sum(0))
    interleave_qk_rows(lin, H, DH, inverse=True)
    assert torch.equal(lin.weight, w0) and torch.equal(lin.bias, b0)


def _rope_half(x, pos, inv_freq):  # ESM-2: pairs (j, j + Dh/2), x [T, H, Dh]
    ang = pos[:, None].double() * inv_freq[None, :].double()  # [T, Dh/2]
    c = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    s = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    return x * c + M.rotate_half(x) * s


def _rope_adjacent(x, pos, inv_freq):  # quack's epilogue: pairs (2j, 2j + 1)
    ang = pos[:, None].double() * inv_freq[None, :].double()  # [T, Dh/2]
    c, s = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)


def test_adjacent_pair_rotary_of_the_interleaved_projection_gives_the_same_attention():
    """The identity the quack arrangement rests on: rotate_half rotary + q·Dh^-0.5 on the
    checkpoint's rows == adjacent-pair rotary on interleaved rows + softmax scale Dh^-0.5."""
    T = 11
    g = torch.Generator().manual_seed(3)
    h = torch.randn(T, D, generator=g, dtype=torch.float64)
    pos = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2])
    cu = torch.tensor([0, 5, 8, 11])
    inv_freq = M.default_inv_freq(DH)
    lin = _proj(1)
    q, k, v = lin(h).split(D, -1)
    q = _rope_half((q * DH ** -0.5).view(T, H, DH), pos, inv_freq)
    k = _rope_half(k.view(T, H, DH), pos, inv_freq)
    want = _exact(q, k, v.reshape(T, H, DH), cu)
    interleave_qk_rows(lin, H, DH)
    q2, k2, v2 = lin(h).split(D, -1)
    q2 = _rope_adjacent(q2.view(T, H, DH), pos, inv_freq)
    k2 = _rope_adjacent(k2.view(T, H, DH), pos, inv_freq)
    got = _exact(q2, k2, v2.reshape(T, H, DH), cu, scale=DH ** -0.5)
    assert torch.allclose(got, want, atol=1e-12, rtol=1e-12)


def test_model_interleave_round_trip_restores_every_layer(tiny):
    model, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _interleave_qk(model, inverse=False)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    _interleave_qk(model, inverse=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("scale", [1.0, 0.125, 0.3])
def test_softmax_scale_equals_prescaled_q(scale):
    T = 9
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(T, H, DH, generator=g, dtype=torch.float64) for _ in range(3))
    cu = torch.tensor([0, 4, 9])
    assert torch.allclose(_exact(q, k, v, cu, scale=scale), _exact(q * scale, k, v, cu), atol=1e-12)


def test_packed_attention_kernel_takes_a_softmax_scale():
    pytest.importorskip("triton")
    from embed_worker.gpu import attention_kernels as AK
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    T = 21
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(T, H, DH, generator=g).half().to(dev) for _ in range(3))
    cu = torch.tensor([0, 6, 13, 21], dtype=torch.int32)
    seq = torch.repeat_interleave(torch.arange(3, dtype=torch.int32), (cu[1:] - cu[:-1]).long())
    got = AK.packed_attention(q, k, v, seq.to(dev), cu.to(dev), 0.25).float().cpu()
    want = _exact(q.double().cpu(), k.double().cpu(), v.double().cpu(), cu, scale=0.25)
    assert (got - want).abs().max() < 2e-3


@CPU_TRITON
@pytest.mark.parametrize("in_place", [False, True])
def test_fused_quack_branch_with_reference_epilogues_equals_eager(tiny, batch, monkeypatch, in_place):
    """fused.py's "quack" wiring on CPU: quack's GEMMs replaced by PyTorch functions with the same
    contracts (GELU on the GEMM output; adjacent-pair rotary of the first 2D columns by
    pos × inv_freq; the residual added into x in place), the model's q/k rows interleaved as
    arrange("quack") leaves them, the softmax scale in attention. Every layer, all requested at once, equals the eager reference to 1e-5."""
    pytest.importorskip("triton")
    from conftest import LAYERS, rel_err_rows
    from embed_worker.gpu import epilogues as E
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    fast, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    inv_freq = fast.inv_freq.clone()
    d, dh = fast.cfg.embed_dim, fast.layers[0].head_dim

    def rope(y, pos):
        j = (torch.arange(2 * d) % dh) // 2  # rotation pair of each q/k column
        ang = pos[:, None].double() * inv_freq[j][None, :].double()  # [T, 2D]
        c, s = ang.cos()[:, 0::2].float(), ang.sin()[:, 0::2].float()
        x1, x2 = y[:, 0:2 * d:2].clone(), y[:, 1:2 * d:2].clone()
        y[:, 0:2 * d:2], y[:, 1:2 * d:2] = x1 * c - x2 * s, x1 * s + x2 * c
        return y

    def qkv_rope(h, weight, bias, pos, freq):
        return rope(torch.nn.functional.linear(h, weight, bias), pos)

    def fc1_act(h, weight, bias, activation):
        assert activation == "erf"
        return M.gelu(torch.nn.functional.linear(h, weight, bias))

    def linear(op, a, weight, bias, add_to=None, *, configs, in_place):
        assert configs is E.CONFIGS
        y = torch.nn.functional.linear(a, weight, bias)
        return add_to.add_(y) if in_place and add_to is not None else y

    monkeypatch.setattr(E, "qkv_rope", qkv_rope)
    monkeypatch.setattr(E, "fc1_act", fc1_act)
    monkeypatch.setattr(E, "linear", linear)
    arrange(fast, "triton")
    _interleave_qk(fast, inverse=False)  # what arrange("quack") does, without quack's import
    fast.kernels, fast.arrangement = "quack", QuackGemms(E.CONFIGS, residual_in_place=in_place)
    fast.derived["quack_freq"] = torch.empty(0)  # quack's own table (qkv_rope above ignores it)
    toks, cu, mx = batch["tokens"], batch["cu"], batch["max"]
    everything = list(range(LAYERS + 1))
    a, b = ref(toks, cu, mx, everything), fast(toks, cu, mx, everything)
    for layer in everything:
        assert rel_err_rows(b[layer], a[layer]) <= 1e-5, layer


@CPU_TRITON
def test_long_batches_take_the_long_attention_kernel_and_others_do_not(tiny, batch, monkeypatch):
    """fused.py sends a batch to model.long_attention (FlashAttention-4 under "quack") only when
    its longest sequence exceeds attention.LONG_MIN_LEN, with int32 cu_seqlens and the softmax
    scale; the result equals the eager reference on every layer."""
    pytest.importorskip("triton")
    from conftest import LAYERS, rel_err_rows
    from embed_worker.gpu import long_attention as A
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    fast, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    arrange(fast, "triton")
    calls = []

    def stand_in(q, k, v, cu, max_seqlen, scale):
        assert cu.dtype == torch.int32
        calls.append((max_seqlen, scale))
        return _exact(q, k, v, cu, scale)
    fast.long_attention = stand_in
    toks, cu, mx = batch["tokens"], batch["cu"], batch["max"]
    everything = list(range(LAYERS + 1))
    want = ref(toks, cu, mx, everything)
    monkeypatch.setattr(A, "LONG_MIN_LEN", mx)  # longest == threshold: not long
    fast(toks, cu, mx, everything)
    assert calls == []
    monkeypatch.setattr(A, "LONG_MIN_LEN", mx - 1)
    got = fast(toks, cu, mx, everything)
    assert calls == [(mx, 1.0)] * LAYERS  # "triton" pre-scales q: softmax scale 1
    for layer in everything:
        assert rel_err_rows(got[layer], want[layer]) <= 1e-5, layer


@CPU_TRITON
def test_quack_leaves_flashattention4_out_where_no_batch_can_need_it(tiny, monkeypatch):
    """arrange(model, "quack", longest=...) loads FlashAttention-4 only where a sequence can pass
    attention.LONG_MIN_LEN (or the longest is unknown): the default truncation (1,022 residues +
    BOS/EOS = 1,024 tokens) never sends one, and importing and compiling it costs start-up. Its
    absence then is not a failure (nothing to report). quack's own module stands in here."""
    pytest.importorskip("triton")
    import sys
    import types
    from embed_worker.gpu import long_attention as A
    monkeypatch.setitem(sys.modules, "embed_worker.gpu.quack_epi", types.ModuleType("embed_worker.gpu.quack_epi"))
    from embed_worker.gpu import epilogues
    monkeypatch.setattr(epilogues, "quack_freq", lambda model: None)  # quack's own table maker
    loads = []

    def flash4():
        loads.append(1)
        return (lambda *a: None), None
    monkeypatch.setattr(A, "flash4", flash4)
    for longest, loaded in [(None, True), (A.LONG_MIN_LEN + 1, True), (A.LONG_MIN_LEN, False), (1022 + 2, False)]:
        m, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
        arrange(m, "quack", longest=longest)
        assert (m.long_attention is not None) == loaded, longest
        assert m.long_attention_off is None
    assert len(loads) == 2


def test_flash4_says_why_it_cannot_load():
    from embed_worker.gpu.long_attention import flash4
    try:
        import flash_attn.cute  # noqa: F401
        pytest.skip("flash-attn-4 is installed here")
    except Exception:
        pass
    fn, why = flash4()
    assert fn is None and "flash-attn-4 does not import" in why


def test_config_specs_parse_to_quack_fields_and_bad_ones_say_how():
    from embed_worker.gpu.epilogues import parse_config
    assert parse_config("192x128p@1x2") == {"tile_m": 192, "tile_n": 128, "pingpong": True, "cluster_m": 1,
                                            "cluster_n": 2, "is_dynamic_persistent": False, "device_capacity": 9}
    got = parse_config("256x128c+d")
    assert (got["pingpong"], got["cluster_m"], got["cluster_n"], got["is_dynamic_persistent"]) == (False, 2, 1, True)
    for bad in ("192x128", "192x128q", "192x128p@1", "x128p", "192x128p@1x2+e"):
        with pytest.raises(ValueError, match="e.g. 192x128p@1x2"):
            parse_config(bad)


def test_pinned_configs_name_real_esm2_gemm_shapes():
    """Every pinned config parses and belongs to a GEMM of some ESM-2 model (a typo in a shape
    would silently never match); unpinned shapes get None (quack's default / cuBLAS)."""
    from embed_worker.gpu.epilogues import CONFIGS, config_for, parse_config
    from embed_worker.esm2.registry import KNOWN
    shapes = set()
    for m in KNOWN.values():
        d, f = m.cfg.embed_dim, m.cfg.ffn_dim
        shapes |= {("qkv", d, 3 * d), ("out", d, d), ("fc1", d, f), ("fc2", f, d)}
    assert CONFIGS, "650M's out/FC2 configs are pinned"
    for key, spec in CONFIGS.items():
        assert key in shapes, key
        parse_config(spec)
    assert config_for("out", torch.empty(D, D)) is None  # a width nothing pins
