"""`python -m embed_worker.tools.convert SOURCE --to hdf5|parquet|npy|virnucpro`: embeddings embed wrote,
in any of its formats, in the formats their users load (layouts: README "Output formats").

SOURCE is a complete store (the native npy layout), or an HDF5 file or Parquet directory that embed
wrote (open_source tells them apart; VirNucPro .pt files are a target only: one output each, no
manifest). Each is a `Source`; the writers (to_hdf5, to_parquet, to_virnucpro, to_npy) read any.

Streams: arrays are read a bounded number of rows at a time (``np.load(mmap_mode="r")``, h5py
slices, Parquet row groups) and written ``Source.chunk_rows`` rows at a time (HDF5 chunked
datasets, Parquet row groups, one VirNucPro .pt per 10,000 records), and ids are read a chunk at a
time, so memory stays bounded whatever the size (residue offsets, 8 bytes a record, are held for
HDF5 and Parquet sources). Every output file is written under a temporary name and renamed into
place.

With ``--json`` the summary goes to stdout as JSON; a failure exits 1 with its last stderr line
being ``{"name", "message", "hint"}`` as JSON (read by src/formats.ts).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import EmbedWorkerError
from .atomic import COMMITTED, Atomic, Hashed, commit, write_npy
from .cli import run_tool
from . import sources
from .open_source import open_source
from .sources import (HDF5_FORMAT, VIRNUCPRO_FILE, BadOptions, ConvertError, Source, require_package,
                      record_chunks, row_chunks)
from ..wire.protocol import OUTPUT_KINDS

FORMATS = ("npy", "hdf5", "parquet", "virnucpro")
VIRNUCPRO_PER_FILE = 10_000
LAYOUT_VERSION = 1


def _described(store: Source, pairs: list[tuple[str, int]]) -> dict:
    """The source's manifest with its layers and outputs narrowed to what a conversion writes."""
    m = dict(store.manifest)
    m["layers"] = sorted({l for _, l in pairs})
    m["include"] = [k for k in OUTPUT_KINDS if any(k == kk for kk, _ in pairs)]
    return m


def _manifest_attrs(store: Source, pairs: list[tuple[str, int]]) -> dict:
    m = _described(store, pairs)
    return {
        "format": HDF5_FORMAT, "layout_version": LAYOUT_VERSION,
        "store_format": m["format"], "store_version": m.get("version", 0),
        "model": m["model"]["name"], "model_path": m["model"].get("path", ""),
        "num_layers": store.num_layers, "dim": store.dim,
        "layers": np.asarray(m["layers"], dtype=np.int64), "include": ",".join(m["include"]),
        "dtype": str(store.dtype), "precision": m.get("precision", ""), "truncate": m.get("truncate", 0),
        "records": store.records, "residues": store.residues,
        "records_sha256": m.get("recordsSha256", ""), "created_at": m.get("createdAt", ""),
        "manifest": json.dumps(m),
    }


# ---------------------------------------------------------------------------------------------
# Formats


def to_hdf5(store: Source, pairs: list[tuple[str, int]], out: Path) -> list[Path]:
    h5py = require_package("h5py", "--to hdf5")
    chunk_rows = max(1, min(sources.CHUNK_ROWS, (1 << 20) // (store.dim * store.dtype.itemsize)))  # ~1 MiB chunks
    with Atomic(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in _manifest_attrs(store, pairs).items():
                f.attrs[k] = v
            ids = f.create_dataset("ids", shape=(store.records,), dtype=h5py.string_dtype("utf-8"),
                                   chunks=(min(max(store.records, 1), sources.CHUNK_ROWS),) if store.records else None)
            at = 0
            for chunk in store.id_chunks():
                ids[at:at + len(chunk)] = chunk
                at += len(chunk)
            for kind, layer in pairs:
                src = store.array(kind, layer)
                rows = src.shape[0]
                ds = f.create_dataset(f"{kind}/layer{layer}", shape=src.shape, dtype=store.dtype,
                                      chunks=(min(max(rows, 1), chunk_rows), store.dim) if rows else None)
                ds.attrs["kind"], ds.attrs["layer"] = kind, layer
                for a, b in row_chunks(rows, store.chunk_rows):
                    ds[a:b] = src[a:b]
            if any(k == "residues" for k, _ in pairs):
                off = store.offsets()
                ds = f.create_dataset("residues/offsets", shape=off.shape, dtype=np.int64,
                                      chunks=(min(off.shape[0], sources.CHUNK_ROWS),))
                for a, b in row_chunks(off.shape[0]):
                    ds[a:b] = off[a:b]
    return [out]


def _parquet_meta(manifest: dict, kind: str, layer: int) -> dict[bytes, bytes]:
    return {b"embed.manifest": json.dumps(manifest).encode(), b"embed.kind": kind.encode(),
            b"embed.layer": str(layer).encode(), b"embed.layout_version": str(LAYOUT_VERSION).encode()}


def to_parquet(store: Source, pairs: list[tuple[str, int]], out: Path) -> list[Path]:
    require_package("pyarrow", "--to parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    value = pa.from_numpy_dtype(store.dtype)
    vec = pa.list_(value, store.dim)
    files = []
    for kind, layer in pairs:
        src = store.array(kind, layer)
        final = out / f"{kind}.layer{layer}.parquet"
        if kind == "residues":
            fields = [pa.field("id", pa.string()), pa.field("position", pa.int32()), pa.field("embedding", vec)]
        else:
            fields = [pa.field("id", pa.string()), pa.field("embedding", vec)]
        schema = pa.schema(fields, metadata=_parquet_meta(_described(store, pairs), kind, layer))
        # Dictionary encoding and min/max statistics only where they help (ids, positions): on
        # the float vectors they cost 3x the write time for nothing.
        keys = ["id", "position"] if kind == "residues" else ["id"]
        with Atomic(final) as tmp:
            with pq.ParquetWriter(tmp, schema, use_dictionary=keys, write_statistics=keys) as w:
                if kind == "residues":
                    off = store.offsets()
                    ids = store.id_chunks()
                    pending: list[str] = []
                    for i, j in record_chunks(off, store.chunk_rows):
                        while len(pending) < j - i:
                            pending.extend(next(ids))
                        chunk_ids, pending = pending[: j - i], pending[j - i:]
                        base = np.asarray(off[i:j + 1], dtype=np.int64)
                        lengths = np.diff(base)
                        a, b = int(base[0]), int(base[-1])
                        starts = np.repeat(base[:-1] - a, lengths)
                        cols = [
                            pa.array(np.repeat(np.asarray(chunk_ids, dtype=object), lengths), pa.string()),
                            pa.array((np.arange(b - a) - starts).astype(np.int32)),
                            _vectors(src, a, b),
                        ]
                        _write_group(w, pa.Table.from_arrays(cols, schema=schema))
                    if pending or next(ids, None) is not None:
                        raise store._damaged("it holds more ids than per-residue records")
                else:
                    at = 0
                    for chunk in store.id_chunks(store.chunk_rows):
                        b = at + len(chunk)
                        cols = [pa.array(chunk, pa.string()), _vectors(src, at, b)]
                        _write_group(w, pa.Table.from_arrays(cols, schema=schema))
                        at = b
                if store.records == 0:
                    w.write_table(schema.empty_table())
        files.append(final)
    return files


def _vectors(src: np.ndarray, a: int, b: int):
    """Rows [a, b) of a [rows, dim] array as the `embedding` column: a fixed-size list per row."""
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(src[a:b]).reshape(-1)), src.shape[1])


def _write_group(writer, table) -> None:
    """One row group per call: per-record files hold CHUNK_ROWS records per group, per-residue
    files whole records up to CHUNK_ROWS residues (more only for a single longer record)."""
    writer.write_table(table, row_group_size=max(1, table.num_rows))


def to_virnucpro(store: Source, pairs: list[tuple[str, int]], out: Path, first: int) -> list[Path]:
    require_package("torch", "--to virnucpro")
    import torch

    (kind, layer), = pairs
    src = store.array(kind, layer)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".embed-virnucpro-", dir=out))
    try:
        names = []
        at = 0
        for k, chunk in enumerate(store.id_chunks(VIRNUCPRO_PER_FILE)):
            b = at + len(chunk)
            block = torch.from_numpy(np.array(src[at:b], dtype=np.float32))
            # One float32 tensor of shape (dim,) per protein, each with its own storage, as the
            # original pipeline's `embedding.float().cpu()` produced.
            data = [block[i].clone() for i in range(len(chunk))]
            name = f"output_{first + k}_ESM.pt"
            torch.save({"proteins": chunk, "data": data}, staging / name)
            names.append(name)
            at = b
        for name in names:
            commit(staging / name, out / name)
        keep = set(names)
        for p in out.iterdir():  # files of an earlier conversion beyond this one's count
            if VIRNUCPRO_FILE.match(p.name) and p.name not in keep:
                p.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / n for n in names]


def to_npy(store: Source, pairs: list[tuple[str, int]], out: Path) -> list[Path]:
    """The native layout. Into the store itself: nothing to do. Elsewhere: a store holding only
    the selected arrays (a valid store: ids, arrays, offsets, manifest written last)."""
    if store.format == "npy" and _same(out, store.path):
        return [store.path / f"{k}.layer{l}.npy" for k, l in pairs] + (
            [store.path / "residues.offsets.npy"] if any(k == "residues" for k, _ in pairs) else [])
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists() or (out / "run.json").exists():
        (out / "manifest.json").unlink(missing_ok=True)  # replacing an earlier copy: stop looking complete first
    files = []
    checksums = {}  # each file's size and SHA-256, as it is written (a store's manifest records them)
    for kind, layer in pairs:
        src = store.array(kind, layer)
        final = out / f"{kind}.layer{layer}.npy"
        with Atomic(final) as tmp, open(tmp, "wb") as raw:
            f = Hashed(raw)
            write_npy(f, store.dtype, tuple(src.shape), (src[a:b] for a, b in row_chunks(src.shape[0], store.chunk_rows)))
        checksums[final.name] = f.checksum()
        files.append(final)
    if any(k == "residues" for k, _ in pairs):
        off = np.asarray(store.offsets(), dtype=np.int64)
        with Atomic(out / "residues.offsets.npy") as tmp, open(tmp, "wb") as raw:
            f = Hashed(raw)
            write_npy(f, np.dtype("<i8"), off.shape, [off])
        checksums["residues.offsets.npy"] = f.checksum()
        files.append(out / "residues.offsets.npy")
    with Atomic(out / "ids.txt") as tmp, open(tmp, "wb") as raw:
        f = Hashed(raw)
        for chunk in store.id_chunks():
            f.write("".join(i + "\n" for i in chunk).encode("utf-8"))
    checksums["ids.txt"] = f.checksum()
    m = _described(store, pairs)
    m["files"] = {"ids": "ids.txt", "arrays": sorted(p.name for p in files), "checksums": dict(sorted(checksums.items()))}
    m["convertedFrom"] = str(store.path.resolve())
    m.pop("load", None)
    with Atomic(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(m, indent=2) + "\n")
    return files + [out / "ids.txt", out / "manifest.json"]


def default_out(src: Source, fmt: str) -> Path:
    """Next to the source: inside a store or a Parquet directory, beside an HDF5 file. A new
    store (npy) from an HDF5 file or Parquet directory has no default: it could land on a store."""
    if fmt == "npy" and src.format != "npy":
        raise BadOptions(f"--to npy from {src.label} writes a new store, and needs -o", "give -o the new store's directory, e.g. -o out-npy/")
    base = src.path if src.path.is_dir() else src.path.parent
    return {"hdf5": base / "embeddings.h5", "parquet": base, "npy": base, "virnucpro": base / "virnucpro"}[fmt]


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def convert(source: str | Path, fmt: str, out: str | Path | None = None, layer: int | None = None,
            kind: str | None = None, first: int = 1) -> dict:
    """Convert the store, HDF5 file or Parquet directory at `source` (detected: open_source) to
    `fmt`; returns the summary. Raises ConvertError / BadOptions with hints."""
    if fmt not in FORMATS:
        raise BadOptions(f"--to {fmt}: unknown format", f"choose from {', '.join(FORMATS)}")
    if kind == "per-residue":
        kind = "residues"
    if kind is not None and kind not in OUTPUT_KINDS:
        raise BadOptions(f"--kind {kind}: unknown output", f"choose from {', '.join(OUTPUT_KINDS)}")
    t0 = time.perf_counter()
    COMMITTED.clear()
    try:
        with open_source(source) as store:
            return _convert(store, fmt, out, layer, kind, first) | {"seconds": round(time.perf_counter() - t0, 3)}
    except BaseException:
        for p in COMMITTED:  # a damaged source noticed after some outputs were written
            p.unlink(missing_ok=True)
        raise
    finally:
        COMMITTED.clear()


def _convert(store: Source, fmt: str, out: str | Path | None, layer: int | None, kind: str | None, first: int) -> dict:
    if fmt == "virnucpro":
        if kind == "residues":
            raise BadOptions("--to virnucpro holds one vector per protein; per-residue outputs do not fit it",
                             "use --kind mean (the default) or bos")
        per_protein = [k for k in store.kinds if k != "residues"]
        if not per_protein:
            raise BadOptions(f"{store.path} holds no per-protein output (mean or bos)",
                             "rerun `embed run` with --include mean" if store.format == "npy" else store.remedy)
        k = kind or ("mean" if "mean" in per_protein else per_protein[0])
        pairs = store.select(layer, k)
        if layer is None:
            pairs = [pairs[-1]]  # the last layer, as VirNucPro used (esm2_t36_3B layer 36)
    else:
        pairs = store.select(layer, kind)
    dest = Path(out) if out is not None else default_out(store, fmt)
    if fmt in ("parquet", "virnucpro", "npy") and dest.exists() and not dest.is_dir():
        raise BadOptions(f"--out {dest}: --to {fmt} writes a directory, and {dest} is a file", "give a directory")
    if fmt == "hdf5" and dest.is_dir():
        dest = dest / "embeddings.h5"
    if fmt == store.format and fmt != "npy" and _same(dest, store.path):
        # (npy into the store itself is a no-op: to_npy.)
        raise BadOptions(f"{dest} is the source itself: converting {store.label} onto itself would overwrite what it reads",
                         "give -o another path")
    try:
        if fmt == "hdf5":
            files = to_hdf5(store, pairs, dest)
        elif fmt == "parquet":
            files = to_parquet(store, pairs, dest)
        elif fmt == "virnucpro":
            files = to_virnucpro(store, pairs, dest, first)
        else:
            files = to_npy(store, pairs, dest)
    except EmbedWorkerError:
        raise
    except OSError as e:
        raise ConvertError(f"writing {dest} failed: {e}", "check free space and permissions of the output path") from e
    return {
        "format": fmt, "from": store.format, "source": str(store.path), "out": str(dest), "files": [str(p) for p in files],
        "records": store.records, "residues": store.residues if any(k == "residues" for k, _ in pairs) else 0,
        "outputs": [{"kind": k, "layer": l} for k, l in pairs], "dim": store.dim, "dtype": "float32" if fmt == "virnucpro" else str(store.dtype),
        "bytes": sum(p.stat().st_size for p in files if p.exists()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embed_worker.tools.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a store directory, an HDF5 file or a Parquet directory embed wrote")
    p.add_argument("--to", required=True, choices=FORMATS)
    p.add_argument("--out", "-o", default=None, help="file (hdf5) or directory (parquet, npy, virnucpro); default: next to SOURCE")
    p.add_argument("--layer", type=int, default=None, help="only this layer (negative: from the last, as fair-esm)")
    p.add_argument("--kind", default=None, help="only this output: mean, bos, residues")
    p.add_argument("--first", type=int, default=1, help="virnucpro: number of the first file (output_{first}_ESM.pt)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    a = p.parse_args(argv)
    return run_tool(lambda: convert(a.source, a.to, a.out, a.layer, a.kind, a.first), as_json=a.json,
                    human=lambda s: f"{s['records']} records -> {s['format']}: " + ", ".join(s["files"]))


if __name__ == "__main__":
    sys.exit(main())
