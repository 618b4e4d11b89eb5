"""`python -m embed_worker.convert STORE --to hdf5|parquet|npy|virnucpro`: a complete store in
the formats its users load (layouts: README "Output formats").

Streams: arrays are read with ``np.load(mmap_mode="r")`` and written ``Store.chunk_rows`` rows at a
time (HDF5 chunked datasets, Parquet row groups, one VirNucPro .pt per 10,000 records), and ids
are read from ids.txt a chunk at a time, so memory stays bounded whatever the store's size.
Every output file is written under a temporary name and renamed into place.

With ``--json`` the summary goes to stdout as JSON; a failure exits 1 with its last stderr line
being ``{"name", "message", "hint"}`` as JSON (read by src/formats.ts).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import EmbedWorkerError
from .protocol import OUTPUT_KINDS
from .registry import absolute_layer

FORMATS = ("npy", "hdf5", "parquet", "virnucpro")
CHUNK_ROWS = 65_536
CHUNK_BYTES = 64 << 20  # rows per write are also capped so that one chunk of vectors is at most this
VIRNUCPRO_PER_FILE = 10_000
HDF5_FORMAT = "embed-hdf5"
LAYOUT_VERSION = 1


class ConvertError(EmbedWorkerError):
    """A store that cannot be converted, or options that do not fit it."""

    default_name = "OutputError"


class BadOptions(EmbedWorkerError):
    default_name = "BadOptions"


# ---------------------------------------------------------------------------------------------
# Reading a store


class Store:
    """A complete store, read lazily: the manifest, ids streamed, arrays memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.dir = path
        if not path.is_dir():
            raise ConvertError(f"{path} is not a directory", "give the -o directory of an `embed run`")
        mpath = path / "manifest.json"
        if not mpath.exists():
            if (path / "run.json").exists():
                raise ConvertError(f"{path} is an unfinished store (no manifest.json yet)",
                                   "rerun the same `embed run` command to finish it (it resumes), then convert")
            raise ConvertError(f"{path} is not an embed store (no manifest.json)",
                               "give the -o directory of a finished `embed run`")
        try:
            self.manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as e:
            raise ConvertError(f"{mpath} is unreadable: {e}", "the store is damaged; rerun `embed run` with --overwrite")
        m = self.manifest
        if m.get("format") != "embed-store":
            raise ConvertError(f"{mpath} is not an embed store manifest", "give the -o directory of an `embed run`")
        self.records = int(m["counts"]["records"])
        self.residues = int(m["counts"].get("residues", 0))
        self.layers = [int(x) for x in m["layers"]]
        self.kinds = [k for k in OUTPUT_KINDS if k in m["include"]]
        self.dim = int(m["model"]["dim"])
        self.num_layers = int(m["model"].get("numLayers", max(self.layers)))
        self.dtype = np.dtype(m["dtype"])
        for f in [m.get("files", {}).get("ids", "ids.txt"), *m.get("files", {}).get("arrays", [])]:
            if not (path / f).exists():
                raise ConvertError(f"{path / f} is missing (listed in the manifest)", "the store is damaged; rerun `embed run` with --overwrite")
        n = count_lines(path / "ids.txt")  # checked before anything is written
        if n != self.records:
            raise ConvertError(f"ids.txt holds {n} ids, the manifest says {self.records}", "the store is damaged; rerun `embed run` with --overwrite")

    @property
    def chunk_rows(self) -> int:
        """Rows per write: CHUNK_ROWS, fewer for wide vectors (13,107 for dim 1280 float32)."""
        return max(1, min(CHUNK_ROWS, CHUNK_BYTES // (self.dim * self.dtype.itemsize)))

    def array(self, kind: str, layer: int) -> np.ndarray:
        a = np.load(self.dir / f"{kind}.layer{layer}.npy", mmap_mode="r")
        rows = self.residues if kind == "residues" else self.records
        if a.shape != (rows, self.dim):
            raise ConvertError(f"{kind}.layer{layer}.npy has shape {a.shape}, the manifest says ({rows}, {self.dim})",
                               "the store is damaged; rerun `embed run` with --overwrite")
        return a

    def offsets(self) -> np.ndarray:
        return np.load(self.dir / "residues.offsets.npy", mmap_mode="r")

    def id_chunks(self, size: int | None = None) -> Iterator[list[str]]:
        """ids.txt in order, `size` at a time (never all at once)."""
        size = size or CHUNK_ROWS
        n = 0
        with open(self.dir / "ids.txt", encoding="utf-8") as f:
            lines = (line.rstrip("\n") for line in f)
            while chunk := list(islice(lines, size)):
                n += len(chunk)
                yield chunk
        if n != self.records:
            raise ConvertError(f"ids.txt holds {n} ids, the manifest says {self.records}", "the store is damaged; rerun `embed run` with --overwrite")

    def select(self, layer: int | None, kind: str | None) -> list[tuple[str, int]]:
        """The (kind, layer) pairs to convert; `layer` may be negative (fair-esm style)."""
        layers = self.layers
        if layer is not None:
            resolved = absolute_layer(layer, self.num_layers)
            if resolved not in self.layers:
                raise BadOptions(f"--layer {layer}: the store holds layers {', '.join(map(str, self.layers))}",
                                 "pick one of those, or rerun `embed run` with --layers")
            layers = [resolved]
        kinds = self.kinds
        if kind is not None:
            if kind not in self.kinds:
                raise BadOptions(f"--kind {kind}: the store holds {', '.join(self.kinds)}",
                                 "pick one of those, or rerun `embed run` with --include")
            kinds = [kind]
        return [(k, l) for k in kinds for l in layers]


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def row_chunks(n: int, size: int | None = None) -> Iterator[tuple[int, int]]:
    size = size or CHUNK_ROWS
    for a in range(0, n, size):
        yield a, min(n, a + size)


def record_chunks(offsets: np.ndarray, size: int | None = None) -> Iterator[tuple[int, int]]:
    """Record ranges [i, j) holding at most `size` residues (at least one record each)."""
    size = size or CHUNK_ROWS
    n = len(offsets) - 1
    i = 0
    while i < n:
        j = int(np.searchsorted(offsets, offsets[i] + size, side="right")) - 1
        j = min(n, max(j, i + 1))
        yield i, j
        i = j


# ---------------------------------------------------------------------------------------------
# Atomic output


_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_path(final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    return Path(name)


def _commit(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class Atomic:
    """`with Atomic(final) as tmp:` write tmp; renamed to final on success, removed on failure."""

    def __init__(self, final: Path) -> None:
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _tmp_path(self.final)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            _commit(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)


def _require(module: str, fmt: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ConvertError(f"--to {fmt} needs the Python package {module}, which {sys.executable} lacks ({e})",
                           f"run scripts/setup, or `{sys.executable} -m pip install {module}`")


def _manifest_attrs(store: Store) -> dict:
    m = store.manifest
    return {
        "format": HDF5_FORMAT, "layout_version": LAYOUT_VERSION,
        "store_format": m["format"], "store_version": m.get("version", 0),
        "model": m["model"]["name"], "model_path": m["model"].get("path", ""),
        "num_layers": store.num_layers, "dim": store.dim,
        "layers": np.asarray(store.layers, dtype=np.int64), "include": ",".join(store.kinds),
        "dtype": str(store.dtype), "precision": m.get("precision", ""), "truncate": m.get("truncate", 0),
        "records": store.records, "residues": store.residues,
        "records_sha256": m.get("recordsSha256", ""), "created_at": m.get("createdAt", ""),
        "manifest": json.dumps(m),
    }


# ---------------------------------------------------------------------------------------------
# Formats


def to_hdf5(store: Store, pairs: list[tuple[str, int]], out: Path) -> list[Path]:
    h5py = _require("h5py", "hdf5")
    chunk_rows = max(1, min(CHUNK_ROWS, (1 << 20) // (store.dim * store.dtype.itemsize)))  # ~1 MiB chunks
    with Atomic(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in _manifest_attrs(store).items():
                f.attrs[k] = v
            ids = f.create_dataset("ids", shape=(store.records,), dtype=h5py.string_dtype("utf-8"),
                                   chunks=(min(max(store.records, 1), CHUNK_ROWS),) if store.records else None)
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
                                      chunks=(min(off.shape[0], CHUNK_ROWS),))
                for a, b in row_chunks(off.shape[0]):
                    ds[a:b] = off[a:b]
    return [out]


def _parquet_meta(store: Store, kind: str, layer: int) -> dict[bytes, bytes]:
    return {b"embed.manifest": json.dumps(store.manifest).encode(), b"embed.kind": kind.encode(),
            b"embed.layer": str(layer).encode(), b"embed.layout_version": str(LAYOUT_VERSION).encode()}


def to_parquet(store: Store, pairs: list[tuple[str, int]], out: Path) -> list[Path]:
    _require("pyarrow", "parquet")
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
        schema = pa.schema(fields, metadata=_parquet_meta(store, kind, layer))
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
                        raise ConvertError("ids.txt holds more ids than residues.offsets.npy has records",
                                           "the store is damaged; rerun `embed run` with --overwrite")
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


_VIRNUCPRO_FILE = re.compile(r"^output_(\d+)_ESM\.pt$")


def to_virnucpro(store: Store, pairs: list[tuple[str, int]], out: Path, first: int) -> list[Path]:
    _require("torch", "virnucpro")
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
            _commit(staging / name, out / name)
        keep = set(names)
        for p in out.iterdir():  # files of an earlier conversion beyond this one's count
            if _VIRNUCPRO_FILE.match(p.name) and p.name not in keep:
                p.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / n for n in names]


def to_npy(store: Store, pairs: list[tuple[str, int]], out: Path) -> list[Path]:
    """The native layout. Into the store itself: nothing to do. Elsewhere: a store holding only
    the selected arrays (a valid store: ids, arrays, offsets, manifest written last)."""
    if out.resolve() == store.dir.resolve():
        return [store.dir / f"{k}.layer{l}.npy" for k, l in pairs] + (
            [store.dir / "residues.offsets.npy"] if any(k == "residues" for k, _ in pairs) else [])
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists() or (out / "run.json").exists():
        (out / "manifest.json").unlink(missing_ok=True)  # replacing an earlier copy: stop looking complete first
    files = []
    for kind, layer in pairs:
        src = store.array(kind, layer)
        final = out / f"{kind}.layer{layer}.npy"
        with Atomic(final) as tmp:
            dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=store.dtype, shape=src.shape)
            for a, b in row_chunks(src.shape[0], store.chunk_rows):
                dst[a:b] = src[a:b]
            dst.flush()
            del dst
        files.append(final)
    if any(k == "residues" for k, _ in pairs):
        with Atomic(out / "residues.offsets.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(store.offsets(), dtype=np.int64), allow_pickle=False)
        files.append(out / "residues.offsets.npy")
    with Atomic(out / "ids.txt") as tmp, open(tmp, "w", encoding="utf-8") as f:
        for chunk in store.id_chunks():
            f.write("".join(i + "\n" for i in chunk))
    m = dict(store.manifest)
    m["layers"] = sorted({l for _, l in pairs})
    m["include"] = [k for k in OUTPUT_KINDS if any(k == kk for kk, _ in pairs)]
    m["files"] = {"ids": "ids.txt", "arrays": sorted(p.name for p in files)}
    m["convertedFrom"] = str(store.dir.resolve())
    m.pop("load", None)
    with Atomic(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(m, indent=2) + "\n")
    return files + [out / "ids.txt", out / "manifest.json"]


def default_out(store: Store, fmt: str) -> Path:
    return {"hdf5": store.dir / "embeddings.h5", "parquet": store.dir, "npy": store.dir,
            "virnucpro": store.dir / "virnucpro"}[fmt]


def convert(store_dir: str | Path, fmt: str, out: str | Path | None = None, layer: int | None = None,
            kind: str | None = None, first: int = 1) -> dict:
    if fmt not in FORMATS:
        raise BadOptions(f"--to {fmt}: unknown format", f"choose from {', '.join(FORMATS)}")
    if kind == "per-residue":
        kind = "residues"
    if kind is not None and kind not in OUTPUT_KINDS:
        raise BadOptions(f"--kind {kind}: unknown output", f"choose from {', '.join(OUTPUT_KINDS)}")
    t0 = time.perf_counter()
    store = Store(Path(store_dir))
    if fmt == "virnucpro":
        if kind == "residues":
            raise BadOptions("--to virnucpro holds one vector per protein; per-residue outputs do not fit it",
                             "use --kind mean (the default) or bos")
        per_protein = [k for k in store.kinds if k != "residues"]
        if not per_protein:
            raise BadOptions(f"{store.dir} holds no per-protein output (mean or bos)",
                             "rerun `embed run` with --include mean")
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
        "format": fmt, "store": str(store.dir), "out": str(dest), "files": [str(p) for p in files],
        "records": store.records, "residues": store.residues if any(k == "residues" for k, _ in pairs) else 0,
        "outputs": [{"kind": k, "layer": l} for k, l in pairs], "dim": store.dim, "dtype": "float32" if fmt == "virnucpro" else str(store.dtype),
        "bytes": sum(p.stat().st_size for p in files if p.exists()), "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embed_worker.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("--to", required=True, choices=FORMATS)
    p.add_argument("--out", "-o", default=None, help="file (hdf5) or directory (parquet, npy, virnucpro); default: inside STORE")
    p.add_argument("--layer", type=int, default=None, help="only this layer (negative: from the last, as fair-esm)")
    p.add_argument("--kind", default=None, help="only this output: mean, bos, residues")
    p.add_argument("--first", type=int, default=1, help="virnucpro: number of the first file (output_{first}_ESM.pt)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    a = p.parse_args(argv)
    try:
        summary = convert(a.store, a.to, a.out, a.layer, a.kind, a.first)
    except EmbedWorkerError as e:
        print(f"error: {e.message}\nhint: {e.hint}", file=sys.stderr)
        print(json.dumps(e.to_wire()), file=sys.stderr)
        return 1
    if a.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{summary['records']} records -> {summary['format']}: " + ", ".join(summary["files"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
