"""Strict loading of both checkpoint formats."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import DIM, HEADS, LAYERS, NAME
from embed_worker.tools import testmodel
from embed_worker.errors import BadCheckpoint
from embed_worker.esm2.weights import load_model, torch_load


class Evil:  # any class not on the allowlist; unpickling it must be refused
    def __reduce__(self):
        return (print, ("pwned",))


def _sd(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_round_trip_both_formats_equal(tiny):
    a, cfg_a, ra = load_model(tiny["fair-esm"], "cpu", torch.float32)
    b, cfg_b, rb = load_model(tiny["hf"], "cpu", torch.float32)
    assert (ra.format, rb.format) == ("fair-esm", "hf")
    assert cfg_a == cfg_b
    assert (cfg_a.num_layers, cfg_a.embed_dim, cfg_a.attention_heads, cfg_a.ffn_dim) == (LAYERS, DIM, HEADS, 4 * DIM)
    sa, sb = _sd(a), _sd(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert torch.equal(a.inv_freq, b.inv_freq)
    assert not any(p.requires_grad for p in a.parameters())
    assert not a.training


def test_fair_esm_cfg_is_namespace_and_weights_only_works(tiny):
    data = torch_load(tiny["fair-esm"])
    assert isinstance(data["cfg"]["model"], argparse.Namespace)
    assert data["args"] is None
    assert any(k.startswith("encoder.sentence_encoder.layers.0.") for k in data["model"])
    assert any(k.startswith("encoder.lm_head.") for k in data["model"])
    assert any(k.startswith("encoder.contact_head.") for k in data["model"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_cast(tiny, dtype):
    m, _, _ = load_model(tiny["fair-esm"], "cpu", dtype)
    assert all(p.dtype == dtype for p in m.parameters())
    assert m.inv_freq.dtype == torch.float32


def _fair_copy(tiny, tmp_path, mutate):
    data = torch.load(tiny["fair-esm"], map_location="cpu", weights_only=False)
    mutate(data)
    p = tmp_path / "bad.pt"
    torch.save(data, p)
    return p


def test_missing_key(tiny, tmp_path):
    key = "encoder.sentence_encoder.layers.1.fc1.weight"
    p = _fair_copy(tiny, tmp_path, lambda d: d["model"].pop(key))
    with pytest.raises(BadCheckpoint) as e:
        load_model(str(p), "cpu", torch.float32)
    assert "layers.1.fc1.weight" in e.value.message and "missing" in e.value.message


def test_misshaped_key(tiny, tmp_path):
    key = "encoder.sentence_encoder.layers.2.self_attn.k_proj.weight"
    p = _fair_copy(tiny, tmp_path, lambda d: d["model"].__setitem__(key, torch.zeros(DIM, DIM + 1)))
    with pytest.raises(BadCheckpoint) as e:
        load_model(str(p), "cpu", torch.float32)
    assert "layers.2.self_attn.k_proj.weight" in e.value.message and "shape" in e.value.message


def test_unexpected_key(tiny, tmp_path):
    p = _fair_copy(tiny, tmp_path, lambda d: d["model"].__setitem__("encoder.sentence_encoder.surprise.weight",
                                                                     torch.zeros(3)))
    with pytest.raises(BadCheckpoint) as e:
        load_model(str(p), "cpu", torch.float32)
    assert "surprise.weight" in e.value.message and "unexpected" in e.value.message


def test_cfg_disagrees_with_tensors(tiny, tmp_path):
    p = _fair_copy(tiny, tmp_path, lambda d: setattr(d["cfg"]["model"], "encoder_layers", LAYERS + 1))
    with pytest.raises(BadCheckpoint):
        load_model(str(p), "cpu", torch.float32)


def test_arbitrary_pickle_is_refused(tiny, tmp_path, capsys):
    p = _fair_copy(tiny, tmp_path, lambda d: d.__setitem__("extra_state", {"x": Evil()}))
    with pytest.raises(BadCheckpoint) as e:
        load_model(str(p), "cpu", torch.float32)
    assert "unpickle" in e.value.message
    assert "pwned" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BadCheckpoint):
        load_model(str(p), "cpu", torch.float32)


def _hf_copy(tiny, tmp_path, mutate_sd=None, mutate_cfg=None, name="m"):
    d = tmp_path / name
    shutil.copytree(tiny["hf"], d)
    if mutate_sd:
        sd = load_file(str(d / "model.safetensors"))
        mutate_sd(sd)
        save_file(sd, str(d / "model.safetensors"))
    if mutate_cfg:
        c = json.loads((d / "config.json").read_text())
        mutate_cfg(c)
        (d / "config.json").write_text(json.dumps(c))
    return d


def test_hf_strictness(tiny, tmp_path):
    d = _hf_copy(tiny, tmp_path, lambda sd: sd.pop("esm.encoder.layer.0.attention.self.key.bias"), name="a")
    with pytest.raises(BadCheckpoint, match="encoder.layer.0.attention.self.key.bias"):
        load_model(str(d), "cpu", torch.float32)
    d = _hf_copy(tiny, tmp_path, lambda sd: sd.__setitem__("esm.encoder.extra", torch.zeros(1)), name="b")
    with pytest.raises(BadCheckpoint, match="encoder.extra"):
        load_model(str(d), "cpu", torch.float32)


@pytest.mark.parametrize("change", [{"position_embedding_type": "absolute"}, {"emb_layer_norm_before": True}])
def test_hf_rejects_non_esm2_config(tiny, tmp_path, change):
    d = _hf_copy(tiny, tmp_path, mutate_cfg=lambda c: c.update(change))
    with pytest.raises(BadCheckpoint, match=next(iter(change))):
        load_model(str(d), "cpu", torch.float32)


def test_hf_without_prefix_and_pytorch_bin_and_shards(tiny, tmp_path):
    ref, _, _ = load_model(tiny["hf"], "cpu", torch.float32)
    sd = load_file(str(tiny["hf"] + "/model.safetensors"))
    # EsmModel-style keys (no "esm." prefix, no LM head), saved as pytorch_model.bin
    d = tmp_path / "bin"
    d.mkdir()
    shutil.copy(tiny["hf"] + "/config.json", d / "config.json")
    plain = {k[4:]: v for k, v in sd.items() if k.startswith("esm.")}
    plain["pooler.dense.weight"] = torch.zeros(DIM, DIM)
    plain["embeddings.position_ids"] = torch.arange(1026)[None]
    torch.save(plain, d / "pytorch_model.bin")
    m, _, r = load_model(str(d), "cpu", torch.float32)
    assert r.format == "hf"
    for k, v in _sd(ref).items():
        assert torch.equal(v, m.state_dict()[k]), k
    # sharded safetensors
    d2 = tmp_path / "sharded"
    d2.mkdir()
    shutil.copy(tiny["hf"] + "/config.json", d2 / "config.json")
    keys = sorted(sd)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    wm = {}
    for fn, ks in halves.items():
        save_file({k: sd[k] for k in ks}, str(d2 / fn))
        wm.update({k: fn for k in ks})
    (d2 / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    m2, _, _ = load_model(str(d2), "cpu", torch.float32)
    for k, v in _sd(ref).items():
        assert torch.equal(v, m2.state_dict()[k]), k


def test_testmodel_is_idempotent_and_atomic(tmp_path):
    paths = testmodel.write(tmp_path, "t", 1, 32, 2, seed=3)
    st = (tmp_path / "t.pt").stat().st_mtime_ns
    again = testmodel.write(tmp_path, "t", 1, 32, 2, seed=3)
    assert again == paths and (tmp_path / "t.pt").stat().st_mtime_ns == st
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t", "t.pt"]  # no temp leftovers
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["config.json", "model.safetensors"]
    a, _, _ = load_model(str(tmp_path / "t.pt"), "cpu", torch.float32)
    b, _, _ = load_model(str(tmp_path / "t"), "cpu", torch.float32)
    for k, v in _sd(a).items():
        assert torch.equal(v, b.state_dict()[k]), k
