"""DNABERT-S / DNABERT-2 folders: config parsing, strict loading in both key layouts and file
formats (single and sharded), and one-line errors naming the file and key for damaged folders."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from embed_worker.dnabert_s import testmodel
from embed_worker.dnabert_s.config import DNABERT_S, DNABERTConfig, read_config
from embed_worker.dnabert_s.model import mean_all_tokens
from embed_worker.dnabert_s.weights import load_checkpoint, load_model
from embed_worker.errors import BadCheckpoint

# The real config.json and tokenizer.json of zhihan1996/DNABERT-S (no weights).
REAL = Path(os.environ.get("DNABERT_S_DATA", "/work/shared/data/dnabert-s"))
needs_real = pytest.mark.skipif(not (REAL / "config.json").is_file(),
                                reason=f"real DNABERT-S config/tokenizer not found in {REAL} (set DNABERT_S_DATA)")
# The same tokenizer.json as a repository fixture, where present.
TOKENIZER = next((p for p in (Path(__file__).resolve().parents[2] / "test/fixtures/dnabert-s/tokenizer.json",
                              REAL / "tokenizer.json") if p.is_file()), None)
needs_tokenizer = pytest.mark.skipif(TOKENIZER is None, reason="no DNABERT-S tokenizer.json (set DNABERT_S_DATA)")

CFG = DNABERTConfig(hidden_size=48, num_layers=2, num_heads=12, intermediate_size=64, vocab_size=4096)


@pytest.fixture(scope="module")
def weights():
    return testmodel.make_weights(CFG, seed=7)


def folder(tmp_path, weights, layout="dnabert-s", fmt="safetensors", shards=1, edit=None, name="m"):
    """A test folder; `edit` changes the checkpoint-layout tensors before they are written."""
    out = tmp_path / name
    out.mkdir()
    (out / "config.json").write_text(json.dumps(testmodel.config_json(CFG, layout)))
    tensors = testmodel.to_layout(weights, layout)
    if edit:
        edit(tensors)
    testmodel.write_weights(out, tensors, fmt, shards)
    return out


def one_line(e: BadCheckpoint) -> str:
    assert "\n" not in e.message and e.hint
    return e.message


# --------------------------------------------------------------------------------------------
# config


@needs_real
def test_real_config_reads_as_the_released_sizes():
    cfg = read_config(REAL)
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, cfg.vocab_size) == tuple(
        DNABERT_S[k] for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size"))
    assert cfg.layer_norm_eps == 1e-12 and cfg.type_vocab_size == 2 and cfg.head_dim == 64
    assert cfg == DNABERTConfig(name=cfg.name)


@needs_real
def test_builder_config_has_the_real_fields(tmp_path):
    real = json.loads((REAL / "config.json").read_text())
    ours = testmodel.config_json(DNABERTConfig())
    assert ours == real
    out = testmodel.write_folder(tmp_path / "m", CFG, tokenizer=TOKENIZER)
    assert (out / "tokenizer.json").read_bytes() == TOKENIZER.read_bytes()
    assert len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]) == CFG.vocab_size


@pytest.mark.parametrize("change, match", [
    ({"num_attention_heads": 7}, "hidden_size 48 is not a multiple of num_attention_heads 7"),
    ({"num_hidden_layers": 0}, "num_hidden_layers 0 must be positive"),
    ({"hidden_size": "768"}, "hidden_size is '768', expected an integer"),
    ({"intermediate_size": None}, "missing intermediate_size"),
    ({"layer_norm_eps": 0.5}, "layer_norm_eps 0.5 is outside"),
    ({"model_type": "esm"}, "model_type is 'esm', not 'bert'"),
    ({"auto_map": {"AutoModel": "modeling_x.XModel"}}, "not the MosaicBERT bert_layers.BertModel"),
])
def test_bad_config_is_named(tmp_path, change, match):
    c = testmodel.config_json(CFG)
    c.update(change)
    c = {k: v for k, v in c.items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps(c))
    with pytest.raises(BadCheckpoint, match=match) as e:
        read_config(tmp_path)
    assert str(tmp_path / "config.json") in one_line(e.value)


def test_missing_and_broken_config(tmp_path):
    with pytest.raises(BadCheckpoint, match="config.json: not found"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(BadCheckpoint, match="unreadable config.json"):
        read_config(tmp_path)


@needs_tokenizer
def test_real_tokenizer_frames_with_the_ids_the_model_assumes(tmp_path, weights):
    """[CLS]=1 ... [SEP]=2 from the released tokenizer, ids inside the 4,096-entry vocabulary, and
    a packed batch of its output through a test folder gives one vector per sequence."""
    from tokenizers import Tokenizer

    from embed_worker.dnabert_s.config import CLS_ID, SEP_ID
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_padding()  # the file stores padding/truncation to 2,000 left over from training
    tok.no_truncation()
    seqs = [tok.encode(s).ids for s in ("ACGTAGCATCGGATCTATCTATCGACACTTGG", "A", "GGGGCCCCAAAATTTT" * 20)]
    assert all(s[0] == CLS_ID and s[-1] == SEP_ID and max(s) < CFG.vocab_size for s in seqs)
    model, _ = load_model(testmodel.write_folder(tmp_path / "m", CFG, tokenizer=TOKENIZER, seed=1))
    tokens = torch.tensor([t for s in seqs for t in s])
    cu = torch.tensor([0, len(seqs[0]), len(seqs[0]) + len(seqs[1]), len(tokens)], dtype=torch.int32)
    out = mean_all_tokens(model(tokens, cu, max(map(len, seqs)))[-1], cu)
    assert out.shape == (3, CFG.hidden_size) and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("layout", ["dnabert-s", "dnabert-2"])
@pytest.mark.parametrize("fmt, shards", [("safetensors", 1), ("bin", 1), ("safetensors", 3), ("bin", 2)])
def test_round_trip(tmp_path, weights, layout, fmt, shards):
    out = folder(tmp_path, weights, layout, fmt, shards)
    if shards > 1:
        index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
        assert (out / index).is_file()
    model, cfg = load_model(out)
    assert cfg == DNABERTConfig(**{**CFG.__dict__, "name": "m"})
    sd = model.state_dict()
    assert torch.equal(sd["word_embeddings.weight"], weights["embeddings.word_embeddings.weight"])
    assert torch.equal(sd["token_type_embeddings.weight"], weights["embeddings.token_type_embeddings.weight"])
    assert torch.equal(sd["emb_norm.bias"], weights["embeddings.LayerNorm.bias"])
    assert torch.equal(sd["layers.1.Wqkv.weight"], weights["encoder.layer.1.attention.self.Wqkv.weight"])
    assert torch.equal(sd["layers.1.attn_out.bias"], weights["encoder.layer.1.attention.output.dense.bias"])
    assert torch.equal(sd["layers.1.attn_norm.weight"], weights["encoder.layer.1.attention.output.LayerNorm.weight"])
    assert torch.equal(sd["layers.0.gated.weight"], weights["encoder.layer.0.mlp.gated_layers.weight"])
    assert torch.equal(sd["layers.0.wo.weight"], weights["encoder.layer.0.mlp.wo.weight"])
    assert torch.equal(sd["layers.0.mlp_norm.bias"], weights["encoder.layer.0.mlp.layernorm.bias"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_both_layouts_give_the_same_embeddings(tmp_path, weights):
    a, _ = load_model(folder(tmp_path, weights, "dnabert-s", "safetensors", name="s"))
    b, _ = load_model(folder(tmp_path, weights, "dnabert-2", "bin", name="b"))
    tokens = torch.tensor([1, 5, 900, 4000, 2, 1, 77, 2])
    cu = torch.tensor([0, 5, 8], dtype=torch.int32)
    ea, eb = mean_all_tokens(a(tokens, cu, 5)[-1], cu), mean_all_tokens(b(tokens, cu, 5)[-1], cu)
    assert ea.shape == (2, CFG.hidden_size) and torch.equal(ea, eb)


def test_safetensors_preferred_when_both_formats_exist(tmp_path, weights):
    out = folder(tmp_path, weights, fmt="both")
    (out / "pytorch_model.bin").write_bytes(b"not a checkpoint")  # would fail if it were read
    load_model(out)


def test_load_model_casts_to_the_requested_dtype(tmp_path, weights):
    model, _ = load_model(folder(tmp_path, weights), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_folder_code_is_never_imported(tmp_path, weights):
    out = folder(tmp_path, weights)
    marker = tmp_path / "imported"
    (out / "bert_layers.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    (out / "configuration_bert.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    load_model(out)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# damaged folders


def test_missing_key_names_file_and_key(tmp_path, weights):
    out = folder(tmp_path, weights, edit=lambda t: t.pop("encoder.layer.1.mlp.wo.bias"))
    with pytest.raises(BadCheckpoint) as e:
        load_model(out)
    msg = one_line(e.value)
    assert str(out / "model.safetensors") in msg and "missing keys: encoder.layer.1.mlp.wo.bias" in msg


def test_missing_key_in_masked_lm_layout(tmp_path, weights):
    out = folder(tmp_path, weights, "dnabert-2", "bin",
                 edit=lambda t: t.pop("bert.encoder.layer.0.attention.output.LayerNorm.weight"))
    with pytest.raises(BadCheckpoint, match="missing keys: encoder.layer.0.attention.output.LayerNorm.weight") as e:
        load_model(out)
    assert str(out / "pytorch_model.bin") in one_line(e.value)


def test_wrong_shape_names_key_and_shapes(tmp_path, weights):
    def edit(t):
        t["encoder.layer.0.mlp.gated_layers.weight"] = t["encoder.layer.0.mlp.gated_layers.weight"][:64]
    out = folder(tmp_path, weights, edit=edit)
    with pytest.raises(BadCheckpoint, match=r"encoder.layer.0.mlp.gated_layers.weight has shape \[64, 48\], "
                                            r"expected \[128, 48\]") as e:
        load_model(out)
    assert str(out / "model.safetensors") in one_line(e.value)


def test_extra_key_is_refused(tmp_path, weights):
    out = folder(tmp_path, weights, edit=lambda t: t.__setitem__("encoder.layer.0.mlp.extra.weight", torch.zeros(2)))
    with pytest.raises(BadCheckpoint, match="unexpected keys: encoder.layer.0.mlp.extra.weight"):
        load_model(out)


def test_more_layers_than_config_says(tmp_path, weights):
    def edit(t):
        for k in [k for k in t if k.startswith("encoder.layer.1.")]:
            t[k.replace("layer.1.", "layer.2.")] = t[k].clone()
    with pytest.raises(BadCheckpoint, match=r"2 layers.*unexpected keys: encoder\.layer\.2\."):
        load_model(folder(tmp_path, weights, edit=edit))


def test_cls_head_is_only_ignored_in_the_masked_lm_layout(tmp_path, weights):
    def edit(t):
        t["cls.predictions.decoder.bias"] = torch.zeros(CFG.vocab_size)
    with pytest.raises(BadCheckpoint, match="unexpected keys: cls.predictions.decoder.bias"):
        load_model(folder(tmp_path, weights, edit=edit))


def test_mixed_prefixes_are_refused(tmp_path, weights):
    def edit(t):
        t["encoder.layer.0.mlp.wo.bias"] = t.pop("bert.encoder.layer.0.mlp.wo.bias")
    with pytest.raises(BadCheckpoint, match=r"both with and without the 'bert\.' prefix \(e\.g\. encoder\.layer\.0\.mlp\.wo\.bias\)"):
        load_model(folder(tmp_path, weights, "dnabert-2", edit=edit))


def test_standard_bert_is_recognised(tmp_path, weights):
    def edit(t):
        t["embeddings.position_embeddings.weight"] = torch.zeros(512, CFG.hidden_size)
    with pytest.raises(BadCheckpoint, match="belongs to a standard BERT"):
        load_model(folder(tmp_path, weights, edit=edit))


def test_no_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(testmodel.config_json(CFG)))
    with pytest.raises(BadCheckpoint, match="no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json"):
        load_model(tmp_path)
    with pytest.raises(BadCheckpoint, match="not a folder"):
        load_model(tmp_path / "absent")


def test_truncated_safetensors(tmp_path, weights):
    out = folder(tmp_path, weights)
    p = out / "model.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(BadCheckpoint, match=r"model.safetensors: truncated or not a safetensors file \(1000 bytes; its header claims"):
        load_model(out)


def test_pickled_objects_are_refused(tmp_path, weights):
    out = folder(tmp_path, weights, fmt="bin")
    torch.save({"x": Path("/")}, out / "pytorch_model.bin")  # needs a non-weights-only unpickler
    with pytest.raises(BadCheckpoint, match="refusing to unpickle"):
        load_model(out)


def test_non_tensor_entries_are_refused(tmp_path, weights):
    out = folder(tmp_path, weights, fmt="bin")
    torch.save({"embeddings.word_embeddings.weight": [1, 2]}, out / "pytorch_model.bin")
    with pytest.raises(BadCheckpoint, match="entry 'embeddings.word_embeddings.weight' is a list, not a tensor"):
        load_model(out)


def test_shard_missing_a_listed_key(tmp_path, weights):
    out = folder(tmp_path, weights, shards=2)
    index = out / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["encoder.layer.9.mlp.wo.bias"] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(BadCheckpoint, match="model-00002-of-00002.safetensors: tensor encoder.layer.9.mlp.wo.bias, "
                                            "listed for this shard in model.safetensors.index.json, is not in it"):
        load_model(out)


def test_shard_file_absent(tmp_path, weights):
    out = folder(tmp_path, weights, fmt="bin", shards=2)
    (out / "pytorch_model-00001-of-00002.bin").unlink()
    with pytest.raises(BadCheckpoint, match="pytorch_model.bin.index.json: names shard pytorch_model-00001-of-00002.bin, which is missing"):
        load_checkpoint(out)
