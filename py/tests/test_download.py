"""Opt-in download of a released checkpoint, against a loopback HTTP server standing in for the
release location (EMBED_MODEL_URL): off by default, lands in the torch hub cache atomically, then
loads; a missing file is a ModelNotFound naming the URL."""
import functools
import http.server
import threading

import pytest
import torch

from embed_worker import testmodel
from embed_worker.errors import ModelNotFound
from embed_worker.weights import load_model

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


def test_no_download_unless_asked(server):
    with pytest.raises(ModelNotFound) as e:
        load_model(NAME, torch.device("cpu"), torch.float32)
    assert "hub" in str(e.value)


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
    assert "EMBED_MODEL_URL" in e.value.hint
    assert not list((server / "torch" / "hub" / "checkpoints").glob("*"))
