"""Model name resolution and the `embed models` listing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embed_worker.esm2 import registry
from embed_worker.errors import ModelNotFound

NAME = "esm2_t6_8M_UR50D"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Point every search location into tmp_path and an empty repo .models."""
    for v in ("EMBED_MODEL_DIR", "TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "REPO_MODELS", tmp_path / "repo" / ".models")
    return tmp_path


def _pt(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def _hf(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    (p / "config.json").write_text("{}")
    return p


def _hf_cache(hub: Path, name: str, rev: str = "abc123", weights: str | None = "model.safetensors") -> Path:
    """A Hugging Face cache entry as huggingface_hub lays it out (refs/main -> snapshot)."""
    repo = hub / f"models--facebook--{name}"
    snap = _hf(repo / "snapshots" / rev)
    if weights:
        (snap / weights).write_bytes(b"x")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return snap


def test_hf_cache_snapshot_is_the_one_refs_main_names_with_config_and_weights(env):
    hub = env / "home" / ".cache" / "huggingface" / "hub"
    snap = _hf_cache(hub, NAME, weights=None)  # an interrupted download: config.json only
    with pytest.raises(ModelNotFound, match="not found"):
        registry.resolve(NAME)
    (snap / "pytorch_model.bin").write_bytes(b"x")
    assert registry.resolve(NAME).path == str(snap)
    # Another snapshot that refs/main does not name is not used, however new.
    _hf(hub / f"models--facebook--{NAME}" / "snapshots" / "newer")
    assert registry.resolve(NAME).path == str(snap)
    # The cache folder given as a path means its refs/main snapshot too.
    assert registry.resolve(str(hub / f"models--facebook--{NAME}")).path == str(snap.resolve())


def test_not_found_lists_every_searched_path(env, monkeypatch):
    monkeypatch.setenv("EMBED_MODEL_DIR", str(env / "mine"))
    with pytest.raises(ModelNotFound) as e:
        registry.resolve(NAME)
    msg = e.value.message
    for frag in [str(env / "mine" / f"{NAME}.pt"), str(env / "mine" / NAME),
                 str(env / "repo" / ".models" / f"{NAME}.pt"),
                 str(env / "home" / ".cache" / "torch" / "hub" / "checkpoints" / f"{NAME}.pt"),
                 str(env / "home" / ".cache" / "huggingface" / "hub" / f"models--facebook--{NAME}")]:
        assert frag in msg, frag
    assert "EMBED_MODEL_DIR" in e.value.hint and "hub" in e.value.hint
    assert e.value.to_wire()["name"] == "ModelNotFound"


def test_resolution_order(env, monkeypatch):
    home = env / "home" / ".cache"
    snap = _hf_cache(home / "huggingface" / "hub", NAME)
    assert registry.resolve(NAME) == registry.Resolved(str(snap), "hf", registry.resolve(NAME).searched)
    assert registry.resolve(f"facebook/{NAME}").path == str(snap)
    hub_pt = _pt(home / "torch" / "hub" / "checkpoints" / f"{NAME}.pt")
    r = registry.resolve(NAME)
    assert (r.path, r.format) == (str(hub_pt), "fair-esm")
    repo_dir = _hf(env / "repo" / ".models" / NAME)
    assert registry.resolve(NAME).path == str(repo_dir)
    repo_pt = _pt(env / "repo" / ".models" / f"{NAME}.pt")
    assert registry.resolve(NAME).path == str(repo_pt)
    monkeypatch.setenv("EMBED_MODEL_DIR", str(env / "mine"))
    mine = _hf(env / "mine" / NAME)
    r = registry.resolve(NAME)
    assert (r.path, r.format) == (str(mine), "hf")
    assert r.searched[0] == str(env / "mine" / f"{NAME}.pt")


def test_env_vars_for_caches(env, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(env / "th"))
    p = _pt(env / "th" / "hub" / "checkpoints" / f"{NAME}.pt")
    assert registry.resolve(NAME).path == str(p)
    p.unlink()
    monkeypatch.setenv("HF_HOME", str(env / "hfh"))
    snap = _hf_cache(env / "hfh" / "hub", NAME)
    assert registry.resolve(NAME).path == str(snap)
    monkeypatch.setenv("HF_HUB_CACHE", str(env / "hubc"))
    with pytest.raises(ModelNotFound, match="hubc"):
        registry.resolve(NAME)
    snap2 = _hf_cache(env / "hubc", NAME, rev="def456")
    assert registry.resolve(NAME).path == str(snap2)
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(env / "xdg"))
    p2 = _pt(env / "xdg" / "torch" / "hub" / "checkpoints" / f"{NAME}.pt")
    assert registry.resolve(NAME).path == str(p2)


def test_direct_paths(env):
    pt = _pt(env / "any" / "weights.pt")
    assert (registry.resolve(str(pt)).format, registry.resolve(str(pt)).path) == ("fair-esm", str(pt.resolve()))
    d = _hf(env / "any" / "folder")
    assert registry.resolve(str(d)).format == "hf"
    with pytest.raises(ModelNotFound, match="does not exist"):
        registry.resolve(str(env / "nope.pt"))
    with pytest.raises(ModelNotFound, match="config.json"):
        registry.resolve(str(env / "any"))


def test_test_tiny_in_repo_models(env):
    pt = _pt(env / "repo" / ".models" / "test-tiny.pt")
    assert registry.resolve("test-tiny").path == str(pt)


def test_describe_all(env):
    _pt(env / "repo" / ".models" / "test-tiny.pt")
    rows = registry.describe_all()
    names = [r["name"] for r in rows]
    assert names[:6] == list(registry.KNOWN) and names[-1] == "test-tiny"
    by = {r["name"]: r for r in rows}
    assert by["esm2_t33_650M_UR50D"]["layers"] == 33 and by["esm2_t33_650M_UR50D"]["dim"] == 1280
    assert by["esm2_t48_15B_UR50D"]["heads"] == 40
    assert 640e6 < by["esm2_t33_650M_UR50D"]["params"] < 660e6
    assert by[NAME]["path"] is None
    assert by["test-tiny"]["path"].endswith("test-tiny.pt")
    for km in registry.KNOWN.values():
        assert km.cfg.ffn_dim == 4 * km.cfg.embed_dim


def test_cli_json(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "TORCH_HOME": str(tmp_path / "t"), "HF_HOME": str(tmp_path / "h")}
    env.pop("EMBED_MODEL_DIR", None)
    py = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "embed_worker.registry", "--json"], cwd=py, env=env,
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows if r["family"] == "esm2"} >= set(registry.KNOWN) | {"test-tiny"}
    assert "torch" not in out.stderr


def test_registry_is_torch_free():
    code = "import sys; import embed_worker.esm2.registry, embed_worker.errors; print('torch' in sys.modules)"
    py = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=py, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the family-neutral registry (embed_worker/registry.py): DNABERT-S beside ESM-2 -------------

from embed_worker import registry as R  # noqa: E402
from embed_worker.dnabert_s.config import DNABERTConfig  # noqa: E402
from embed_worker.dnabert_s.testmodel import write_folder  # noqa: E402


def _dnabert(folder):
    return write_folder(folder, DNABERTConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=8,
                                              vocab_size=64))


def test_dnabert_names_and_folders_are_recognised_and_esm2_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("DNABERT-S", "zhihan1996/DNABERT-S", "DNABERT-2-117M", "zhihan1996/DNABERT-2-117M"):
        assert R.family_of(name) == "dnabert-s"
    assert R.family_of("esm2_t6_8M_UR50D") == "esm2"
    assert R.family_of("facebook/esm2_t6_8M_UR50D") == "esm2"
    folder = _dnabert(tmp_path / "my-dnabert")
    assert R.family_of(str(folder)) == "dnabert-s"
    r = R.resolve_dnabert(str(folder))
    assert (r.path, r.format) == (str(folder.resolve()), R.DNABERT_FORMAT)
    # a plain BERT (no MosaicBERT auto_map) is not taken for DNABERT
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["auto_map"]
    (folder / "config.json").write_text(json.dumps(cfg))
    assert R.family_of(str(folder)) == "esm2"


def test_dnabert_is_found_in_the_hugging_face_cache_under_hf_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("EMBED_MODEL_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "hub" / "models--zhihan1996--DNABERT-S"
    with pytest.raises(ModelNotFound, match="not found") as e:
        R.resolve_dnabert("zhihan1996/DNABERT-S")
    assert "hf download zhihan1996/DNABERT-S" in e.value.hint
    assert str(repo / "snapshots") in e.value.message
    snap = _dnabert(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    r = R.resolve_dnabert("zhihan1996/DNABERT-S")
    assert (r.path, r.name) == (str(snap), "DNABERT-S")
    assert R.family_of(str(repo)) == "dnabert-s"
    rows = {row["name"]: row for row in R.describe_all()}
    assert rows["DNABERT-S"]["path"] == str(snap) and rows["DNABERT-S"]["family"] == "dnabert-s"
    assert rows["DNABERT-2-117M"]["path"] is None and "hf download" in rows["DNABERT-2-117M"]["how"]
    assert (rows["DNABERT-S"]["layers"], rows["DNABERT-S"]["dim"], rows["DNABERT-S"]["heads"]) == (12, 768, 12)
    assert 116e6 < rows["DNABERT-S"]["params"] < 118e6  # the released 117M
    assert rows["esm2_t6_8M_UR50D"]["family"] == "esm2"
