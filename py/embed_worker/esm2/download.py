"""Fetch a released ESM-2 checkpoint into the torch hub cache, where fair-esm keeps them too.

On by default, as fair-esm and Hugging Face do (`embed run --no-download` forbids it). The source
is fair-esm's release location, or EMBED_MODEL_URL (a mirror; the file name is `<name>.pt`). The
file is streamed to a `.partial` file of this process and renamed when complete, so an
interrupted download never looks like a checkpoint; workers of one run (one per GPU) take a lock
on `<name>.pt.lock` in turn, so the first downloads and the others find its file. Standard
library only.
"""
from __future__ import annotations

import fcntl
import os
import urllib.error
import urllib.request
from pathlib import Path

from .. import log
from ..errors import ModelNotFound
from .registry import KNOWN, torch_hub_checkpoints

DEFAULT_BASE = "https://dl.fbaipublicfiles.com/fair-esm/models"
CHUNK = 8 << 20
TIMEOUT_S = 30


def source_url(name: str) -> str:
    base = os.environ.get("EMBED_MODEL_URL", DEFAULT_BASE).rstrip("/")
    return f"{base}/{name}.pt"


def download(name: str, dest_dir: Path | None = None) -> Path:
    """Download `name` (a known ESM-2 model) to the torch hub cache; returns the file's path."""
    if name not in KNOWN:
        raise ModelNotFound(f"cannot download {name!r}: not a released ESM-2 model",
                            f"known: {', '.join(KNOWN)}; or pass a path")
    dest_dir = dest_dir or torch_hub_checkpoints()
    dest = dest_dir / f"{name}.pt"
    url = source_url(name)
    part = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        lock = open(dest.with_name(dest.name + ".lock"), "w")
    except OSError as e:
        raise ModelNotFound(f"model {name!r} is not in any local cache and {dest_dir} is not writable: {e}",
                            "set TORCH_HOME to a writable folder, or pass a path to the checkpoint") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker of this run may be downloading it now
        if dest.is_file():
            return dest
        _fetch(name, url, part, dest, dest_dir)
    return dest


def _fetch(name: str, url: str, part: Path, dest: Path, dest_dir: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            done, next_log = 0, 0.0
            log.info("downloading", model=name, url=url, bytes=total or None)
            while chunk := r.read(CHUNK):
                f.write(chunk)
                done += len(chunk)
                if total and done / total >= next_log:
                    log.info("download progress", model=name, percent=round(100 * done / total))
                    next_log += 0.1
            f.flush()
            os.fsync(f.fileno())
        if total and done != total:
            raise OSError(f"got {done} of {total} bytes")
        os.replace(part, dest)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        raise ModelNotFound(f"model {name!r} is not in any local cache and downloading {url} failed: {e}",
                            f"download it yourself into {dest_dir}/, set EMBED_MODEL_URL to a mirror, "
                            "or pass a path to the checkpoint") from None
    log.info("downloaded", model=name, path=str(dest))
