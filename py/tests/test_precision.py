"""Precision of the packed forward against references on identical weights (CPU):
fp32 packed vs an fp64 fair-esm reference, and bf16/fp16 packed vs the fp32 reference, each
with its own stated tolerance, per layer and for mean pooling."""
import copy

import torch

from conftest import rel_err_rows
from embed_worker.esm2 import model as M
from embed_worker.esm2.weights import load_model

FP32_VS_FP64 = 1e-6      # per-residue relative error, fp32 packed vs fp64 reference
BF16_COSINE = 0.999      # min per-residue cosine, bf16 packed vs fp32 reference
BF16_MEAN_COSINE = 0.9999  # min mean-pooled cosine
FP16_MEAN_COSINE = 0.99999


def reference(fair, batch, dtype):
    model, _ = fair
    ref = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        out = ref(batch["padded"], repr_layers=list(range(ref.num_layers + 1)))["representations"]
    return out


def packed(path, batch, dtype):
    ours, cfg, _ = load_model(path, torch.device("cpu"), dtype)
    layers = list(range(cfg.num_layers + 1))
    with torch.inference_mode():
        return ours(batch["tokens"], batch["cu"], batch["max"], layers), cfg


def unpack(h, batch, i):
    s = int(batch["cu"][i]); e = int(batch["cu"][i + 1])
    return h[s:e]


def test_fp32_packed_matches_fp64_reference(tiny, fair, batch):
    ref = reference(fair, batch, torch.float64)
    got, cfg = packed(tiny["fair-esm"], batch, torch.float32)
    for layer in range(cfg.num_layers + 1):
        for i, n in enumerate(batch["lens"].tolist()):
            err = rel_err_rows(unpack(got[layer], batch, i), ref[layer][i, :n])
            assert err <= FP32_VS_FP64, (layer, i, err)


def _cos_rows(a, b):
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def test_half_precision_packed_vs_fp32_reference(tiny, fair, batch):
    ref = reference(fair, batch, torch.float32)
    last = fair[0].num_layers
    for dtype, mean_tol in ((torch.bfloat16, BF16_MEAN_COSINE), (torch.float16, FP16_MEAN_COSINE)):
        got, _ = packed(tiny["fair-esm"], batch, dtype)
        h = got[last]
        assert torch.isfinite(h).all()
        means = M.mean_residues(h, batch["cu"])
        for i, n in enumerate(batch["lens"].tolist()):
            rows = unpack(h, batch, i).float()
            assert _cos_rows(rows, ref[last][i, :n]).min() >= BF16_COSINE, (dtype, i)
            ref_mean = ref[last][i, 1:n - 1].mean(0)
            assert _cos_rows(means[i:i + 1], ref_mean[None]).item() >= mean_tol, (dtype, i)


def test_bf16_error_is_really_larger_than_fp32(tiny, fair, batch):
    """The tolerances above are not vacuous: bf16 is measurably worse than fp32."""
    ref = reference(fair, batch, torch.float64)
    last = fair[0].num_layers
    f32, _ = packed(tiny["fair-esm"], batch, torch.float32)
    b16, _ = packed(tiny["fair-esm"], batch, torch.bfloat16)
    n = int(batch["lens"][3])
    e32 = rel_err_rows(unpack(f32[last], batch, 3), ref[last][3, :n])
    e16 = rel_err_rows(unpack(b16[last], batch, 3).float(), ref[last][3, :n])
    assert e16 > 100 * e32
