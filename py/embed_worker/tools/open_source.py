"""`open_source`: which kind of source a path is (a store, a Parquet directory, an HDF5 file) and
its reader; a VirNucPro .pt file or directory, a lone Parquet file or .npy array, or anything else
is refused with what to give instead. Apart from sources.py so that the readers (store_source.py,
file_sources.py) build on sources.py without it importing them back.
"""
from __future__ import annotations

import os
from pathlib import Path

from .file_sources import Hdf5File, ParquetDir
from .sources import _HDF5_SIGNATURE, _PARQUET_FILE, SOURCE_HINT, VIRNUCPRO_FILE, ConvertError, Source
from .store_source import Store


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
