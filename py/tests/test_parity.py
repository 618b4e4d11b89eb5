"""Our packed forward equals fair-esm and Hugging Face ESM-2 on identical weights."""
from __future__ import annotations

import pytest
import torch

from conftest import LAYERS, SEQS, rel_err_rows
from embed_worker.esm2 import model as M
from embed_worker.esm2.weights import load_model

ALL = list(range(LAYERS + 1))
TOL = 1e-5


@pytest.fixture(scope="module", params=["fair-esm", "hf"])
def ours(request, tiny):
    model, cfg, resolved = load_model(tiny[request.param], "cpu", torch.float32)
    assert resolved.format == request.param
    return model


@pytest.fixture(scope="module")
def ours_out(ours, batch):
    return ours(batch["tokens"], batch["cu"], batch["max"], ALL)


@pytest.fixture(scope="module")
def fair_out(fair, batch):
    model, _ = fair
    with torch.no_grad():
        return model(batch["padded"], repr_layers=ALL)["representations"]


@pytest.fixture(scope="module")
def hf_out(tiny, batch):
    from transformers import EsmForMaskedLM

    model = EsmForMaskedLM.from_pretrained(tiny["hf"], attn_implementation="eager").eval()
    toks = batch["padded"]
    with torch.no_grad():
        o = model.esm(input_ids=toks, attention_mask=(toks != 1).long(), output_hidden_states=True)
    reps = {i: o.hidden_states[i] for i in range(LAYERS)}
    reps[LAYERS] = o.last_hidden_state
    return reps


def _compare(ours_out, ref, batch):
    cu, lens = batch["cu"], batch["lens"]
    worst = {}
    for layer in ALL:
        assert ours_out[layer].shape == (int(cu[-1]), ref[layer].shape[-1])
        for i in range(len(SEQS)):
            a = ours_out[layer][cu[i]: cu[i + 1]]
            b = ref[layer][i, : lens[i]]
            worst[(layer, SEQS[i][0])] = rel_err_rows(a, b)
    bad = {k: v for k, v in worst.items() if v > TOL}
    assert not bad, bad


def test_parity_vs_fair_esm(ours_out, fair_out, batch):
    _compare(ours_out, fair_out, batch)


def test_parity_vs_hf(ours_out, hf_out, batch):
    _compare(ours_out, hf_out, batch)


def test_token_dropout_is_exercised(ours_out, batch):
    # The masked sequences' layer-0 rows are scaled differently from unmasked ones; <mask> rows are 0.
    is_mask = batch["tokens"] == M.MASK_IDX
    assert is_mask.any()
    assert torch.all(ours_out[0][is_mask] == 0)


def test_pooling_matches_fair_esm_extract(ours, fair_out, batch):
    cu, lens = batch["cu"], batch["lens"]
    out = ours(batch["tokens"], cu, batch["max"], [LAYERS, 1])
    for layer in (LAYERS, 1):
        h = out[layer]
        mean = M.mean_residues(h, cu)
        bos = M.bos_rows(h, cu)
        res = M.residue_rows(h, cu)
        assert mean.dtype == bos.dtype == res.dtype == torch.float32
        assert res.shape == (int((lens - 2).sum()), h.shape[1])
        off = 0
        for i in range(len(SEQS)):
            n = int(lens[i]) - 2  # residues (tokens between BOS and EOS)
            ref = fair_out[layer][i]
            assert rel_err_rows(mean[i: i + 1], ref[1: n + 1].mean(0, keepdim=True)) <= TOL
            assert rel_err_rows(bos[i: i + 1], ref[0:1]) <= TOL
            assert rel_err_rows(res[off: off + n], ref[1: n + 1]) <= TOL
            off += n


def test_negative_and_partial_layers(ours, batch):
    full = ours(batch["tokens"], batch["cu"], batch["max"], ALL)
    part = ours(batch["tokens"], batch["cu"], batch["max"], [-1, 1])
    assert set(part) == {-1, 1}
    assert torch.equal(part[-1], full[LAYERS]) and torch.equal(part[1], full[1])
    with pytest.raises(ValueError):
        ours(batch["tokens"], batch["cu"], batch["max"], [LAYERS + 1])


def test_no_cross_contamination(tiny, batch):
    model, _, _ = load_model(tiny["fair-esm"], "cpu", torch.float32)
    cu, toks = batch["cu"], batch["tokens"]
    packed = model(toks, cu, batch["max"], ALL)
    for i in range(len(SEQS)):
        s, e = int(cu[i]), int(cu[i + 1])
        alone = model(toks[s:e], torch.tensor([0, e - s], dtype=torch.int32), e - s, ALL)
        for layer in ALL:
            assert rel_err_rows(packed[layer][s:e], alone[layer]) <= 1e-6, (SEQS[i][0], layer)
    # Reordering the batch does not change any sequence either.
    order = list(reversed(range(len(SEQS))))
    parts = [toks[cu[i]: cu[i + 1]] for i in order]
    lens = torch.tensor([len(p) for p in parts])
    cu2 = torch.zeros(len(parts) + 1, dtype=torch.int32)
    cu2[1:] = torch.cumsum(lens, 0)
    rev = model(torch.cat(parts), cu2, batch["max"], [LAYERS])[LAYERS]
    for j, i in enumerate(order):
        assert rel_err_rows(rev[cu2[j]: cu2[j + 1]], packed[LAYERS][cu[i]: cu[i + 1]]) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu(tiny, batch, dtype):
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    model, _, _ = load_model(tiny["hf"], "cpu", dtype)
    assert next(model.parameters()).dtype == dtype
    cu = batch["cu"]
    a = ref(batch["tokens"], cu, batch["max"], ALL)
    b = model(batch["tokens"], cu, batch["max"], ALL)
    for layer in ALL:
        assert b[layer].dtype == dtype
        assert torch.isfinite(b[layer]).all()
        cos = torch.nn.functional.cosine_similarity(a[layer], b[layer].float(), dim=-1)
        nonzero = a[layer].norm(dim=-1) > 0
        assert cos[nonzero].min() > 0.99, (layer, float(cos[nonzero].min()))
    mean = M.mean_residues(b[LAYERS], cu)
    assert mean.dtype == torch.float32 and torch.isfinite(mean).all()


def test_backend_names():
    from embed_worker.esm2 import attention

    assert attention.backend_for("cpu") == "exact"
    assert attention.backend_for("cuda", torch.float32) == "exact"
    assert isinstance(attention.BACKEND_NAME, str)


# ------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU): every dtype against the CPU fp32 reference, and no contamination.

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
_AA = {c: i + 4 for i, c in enumerate("LAGVSERTIDPKQNFYMHWCXBUZO.-")}


def _pack(seqs: list[str]):
    """Tokenize without fair-esm (ESM-2 alphabet: <cls>=0, <eos>=2, <mask>=32)."""
    rows = []
    for s in seqs:
        toks = [0]
        for part in s.split("<mask>"):
            toks += [_AA[c] for c in part] + [M.MASK_IDX]
        rows.append(torch.tensor(toks[:-1] + [2]))
    lens = torch.tensor([len(r) for r in rows])
    cu = torch.zeros(len(rows) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lens, 0)
    return torch.cat(rows), cu, int(lens.max())


@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
def test_cuda_matches_cpu(tiny, dtype, tol):
    from embed_worker.esm2 import attention

    toks, cu, mx = _pack([s for _, s in SEQS] * 3)
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    gpu, _, _ = load_model(tiny["hf"], "cuda", dtype)
    a = ref(toks, cu, mx, ALL)
    b = gpu(toks.cuda(), cu.cuda(), mx, ALL)
    for layer in ALL:
        assert b[layer].dtype == dtype and torch.isfinite(b[layer]).all()
        nz = a[layer].norm(dim=-1) > 0
        assert rel_err_rows(b[layer].float().cpu()[nz], a[layer][nz]) <= tol, layer
    bc = b[LAYERS]
    ac = a[LAYERS]
    assert rel_err_rows(M.mean_residues(bc, cu.cuda()).cpu(), M.mean_residues(ac, cu)) <= tol
    assert rel_err_rows(M.residue_rows(bc, cu.cuda()).cpu(), M.residue_rows(ac, cu)) <= tol
    expect = "exact" if dtype == torch.float32 else attention.CUDA_BACKEND
    assert attention.backend_for("cuda", dtype) == expect


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_no_contamination(tiny, dtype):
    gpu, _, _ = load_model(tiny["fair-esm"], "cuda", dtype)
    seqs = [s for _, s in SEQS]
    toks, cu, mx = _pack(seqs)
    packed = gpu(toks.cuda(), cu.cuda(), mx, [LAYERS])[LAYERS].float()
    for i in range(len(seqs)):
        s, e = int(cu[i]), int(cu[i + 1])
        alone = gpu(toks[s:e].cuda(), torch.tensor([0, e - s], dtype=torch.int32, device="cuda"), e - s,
                    [LAYERS])[LAYERS].float()
        # half-precision kernels may tile differently for another batch; allow rounding-level noise
        assert rel_err_rows(packed[s:e], alone) <= 1e-2, seqs[i]


@needs_cuda
def test_cuda_fp32_vs_hf(tiny):
    from transformers import EsmModel

    toks, cu, mx = _pack([s for _, s in SEQS])
    ours, _, _ = load_model(tiny["hf"], "cuda", torch.float32)
    hf = EsmModel.from_pretrained(tiny["hf"], attn_implementation="eager", add_pooling_layer=False).cuda().eval()
    out = ours(toks.cuda(), cu.cuda(), mx, [LAYERS])[LAYERS]
    for i in range(len(SEQS)):
        s, e = int(cu[i]), int(cu[i + 1])
        with torch.no_grad():
            h = hf(input_ids=toks[s:e][None].cuda()).last_hidden_state[0]
        assert rel_err_rows(out[s:e], h) <= 1e-4


def test_pooling_selects_rows_by_arithmetic():
    """Pooling finds residue rows from cu_seqlens alone (no boolean mask): check it against a
    row-by-row loop, including a sequence with no residues (<cls><eos> only: zero mean) and one
    with a single residue; one Pooling serves several hidden states."""
    lens = [5, 2, 3, 9, 2]
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens), 0)
    T = int(cu[-1])
    pool = M.Pooling(cu, T, "cpu")
    for seed in (1, 2):
        h = torch.randn(T, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).half()
        want_res = torch.cat([h[int(cu[i]) + 1: int(cu[i + 1]) - 1] for i in range(len(lens))]).float()
        assert torch.equal(pool.residues(h), want_res)
        assert torch.equal(pool.bos(h), h[cu[:-1].long()].float())
        mean = pool.mean(h)
        for i, n in enumerate(lens):
            rows = h[int(cu[i]) + 1: int(cu[i + 1]) - 1].float()
            want = rows.mean(0) if n > 2 else torch.zeros(4)
            assert torch.allclose(mean[i], want, atol=1e-6)
