"""Model files from the network and the caches they land in, for every family.

- Hugging Face repositories (facebook/esm2_*, zhihan1996/DNABERT-S, ...) through huggingface_hub:
  its cache layout and lookup (`try_to_load_from_cache`: the snapshot refs/main names), and its
  downloads (`snapshot_download`: resumed from `.incomplete` files, each file's size checked against
  the hub's, one lock per file). Only the files a loader reads are fetched (`allow_patterns`), never
  a repository's .py files. After a download, every file stored under its LFS sha256 (the weights)
  is hashed and compared with that name: huggingface_hub checks sizes, not contents.
- fair-esm .pt files from a plain URL (EMBED_MODEL_URL) through torch.hub's
  `download_url_to_file` into torch hub's checkpoint folder, where fair-esm caches them too. Those
  URLs carry no hash, so what is checked is completeness (torch writes a `.partial` file and renames
  it only once the whole body has arrived) and then, by the strict loader, every tensor.

Workers of one run (one per GPU) may ask at once: a file lock per model makes the first download
and the others find its files. Cache locations follow huggingface_hub's and torch.hub's rules, read
from the environment at each call. Importing this module loads neither torch nor huggingface_hub.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

from . import log
from .errors import ModelNotFound

# What an HF folder's loader reads (checkpoint.hf_headers): one of these must be cached with config.json.
# (checkpoint.HF_WEIGHT_FILES; repeated here because importing checkpoint loads torch.)
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# What is fetched, in order of preference: safetensors (one file or shards + index), else the
# pickle (one file or shards + index, as transformers 4.x's safe_serialization=False writes them).
_WEIGHT_PATTERNS = (["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"],
                    ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"])
DEFAULT_ENDPOINT = "https://huggingface.co"
URL_TIMEOUT_S = 30  # seconds without a byte before a plain-URL download gives up


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def torch_hub_checkpoints() -> Path:
    """torch.hub.get_dir()'s rule (TORCH_HOME, else XDG_CACHE_HOME/torch, else ~/.cache/torch) +
    /hub/checkpoints, without importing torch."""
    th = os.environ.get("TORCH_HOME")
    if th:
        base = Path(os.path.expanduser(th))
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(os.path.expanduser(xdg)) if xdg else _home() / ".cache") / "torch"
    return base / "hub" / "checkpoints"


def hf_hub_cache() -> Path:
    """huggingface_hub's rule (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), read
    now: huggingface_hub reads it once, at import, and a test or a caller may have changed it since."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        v = os.environ.get(var)
        if v:
            return Path(os.path.expanduser(v))
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(os.path.expanduser(hf_home)) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(os.path.expanduser(xdg)) if xdg else _home() / ".cache") / "huggingface" / "hub"


def hf_endpoint() -> str:
    """The hub to download from: HF_ENDPOINT (a mirror, or a test's local server), read now."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def repo_folder(repo_id: str) -> str:
    """The cache folder name of a model repository: facebook/esm2_t6_8M_UR50D -> models--facebook--esm2_t6_8M_UR50D."""
    return "models--" + repo_id.replace("/", "--")


def repo_id_of_folder(name: str) -> str | None:
    """models--org--name -> org/name; None for another folder name."""
    parts = name.split("--")
    return f"{parts[1]}/{'--'.join(parts[2:])}" if len(parts) >= 3 and parts[0] == "models" else None


def cached_snapshot(repo_id: str, cache_dir: Path | None = None, also: tuple[str, ...] = ()) -> Path | None:
    """The cached snapshot that refs/main names, if it holds config.json, a weights file (HF_WEIGHTS)
    and every file of `also`; else None (a partial download is not a model)."""
    from huggingface_hub import try_to_load_from_cache

    cache = str(cache_dir or hf_hub_cache())

    def has(f: str) -> str | None:
        got = try_to_load_from_cache(repo_id, f, cache_dir=cache)
        return got if isinstance(got, str) else None  # None, or a "known not to exist" marker

    cfg = has("config.json")
    if cfg is None or not any(has(w) for w in HF_WEIGHTS) or not all(has(f) for f in also):
        return None
    return Path(cfg).parent


def _lock(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def hf_download(repo_id: str, also: tuple[str, ...] = ()) -> Path:
    """Fetch config.json, the weights (safetensors if the repository has them, else
    pytorch_model.bin) and `also` of `repo_id` into the HF cache; returns the snapshot folder.
    ModelNotFound naming the URL on any failure."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    cache, endpoint = hf_hub_cache(), hf_endpoint()
    url = f"{endpoint}/{repo_id}"
    try:
        lock = _lock(cache / ".locks" / repo_folder(repo_id) / "embed-download.lock")
    except OSError as e:
        raise _unwritable(repo_id, cache, e) from None
    with lock:
        found = cached_snapshot(repo_id, cache, also)
        if found is not None:  # another worker of this run fetched it while this one waited
            return found
        disable_progress_bars()  # stderr carries JSON log lines
        log.info("downloading", model=repo_id, url=url)
        try:
            for weights in _WEIGHT_PATTERNS:
                folder = Path(snapshot_download(repo_id, cache_dir=str(cache), endpoint=endpoint,
                                                allow_patterns=["config.json", *also, *weights]))
                if any((folder / w).is_file() for w in HF_WEIGHTS):
                    break
        except Exception as e:  # noqa: BLE001 (huggingface_hub raises its own, httpx's and OSError)
            raise _failed(repo_id, url, e, f"set HF_ENDPOINT to a mirror, or download it yourself with "
                                           f"`hf download {repo_id}`, or pass a path to the model folder") from None
        missing = [f for f in ("config.json", *also) if not (folder / f).is_file()]
        if missing or not any((folder / w).is_file() for w in HF_WEIGHTS):
            raise ModelNotFound(f"downloading {url} failed: the repository has no "
                                + (", ".join(missing) if missing else " or ".join(HF_WEIGHTS)),
                                "check the model name, or pass a path to a model folder")
        _verify_sha256(folder, url)
    log.info("downloaded", model=repo_id, path=str(folder))
    return folder


def _verify_sha256(folder: Path, url: str) -> None:
    """Each file whose cache blob is named by a sha256 (LFS files: the weights) must hash to it; a
    mismatch removes the blob, so the next attempt fetches it again."""
    for f in sorted(folder.iterdir()):
        blob = f.resolve()
        if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
            continue
        h = hashlib.sha256()
        with open(blob, "rb") as fh:
            while chunk := fh.read(8 << 20):
                h.update(chunk)
        if h.hexdigest() != blob.name:
            blob.unlink(missing_ok=True)
            f.unlink(missing_ok=True)
            raise ModelNotFound(f"downloading {url} failed: {f.name} does not match its sha256 {blob.name} "
                                f"(got {h.hexdigest()}); the damaged file was removed",
                                "run again to download it again; if it keeps failing, the mirror serves a bad copy")


def fetch_url(name: str, url: str, dest: Path, hint: str) -> Path:
    """Download `url` to `dest` (torch.hub's downloader, under a file lock); returns `dest`."""
    try:
        lock = _lock(dest.with_name(dest.name + ".lock"))
    except OSError as e:
        raise _unwritable(name, dest.parent, e) from None
    with lock:
        if dest.is_file():  # another worker of this run fetched it while this one waited
            return dest
        from torch.hub import download_url_to_file

        log.info("downloading", model=name, url=url)
        # torch.hub opens the URL with no timeout: a silent server would hang the worker for good.
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(URL_TIMEOUT_S)
        try:
            download_url_to_file(url, str(dest), progress=False)
        except Exception as e:  # noqa: BLE001 (urllib's errors, OSError, and torch's own)
            raise _failed(name, url, e, hint) from None
        finally:
            socket.setdefaulttimeout(previous)
    log.info("downloaded", model=name, path=str(dest))
    return dest


def _failed(name: str, url: str, e: Exception, hint: str) -> ModelNotFound:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ModelNotFound(f"model {name!r} is not in any local cache and downloading {url} failed: {first}", hint)


def _unwritable(name: str, where: Path, e: OSError) -> ModelNotFound:
    return ModelNotFound(f"model {name!r} is not in any local cache and {where} is not writable: {e}",
                         "set HF_HOME or TORCH_HOME to a writable folder, or pass a path to the model")
