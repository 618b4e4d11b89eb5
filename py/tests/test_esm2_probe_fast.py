"""The shape probe's torch-free reading of zip-format .pt files (esm2/pt_shapes.py): the same shape
or the same refusal as the loader's torch reading, no torch imported for it, and every file it does
not vouch for left to torch, whose messages stay the loader's."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from embed_worker.errors import BadCheckpoint
from embed_worker.esm2 import probe as P
from embed_worker.esm2 import pt_shapes
from embed_worker.esm2.registry import FAIR_ESM, Resolved
from embed_worker.esm2.weights import load_checkpoint
from embed_worker.tools import testmodel

PY_DIR = Path(__file__).resolve().parents[1]
GEOMETRIES = [(2, 64, 4), (1, 32, 2), (3, 48, 6), (4, 80, 5)]  # layers, dim, heads


def torch_probe(path, monkeypatch) -> dict:
    """The probe as it was: the file read by torch only."""
    with monkeypatch.context() as m:
        m.setattr(pt_shapes, "read", lambda p: None)
        return P.probe(str(path))


def refusal(f, *args) -> BadCheckpoint:
    with pytest.raises(BadCheckpoint) as e:
        f(*args)
    assert "\n" not in e.value.message
    return e.value


def loader_refusal(path) -> BadCheckpoint:
    return refusal(load_checkpoint, Resolved(str(path), FAIR_ESM))


def checkpoint(tmp_path, layers=2, dim=64, heads=4) -> Path:
    return Path(testmodel.write(tmp_path, f"m{layers}x{dim}", layers, dim, heads, fmt="fair-esm")["fair-esm"])


def load(path: Path) -> dict:
    from embed_worker.checkpoint import torch_load
    return torch_load(path, mmap=False)


def probe_in_fresh_python(path, poison_torch=True) -> subprocess.CompletedProcess:
    """python -m embed_worker.esm2.probe PATH in a Python where `import torch` fails (poison), and
    which says on its last stderr line whether torch got imported."""
    code = ("import sys, runpy\n"
            + ("sys.modules['torch'] = None\n" if poison_torch else "")
            + "sys.argv = ['probe', sys.argv[1]]\n"
            "try:\n    runpy.run_module('embed_worker.esm2.probe', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    print('torch' in sys.modules and sys.modules['torch'] is not None, file=sys.stderr)\n"
            "    raise\n")
    env = {**os.environ, "PYTHONPATH": str(PY_DIR)}
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("layers,dim,heads", GEOMETRIES)
def test_the_fast_reading_gives_the_torch_probes_shape(tmp_path, monkeypatch, layers, dim, heads):
    pt = checkpoint(tmp_path, layers, dim, heads)
    assert pt_shapes.read(str(pt)) is not None  # read without torch, not left to it
    want = {"numLayers": layers, "dim": dim, "heads": heads, "family": "esm2"}
    assert P.probe(str(pt)) == torch_probe(pt, monkeypatch) == want


def test_tensor_shapes_match_torch_for_parameters_views_and_dtypes(tmp_path):
    """What a state dict may hold: an OrderedDict with _metadata, Parameters, fp16/bf16/int
    tensors, a transposed view and a slice sharing another tensor's storage."""
    m = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LayerNorm(4)).half()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = m.state_dict()
    sd.update({"p": torch.nn.Parameter(torch.ones(3, 2, dtype=torch.bfloat16)), "t": base.t(), "s": base[1:3, 2:],
               "i": torch.arange(5), "b": torch.zeros(2, dtype=torch.bool)})
    pt = tmp_path / "sd.pt"
    torch.save({"model": sd, "cfg": {"model": argparse.Namespace(a=1)}}, pt)
    fast = pt_shapes.read(str(pt))
    slow = load(pt)
    assert isinstance(fast["model"], OrderedDict) and fast["model"]._metadata == slow["model"]._metadata
    assert {k: v.shape for k, v in fast["model"].items()} == {k: tuple(v.shape) for k, v in slow["model"].items()}
    assert {k: v.floating for k, v in fast["model"].items()} == {k: v.is_floating_point() for k, v in slow["model"].items()}
    assert vars(fast["cfg"]["model"]) == {"a": 1}


def _disagreeing(tmp_path) -> Path:
    pt = checkpoint(tmp_path)
    data = load(pt)
    data["cfg"]["model"].encoder_layers = 3
    bad = tmp_path / "disagrees.pt"
    torch.save(data, bad)
    return bad


def test_a_config_that_disagrees_with_the_tensors_is_refused_alike_without_torch(tmp_path, monkeypatch):
    bad = _disagreeing(tmp_path)
    assert pt_shapes.read(str(bad)) is not None
    fast, slow, loader = refusal(P.probe, str(bad)), refusal(torch_probe, bad, monkeypatch), loader_refusal(bad)
    assert fast.to_wire() == slow.to_wire() == loader.to_wire()
    assert fast.message == f"{bad}: cfg says 3 layers x 64 wide but the tensors are 2 layers x 64 wide"
    r = probe_in_fresh_python(bad)
    assert r.returncode == 1 and r.stdout == ""
    first, imported = r.stderr.strip().splitlines()
    assert json.loads(first) == fast.to_wire() and imported == "False"


@pytest.mark.parametrize("change,needle", [
    (lambda d: setattr(d["cfg"]["model"], "encoder_layers", "2"), "encoder_layers is '2' (a str); expected an integer"),
    (lambda d: d.pop("cfg"), "no cfg.model in checkpoint and 2 layers x 64 matches"),
    (lambda d: d["model"].pop("encoder.sentence_encoder.embed_tokens.weight"), "no embed_tokens.weight"),
    (lambda d: d.update(cfg=[1]), "'cfg' is a list, expected a dict holding 'model'"),
])
def test_other_refusals_of_a_readable_file_are_the_loaders(tmp_path, monkeypatch, change, needle):
    data = load(checkpoint(tmp_path))
    change(data)
    bad = tmp_path / "bad.pt"
    torch.save(data, bad)
    assert pt_shapes.read(str(bad)) is not None
    fast = refusal(P.probe, str(bad))
    assert needle in fast.message
    assert fast.to_wire() == refusal(torch_probe, bad, monkeypatch).to_wire() == loader_refusal(bad).to_wire()


def test_probing_a_good_file_imports_no_torch(tmp_path):
    pt = checkpoint(tmp_path)
    r = probe_in_fresh_python(pt)  # `import torch` would fail here
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"numLayers": 2, "dim": 64, "heads": 4, "family": "esm2"}
    assert r.stderr.strip() == "False"


def _truncated(tmp_path) -> Path:
    raw = checkpoint(tmp_path).read_bytes()
    p = tmp_path / "truncated.pt"
    p.write_bytes(raw[: len(raw) // 2])
    return p


def _foreign_global(tmp_path) -> Path:
    p = tmp_path / "foreign.pt"
    torch.save({"model": {}, "hook": os.system}, p)
    return p


def _legacy_disagreeing(tmp_path) -> Path:
    p = tmp_path / "legacy-bad.pt"
    torch.save(load(_disagreeing(tmp_path)), p, _use_new_zipfile_serialization=False)
    return p


def _missing_storage(tmp_path) -> Path:
    src = checkpoint(tmp_path)
    p = tmp_path / "missing-storage.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if not info.filename.endswith("/data/0"):
                zout.writestr(info, zin.read(info))
    return p


def _not_a_tensor(tmp_path) -> Path:
    p = tmp_path / "entry.pt"
    torch.save({"model": {"encoder.embed_tokens.weight": 7}}, p)
    return p


@pytest.mark.parametrize("make,needle", [
    (_truncated, "cannot read checkpoint"),
    (_foreign_global, "refusing to unpickle objects that are not tensors or plain containers"),
    (_legacy_disagreeing, "cfg says 3 layers x 64 wide"),
    (_missing_storage, "cannot read checkpoint"),
    (_not_a_tensor, "state dict entry 'encoder.embed_tokens.weight' is a int, not a tensor"),
])
def test_files_the_fast_reading_does_not_vouch_for_get_the_loaders_message(tmp_path, monkeypatch, make, needle):
    bad = make(tmp_path)
    asked = []
    monkeypatch.setattr(P, "_torch_shapes", lambda path, real=P._torch_shapes: asked.append(path) or real(path))
    got = refusal(P.probe, str(bad))
    assert asked == [str(bad)]  # left to torch
    assert needle in got.message and got.message.startswith(f"{bad}: ")
    assert got.to_wire() == loader_refusal(bad).to_wire()


def test_a_legacy_format_file_is_read_by_torch_with_the_same_shape(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save(load(checkpoint(tmp_path, 3, 48, 6)), legacy, _use_new_zipfile_serialization=False)
    assert pt_shapes.read(str(legacy)) is None
    assert P.probe(str(legacy)) == {"numLayers": 3, "dim": 48, "heads": 6, "family": "esm2"}
