"""Download of a released checkpoint, against a loopback HTTP server standing in for the release
location (EMBED_MODEL_URL): only when allowed (embed allows it unless --no-download), lands in the
torch hub cache atomically, then loads; a missing file is a ModelNotFound naming the URL and the
paths searched; workers of one run share one download."""
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
    # Nothing that looks like a checkpoint, and no partial file (the lock file stays, as filelock's do).
    assert [p.name for p in (server / "torch" / "hub" / "checkpoints").glob("*")] == ["esm2_t12_35M_UR50D.pt.lock"]


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
