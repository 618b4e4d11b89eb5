"""embed_worker.tools.convert from every source embed writes: a store built by hand converted through
HDF5 and Parquet and back to npy, ids, offsets and values compared exactly with the store; subsets,
detection of what a path holds, and the refusals (VirNucPro files, a source onto itself)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embed_worker.tools import convert as cv
from embed_worker.tools import file_sources, sources, store_source
from embed_worker.tools.open_source import open_source
from test_convert import DIM, PY_DIR, make_store, no_partials

IDS = ["sp|P12345|ABC_HUMAN", "β-lactamase", "r3", "r3", "x" * 200, "r6", "r7"]  # a repeated id too
LENGTHS = [3, 1, 7, 2, 5, 1, 4]
ARRAYS = ["mean.layer1", "mean.layer2", "residues.layer1", "residues.layer2"]


@pytest.fixture
def store(tmp_path):
    """Two layers, mean and per-residue."""
    return tmp_path / "store", make_store(tmp_path / "store", LENGTHS, ids=IDS, layers=(1, 2))


def assert_store_equals(path: Path, ref: dict, arrays: list[str] = ARRAYS) -> None:
    """The store at `path` holds exactly `arrays` of `ref`, its ids and offsets."""
    m = json.loads((path / "manifest.json").read_text())
    assert sorted(m["files"]["arrays"]) == sorted([f"{a}.npy" for a in arrays] + ["residues.offsets.npy"] * any("residues" in a for a in arrays))
    assert (path / "ids.txt").read_text().split("\n")[:-1] == ref["ids"]
    for a in arrays:
        got = np.load(path / f"{a}.npy")
        assert got.dtype == ref[a].dtype
        np.testing.assert_array_equal(got, ref[a])
    if any("residues" in a for a in arrays):
        np.testing.assert_array_equal(np.load(path / "residues.offsets.npy"), ref["offsets"])
    assert m["counts"]["records"] == len(ref["ids"]) and m["model"]["name"] == "test-tiny"
    assert m["layers"] == sorted({int(a.split("layer")[1]) for a in arrays})
    # The copy is a complete store that converts again.
    assert store_source.Store(path).records == len(ref["ids"])


def test_store_to_hdf5_to_parquet_to_npy(store, tmp_path):
    path, ref = store
    h5 = cv.convert(path, "hdf5", out=tmp_path / "a.h5")
    assert h5["from"] == "npy" and h5["files"] == [str(tmp_path / "a.h5")]
    pq = cv.convert(tmp_path / "a.h5", "parquet", out=tmp_path / "pq")
    assert pq["from"] == "hdf5" and pq["source"] == str(tmp_path / "a.h5")
    assert sorted(Path(f).name for f in pq["files"]) == sorted(f"{a}.parquet" for a in ARRAYS)
    assert pq["records"] == 7 and pq["residues"] == sum(LENGTHS) and pq["dim"] == DIM
    npy = cv.convert(tmp_path / "pq", "npy", out=tmp_path / "back")
    assert npy["from"] == "parquet" and npy["dtype"] == "float32"
    assert_store_equals(tmp_path / "back", ref)
    assert json.loads((tmp_path / "back" / "manifest.json").read_text())["convertedFrom"] == str(tmp_path / "pq")
    assert no_partials(tmp_path)


def test_store_to_parquet_to_hdf5_float16_in_small_chunks(tmp_path, monkeypatch):
    """float16, and 4 rows a chunk so that every read spans batches, row groups and records."""
    import h5py

    monkeypatch.setattr(sources, "CHUNK_ROWS", 4)
    ref = make_store(tmp_path / "s", LENGTHS, dtype="float16", ids=IDS, layers=(1, 2))
    cv.convert(tmp_path / "s", "parquet", out=tmp_path / "pq")
    s = cv.convert(tmp_path / "pq", "hdf5")  # default: beside the source, pq/embeddings.h5
    assert s["out"] == str(tmp_path / "pq" / "embeddings.h5") and s["dtype"] == "float16"
    with h5py.File(tmp_path / "pq" / "embeddings.h5", "r") as f:
        assert list(f["ids"].asstr()[:]) == IDS
        for a in ARRAYS:
            kind, layer = a.split(".")
            assert f[f"{kind}/{layer}"].dtype == np.float16
            np.testing.assert_array_equal(f[f"{kind}/{layer}"][:], ref[a])
        np.testing.assert_array_equal(f["residues/offsets"][:], ref["offsets"])
        assert list(f.attrs["layers"]) == [1, 2] and f.attrs["include"] == "mean,residues"
    cv.convert(tmp_path / "pq" / "embeddings.h5", "npy", out=tmp_path / "back")
    assert_store_equals(tmp_path / "back", ref)


def test_virnucpro_from_hdf5_and_parquet(store, tmp_path):
    import torch

    path, ref = store
    cv.convert(path, "hdf5", out=tmp_path / "a.h5")
    cv.convert(path, "parquet", out=tmp_path / "pq")
    for src in (tmp_path / "a.h5", tmp_path / "pq"):
        s = cv.convert(src, "virnucpro", out=tmp_path / f"vnp-{src.name}")
        assert s["outputs"] == [{"kind": "mean", "layer": 2}]  # the last layer by default
        d = torch.load(s["files"][0])
        assert d["proteins"] == IDS
        np.testing.assert_array_equal(torch.stack(d["data"]).numpy(), ref["mean.layer2"])


def test_subset_hdf5_converts_what_it_holds(store, tmp_path):
    import h5py

    path, ref = store
    cv.convert(path, "hdf5", out=tmp_path / "l1.h5", layer=1)
    with h5py.File(tmp_path / "l1.h5", "r") as f:
        assert list(f.attrs["layers"]) == [1]  # the attributes say what the file holds
        assert json.loads(f.attrs["manifest"])["layers"] == [1]
    s = cv.convert(tmp_path / "l1.h5", "parquet", out=tmp_path / "pq")
    assert sorted(Path(f).name for f in s["files"]) == ["mean.layer1.parquet", "residues.layer1.parquet"]
    cv.convert(tmp_path / "pq", "npy", out=tmp_path / "back")
    assert_store_equals(tmp_path / "back", ref, ["mean.layer1", "residues.layer1"])

    with pytest.raises(cv.BadOptions, match="--layer 2: the HDF5 file holds layers 1") as e:
        cv.convert(tmp_path / "l1.h5", "parquet", out=tmp_path / "pq2", layer=2)
    assert "convert from the store" in e.value.hint
    with pytest.raises(cv.BadOptions, match="--layer -1: the Parquet directory holds layers 1"):
        cv.convert(tmp_path / "pq", "hdf5", layer=-1)  # -1 is layer 2 of the model
    with pytest.raises(cv.BadOptions, match="--kind bos: the HDF5 file holds mean, residues"):
        cv.convert(tmp_path / "l1.h5", "npy", out=tmp_path / "x", kind="bos")
    assert not (tmp_path / "pq2").exists() and not (tmp_path / "x").exists()


def test_parquet_of_residues_only_gives_ids_and_offsets_from_positions(store, tmp_path, monkeypatch):
    path, ref = store
    cv.convert(path, "parquet", out=tmp_path / "pq", kind="per-residue")
    assert sorted(os.listdir(tmp_path / "pq")) == ["residues.layer1.parquet", "residues.layer2.parquet"]
    monkeypatch.setattr(sources, "CHUNK_ROWS", 3)
    s = cv.convert(tmp_path / "pq", "hdf5", out=tmp_path / "r.h5")
    assert s["records"] == 7 and s["residues"] == sum(LENGTHS)
    cv.convert(tmp_path / "r.h5", "npy", out=tmp_path / "back")
    assert_store_equals(tmp_path / "back", ref, ["residues.layer1", "residues.layer2"])


def test_sources_read_lazily(store, tmp_path, monkeypatch):
    import h5py
    import pyarrow.parquet as papq

    path, ref = store
    monkeypatch.setattr(sources, "CHUNK_ROWS", 2)  # row groups of 2 records
    cv.convert(path, "hdf5", out=tmp_path / "a.h5")
    cv.convert(path, "parquet", out=tmp_path / "pq")
    with open_source(tmp_path / "a.h5") as h5:
        assert isinstance(h5, file_sources.Hdf5File) and isinstance(h5.array("mean", 1), h5py.Dataset)
    reads = []
    real = papq.ParquetFile.read_row_group
    monkeypatch.setattr(papq.ParquetFile, "read_row_group", lambda self, i, **kw: reads.append(i) or real(self, i, **kw))
    with open_source(tmp_path / "pq") as pq:
        assert isinstance(pq, file_sources.ParquetDir)
        a = pq.array("mean", 1)
        assert isinstance(a, file_sources.ParquetColumn) and a.shape == (7, DIM)
        np.testing.assert_array_equal(a[0:2], ref["mean.layer1"][0:2])
        assert reads == [0]  # one row group read, not the file
        np.testing.assert_array_equal(a[2:5], ref["mean.layer1"][2:5])
        assert reads == [0, 1, 2]
        np.testing.assert_array_equal(a[1:3], ref["mean.layer1"][1:3])  # backwards: starts over
        # ids come exactly `size` at a time, whatever the row groups
        assert [len(c) for c in pq.id_chunks(3)] == [3, 3, 1]
    with open_source(path) as st:
        assert isinstance(st, store_source.Store)


def test_virnucpro_is_not_a_source(store, tmp_path):
    path, _ = store
    cv.convert(path, "virnucpro")
    for src in (path / "virnucpro", path / "virnucpro" / "output_1_ESM.pt"):
        with pytest.raises(cv.ConvertError, match="VirNucPro .pt files, which embed writes but does not read") as e:
            cv.convert(src, "hdf5", out=tmp_path / "x.h5")
        assert "convert from the store, HDF5 file or Parquet directory" in e.value.hint
    assert not (tmp_path / "x.h5").exists()


def test_onto_itself_is_refused(store, tmp_path):
    path, _ = store
    cv.convert(path, "hdf5")  # store/embeddings.h5
    cv.convert(path, "parquet")  # into the store directory
    h5 = path / "embeddings.h5"
    before = h5.stat().st_mtime_ns
    for out in (None, h5, path, tmp_path / "store" / ".." / "store" / "embeddings.h5"):
        with pytest.raises(cv.BadOptions, match="is the source itself"):
            cv.convert(h5, "hdf5", out=out)
    assert h5.stat().st_mtime_ns == before
    cv.convert(path, "parquet", out=tmp_path / "pq")
    with pytest.raises(cv.BadOptions, match="is the source itself"):
        cv.convert(tmp_path / "pq", "parquet")
    with pytest.raises(cv.BadOptions, match="needs -o"):
        cv.convert(h5, "npy")  # a new store has no default place
    assert cv.convert(path, "npy")["out"] == str(path)  # npy into the store itself: nothing to do


def test_what_is_not_a_source(tmp_path):
    import h5py

    with pytest.raises(cv.ConvertError, match="does not exist"):
        cv.convert(tmp_path / "nowhere", "hdf5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(cv.ConvertError, match="not an embed store.*it is empty") as e:
        cv.convert(tmp_path / "empty", "hdf5")
    assert "HDF5 file or a Parquet directory" in e.value.hint
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(cv.ConvertError, match="not an embed store.*notes.txt"):
        cv.convert(tmp_path / "other", "parquet", out=tmp_path / "o")
    (tmp_path / "x.fasta").write_text(">a\nMK\n")
    with pytest.raises(cv.ConvertError, match="a file that is not HDF5"):
        cv.convert(tmp_path / "x.fasta", "parquet", out=tmp_path / "o")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(cv.ConvertError, match="embed did not write"):
        cv.convert(tmp_path / "foreign.h5", "parquet", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_parquet_single_file_and_mixed_stores(tmp_path):
    make_store(tmp_path / "a", [2, 3])
    make_store(tmp_path / "b", [4, 1], seed=1)
    cv.convert(tmp_path / "a", "parquet", out=tmp_path / "pq")
    with pytest.raises(cv.ConvertError, match="single Parquet file") as e:
        cv.convert(tmp_path / "pq" / "mean.layer2.parquet", "hdf5", out=tmp_path / "x.h5")
    assert str(tmp_path / "pq") in e.value.hint
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m["recordsSha256"] = "cd" * 32  # another input
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    cv.convert(tmp_path / "b", "parquet", out=tmp_path / "other", kind="residues")
    os.replace(tmp_path / "other" / "residues.layer2.parquet", tmp_path / "pq" / "residues.layer2.parquet")
    with pytest.raises(cv.ConvertError, match="converted from different stores"):
        cv.convert(tmp_path / "pq", "hdf5")


def test_cli_error_line_for_a_virnucpro_source(store):
    path, _ = store
    cv.convert(path, "virnucpro")
    env = {**os.environ, "PYTHONPATH": str(PY_DIR)}
    bad = subprocess.run([sys.executable, "-m", "embed_worker.tools.convert", str(path / "virnucpro"), "--to", "parquet", "--json"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stdout == ""
    err = json.loads(bad.stderr.strip().splitlines()[-1])
    assert err["name"] == "OutputError" and "VirNucPro" in err["message"] and "embed convert" in err["hint"]
