"""Hugging Face folders whose weights are pickled shards, pytorch_model-0000i-of-0000n.bin named by
pytorch_model.bin.index.json (transformers 4.x's save_pretrained(safe_serialization=False,
max_shard_size=...)), for ESM-2 (checkpoint.hf_headers / hf_tensors) and DNABERT-S
(dnabert_s/weights.py): the same state dict and outputs as one model.safetensors of the same
weights, and a one-line BadCheckpoint naming the index or the shard when the folder is damaged."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embed_worker import checkpoint
from embed_worker.dnabert_s import testmodel as dna_testmodel
from embed_worker.dnabert_s.config import DNABERTConfig
from embed_worker.dnabert_s.model import mean_all_tokens
from embed_worker.dnabert_s.weights import load_model as load_dnabert
from embed_worker.errors import BadCheckpoint
from embed_worker.esm2.weights import load_model as load_esm2
from embed_worker.tools import testmodel

LAYERS, DIM, HEADS = 2, 32, 4
INDEX = "pytorch_model.bin.index.json"
DNA = DNABERTConfig(hidden_size=48, num_layers=2, num_heads=12, intermediate_size=64, vocab_size=4096)


def _esm(tmp_path: Path, name: str, shards: int, weights: str, layout: str = "4") -> Path:
    return Path(testmodel.write(tmp_path, name, LAYERS, DIM, HEADS, seed=11, fmt="hf", hf_layout=layout,
                                hf_shards=shards, hf_weights=weights)["hf"])


def _esm_out(model, cfg):
    ids = torch.tensor([0, 20, 15, 11, 5, 19, 12, 5, 15, 16, 10, 2, 0, 8, 9, 2])
    cu = torch.tensor([0, 12, 16], dtype=torch.int32)
    with torch.inference_mode():
        out = model(ids, cu, 12, [cfg.num_layers])
    return out[cfg.num_layers] if isinstance(out, dict) else out


def _one_line(e: BadCheckpoint) -> str:
    assert "\n" not in e.message and e.hint
    return e.message


# --- the writer ---------------------------------------------------------------------------------


def test_testmodel_writes_bin_shards_named_as_transformers(tmp_path):
    r = subprocess.run([sys.executable, "-m", "embed_worker.tools.testmodel", "--out", str(tmp_path), "--name", "m",
                        "--format", "hf", "--layers", "1", "--dim", "16", "--heads", "2",
                        "--hf-shards", "3", "--hf-weights", "bin"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    d = tmp_path / "m"
    shards = [f"pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)]
    assert sorted(p.name for p in d.iterdir()) == sorted(["config.json", INDEX, *shards])
    index = json.loads((d / INDEX).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    # Each shard is a plain state dict holding exactly the tensors the index assigns to it.
    total = 0
    for s in shards:
        sd = torch.load(d / s, weights_only=True)
        assert set(sd) == {k for k, f in index["weight_map"].items() if f == s}
        total += sum(v.numel() * v.element_size() for v in sd.values())
    assert index["metadata"]["total_size"] == total


# --- ESM-2 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout,shards", [("4", 3), ("5", 2)])
def test_esm2_bin_shards_load_as_single_safetensors(tmp_path, layout, shards):
    ref, cfg, _ = load_esm2(str(_esm(tmp_path / "single", "m", 1, "safetensors", layout)), "cpu", torch.float32)
    d = _esm(tmp_path / "sharded", "m", shards, "bin", layout)
    assert not (d / "pytorch_model.bin").exists() and (d / INDEX).is_file()
    model, cfg2, r = load_esm2(str(d), "cpu", torch.float32)
    assert r.format == "hf" and cfg2 == cfg
    want, got = ref.state_dict(), model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    assert torch.equal(model.inv_freq, ref.inv_freq)
    assert torch.equal(_esm_out(model, cfg), _esm_out(ref, cfg))


def test_esm2_headers_come_from_the_shard_the_index_names(tmp_path):
    d = _esm(tmp_path, "m", 2, "bin")
    weight_map = json.loads((d / INDEX).read_text())["weight_map"]
    infos = checkpoint.hf_headers(d)
    assert set(infos) == set(weight_map)
    assert {k: Path(i.file).name for k, i in infos.items()} == weight_map
    k = "esm.encoder.layer.1.intermediate.dense.weight"
    assert infos[k].shape == (4 * DIM, DIM) and infos[k].floating


def test_esm2_missing_shard_names_index_and_file(tmp_path):
    d = _esm(tmp_path, "m", 3, "bin")
    (d / "pytorch_model-00002-of-00003.bin").unlink()
    with pytest.raises(BadCheckpoint) as e:
        load_esm2(str(d), "cpu", torch.float32)
    msg = _one_line(e.value)
    assert msg.startswith(str(d / INDEX) + ":") and "pytorch_model-00002-of-00003.bin" in msg and "missing" in msg
    assert "download" in e.value.hint and "pytorch_model-00002-of-00003.bin" in e.value.hint


def _drop_first_tensor(shard) -> str:
    """Rewrite a .bin shard without its first tensor (by name); that name."""
    sd = torch.load(shard, weights_only=True)
    gone = sorted(sd)[0]
    del sd[gone]
    torch.save(sd, shard)
    return gone


def test_esm2_shard_lacking_a_listed_tensor_is_named(tmp_path):
    d = _esm(tmp_path, "m", 2, "bin")
    shard = d / "pytorch_model-00001-of-00002.bin"
    gone = _drop_first_tensor(shard)
    with pytest.raises(BadCheckpoint) as e:
        load_esm2(str(d), "cpu", torch.float32)
    msg = _one_line(e.value)
    assert msg.startswith(f"{shard}: tensor {gone}, listed for this shard in {INDEX}, is not in it"), msg
    assert "download" in e.value.hint


def test_esm2_shard_holding_an_unlisted_tensor_is_named(tmp_path):
    d = _esm(tmp_path, "m", 2, "bin")
    shard = d / "pytorch_model-00002-of-00002.bin"
    sd = torch.load(shard, weights_only=True)
    sd["esm.encoder.layer.0.extra"] = torch.zeros(3)
    torch.save(sd, shard)
    with pytest.raises(BadCheckpoint, match=r"pytorch_model-00002-of-00002\.bin: tensor esm\.encoder\.layer\.0\.extra "
                                            r"is in this shard but pytorch_model\.bin\.index\.json does not list it"):
        load_esm2(str(d), "cpu", torch.float32)


@pytest.mark.parametrize("content", ["list", "pickle"])
def test_esm2_shard_that_is_not_a_state_dict_is_named(tmp_path, content):
    d = _esm(tmp_path, "m", 2, "bin")
    shard = d / "pytorch_model-00001-of-00002.bin"
    if content == "list":
        torch.save([torch.zeros(2)], shard)
        want = f"{shard}: expected a state dict, found a list"
    else:  # an object only a full unpickler would build: refused, never run
        torch.save({"x": Path("/")}, shard)
        want = f"{shard}: refusing to unpickle"
    with pytest.raises(BadCheckpoint) as e:
        load_esm2(str(d), "cpu", torch.float32)
    assert _one_line(e.value).startswith(want), e.value.message


def test_esm2_index_naming_a_path_outside_the_folder_is_refused(tmp_path):
    d = _esm(tmp_path, "m", 2, "bin")
    index = json.loads((d / INDEX).read_text())
    k = next(iter(index["weight_map"]))
    index["weight_map"][k] = "../elsewhere.bin"
    (d / INDEX).write_text(json.dumps(index))
    with pytest.raises(BadCheckpoint, match=r"pytorch_model\.bin\.index\.json: shard '\.\./elsewhere\.bin' is not a file name"):
        load_esm2(str(d), "cpu", torch.float32)


def test_esm2_safetensors_wins_over_bin_shards(tmp_path):
    """transformers' order: a folder holding both reads model.safetensors; the shards are not opened."""
    d = _esm(tmp_path, "m", 1, "safetensors")
    (d / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": {"x": "pytorch_model-00001-of-00001.bin"}}))
    assert Path(next(iter(checkpoint.hf_headers(d).values())).file).name == "model.safetensors"


# --- DNABERT-S ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dna_weights():
    return dna_testmodel.make_weights(DNA, seed=3)


@pytest.mark.parametrize("layout", ["dnabert-s", "dnabert-2"])
def test_dnabert_bin_shards_load_as_single_safetensors(tmp_path, dna_weights, layout):
    single = dna_testmodel.write_folder(tmp_path / "single", DNA, layout, "safetensors", weights=dna_weights)
    sharded = dna_testmodel.write_folder(tmp_path / "sharded", DNA, layout, "bin", shards=3, weights=dna_weights)
    assert (sharded / INDEX).is_file() and (sharded / "pytorch_model-00003-of-00003.bin").is_file()
    assert not (sharded / "pytorch_model.bin").exists()
    ref, _ = load_dnabert(single)
    model, _ = load_dnabert(sharded)
    want, got = ref.state_dict(), model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    tokens = torch.tensor([1, 5, 9, 300, 2, 1, 77, 4000, 12, 2])
    cu = torch.tensor([0, 5, 10], dtype=torch.int32)
    with torch.inference_mode():
        a = mean_all_tokens(ref(tokens, cu, 5)[-1], cu)
        b = mean_all_tokens(model(tokens, cu, 5)[-1], cu)
    assert torch.equal(a, b)


def test_dnabert_missing_shard_names_index_and_file(tmp_path, dna_weights):
    d = dna_testmodel.write_folder(tmp_path / "m", DNA, "dnabert-s", "bin", shards=2, weights=dna_weights)
    (d / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(BadCheckpoint) as e:
        load_dnabert(d)
    msg = _one_line(e.value)
    assert msg.startswith(f"{d / INDEX}: names shard pytorch_model-00002-of-00002.bin, which is missing"), msg
    assert "download" in e.value.hint and "pytorch_model-00002-of-00002.bin" in e.value.hint


def test_dnabert_shard_lacking_a_listed_tensor_is_named(tmp_path, dna_weights):
    d = dna_testmodel.write_folder(tmp_path / "m", DNA, "dnabert-s", "bin", shards=2, weights=dna_weights)
    shard = d / "pytorch_model-00001-of-00002.bin"
    gone = _drop_first_tensor(shard)
    with pytest.raises(BadCheckpoint) as e:
        load_dnabert(d)
    assert _one_line(e.value).startswith(f"{shard}: tensor {gone}, listed for this shard in {INDEX}, is not in it"), e.value.message


def test_dnabert_shard_that_is_not_a_state_dict_is_named(tmp_path, dna_weights):
    d = dna_testmodel.write_folder(tmp_path / "m", DNA, "dnabert-s", "bin", shards=2, weights=dna_weights)
    shard = d / "pytorch_model-00002-of-00002.bin"
    torch.save(torch.zeros(3), shard)
    with pytest.raises(BadCheckpoint) as e:
        load_dnabert(d)
    assert _one_line(e.value).startswith(f"{shard}: expected a state dict"), e.value.message


def test_esm2_bin_shards_are_what_transformers_reads(tmp_path):
    """The writer's shards and index load in the installed transformers with no key left over, to
    the same tensors as its one model.safetensors."""
    transformers = pytest.importorskip("transformers")
    sharded = _esm(tmp_path / "sharded", "m", 3, "bin")
    single = _esm(tmp_path / "single", "m", 1, "safetensors")
    hf, info = transformers.EsmForMaskedLM.from_pretrained(str(sharded), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ref = transformers.EsmForMaskedLM.from_pretrained(str(single))
    want = ref.state_dict()
    for k, v in hf.state_dict().items():
        assert torch.equal(v, want[k]), k
