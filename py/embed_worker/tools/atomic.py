"""How `embed convert` writes: every output file through a temporary name in its directory,
fsynced and renamed into place (`Atomic`, `commit`), with the files renamed so far listed in
COMMITTED so that a conversion that fails partway removes them; .npy arrays written front to
back from row blocks with their size and SHA-256 (for the manifest)."""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


def tmp_path(final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    return Path(name)


# Every file a conversion renames into place, so that a failed conversion (a damaged source
# noticed partway) removes them: what it leaves is whole or absent.
COMMITTED: list[Path] = []


def commit(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    COMMITTED.append(final)


class Hashed:
    """A binary file being written, with the size and SHA-256 of what went in (for a manifest)."""

    def __init__(self, f) -> None:
        self.f, self.h, self.bytes = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.h.update(data)
        self.bytes += len(data)

    def checksum(self) -> dict:
        return {"bytes": self.bytes, "sha256": self.h.hexdigest()}


def write_npy(f: Hashed, dtype: np.dtype, shape: tuple[int, ...], chunks) -> None:
    """A .npy (v1.0 header) from row blocks, front to back, through `f`."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    f.write(head.getvalue())
    for block in chunks:
        f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())


class Atomic:
    """`with Atomic(final) as tmp:` write tmp; renamed to final on success, removed on failure."""

    def __init__(self, final: Path) -> None:
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_path(self.final)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            commit(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)
