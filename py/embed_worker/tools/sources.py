"""What `embed convert` reads: a complete store (the native npy layout), or an HDF5 file or Parquet
directory that embed wrote, each as a `Source` read lazily (arrays a bounded number of rows at a
time, ids a chunk at a time). `open_source` tells them apart; VirNucPro .pt files are a target only
(one output each, no manifest). The writers are in convert.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import EmbedWorkerError
from ..wire.protocol import OUTPUT_KINDS
from ..esm2.registry import absolute_layer

CHUNK_ROWS = 65_536
CHUNK_BYTES = 64 << 20  # rows per write are also capped so that one chunk of vectors is at most this
HDF5_FORMAT = "embed-hdf5"
VIRNUCPRO_FILE = re.compile(r"^output_(\d+)_ESM\.pt$")


class ConvertError(EmbedWorkerError):
    """A store that cannot be converted, or options that do not fit it."""

    default_name = "OutputError"


class BadOptions(EmbedWorkerError):
    default_name = "BadOptions"


def require_package(module: str, need: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ConvertError(f"{need} needs the Python package {module}, which {sys.executable} lacks ({e})",
                           f"run scripts/setup, or `{sys.executable} -m pip install {module}`")


# ---------------------------------------------------------------------------------------------
# Sources: what a conversion reads


SOURCE_HINT = ("give a store directory (-o of `embed run`), an HDF5 file or a Parquet directory written by "
               "`embed convert` / `embed run --format`")
_PARQUET_FILE = re.compile(r"^(mean|bos|residues)\.layer(\d+)\.parquet$")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class Source:
    """Embeddings in one of embed's formats, read lazily, as the writers below see them.

    A subclass's constructor sets the attributes (checking the files before anything is written)
    and implements `array`, `offsets` and `id_chunks`. `array(kind, layer)` is [rows, dim]
    array-like: `.shape`, and row slices `[a:b]` that return NumPy arrays; the writers take them in
    order, front to back, so a source may read sequentially.
    """

    format: str  # the --to name of what is read: npy (a store), hdf5 or parquet
    label: str  # how messages name it: "the store", "the HDF5 file", ...
    remedy: str  # the hint when asked for a layer or output it does not hold
    path: Path
    manifest: dict  # the manifest of the store it was written from
    records: int
    residues: int
    layers: list[int]
    kinds: list[str]
    present: set[tuple[str, int]]  # the (kind, layer) arrays it holds
    dim: int
    num_layers: int
    dtype: np.dtype

    @property
    def chunk_rows(self) -> int:
        """Rows per write: CHUNK_ROWS, fewer for wide vectors (13,107 for dim 1280 float32)."""
        return max(1, min(CHUNK_ROWS, CHUNK_BYTES // (self.dim * self.dtype.itemsize)))

    def array(self, kind: str, layer: int):
        raise NotImplementedError

    def offsets(self) -> np.ndarray:
        """residues.offsets: [records + 1] int64, record i's residues are rows offsets[i]:offsets[i+1]."""
        raise NotImplementedError

    def id_chunks(self, size: int | None = None) -> Iterator[list[str]]:
        """The ids in order, exactly `size` at a time (the last chunk shorter; never all at once)."""
        raise NotImplementedError

    def select(self, layer: int | None, kind: str | None) -> list[tuple[str, int]]:
        """The (kind, layer) pairs to convert; `layer` may be negative (fair-esm style)."""
        layers = self.layers
        if layer is not None:
            resolved = absolute_layer(layer, self.num_layers)
            if resolved not in self.layers:
                raise BadOptions(f"--layer {layer}: {self.label} holds layers {', '.join(map(str, self.layers))}",
                                 self.remedy.format(what="--layers"))
            layers = [resolved]
        kinds = self.kinds
        if kind is not None:
            if kind not in self.kinds:
                raise BadOptions(f"--kind {kind}: {self.label} holds {', '.join(self.kinds)}",
                                 self.remedy.format(what="--include"))
            kinds = [kind]
        pairs = [(k, l) for k in kinds for l in layers if (k, l) in self.present]
        if not pairs:
            held = ", ".join(f"{k}.layer{l}" for k, l in sorted(self.present))
            raise BadOptions(f"{self.label} holds no {kind or 'output'} of layer {layers[0]} (it holds {held})",
                             "pick a --layer and --kind it holds")
        return pairs

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _damaged(self, message: str) -> ConvertError:
        if self.format == "npy":
            return ConvertError(f"{self.path}: {message}", "the store is damaged; rerun `embed run` with --overwrite")
        return ConvertError(f"{self.path}: {message}", f"{self.label} is damaged; convert it again from the store it was written from")

    def _held(self) -> None:
        """layers, kinds and num_layers from `present` (what the files hold) and the manifest."""
        self.layers = sorted({l for _, l in self.present})
        self.kinds = [k for k in OUTPUT_KINDS if any(k == kk for kk, _ in self.present)]
        self.num_layers = int(self.manifest["model"].get("numLayers", max(self.layers)))


def open_source(path: str | Path) -> Source:
    """The source at `path`, by what is there: a directory with manifest.json is a store, one with
    `{kind}.layer{L}.parquet` files a Parquet directory, a file with the HDF5 signature an HDF5 file."""
    path = Path(path)
    if not path.exists():
        raise ConvertError(f"{path} does not exist", SOURCE_HINT)
    if path.is_dir():
        names = sorted(os.listdir(path))
        if "manifest.json" in names or "run.json" in names:
            return Store(path)  # an unfinished store is refused there, with the resume hint
        parquet = [n for n in names if _PARQUET_FILE.match(n)]
        if parquet:
            return ParquetDir(path, parquet)
        if any(VIRNUCPRO_FILE.match(n) for n in names):
            raise _virnucpro_source(path)
        found = f"{len(names)} entries, e.g. {', '.join(names[:3])}" if names else "it is empty"
        raise ConvertError(f"{path} is not an embed store: a directory with no manifest.json and no "
                           f"{{mean,bos,residues}}.layer{{L}}.parquet files ({found})", SOURCE_HINT)
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_SIGNATURE:
        return Hdf5File(path)
    if VIRNUCPRO_FILE.match(path.name):
        raise _virnucpro_source(path)
    if head[:4] == b"PAR1":
        raise ConvertError(f"{path} is a single Parquet file; embed reads the directory it is in",
                           f"give its directory: embed convert {path.parent} --to ...")
    if head[:6] == b"\x93NUMPY":
        raise ConvertError(f"{path} is one .npy array; embed reads the store directory it is in",
                           f"give its directory: embed convert {path.parent} --to ...")
    raise ConvertError(f"{path} is not an embed store: a file that is not HDF5 (it starts with {head!r})", SOURCE_HINT)


def _virnucpro_source(path: Path) -> ConvertError:
    return ConvertError(f"{path} holds VirNucPro .pt files, which embed writes but does not read: each holds one "
                        "output as float32 and no manifest (model, layers, dtype)",
                        "convert from the store, HDF5 file or Parquet directory they were written from, "
                        "e.g. `embed convert out/ --to parquet`")


DAMAGED_HINT = "the store is damaged; rerun the `embed run` (or `embed merge`) that wrote it, with --overwrite"
OFFSETS_FILE = "residues.offsets.npy"


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data start in bytes) of a .npy, or ValueError saying why it is not one."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError("it is Fortran-ordered")
        return tuple(shape), dtype, f.tell()


class VerifiedArray:
    """A store's .npy as a [rows, dim] array-like read front to back from the file (not memory-
    mapped), hashing every byte it reads. Asking for the last rows first checks the file's SHA-256
    against the manifest's (when recorded) and raises ConvertError naming the file, so a writer
    never writes the last chunk of damaged data, and its temporary output is removed."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: np.dtype, data_start: int,
                 want: dict | None) -> None:
        self.path, self.shape, self.dtype, self._start, self._want = path, shape, dtype, data_start, want
        self._row_bytes = shape[1] * dtype.itemsize
        self._f = None
        self._rewind()
        if shape[0] == 0:
            self._finish()

    def _rewind(self) -> None:
        if self._f:
            self._f.close()
        self._f = open(self.path, "rb")
        self._h = hashlib.sha256(self._f.read(self._start))
        self._next = 0  # the next row the file position is at

    def _read(self, rows: int) -> bytes:
        want = rows * self._row_bytes
        buf = self._f.read(want)
        if len(buf) != want:
            raise ConvertError(f"{self.path} is shorter than its header says (truncated)", DAMAGED_HINT)
        self._h.update(buf)
        self._next += rows
        return buf

    def _finish(self) -> None:
        rest = self._f.read()
        self._h.update(rest)
        size = self._start + self.shape[0] * self._row_bytes + len(rest)
        self._f.close()
        if self._want is None:
            return
        if size != self._want["bytes"]:
            raise ConvertError(f"{self.path} is {size} bytes; the manifest recorded {self._want['bytes']}", DAMAGED_HINT)
        if self._h.hexdigest() != self._want["sha256"]:
            raise ConvertError(f"{self.path} has a SHA-256 other than the one the manifest recorded (its bytes changed)",
                               DAMAGED_HINT)

    def __getitem__(self, s: slice) -> np.ndarray:
        a, b, step = s.indices(self.shape[0])
        if step != 1:
            raise ValueError("VerifiedArray reads row slices [a:b] only")
        b = max(a, b)
        if a < self._next or self._f.closed:
            self._rewind()  # asked again from an earlier row: read (and hash) from the start
        while self._next < a:
            self._read(min(a - self._next, max(1, (64 << 20) // self._row_bytes)))  # skipped rows, hashed
        out = np.frombuffer(self._read(b - a), dtype=self.dtype).reshape(b - a, self.shape[1])
        if b == self.shape[0]:
            self._finish()
        return out


class Store(Source):
    """A complete store, read lazily: the manifest, then ids and arrays streamed front to back,
    checked as they are read (sizes, .npy headers and the ids count up front; SHA-256 checksums,
    when the manifest records them, over the bytes read)."""

    format = "npy"
    label = "the store"
    remedy = "pick one of those, or rerun `embed run` with {what}"

    def __init__(self, path: Path) -> None:
        self.path = self.dir = path
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
        self.present = {(k, l) for k in self.kinds for l in self.layers}
        self.dim = int(m["model"]["dim"])
        self.num_layers = int(m["model"].get("numLayers", max(self.layers)))
        self.dtype = np.dtype(m["dtype"])
        files = m.get("files", {})
        self.checksums: dict = files.get("checksums") or {}  # absent in stores written before them
        self.ids_file = files.get("ids", "ids.txt")
        self.headers: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}
        for f in [self.ids_file, *files.get("arrays", [])]:
            self._check_file(f)
        self._offsets: np.ndarray | None = None

    def _bad(self, name: str, problem: str) -> ConvertError:
        return ConvertError(f"{self.dir / name} {problem}", DAMAGED_HINT)

    def _check_file(self, name: str) -> None:
        """Before anything is written: present, the recorded size, a .npy header agreeing with the
        manifest and the file's size; ids.txt one line per record (and its checksum: it is read
        whole here anyway)."""
        p = self.dir / name
        if not p.exists():
            raise self._bad(name, "is missing (listed in the manifest)")
        size = p.stat().st_size
        want = self.checksums.get(name)
        if want and size != want["bytes"]:
            raise self._bad(name, f"is {size} bytes; the manifest recorded {want['bytes']}" + (" (truncated)" if size < want["bytes"] else ""))
        if self.checksums and not want:
            raise self._bad(name, "has no checksum in the manifest (the manifest was edited?)")
        if name == self.ids_file:
            n, last, digest = count_lines(p, hashed=True)
            if n != self.records:
                raise self._bad(name, f"holds {n} ids; the manifest says {self.records} records")
            if last not in (None, 10):
                raise self._bad(name, "does not end with a newline (truncated?)")
            if want and digest != want["sha256"]:
                raise self._bad(name, "has a SHA-256 other than the one the manifest recorded (its bytes changed)")
            return
        if size == 0:
            raise self._bad(name, "is empty (0 bytes)")
        try:
            shape, dtype, start = npy_header(p)
        except (ValueError, OSError, SyntaxError) as e:
            raise self._bad(name, f"has no valid .npy header ({e})")
        if name == OFFSETS_FILE:
            expect, edtype = (self.records + 1,), np.dtype("<i8")
        else:
            kind = name.split(".", 1)[0]
            expect, edtype = (self.residues if kind == "residues" else self.records, self.dim), self.dtype.newbyteorder("<")
        if shape != expect or dtype != edtype:
            raise self._bad(name, f"has header {list(shape)} {dtype.str}; the manifest implies {list(expect)} {edtype.str}")
        need = start + int(np.prod(shape)) * dtype.itemsize
        if size != need:
            raise self._bad(name, f"is {size} bytes; its header {list(shape)} {dtype.str} needs {need}" + (" (truncated)" if size < need else ""))
        self.headers[name] = (shape, dtype, start)

    def _verified(self, name: str) -> VerifiedArray:
        if name not in self.headers:
            raise self._bad(name, "is not listed in the manifest's files")
        shape, dtype, start = self.headers[name]
        rows_by_cols = (shape[0], shape[1] if len(shape) > 1 else 1)
        return VerifiedArray(self.dir / name, rows_by_cols, dtype, start, self.checksums.get(name))

    def array(self, kind: str, layer: int) -> VerifiedArray:
        return self._verified(f"{kind}.layer{layer}.npy")

    def offsets(self) -> np.ndarray:
        """Read whole (8 bytes a record) and checked, once."""
        if self._offsets is None:
            a = self._verified(OFFSETS_FILE)
            self._offsets = a[0:a.shape[0]].reshape(-1)
        return self._offsets

    def id_chunks(self, size: int | None = None) -> Iterator[list[str]]:
        size = size or CHUNK_ROWS
        n = 0
        with open(self.dir / self.ids_file, encoding="utf-8") as f:
            lines = (line.rstrip("\n") for line in f)
            while chunk := list(islice(lines, size)):
                n += len(chunk)
                yield chunk
        if n != self.records:
            raise ConvertError(f"ids.txt holds {n} ids, the manifest says {self.records}", "the store is damaged; rerun `embed run` with --overwrite")


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
            for batch in self._batches(self._residue_file(), ["position"], CHUNK_ROWS):
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
            chunks = (b.column(0).to_pylist() for b in self._batches(per_protein[0], ["id"], size or CHUNK_ROWS))
        else:
            def starts():
                for b in self._batches(self._residue_file(), ["id", "position"], CHUNK_ROWS):
                    first = np.flatnonzero(b.column(1).to_numpy() == 0)
                    yield b.column(0).take(first).to_pylist()
            chunks = starts()
        n = 0
        for chunk in rechunk(chunks, size or CHUNK_ROWS):
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


def count_lines(path: Path, hashed: bool = False):
    """Lines (`\n`) of a file; with `hashed`, (lines, its last byte or None, SHA-256 hex)."""
    n, last, h = 0, None, hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
            last = block[-1]
            if hashed:
                h.update(block)
    return (n, last, h.hexdigest()) if hashed else n


def row_chunks(n: int, size: int | None = None) -> Iterator[tuple[int, int]]:
    size = size or CHUNK_ROWS
    for a in range(0, n, size):
        yield a, min(n, a + size)


def rechunk(chunks: Iterable[list[str]], size: int) -> Iterator[list[str]]:
    """Lists of any lengths as lists of exactly `size` (the last shorter)."""
    pending: list[str] = []
    for chunk in chunks:
        pending.extend(chunk)
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


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
