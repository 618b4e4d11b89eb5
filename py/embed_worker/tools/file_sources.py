"""The HDF5 file and Parquet directory embed wrote, as `Source`s for `embed convert` (sources.py
has the base class and the chunking helpers; `open_source` in open_source.py tells them apart).
Rows per read come from sources.CHUNK_ROWS at call time (tests shrink it).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from ..wire.protocol import OUTPUT_KINDS
from . import sources
from .sources import _PARQUET_FILE, HDF5_FORMAT, SOURCE_HINT, ConvertError, Source, rechunk, require_package, row_chunks


class Hdf5File(Source):
    """An HDF5 file embed wrote (README "Output formats"): the manifest from the root attributes,
    the outputs from the `{kind}/layer{L}` datasets it actually holds (a file converted with
    --layer/--kind holds a subset); datasets are read by h5py slices, ids `size` at a time."""

    format = "hdf5"
    label = "the HDF5 file"
    remedy = "pick one of those, or convert from the store it was written from (which holds what `embed run` wrote)"

    def __init__(self, path: Path) -> None:
        h5py = require_package("h5py", "reading an HDF5 file")
        self.path = path
        try:
            self.file = h5py.File(path, "r")
        except OSError as e:
            raise ConvertError(f"{path} is unreadable as HDF5: {e}", "the file is damaged or still being written; convert it again from its store")
        try:
            self._open(h5py)
        except BaseException:
            self.file.close()
            raise

    def _open(self, h5py) -> None:
        f = self.file
        if f.attrs.get("format") != HDF5_FORMAT or "manifest" not in f.attrs:
            raise ConvertError(f"{self.path} is an HDF5 file embed did not write (no {HDF5_FORMAT} manifest in its root attributes)",
                               "give an .h5 written by `embed convert --to hdf5` or `embed run --format hdf5`")
        try:
            self.manifest = json.loads(f.attrs["manifest"])
        except ValueError as e:
            raise self._damaged(f"its manifest attribute is not JSON ({e})")
        self.present = set()
        for kind in OUTPUT_KINDS:
            group = f.get(kind)
            if isinstance(group, h5py.Group):
                self.present |= {(kind, int(m.group(1))) for name in group if (m := re.fullmatch(r"layer(\d+)", name))}
        if not self.present:
            raise ConvertError(f"{self.path} holds no embeddings (no {{mean,bos,residues}}/layer{{L}} datasets)", SOURCE_HINT)
        self._held()
        if not isinstance(f.get("ids"), h5py.Dataset):
            raise self._damaged("no /ids dataset")
        self.records = int(f["ids"].shape[0])
        if self.records != int(self.manifest["counts"]["records"]):
            raise self._damaged(f"/ids holds {self.records} ids, its manifest says {self.manifest['counts']['records']}")
        self.residues = int(self.manifest["counts"].get("residues", 0))
        if "residues" in self.kinds:
            off = f.get("residues/offsets")
            if not isinstance(off, h5py.Dataset) or off.shape != (self.records + 1,):
                raise self._damaged(f"/residues/offsets is missing or not [{self.records + 1}]")
            self.residues = int(off[-1]) if self.records else 0
        shapes = {(k, l): f[f"{k}/layer{l}"].shape for k, l in self.present}
        dtypes = {f[f"{k}/layer{l}"].dtype for k, l in self.present}
        if len(dtypes) != 1:
            raise self._damaged(f"its datasets have different dtypes ({', '.join(sorted(map(str, dtypes)))})")
        self.dtype = np.dtype(dtypes.pop())
        self.dim = int(self.manifest["model"]["dim"])
        for (k, l), shape in sorted(shapes.items()):
            rows = self.residues if k == "residues" else self.records
            if shape != (rows, self.dim):
                raise self._damaged(f"/{k}/layer{l} has shape {shape}, expected ({rows}, {self.dim})")

    def array(self, kind: str, layer: int):
        return self.file[f"{kind}/layer{layer}"]

    def offsets(self) -> np.ndarray:
        return np.asarray(self.file["residues/offsets"][:], dtype=np.int64)  # 8 bytes a record

    def id_chunks(self, size: int | None = None) -> Iterator[list[str]]:
        ids = self.file["ids"].asstr()
        for a, b in row_chunks(self.records, size):
            yield ids[a:b].tolist()

    def close(self) -> None:
        self.file.close()


class ParquetDir(Source):
    """A directory of `{kind}.layer{L}.parquet` files embed wrote (README "Output formats"): the
    manifest from each file's key-value metadata (all must come from the same store), the outputs
    from the files present. Read a row group at a time, in batches of at most chunk_rows; without
    a per-protein file, ids and offsets come from the per-residue rows whose `position` is 0."""

    format = "parquet"
    label = "the Parquet directory"
    remedy = Hdf5File.remedy

    def __init__(self, path: Path, names: list[str]) -> None:
        require_package("pyarrow", "reading Parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        self.files: dict[tuple[str, int], Path] = {}
        rows: dict[tuple[str, int], int] = {}
        types = set()
        first: tuple[str, tuple] | None = None
        for name in names:
            kind, layer = _PARQUET_FILE.match(name).groups()
            layer = int(layer)
            try:
                pf = pq.ParquetFile(path / name)
            except (OSError, pa.ArrowException) as e:
                raise self._damaged(f"{name} is unreadable: {e}")
            meta = pf.schema_arrow.metadata or {}
            if b"embed.manifest" not in meta:
                raise ConvertError(f"{path / name} has no embed.manifest in its metadata: embed did not write it",
                                   "keep only Parquet files written by `embed convert` / `embed run --format parquet` in the directory")
            if meta.get(b"embed.kind") != kind.encode() or meta.get(b"embed.layer") != str(layer).encode():
                raise self._damaged(f"{name} holds {meta.get(b'embed.kind', b'?').decode()} of layer "
                                    f"{meta.get(b'embed.layer', b'?').decode()} (renamed?)")
            want = ["id", "position", "embedding"] if kind == "residues" else ["id", "embedding"]
            if pf.schema_arrow.names != want:
                raise self._damaged(f"{name} has columns {pf.schema_arrow.names}, expected {want}")
            m = json.loads(meta[b"embed.manifest"])
            identity = (m["model"]["name"], m.get("recordsSha256"), m["counts"]["records"], m["dtype"])
            if first is None:
                first, self.manifest = (name, identity), m
            elif identity != first[1]:
                raise ConvertError(f"{path}: {first[0]} and {name} were converted from different stores",
                                   "keep one store's Parquet files in a directory")
            types.add(pf.schema_arrow.field("embedding").type)
            self.files[(kind, layer)] = path / name
            rows[(kind, layer)] = pf.metadata.num_rows
        if len(types) != 1 or not pa.types.is_fixed_size_list(t := types.pop()):
            raise self._damaged("the embedding columns differ between files, or are not fixed-size lists")
        self.dim, self.dtype = t.list_size, np.dtype(t.value_type.to_pandas_dtype())
        self.present = set(self.files)
        self._held()
        self._rows = rows
        self._offsets: np.ndarray | None = None
        per_protein = {rows[p] for p in self.present if p[0] != "residues"}
        per_residue = {rows[p] for p in self.present if p[0] == "residues"}
        if len(per_protein) > 1 or len(per_residue) > 1:
            raise self._damaged("its files hold different numbers of rows")
        self.records = per_protein.pop() if per_protein else len(self.offsets()) - 1
        if self.records != int(self.manifest["counts"]["records"]):
            raise self._damaged(f"it holds {self.records} records, the manifest says {self.manifest['counts']['records']}")
        self.residues = per_residue.pop() if per_residue else int(self.manifest["counts"].get("residues", 0))

    def _batches(self, kind_layer: tuple[str, int], columns: list[str], size: int | None = None):
        """Record batches of at most `size` rows, read one row group at a time: memory is a row
        group (at most chunk_rows rows as embed writes them). Not `iter_batches`: on a fixed-size
        list column it buffered the whole file (pyarrow 26: 126 MiB held for a 122 MiB column)."""
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.files[kind_layer])
        for i in range(pf.num_row_groups):
            yield from pf.read_row_group(i, columns=columns).to_batches(max_chunksize=size or self.chunk_rows)

    def _residue_file(self) -> tuple[str, int]:
        return min(p for p in self.present if p[0] == "residues")

    def array(self, kind: str, layer: int) -> "ParquetColumn":
        return ParquetColumn(lambda: self._batches((kind, layer), ["embedding"]), self._rows[(kind, layer)], self.dim, self.dtype)

    def offsets(self) -> np.ndarray:
        """From `position` (0 starts a record): one pass over that column, kept (8 bytes a record)."""
        if self._offsets is None:
            starts, at = [], 0
            for batch in self._batches(self._residue_file(), ["position"], sources.CHUNK_ROWS):
                pos = batch.column(0).to_numpy()
                starts.append(np.flatnonzero(pos == 0) + at)
                at += len(pos)
            off = np.concatenate([*starts, [at]]).astype(np.int64)
            if at and off[0] != 0:
                raise self._damaged(f"{self.files[self._residue_file()].name} does not start at position 0")
            self._offsets = off
        return self._offsets

    def id_chunks(self, size: int | None = None) -> Iterator[list[str]]:
        per_protein = sorted(p for p in self.present if p[0] != "residues")
        if per_protein:
            chunks = (b.column(0).to_pylist() for b in self._batches(per_protein[0], ["id"], size or sources.CHUNK_ROWS))
        else:
            def starts():
                for b in self._batches(self._residue_file(), ["id", "position"], sources.CHUNK_ROWS):
                    first = np.flatnonzero(b.column(1).to_numpy() == 0)
                    yield b.column(0).take(first).to_pylist()
            chunks = starts()
        n = 0
        for chunk in rechunk(chunks, size or sources.CHUNK_ROWS):
            n += len(chunk)
            yield chunk
        if n != self.records:
            raise self._damaged(f"it holds {n} ids, expected {self.records}")


class ParquetColumn:
    """One file's `embedding` column as a [rows, dim] array: `[a:b]` reads on from the last slice
    (starting over from the file's first row only when asked for rows before it)."""

    def __init__(self, batches, rows: int, dim: int, dtype: np.dtype) -> None:
        self.shape, self.dtype, self._open = (rows, dim), dtype, batches
        self._restart()

    def _restart(self) -> None:
        self._it = self._open()
        self._buf = np.empty((0, self.shape[1]), dtype=self.dtype)
        self._at = 0  # the row of _buf[0]

    def __getitem__(self, s: slice) -> np.ndarray:
        a, b, step = s.indices(self.shape[0])
        if step != 1:
            raise ValueError("ParquetColumn reads row slices [a:b] only")
        if a < self._at:
            self._restart()
        while self._at + len(self._buf) < max(a, b):
            batch = next(self._it)
            rows = batch.column(0).flatten().to_numpy(zero_copy_only=False).reshape(-1, self.shape[1])
            self._buf = np.concatenate([self._buf, rows]) if len(self._buf) else rows
        lo, hi = a - self._at, max(a, b) - self._at
        out = self._buf[lo:hi]
        self._buf, self._at = self._buf[hi:], self._at + hi
        return out
