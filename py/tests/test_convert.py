"""embed_worker.tools.convert: a store built by hand (the layout of src/store.ts) converted to every
format and read back with the library its users use (h5py, pyarrow + pandas, numpy, torch.load),
ids and values compared exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embed_worker.tools import convert as cv
from embed_worker.tools import sources

PY_DIR = Path(__file__).resolve().parents[1]
DIM = 8
LAYER = 2


def make_store(root: Path, lengths: list[int], dtype: str = "float32", ids: list[str] | None = None,
               kinds: tuple[str, ...] = ("mean", "residues"), seed: int = 0, layers: tuple[int, ...] = (LAYER,)) -> dict:
    """A complete store as `embed run` writes it (manifest last); returns the arrays written:
    `ref["mean"]` etc. for the first layer, `ref["mean.layer1"]` etc. for each."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = len(lengths)
    ids = ids or [f"rec{i}" for i in range(n)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    arrays = {}
    for layer in layers:
        for k in ("mean", "bos", "residues"):
            if k in kinds:
                rows = int(offsets[-1]) if k == "residues" else n
                arrays[f"{k}.layer{layer}"] = rng.standard_normal((rows, DIM)).astype(dtype)
    files = []
    for name, a in arrays.items():
        np.save(root / f"{name}.npy", a)
        files.append(f"{name}.npy")
    if "residues" in kinds:
        np.save(root / "residues.offsets.npy", offsets)
        files.append("residues.offsets.npy")
    (root / "ids.txt").write_text("".join(i + "\n" for i in ids))
    manifest = {
        "format": "embed-store", "version": 2, "complete": True, "createdAt": "2026-01-01T00:00:00.000Z",
        "model": {"name": "test-tiny", "path": "/x/test-tiny.pt", "format": "fair-esm", "numLayers": 2, "dim": DIM, "heads": 4},
        "layers": list(layers), "include": list(kinds), "dtype": dtype, "precision": "fp32", "truncate": 1022,
        "counts": {"records": n, "residues": int(offsets[-1]), "truncated": 0, "longest": max(lengths, default=0), "renamed": 0},
        "inputs": ["x.fasta"], "recordsSha256": "ab" * 32,
        "files": {"ids": "ids.txt", "arrays": sorted(files)},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    first = {k: arrays[f"{k}.layer{layers[0]}"] for k in kinds}
    return {"ids": ids, "offsets": offsets, "manifest": manifest, **first, **arrays}


@pytest.fixture
def store(tmp_path):
    # Unicode and odd characters in ids must survive every format.
    ids = ["sp|P12345|ABC_HUMAN", "β-lactamase", "r3", "r4", "x" * 200]
    return tmp_path / "store", make_store(tmp_path / "store", [3, 1, 7, 2, 5], ids=ids)


def no_partials(d: Path) -> bool:
    return not [p for p in d.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".embed-")]


def test_hdf5(store):
    import h5py

    path, ref = store
    s = cv.convert(path, "hdf5")
    assert s["files"] == [str(path / "embeddings.h5")] and s["records"] == 5
    with h5py.File(path / "embeddings.h5", "r") as f:
        assert [x.decode() for x in f["ids"][:]] == ref["ids"]
        assert list(f["ids"].asstr()[:]) == ref["ids"]
        assert f["mean/layer2"].dtype == np.float32 and f["mean/layer2"].chunks is not None
        np.testing.assert_array_equal(f["mean/layer2"][:], ref["mean"])
        np.testing.assert_array_equal(f["residues/layer2"][:], ref["residues"])
        np.testing.assert_array_equal(f["residues/offsets"][:], ref["offsets"])
        assert f.attrs["model"] == "test-tiny" and list(f.attrs["layers"]) == [2] and f.attrs["dim"] == DIM
        assert f.attrs["dtype"] == "float32" and f.attrs["records"] == 5
        assert json.loads(f.attrs["manifest"])["recordsSha256"] == "ab" * 32
    assert no_partials(path)


def test_hdf5_filtered_and_float16(tmp_path):
    import h5py

    ref = make_store(tmp_path / "s", [2, 2, 4], dtype="float16", kinds=("mean", "bos", "residues"))
    out = tmp_path / "elsewhere" / "x.h5"
    cv.convert(tmp_path / "s", "hdf5", out=out, kind="bos", layer=-1)  # -1: the model's last layer (2)
    with h5py.File(out, "r") as f:
        assert set(f.keys()) == {"ids", "bos"}
        assert f["bos/layer2"].dtype == np.float16
        np.testing.assert_array_equal(f["bos/layer2"][:], ref["bos"])


def test_parquet(store):
    import pandas as pd
    import pyarrow.parquet as pq

    path, ref = store
    s = cv.convert(path, "parquet")
    assert sorted(s["files"]) == [str(path / "mean.layer2.parquet"), str(path / "residues.layer2.parquet")]
    t = pq.read_table(path / "mean.layer2.parquet")
    assert t.schema.field("embedding").type.list_size == DIM
    assert str(t.schema.field("embedding").type.value_type) == "float"
    meta = t.schema.metadata
    assert json.loads(meta[b"embed.manifest"])["model"]["name"] == "test-tiny"
    assert meta[b"embed.kind"] == b"mean" and meta[b"embed.layer"] == b"2"
    df = t.to_pandas()
    assert df["id"].tolist() == ref["ids"]
    np.testing.assert_array_equal(np.stack(df["embedding"].to_numpy()), ref["mean"])
    # Zero-copy route: the fixed-size list flattens to [N, D].
    flat = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, DIM)
    np.testing.assert_array_equal(flat, ref["mean"])

    r = pq.read_table(path / "residues.layer2.parquet").to_pandas()
    lengths = np.diff(ref["offsets"])
    assert r["id"].tolist() == list(np.repeat(ref["ids"], lengths))
    assert r["position"].tolist() == [p for n in lengths for p in range(n)]
    np.testing.assert_array_equal(np.stack(r["embedding"].to_numpy()), ref["residues"])
    # One protein's [L, D] matrix, as a user would take it.
    one = r[r["id"] == "β-lactamase"]
    np.testing.assert_array_equal(np.stack(one["embedding"].to_numpy()), ref["residues"][3:4])
    assert pd.api.types.is_integer_dtype(r["position"])
    assert no_partials(path)


def test_parquet_row_groups_are_bounded(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(sources, "CHUNK_ROWS", 10)
    ref = make_store(tmp_path / "s", [3, 4, 5, 1, 9, 2, 2, 11, 1], kinds=("mean", "residues"))
    cv.convert(tmp_path / "s", "parquet", out=tmp_path / "pq")
    mean = pq.ParquetFile(tmp_path / "pq" / "mean.layer2.parquet")
    assert [mean.metadata.row_group(i).num_rows for i in range(mean.num_row_groups)] == [9]
    res = pq.ParquetFile(tmp_path / "pq" / "residues.layer2.parquet")
    sizes = [res.metadata.row_group(i).num_rows for i in range(res.num_row_groups)]
    # Whole records per row group, at most 10 residues unless one record alone is longer (11).
    assert sum(sizes) == 38 and sizes == [7, 6, 9, 4, 11, 1]
    t = res.read()
    np.testing.assert_array_equal(t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, DIM), ref["residues"])
    assert t.column("id").to_pylist() == list(np.repeat(ref["ids"], np.diff(ref["offsets"])))


def test_parquet_float16(tmp_path):
    import pyarrow.parquet as pq

    ref = make_store(tmp_path / "s", [2, 3], dtype="float16", kinds=("mean",))
    cv.convert(tmp_path / "s", "parquet")
    t = pq.read_table(tmp_path / "s" / "mean.layer2.parquet")
    assert str(t.schema.field("embedding").type.value_type) == "halffloat"
    flat = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, DIM)
    assert flat.dtype == np.float16
    np.testing.assert_array_equal(flat, ref["mean"])


def test_npy(store, tmp_path):
    path, ref = store
    same = cv.convert(path, "npy")  # the native layout: nothing to write
    assert str(path / "mean.layer2.npy") in same["files"]
    out = tmp_path / "copy"
    cv.convert(path, "npy", out=out, kind="residues")
    x = np.load(out / "residues.layer2.npy", mmap_mode="r")
    assert isinstance(x, np.memmap)
    np.testing.assert_array_equal(x, ref["residues"])
    np.testing.assert_array_equal(np.load(out / "residues.offsets.npy"), ref["offsets"])
    assert (out / "ids.txt").read_text().split("\n")[:-1] == ref["ids"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["include"] == ["residues"] and m["files"]["arrays"] == ["residues.layer2.npy", "residues.offsets.npy"]
    # The copy is itself a complete store: it converts again.
    assert cv.convert(out, "hdf5")["records"] == 5
    assert not (out / "mean.layer2.npy").exists()


def test_virnucpro(store):
    import torch

    path, ref = store
    s = cv.convert(path, "virnucpro")
    assert s["files"] == [str(path / "virnucpro" / "output_1_ESM.pt")]
    d = torch.load(path / "virnucpro" / "output_1_ESM.pt")
    assert set(d) == {"proteins", "data"}
    assert d["proteins"] == ref["ids"]
    assert isinstance(d["data"], list) and len(d["data"]) == 5
    for t, row in zip(d["data"], ref["mean"]):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (DIM,)
        np.testing.assert_array_equal(t.numpy(), row)
    # As VirNucPro's merge step uses it:
    assert torch.stack(d["data"]).shape == (5, DIM)


def test_virnucpro_splits_at_10000_and_converts_float16(tmp_path):
    import torch

    n = 10_001
    ref = make_store(tmp_path / "s", [1] * n, dtype="float16", kinds=("mean", "residues"))
    out = tmp_path / "vnp"
    (out).mkdir()
    (out / "output_3_ESM.pt").write_bytes(b"stale")  # from an earlier, larger conversion
    (out / "keep.txt").write_text("not ours")
    s = cv.convert(tmp_path / "s", "virnucpro", out=out)
    assert s["files"] == [str(out / "output_1_ESM.pt"), str(out / "output_2_ESM.pt")]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "output_1_ESM.pt", "output_2_ESM.pt"]
    a, b = torch.load(out / "output_1_ESM.pt"), torch.load(out / "output_2_ESM.pt")
    assert len(a["proteins"]) == len(a["data"]) == 10_000 and b["proteins"] == ["rec10000"]
    assert a["proteins"] + b["proteins"] == ref["ids"]
    got = torch.stack(a["data"] + b["data"])
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), ref["mean"].astype(np.float32))


def test_virnucpro_refuses_residues(store):
    path, _ = store
    with pytest.raises(cv.BadOptions, match="per-residue"):
        cv.convert(path, "virnucpro", kind="residues")


def test_incomplete_store_is_refused(tmp_path):
    s = tmp_path / "s"
    make_store(s, [2, 3])
    (s / "manifest.json").unlink()
    (s / "run.json").write_text("{}")
    with pytest.raises(cv.ConvertError, match="unfinished") as e:
        cv.convert(s, "hdf5")
    assert "resumes" in e.value.hint
    assert not (s / "embeddings.h5").exists()
    (s / "run.json").unlink()
    with pytest.raises(cv.ConvertError, match="not an embed store"):
        cv.convert(s, "parquet")


def test_bad_layer_and_kind(store):
    path, _ = store
    with pytest.raises(cv.BadOptions, match="holds layers 2"):
        cv.convert(path, "hdf5", layer=1)
    with pytest.raises(cv.BadOptions, match="holds mean, residues"):
        cv.convert(path, "parquet", kind="bos")


def test_damaged_store_writes_nothing(store):
    path, _ = store
    with open(path / "ids.txt", "a") as f:
        f.write("extra\n")
    with pytest.raises(cv.ConvertError, match="ids.txt holds 6 ids"):
        cv.convert(path, "parquet")
    assert not list(path.glob("*.parquet")) and no_partials(path)


def test_cli_json_and_error_line(store):
    path, _ = store
    env = {**os.environ, "PYTHONPATH": str(PY_DIR)}
    ok = subprocess.run([sys.executable, "-m", "embed_worker.tools.convert", str(path), "--to", "hdf5", "--json"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["format"] == "hdf5"
    (path / "manifest.json").unlink()
    bad = subprocess.run([sys.executable, "-m", "embed_worker.tools.convert", str(path), "--to", "hdf5", "--json"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stdout == ""
    err = json.loads(bad.stderr.strip().splitlines()[-1])
    assert err["name"] == "OutputError" and "manifest.json" in err["message"] and err["hint"]
