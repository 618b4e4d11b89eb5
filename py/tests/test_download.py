"""Download of a released model, against loopback HTTP servers standing in for fair-esm's release
location (EMBED_MODEL_URL: a .pt file into the torch hub cache) and for the Hugging Face hub
(HF_ENDPOINT, the default source: config.json + safetensors into the HF cache, sha256-checked):
only when allowed (embed allows it unless --no-download), lands atomically, then loads; a failure
is a ModelNotFound naming the URL and the paths searched; workers of one run share one download."""
import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from embed_worker.tools import testmodel
from embed_worker.errors import ModelNotFound
from embed_worker.esm2.weights import load_model

NAME = "esm2_t6_8M_UR50D"  # served with random weights of the real 8M shape


@pytest.fixture
def server(tmp_path, monkeypatch):
    served = tmp_path / "served"
    testmodel.write(served, NAME, 6, 320, 20, seed=3, fmt="fair-esm")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv("EMBED_MODEL_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("EMBED_MODEL_DIR", raising=False)
    yield tmp_path
    httpd.shutdown()


def test_no_download_unless_allowed(server):
    with pytest.raises(ModelNotFound) as e:
        load_model(NAME, torch.device("cpu"), torch.float32)
    assert "hub" in str(e.value)
    assert "rerun without --no-download" in e.value.hint


def test_download_lands_in_the_hub_cache_and_loads(server):
    model, cfg, resolved = load_model(NAME, torch.device("cpu"), torch.float32, allow_download=True)
    hub = server / "torch" / "hub" / "checkpoints"
    assert resolved.path == str(hub / f"{NAME}.pt")
    assert (cfg.num_layers, cfg.embed_dim, cfg.attention_heads) == (6, 320, 20)
    assert not list(hub.glob("*.partial"))
    # Found locally the second time (no download needed).
    again, _, r2 = load_model(NAME, torch.device("cpu"), torch.float32)
    assert r2.path == resolved.path
    assert torch.equal(model.embed_tokens.weight, again.embed_tokens.weight)


def test_a_missing_file_names_the_url(server):
    with pytest.raises(ModelNotFound) as e:
        load_model("esm2_t12_35M_UR50D", torch.device("cpu"), torch.float32, allow_download=True)
    assert "esm2_t12_35M_UR50D.pt failed" in e.value.message
    assert "Searched:" in e.value.message and "checkpoints" in e.value.message
    assert "EMBED_MODEL_URL" in e.value.hint
    # Nothing that looks like a checkpoint, and no partial file (a lock file may stay, as filelock's do).
    left = [p.name for p in (server / "torch" / "hub" / "checkpoints").glob("*") if not p.name.endswith(".lock")]
    assert left == []


def test_workers_of_one_run_share_one_download(tmp_path, monkeypatch):
    """Several processes (one worker per GPU) asking for the same missing model at once: one
    request reaches the server, every process gets the complete file, no partial file is left."""
    served = tmp_path / "served"
    testmodel.write(served, NAME, 6, 320, 20, seed=3, fmt="fair-esm")
    requests = []

    class Slow(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # slow enough that the other processes arrive while it downloads
            requests.append(self.path)
            time.sleep(1.0)
            super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Slow, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    env = {**os.environ, "EMBED_MODEL_URL": f"http://127.0.0.1:{httpd.server_address[1]}",
           "TORCH_HOME": str(tmp_path / "torch"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = f"from embed_worker.esm2.download import download; print(download({NAME!r}))"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        httpd.shutdown()
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outs == [str(hub / f"{NAME}.pt")] * 3
    assert requests == [f"/{NAME}.pt"]
    assert not list(hub.glob("*.partial"))
    assert (hub / f"{NAME}.pt").stat().st_size == (served / f"{NAME}.pt").stat().st_size


# --- the default source: the Hugging Face repository facebook/<name> ------------------------------

from fakehub import FakeHub  # noqa: E402
from embed_worker import registry as family_registry  # noqa: E402
from embed_worker.dnabert_s.config import DNABERTConfig  # noqa: E402
from embed_worker.dnabert_s.testmodel import write_folder  # noqa: E402


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """facebook/<NAME> as the hub holds it: config.json, model.safetensors, and files embed must not
    fetch (pytorch_model.bin beside the safetensors, tokenizer files, a README)."""
    repo = tmp_path / "served" / "esm2"
    testmodel.write(repo.parent, "esm2", 6, 320, 20, seed=3, fmt="hf")
    (repo / "README.md").write_text("# esm2\n")
    (repo / "vocab.txt").write_text("<cls>\n")
    torch.save({"not": torch.zeros(1)}, repo / "pytorch_model.bin")
    fake = FakeHub({f"facebook/{NAME}": repo})
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "EMBED_MODEL_DIR", "EMBED_MODEL_URL"):
        monkeypatch.delenv(v, raising=False)
    yield fake
    fake.close()


def test_hub_download_fetches_only_config_and_safetensors_then_loads(hub, tmp_path):
    model, cfg, resolved = load_model(NAME, torch.device("cpu"), torch.float32, allow_download=True)
    snap = tmp_path / "hf" / "hub" / f"models--facebook--{NAME}" / "snapshots"
    assert Path(resolved.path).parent == snap and resolved.format == "hf" and resolved.name == NAME
    assert (cfg.num_layers, cfg.embed_dim) == (6, 320)
    assert sorted(hub.downloads()) == [f"facebook/{NAME}/config.json", f"facebook/{NAME}/model.safetensors"]
    assert sorted(p.name for p in Path(resolved.path).iterdir()) == ["config.json", "model.safetensors"]
    # The same weights as the served folder's; found in the cache the second time, nothing fetched.
    ref, _, _ = load_model(str(tmp_path / "served" / "esm2"), torch.device("cpu"), torch.float32)
    n = len(hub.requests)
    again, _, r2 = load_model(NAME, torch.device("cpu"), torch.float32)
    assert r2.path == resolved.path and len(hub.requests) == n
    for k, v in ref.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    assert not list((tmp_path / "hf").rglob("*.incomplete"))


def test_hub_download_refuses_a_file_that_does_not_match_its_sha256(hub, tmp_path):
    hub.lie_sha256.add("model.safetensors")
    with pytest.raises(ModelNotFound, match="model.safetensors does not match its sha256") as e:
        load_model(NAME, torch.device("cpu"), torch.float32, allow_download=True)
    assert "Searched:" in e.value.message
    blobs = tmp_path / "hf" / "hub" / f"models--facebook--{NAME}" / "blobs"
    assert all(len(b.name) != 64 for b in blobs.iterdir())  # the damaged weights were removed
    hub.lie_sha256.clear()  # the mirror is fixed: the next run fetches the weights again and loads
    _, _, r = load_model(NAME, torch.device("cpu"), torch.float32, allow_download=True)
    assert r.format == "hf"


def test_hub_download_of_a_repository_the_hub_lacks_names_the_url(hub):
    with pytest.raises(ModelNotFound) as e:
        load_model("esm2_t12_35M_UR50D", torch.device("cpu"), torch.float32, allow_download=True)
    assert f"downloading {hub.url}/facebook/esm2_t12_35M_UR50D failed" in e.value.message
    assert "Searched:" in e.value.message and "models--facebook--esm2_t12_35M_UR50D" in e.value.message
    assert "HF_ENDPOINT" in e.value.hint


def test_hub_workers_of_one_run_share_one_download(tmp_path):
    repo = tmp_path / "served" / "esm2"
    testmodel.write(repo.parent, "esm2", 6, 320, 20, seed=3, fmt="hf")
    fake = FakeHub({f"facebook/{NAME}": repo}, delay_s=1.0)
    env = {**os.environ, "HF_ENDPOINT": fake.url, "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "EMBED_MODEL_URL"):
        env.pop(v, None)
    code = f"from embed_worker.esm2.download import download; print(download({NAME!r}))"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        fake.close()
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len(set(outs)) == 1 and Path(outs[0], "model.safetensors").is_file()
    assert sorted(fake.downloads()) == [f"facebook/{NAME}/config.json", f"facebook/{NAME}/model.safetensors"]


def test_dnabert_download_fetches_config_weights_and_tokenizer_never_code(tmp_path, monkeypatch):
    repo = write_folder(tmp_path / "served" / "DNABERT-S", DNABERTConfig(hidden_size=16, num_layers=1, num_heads=2,
                                                                           intermediate_size=8, vocab_size=64))
    (repo / "tokenizer.json").write_text("{}")
    (repo / "bert_layers.py").write_text("raise SystemExit('never fetched, never run')\n")
    fake = FakeHub({"zhihan1996/DNABERT-S": repo})
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "EMBED_MODEL_DIR"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(family_registry.esm2, "REPO_MODELS", tmp_path / "no-models")
    try:
        with pytest.raises(ModelNotFound):
            family_registry.resolve_dnabert("DNABERT-S")
        folder = family_registry.download("zhihan1996/DNABERT-S")
    finally:
        fake.close()
    fetched = {f.split("/")[-1] for f in fake.downloads()}
    assert "bert_layers.py" not in fetched and {"config.json", "tokenizer.json"} <= fetched
    assert not (folder / "bert_layers.py").exists()
    assert family_registry.resolve_dnabert("DNABERT-S").path == str(folder)
