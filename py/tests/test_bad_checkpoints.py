"""Every malformed checkpoint or config is refused with one line naming the file and what is wrong,
and absurd shapes are refused before anything is allocated (weights.py)."""
from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import DIM, LAYERS
from embed_worker.esm2 import model as M
from embed_worker.errors import BadCheckpoint
from embed_worker.esm2.registry import ESM2Config
from embed_worker.esm2.weights import expected_shapes, load_model


def _refused(path, *needles) -> str:
    with pytest.raises(BadCheckpoint) as e:
        load_model(str(path), "cpu", torch.float32)
    msg = e.value.message
    assert "\n" not in msg and str(path) in msg and e.value.hint, msg
    for n in needles:
        assert n in msg, msg
    return msg


def _hf(tiny, tmp_path, cfg=None, sd=None, raw=None):
    d = tmp_path / "m"
    shutil.copytree(tiny["hf"], d)
    if cfg or raw is not None:
        c = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(raw if raw is not None else json.dumps(cfg(c)))
    if sd:
        t = load_file(str(d / "model.safetensors"))
        sd(t)
        save_file(t, str(d / "model.safetensors"))
    return d


def _pt(tiny, tmp_path, mutate):
    data = torch.load(tiny["fair-esm"], map_location="cpu", weights_only=False)
    data = mutate(data) or data
    p = tmp_path / "bad.pt"
    torch.save(data, p)
    return p


@pytest.mark.parametrize("change, needles", [
    (lambda c: {**c, "num_hidden_layers": "two"}, ["num_hidden_layers", "'two'", "integer"]),
    (lambda c: {**c, "hidden_size": 64.5}, ["hidden_size", "64.5"]),
    (lambda c: {**c, "token_dropout": "yes"}, ["token_dropout"]),
    (lambda c: [c], ["list"]),
    (lambda c: {**c, "mask_token_id": 101}, ["mask_token_id is 101", "32"]),
    (lambda c: {**c, "pad_token_id": "1"}, ["pad_token_id"]),
    (lambda c: {**c, "num_hidden_layers": 100_000}, ["layers 100000"]),
    (lambda c: {**c, "hidden_size": 1 << 20, "num_attention_heads": 1}, ["width 1048576"]),
    (lambda c: {**c, "num_attention_heads": 5}, ["5 attention heads do not divide width 64"]),
    (lambda c: {**c, "vocab_size": 50}, ["vocabulary of 50"]),
    (lambda c: {k: v for k, v in c.items() if k != "hidden_size"}, ["hidden_size is missing"]),
])
def test_bad_hf_config(tiny, tmp_path, change, needles):
    d = _hf(tiny, tmp_path, cfg=change)
    _refused(d, str(d / "config.json"), *needles)


def test_config_not_json(tiny, tmp_path):
    _refused(_hf(tiny, tmp_path, raw="{not json"), "config.json", "unreadable")


def test_absurd_config_refused_without_building_anything(tiny, tmp_path, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("a model was built for an absurd config")
    monkeypatch.setattr("embed_worker.esm2.weights.ESM2", no_model)
    monkeypatch.setattr(M, "ESM2", no_model)
    # consistent with itself, absurd in size: 200 layers x 16384 wide is ~640 G parameters
    d = _hf(tiny, tmp_path, cfg=lambda c: {**c, "num_hidden_layers": 200, "hidden_size": 16384, "intermediate_size": 65536})
    t0 = time.perf_counter()
    _refused(d, "missing keys", "wrong shapes", "embeddings.word_embeddings.weight has shape [33, 64], expected [33, 16384]")
    assert time.perf_counter() - t0 < 30  # generous; the point is the monkeypatch above, not the speed


def test_truncated_safetensors_names_file_and_missing_bytes(tiny, tmp_path):
    d = _hf(tiny, tmp_path)
    f = d / "model.safetensors"
    b = f.read_bytes()
    f.write_bytes(b[: len(b) // 2])
    _refused(d, str(f), "truncated", "bytes missing")
    f.write_bytes(b[:50])
    _refused(d, str(f), "truncated or not a safetensors file")


def test_hf_wrong_shape_names_tensor_and_both_shapes(tiny, tmp_path):
    key = "esm.encoder.layer.0.intermediate.dense.weight"
    d = _hf(tiny, tmp_path, sd=lambda t: t.__setitem__(key, torch.zeros(2 * DIM, DIM)))
    _refused(d, f"{key} has shape [{2 * DIM}, {DIM}], expected [{4 * DIM}, {DIM}]")


def test_hf_integer_weights(tiny, tmp_path):
    key = "esm.encoder.layer.0.output.dense.bias"
    d = _hf(tiny, tmp_path, sd=lambda t: t.__setitem__(key, torch.zeros(DIM, dtype=torch.int32)))
    _refused(d, f"{key} is not a floating-point tensor")


def test_hf_missing_tensor(tiny, tmp_path):
    key = f"esm.encoder.layer.{LAYERS - 1}.output.dense.weight"
    _refused(_hf(tiny, tmp_path, sd=lambda t: t.pop(key)), "missing keys", key.removeprefix("esm."))


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: [1, 2, 3], ["not a fair-esm checkpoint"]),
    (lambda d: {**d, "model": [1]}, ["not a fair-esm checkpoint"]),
    (lambda d: {**d, "cfg": [1]}, ["'cfg' is a list"]),
    (lambda d: {**d, "cfg": {"model": 7}}, ["cfg.model is a int"]),
    (lambda d: setattr(d["cfg"]["model"], "encoder_layers", "two"), ["encoder_layers is 'two'"]),
    (lambda d: setattr(d["cfg"]["model"], "encoder_attention_heads", 5), ["5 attention heads do not divide width 64"]),
    (lambda d: setattr(d["cfg"]["model"], "encoder_layers", 100_000), ["layers 100000"]),
    (lambda d: d["model"].__setitem__("encoder.sentence_encoder.layers.0.fc1.weight", "x"),
     ["encoder.sentence_encoder.layers.0.fc1.weight", "is a str, not a tensor"]),
    (lambda d: d["model"].__setitem__("encoder.sentence_encoder.layers.0.fc1.weight", torch.zeros(3, 3)),
     ["layers.0.fc1.weight has shape [3, 3], expected [256, 64]"]),
    (lambda d: d["model"].__setitem__("encoder.sentence_encoder.embed_tokens.weight", torch.zeros(50, DIM)),
     [f"embed_tokens.weight has shape [50, {DIM}], expected [33, {DIM}]"]),
])
def test_bad_fair_esm_checkpoint(tiny, tmp_path, mutate, needles):
    _refused(_pt(tiny, tmp_path, mutate), *needles)


def test_truncated_pt(tiny, tmp_path):
    p = tmp_path / "cut.pt"
    b = open(tiny["fair-esm"], "rb").read()
    p.write_bytes(b[: len(b) // 2])
    msg = _refused(p, "cannot read checkpoint")
    assert len(msg) < 400


def test_expected_shapes_match_the_model():
    cfg = ESM2Config("x", 3, 64, 4)
    with torch.device("meta"):
        built = {k: tuple(v.shape) for k, v in M.ESM2(cfg).state_dict().items()}
    assert expected_shapes(cfg) == built
