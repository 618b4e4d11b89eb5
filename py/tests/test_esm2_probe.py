"""embed_worker.esm2.probe: a fair-esm .pt file's shape by the loader's rule, or its one-line error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embed_worker.errors import BadCheckpoint
from embed_worker.esm2.probe import probe

PY_DIR = Path(__file__).resolve().parents[1]
TINY_PT = PY_DIR.parent / ".models" / "test-tiny.pt"


def run_probe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PY_DIR)}
    return subprocess.run([sys.executable, "-m", "embed_worker.esm2.probe", *args], capture_output=True, text=True, env=env)


@pytest.mark.skipif(not TINY_PT.exists(), reason="scripts/setup writes .models/test-tiny.pt")
def test_good_file_prints_its_shape():
    r = run_probe(str(TINY_PT))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"numLayers": 2, "dim": 64, "heads": 4, "family": "esm2"}


def test_a_non_esm_pickle_is_refused_in_one_line(tmp_path):
    other = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(BadCheckpoint) as e:
        probe(str(other))
    assert e.value.message == f"{other}: not a fair-esm checkpoint (expected a dict with a 'model' state dict)"
    r = run_probe(str(other))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == e.value.to_wire()


def test_a_model_dict_without_esm_tensors_is_refused(tmp_path):
    bad = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, bad)
    with pytest.raises(BadCheckpoint, match=r"no embed_tokens\.weight; this is not an ESM-2 checkpoint") as e:
        probe(str(bad))
    assert e.value.message.startswith(f"{bad}: ")


def test_missing_argument_is_a_usage_error():
    r = run_probe()
    assert r.returncode == 2
    assert json.loads(r.stderr)["name"] == "UsageError"
