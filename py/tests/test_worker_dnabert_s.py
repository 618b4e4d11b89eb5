"""The worker with a DNABERT-S model (in process, CPU, a tiny random folder, a real ring): u16 ids
read from the ring, the packed forward, and each output kind equal to the reference model's
pooling on the same packed batch; a checkpoint of the other family is refused."""
from __future__ import annotations

import json

import pytest
import torch

from embed_worker.dnabert_s import model as M
from embed_worker.dnabert_s.config import DNABERTConfig
from embed_worker.dnabert_s.testmodel import write_folder
from embed_worker.dnabert_s.weights import load_model
from embed_worker.errors import EmbedWorkerError
from embed_worker.wire import protocol as P
from embed_worker.worker import Worker, WorkerConfig

CFG = DNABERTConfig(hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48, vocab_size=4096)
# Ids above 255 need both bytes on the wire (4095, 3000, 1000, 256); each sequence framed by
# [CLS]=1 / [SEP]=2 as packBatch writes it.
SEQS = [[1, 4095, 256, 7, 2], [1, 1000, 2], [1, 5, 6, 7, 8, 9, 3000, 2]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("dnabert") / "tiny-dnabert-s", CFG, seed=3)


def make_worker(folder, tmp_path, layers, include, family="dnabert-s", transport="shm") -> Worker:
    cfg = WorkerConfig(name="d0", model=str(folder), device="cpu", precision="fp32", layers=layers,
                       include=include, out_dtype="float32", max_tokens=128, ring_dir=str(tmp_path),
                       transport=transport, family=family)
    w = Worker(cfg, channel=None)
    w.init_device()
    w.load_model()
    w.make_ring()
    return w


def put(w: Worker, seqs: list[list[int]]) -> int:
    toks = [t for s in seqs for t in s]
    tokens, lens = w.ring.batch_input(0, len(toks), len(seqs))
    tokens.copy_(torch.tensor(toks, dtype=torch.int32).to(torch.int16))  # the u16 ids, as Bun writes them
    lens.copy_(torch.tensor([len(s) for s in seqs], dtype=torch.int32))
    return len(toks)


def outputs(w: Worker, result: dict) -> dict[tuple[str, int], torch.Tensor]:
    return {(b["kind"], b["layer"]): w.ring.output_view(0, b["offset"], b["rows"], b["dim"], b["dtype"]).clone()
            for b in result["outputs"]}


def test_worker_outputs_equal_the_reference_on_the_same_packed_batch(folder, tmp_path):
    w = make_worker(folder, tmp_path, layers=[0, 2, -1], include=["mean", "bos", "residues"])
    try:
        assert (w.layers, w.kernels, w.ring.layout.token_bytes) == ([0, 2, 3], "eager", 2)
        assert w.ring.layout.in_bytes == P.input_bytes(128, 128 // 3, 2)
        w.warmup()
        ready = w.ready_message()
        assert (ready["family"], ready["model"]["dim"], ready["model"]["numLayers"], ready["ring"]["tokenBytes"]) == \
            ("dnabert-s", 32, 3, 2)
        n = put(w, SEQS)
        res = w.embed({"batch": 4, "slot": 0, "seqs": len(SEQS), "tokens": n, "maxLen": 8})
        got = outputs(w, res)
    finally:
        w.ring.unlink()

    ref, _ = load_model(folder)
    tokens = torch.tensor([t for s in SEQS for t in s])
    cu = torch.tensor([0, 5, 8, 16], dtype=torch.int32)
    hidden = ref(tokens, cu, 8, [0, 2, 3])
    assert res["nonFinite"] == 0 and len(got) == 9
    for layer in (0, 2, 3):
        h = hidden[layer]
        torch.testing.assert_close(got[("mean", layer)], M.mean_all_tokens(h, cu), rtol=0, atol=1e-6)
        torch.testing.assert_close(got[("bos", layer)], h[[0, 5, 8]], rtol=0, atol=0)
        torch.testing.assert_close(got[("residues", layer)], M.token_rows(h, cu, specials=False), rtol=0, atol=0)
    # mean includes [CLS] and [SEP] (VirNucPro): it is not the mean of the residue rows
    assert not torch.allclose(got[("mean", 3)][1], got[("residues", 3)][0])
    assert got[("residues", 3)].shape == (sum(len(s) - 2 for s in SEQS), 32)


def test_ids_are_read_from_both_bytes(folder, tmp_path):
    """4095 and 256 differ only in the high byte from 255 and 0: reading one byte would alias them."""
    w = make_worker(folder, tmp_path, layers=[0], include=["residues"], transport="socket")
    try:
        tokens, _ = w.ring.batch_input(0, 4, 1)
        tokens.copy_(torch.tensor([1, 4095, 256, 2], dtype=torch.int16))
        assert w.ring.token_ids(tokens).tolist() == [1, 4095, 256, 2]
        assert w.ring.token_ids(torch.tensor([-1], dtype=torch.int16)).tolist() == [65535]
    finally:
        w.ring.unlink()


def test_a_checkpoint_of_the_other_family_is_refused(folder, tmp_path, tiny):
    with pytest.raises(EmbedWorkerError, match="is a dnabert-s checkpoint, but this run embeds with the esm2"):
        make_worker(folder, tmp_path, layers=[-1], include=["mean"], family="esm2")
    with pytest.raises(EmbedWorkerError, match="is a esm2 checkpoint, but this run embeds with the dnabert-s"):
        make_worker(tiny["hf"], tmp_path, layers=[-1], include=["mean"], family="dnabert-s")


def test_faults_and_out_of_range_layers_are_refused(folder, tmp_path):
    with pytest.raises(EmbedWorkerError, match="layer 4 is out of range for a 3-layer model"):
        make_worker(folder, tmp_path, layers=[4], include=["mean"])
    cfg = WorkerConfig(name="d0", model=str(folder), device="cpu", precision="fp32", layers=[-1], include=["mean"],
                       out_dtype="float32", max_tokens=128, family="dnabert-s", fault="eos-in-mean")
    w = Worker(cfg, channel=None)
    w.init_device()
    with pytest.raises(EmbedWorkerError, match="applies to ESM-2 only"):
        w.load_model()


def test_worker_config_carries_the_family(monkeypatch):
    monkeypatch.setenv("EMBED_WORKER_CONFIG", json.dumps({
        "name": "w", "model": "DNABERT-S", "family": "dnabert-s", "device": "cpu", "precision": "fp32",
        "layers": [-1], "include": ["mean"], "outDtype": "float32", "maxTokens": None}))
    assert WorkerConfig.from_env().family == "dnabert-s"


def test_dnabert_s_matrix_flops_per_token():
    from embed_worker.dnabert_run import Shape, matrix_flops_per_token
    # 12 layers x 2 x (Wqkv 3 x 768^2 + dense 768^2 + gated 768 x 6144 + wo 3072 x 768) = 226.5 M
    assert matrix_flops_per_token(Shape("DNABERT-S", 12, 768, 12, 3072)) == 2 * 12 * (768 * 2304 + 768 ** 2 + 768 * 6144 + 3072 * 768)
    assert abs(matrix_flops_per_token(Shape("DNABERT-S", 12, 768, 12, 3072)) / 226.5e6 - 1) < 0.001


@pytest.mark.parametrize("kernels,expected,got,imported", [
    ("auto", None, "auto", True),        # size unknown: as for a long run (quack after its probe)
    ("auto", "short", "triton", False),  # the origin workload's 19M tokens: quack never imported
    ("auto", "long", "auto", True),
    ("quack", "short", "quack", False),  # an explicit choice is honoured (arrange checks it)
    ("triton", "long", "triton", False),
])
def test_dnabert_s_auto_takes_the_fused_geglu_only_when_it_pays(monkeypatch, capsys, kernels, expected, got, imported):
    """dnabert_run.gated_for: "auto" weighs quack's import against this family's gain (decision
    logic only: the device is a CUDA name, nothing runs on it)."""
    pytest.importorskip("triton")
    from embed_worker import dnabert_run
    from embed_worker.gpu import arrange, epilogues
    asked = []
    monkeypatch.setattr(epilogues, "unavailable", lambda device, dtype: asked.append(1))
    shape = dnabert_run.Shape("DNABERT-S", 12, 768, 12, 3072)
    pays = arrange.QUACK_IMPORT_S / dnabert_run.QUACK_GAIN * arrange.GPU_FLOPS / dnabert_run.matrix_flops_per_token(shape)
    assert 19_300_000 < pays * 0.9  # 1M reads' frames (the origin workload) are a short run
    tokens = {None: None, "short": int(pays * 0.9), "long": int(pays * 1.1)}[expected]
    assert dnabert_run.gated_for(kernels, torch.device("cuda", 0), torch.float16, shape, tokens) == got
    assert bool(asked) == imported
    assert ("this run is short" in capsys.readouterr().err) == (expected == "short" and kernels == "auto")
