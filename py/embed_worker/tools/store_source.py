"""The native store (npy arrays, ids.txt, manifest.json) as a `Source` for `embed convert`:
every array's header and size checked against the manifest, its bytes hashed as they are read
(VerifiedArray). sources.py has the base class, open_source.py `open_source`.
"""
from __future__ import annotations

import hashlib
import json
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from ..wire.protocol import OUTPUT_KINDS
from . import sources
from .sources import ConvertError, Source, count_lines


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
        size = size or sources.CHUNK_ROWS
        n = 0
        with open(self.dir / self.ids_file, encoding="utf-8") as f:
            lines = (line.rstrip("\n") for line in f)
            while chunk := list(islice(lines, size)):
                n += len(chunk)
                yield chunk
        if n != self.records:
            raise ConvertError(f"ids.txt holds {n} ids, the manifest says {self.records}", "the store is damaged; rerun `embed run` with --overwrite")
