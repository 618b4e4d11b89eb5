"""Hugging Face folders as users have them: saved by transformers 5.x (LayerNorm gamma/beta, one
wildcard rotary buffer) or 4.x (weight/bias, a buffer per layer), as one model.safetensors,
shards with an index, or pytorch_model.bin; EsmModel or EsmForMaskedLM. Each loads to the same
tensors as the fair-esm .pt of the same weights, and the loader stays strict."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from embed_worker.errors import BadCheckpoint
from embed_worker.esm2.weights import load_model
from embed_worker.tools import testmodel

LAYERS, DIM, HEADS = 2, 32, 4


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    paths = testmodel.write(out, "ref", LAYERS, DIM, HEADS, seed=5, fmt="fair-esm")
    model, _, _ = load_model(paths["fair-esm"], "cpu", torch.float32)
    return {k: v.clone() for k, v in model.state_dict().items()}, model.inv_freq.clone()


def _same(model, ref):
    state, inv = ref
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k
    assert torch.equal(model.inv_freq, inv)


@pytest.mark.parametrize("layout,shards,weights", [("4", 1, "safetensors"), ("4", 3, "safetensors"), ("4", 1, "bin"),
                                                    ("5", 1, "safetensors"), ("5", 4, "safetensors"), ("5", 1, "bin")])
def test_every_layout_loads_the_same_tensors(ref, tmp_path, layout, shards, weights):
    paths = testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, seed=5, fmt="hf", hf_layout=layout,
                            hf_shards=shards, hf_weights=weights)
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    if weights == "bin":
        assert files == ["config.json", "pytorch_model.bin"]
    elif shards > 1:
        assert len([f for f in files if f.startswith("model-")]) == shards and "model.safetensors.index.json" in files
    model, _, r = load_model(paths["hf"], "cpu", torch.float32)
    assert r.format == "hf"
    _same(model, ref)


def test_layout_5_names(tmp_path):
    testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, fmt="hf", hf_layout="5")
    keys = set(load_file(str(tmp_path / "m" / "model.safetensors")))
    assert "esm.encoder.layer.0.attention.LayerNorm.gamma" in keys and "esm.encoder.layer.1.LayerNorm.beta" in keys
    assert not any(k.endswith("LayerNorm.weight") for k in keys)
    assert [k for k in keys if "rotary" in k] == ["esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq"]


def _resave(folder, edit):
    sd = load_file(str(folder / "model.safetensors"))
    edit(sd)
    save_file(sd, str(folder / "model.safetensors"))


def test_layout_5_stays_strict(tmp_path):
    testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, fmt="hf", hf_layout="5")
    d = tmp_path / "m"
    _resave(d, lambda sd: sd.pop("esm.encoder.layer.1.attention.LayerNorm.gamma"))
    with pytest.raises(BadCheckpoint, match=r"missing keys: encoder\.layer\.1\.attention\.LayerNorm\.weight"):
        load_model(str(d), "cpu", torch.float32)
    testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, fmt="hf", hf_layout="5", force=True)
    _resave(d, lambda sd: sd.__setitem__("esm.encoder.layer.0.LayerNorm.weight", sd["esm.encoder.layer.0.LayerNorm.gamma"].clone()))
    with pytest.raises(BadCheckpoint, match=r"esm\.encoder\.layer\.0\.LayerNorm\.\w+ and esm\.encoder\.layer\.0\.LayerNorm\.\w+ are both"):
        load_model(str(d), "cpu", torch.float32)
    testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, fmt="hf", hf_layout="5", force=True)
    _resave(d, lambda sd: sd.__setitem__("esm.encoder.layer.0.LayerNorm.delta", torch.zeros(DIM)))
    with pytest.raises(BadCheckpoint, match=r"unexpected keys: esm\.encoder\.layer\.0\.LayerNorm\.delta"):
        load_model(str(d), "cpu", torch.float32)
    testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, fmt="hf", hf_layout="5", force=True)
    _resave(d, lambda sd: sd.__setitem__("esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq", torch.zeros(3)))
    with pytest.raises(BadCheckpoint, match=r"layer\.\*\.attention\.self\.rotary_embeddings\.inv_freq has shape \[3\]"):
        load_model(str(d), "cpu", torch.float32)


# --- folders written by transformers itself -------------------------------------------------------

transformers = pytest.importorskip("transformers")


def _hf_cfg():
    return transformers.EsmConfig(vocab_size=33, hidden_size=DIM, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                  intermediate_size=4 * DIM, position_embedding_type="rotary", pad_token_id=1,
                                  mask_token_id=32, token_dropout=True, emb_layer_norm_before=False, layer_norm_eps=1e-5)


@pytest.mark.parametrize("cls,shard", [("EsmForMaskedLM", None), ("EsmForMaskedLM", "20KB"), ("EsmModel", None)])
def test_a_folder_saved_by_the_installed_transformers_loads(tmp_path, cls, shard):
    torch.manual_seed(0)
    hf = getattr(transformers, cls)(_hf_cfg()).eval()
    hf.save_pretrained(tmp_path / "saved", **({"max_shard_size": shard} if shard else {}))
    if shard:
        assert (tmp_path / "saved" / "model.safetensors.index.json").is_file()
    model, cfg, _ = load_model(str(tmp_path / "saved"), "cpu", torch.float32)
    esm = hf.esm if cls == "EsmForMaskedLM" else hf
    got = model.state_dict()
    assert torch.equal(got["embed_tokens.weight"], esm.embeddings.word_embeddings.weight)
    for i, layer in enumerate(esm.encoder.layer):
        a = layer.attention
        qkv = torch.cat([a.self.query.weight, a.self.key.weight, a.self.value.weight])
        assert torch.equal(got[f"layers.{i}.qkv.weight"], qkv)
        assert torch.equal(got[f"layers.{i}.attn_norm.weight"], a.LayerNorm.weight)
        assert torch.equal(got[f"layers.{i}.attn_norm.bias"], a.LayerNorm.bias)
        assert torch.equal(got[f"layers.{i}.ffn_norm.weight"], layer.LayerNorm.weight)
        assert torch.equal(got[f"layers.{i}.fc2.weight"], layer.output.dense.weight)
    assert torch.equal(got["emb_layer_norm_after.weight"], esm.encoder.emb_layer_norm_after.weight)
    # Same hidden states as transformers on one sequence (fp32 on CPU: rounding only).
    ids = torch.tensor([[0, 20, 15, 11, 5, 19, 12, 5, 15, 16, 10, 2]])
    with torch.inference_mode():
        want = esm(input_ids=ids).last_hidden_state[0]
        out = model(ids[0], torch.tensor([0, ids.shape[1]], dtype=torch.int32), ids.shape[1], [cfg.num_layers])
    got_h = out[cfg.num_layers] if isinstance(out, dict) else out
    torch.testing.assert_close(got_h.reshape(want.shape), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", testmodel.HF_LAYOUTS)
def test_testmodel_folders_load_in_transformers_with_no_key_left_over(tmp_path, layout):
    """The test folders are what transformers reads: none of their tensors unused or missing."""
    testmodel.write(tmp_path, "m", LAYERS, DIM, HEADS, seed=5, fmt="hf", hf_layout=layout)
    hf, info = transformers.EsmForMaskedLM.from_pretrained(str(tmp_path / "m"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    sd = load_file(str(tmp_path / "m" / "model.safetensors"))
    ln = "gamma" if layout == "5" else "weight"
    assert torch.equal(hf.esm.encoder.layer[1].attention.LayerNorm.weight,
                       sd[f"esm.encoder.layer.1.attention.LayerNorm.{ln}"])
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "esm"
