"""embed_worker.tools.virnucpro's pool of writers (virnucpro_pool.py) against one writer: two stores
built by hand (a DNABERT-S one and an ESM-2 one, the layout of src/store.ts with checksums), 50
records 7 per file. The pool writes byte for byte the files one writer does; a differing id, a
changed array byte, or a SIGKILL of the tool mid-pool leave no output_*.pt file and no writer."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embed_worker.tools import virnucpro as vnp
from embed_worker.tools import virnucpro_pool as vp
from embed_worker.tools.sources import ConvertError

PY_DIR = Path(__file__).resolve().parents[1]
DNA_DIM, ESM_DIM, LAYER = 12, 20, 3


def make_store(root: Path, family: str, ids: list[str], dim: int, seed: int) -> np.ndarray:
    """A complete store of mean.layer3 as `embed run` writes it (checksums in the manifest)."""
    root.mkdir(parents=True)
    mean = np.random.default_rng(seed).standard_normal((len(ids), dim)).astype(np.float32)
    np.save(root / f"mean.layer{LAYER}.npy", mean)
    (root / "ids.txt").write_text("".join(i + "\n" for i in ids))
    sums = {}
    for name in ("ids.txt", f"mean.layer{LAYER}.npy"):
        b = (root / name).read_bytes()
        sums[name] = {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
    manifest = {
        "format": "embed-store", "version": 2, "complete": True, "family": family,
        "model": {"name": family, "numLayers": LAYER, "dim": dim}, "layers": [LAYER], "include": ["mean"],
        "dtype": "float32", "counts": {"records": len(ids), "residues": 0},
        "files": {"ids": "ids.txt", "arrays": [f"mean.layer{LAYER}.npy"], "checksums": sums},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return mean


def frame_ids(n: int) -> list[str]:
    return [f"read{i // 6}{'FR'[i % 6 // 3]}{i % 3 + 1}" for i in range(n)]


@pytest.fixture
def stores(tmp_path):
    ids = frame_ids(50)
    dna = make_store(tmp_path / "dnabert-s", "dnabert-s", ids, DNA_DIM, 1)
    esm = make_store(tmp_path / "esm2", "esm2", ids, ESM_DIM, 2)
    return tmp_path / "dnabert-s", tmp_path / "esm2", ids, dna, esm


def pt_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if vnp.OUTPUT.match(p.name)}


def test_the_pool_writes_the_bytes_one_writer_writes(stores, tmp_path):
    dna_store, esm_store, ids, dna, esm = stores
    one = vnp.write(dna_store, esm_store, tmp_path / "one", per_file=7, jobs=1)
    two = vnp.write(dna_store, esm_store, tmp_path / "two", per_file=7, jobs=2)
    assert (one["jobs"], two["jobs"]) == (1, 2)
    assert one["files"] == two["files"] == 8 and two["records"] == 50
    a, b = pt_files(tmp_path / "one"), pt_files(tmp_path / "two")
    assert len(a) == 24 and list(a) == list(b)
    assert [n for n in a if a[n] != b[n]] == []
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(b)  # no staging left
    last = torch.load(tmp_path / "two" / "output_8_merged.pt", weights_only=True)
    assert last["ids"] == ids[49:]
    assert np.array_equal(last["data"].numpy(), np.concatenate([dna[49:], esm[49:]], axis=1))
    d3 = torch.load(tmp_path / "two" / "output_3_DNABERT_S.pt", weights_only=True)
    assert d3["nucleotide"] == ids[14:21] and d3["data"][0]["mean_representation"] == dna[14].tolist()


def test_a_differing_id_names_the_record_and_writes_nothing(stores, tmp_path):
    dna_store, esm_store, ids, _, _ = stores
    bad = ids.copy()
    bad[29] = "read4R9"
    make_store(tmp_path / "esm-bad", "esm2", bad, ESM_DIM, 2)
    with pytest.raises(ConvertError, match=r"^record 30: .* has id 'read4R3' where .* has 'read4R9'"):
        vnp.write(dna_store, tmp_path / "esm-bad", tmp_path / "out", per_file=7, jobs=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_changed_array_byte_is_caught_and_nothing_is_renamed_into_place(stores, tmp_path):
    dna_store, esm_store, *_ = stores
    path = esm_store / f"mean.layer{LAYER}.npy"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40  # same size, other bytes: only the SHA-256 tells
    path.write_bytes(bytes(raw))
    with pytest.raises(ConvertError, match="has a SHA-256 other than the one the manifest recorded"):
        vnp.write(dna_store, esm_store, tmp_path / "out", per_file=7, jobs=2)
    assert list((tmp_path / "out").iterdir()) == []


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
        except OSError:
            pass
    return out


def wait_for(cond, what: str, limit_s: float = 120) -> None:
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.005)


def test_a_killed_tool_leaves_no_file_and_no_writer_and_a_rerun_finishes(tmp_path):
    # Wide rows (VirNucPro's 768 and 2,560) so that a set takes a visible while: 8 sets of 500.
    ids = frame_ids(4000)
    for name, family, dim, seed in (("dnabert-s", "dnabert-s", 768, 1), ("esm2", "esm2", 2560, 2)):
        make_store(tmp_path / name, family, ids, dim, seed)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "embed_worker.tools.virnucpro", str(tmp_path / "dnabert-s"), str(tmp_path / "esm2"),
           str(out), "--per-file", "500", "--jobs", "2"]
    tool = subprocess.Popen(cmd, cwd=PY_DIR, stderr=subprocess.PIPE)
    staged = lambda: [p for p in out.glob(f"{vnp.STAGING}*/output_*.pt")]  # noqa: E731
    wait_for(lambda: staged() or tool.poll() is not None, "a staged file")
    tool.send_signal(signal.SIGSTOP)  # frozen with sets still to write: nothing renamed yet
    assert tool.poll() is None and pt_files(out) == {}
    writers = children(tool.pid)
    assert len(writers) >= 2
    tool.kill()
    tool.wait()
    wait_for(lambda: not any(alive(p) for p in writers), "the writers to die with the tool", 30)
    assert pt_files(out) == {}
    summary = vnp.write(tmp_path / "dnabert-s", tmp_path / "esm2", out, per_file=500, jobs=2)
    assert summary["files"] == 8 and sorted(p.name for p in out.iterdir()) == sorted(pt_files(out))
    one = vnp.write(tmp_path / "dnabert-s", tmp_path / "esm2", tmp_path / "one", per_file=500, jobs=1)
    assert one["files"] == 8 and pt_files(tmp_path / "one") == pt_files(out)


def test_jobs_below_one_is_refused(stores, tmp_path):
    dna_store, esm_store, *_ = stores
    r = subprocess.run([sys.executable, "-m", "embed_worker.tools.virnucpro", str(dna_store), str(esm_store),
                        str(tmp_path / "out"), "--jobs", "0"], cwd=PY_DIR, capture_output=True, text=True)
    assert r.returncode == 1
    assert json.loads(r.stderr.strip().splitlines()[-1])["message"] == "--jobs 0: must be at least 1"


def dnabert_value(n: int, dim: int, seed: int) -> dict:
    """A DNABERT_S file's value as VirNucPro's own script builds it: str ids, rows of Python floats."""
    ids = frame_ids(n)
    rows = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)).tolist()
    return {"nucleotide": ids, "data": [{"label": i, "mean_representation": r} for i, r in zip(ids, rows)]}


def test_the_dnabert_s_file_without_persistent_id_is_the_file_torch_save_writes(tmp_path):
    # torch.save names the zip's root folder after the file: same name, two folders.
    value = dnabert_value(40, 768, 3)
    value["data"][0]["mean_representation"][:3] = [float("nan"), float("-inf"), -0.0]
    (tmp_path / "fast").mkdir()
    (tmp_path / "torch").mkdir()
    vp.save_builtins(torch, value, tmp_path / "fast" / "output_1_DNABERT_S.pt")
    torch.save(value, tmp_path / "torch" / "output_1_DNABERT_S.pt")
    fast = (tmp_path / "fast" / "output_1_DNABERT_S.pt").read_bytes()
    assert fast == (tmp_path / "torch" / "output_1_DNABERT_S.pt").read_bytes()
    back = torch.load(tmp_path / "fast" / "output_1_DNABERT_S.pt", weights_only=True)
    assert back["nucleotide"] == value["nucleotide"] and back["data"][1:] == value["data"][1:]
    assert str(back["data"][0]["mean_representation"][:3]) == "[nan, -inf, -0.0]"


def test_save_set_writes_the_dnabert_s_file_torch_save_writes(tmp_path):
    value = dnabert_value(30, 768, 4)
    dna = np.array([d["mean_representation"] for d in value["data"]], dtype=np.float32)
    pep = np.random.default_rng(5).standard_normal((30, 2560)).astype(np.float32)
    (tmp_path / "set").mkdir()
    (tmp_path / "torch").mkdir()
    assert vp.save_set(torch, 2, value["nucleotide"], dna, pep, tmp_path / "set")[0] == "output_2_DNABERT_S.pt"
    torch.save(value, tmp_path / "torch" / "output_2_DNABERT_S.pt")
    assert (tmp_path / "set" / "output_2_DNABERT_S.pt").read_bytes() == \
        (tmp_path / "torch" / "output_2_DNABERT_S.pt").read_bytes()


@pytest.mark.parametrize("odd", [torch.zeros(3), torch.zeros(3).untyped_storage(), np.float32(1.5)],
                         ids=["tensor", "storage", "numpy-scalar"])
def test_a_value_holding_anything_but_builtins_is_refused(tmp_path, odd):
    # A plain pickler would write these (a tensor through its own __reduce_ex__), not as torch.save does.
    value = dnabert_value(3, 4, 6)
    value["data"][2]["mean_representation"][1] = odd
    with pytest.raises(vp.NotBuiltinsError, match=rf"holds a .*{type(odd).__qualname__}.* save it with torch.save"):
        vp.save_builtins(torch, value, tmp_path / "output_0_DNABERT_S.pt")
