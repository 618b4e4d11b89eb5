"""What `embed convert` reads: a complete store (the native npy layout), or an HDF5 file or Parquet
directory that embed wrote, each as a `Source` read lazily (arrays a bounded number of rows at a
time, ids a chunk at a time): the base class, errors and chunking helpers here, the readers in
store_source.py and file_sources.py, and `open_source` (open_source.py) tells them apart; VirNucPro
.pt files are a target only (one output each, no manifest). The writers are in convert.py.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
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


def require_package(module: str, need: str, load: bool = True):
    """`module` imported (ConvertError naming `need` if it is missing); with load=False only
    checked to be installed, not imported (for a parent whose child processes import it)."""
    if not load and importlib.util.find_spec(module) is not None:
        return None
    try:  # missing: the import fails and says why
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
