"""Reading checkpoint files, for every model family: torch.load restricted to tensors and plain
containers (weights_only=True, mmap where the format allows), safetensors headers checked against
the file's size before anything is read, Hugging Face folders (safetensors or pytorch_model.bin,
each one file or shards named by an index) read from headers or memory-mapped first, and a state dict's entries checked to be tensors. Each
problem is a BadCheckpoint naming the file; `hint` says what to do (a family passes its own).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

from .errors import BadCheckpoint

REFETCH = "the file is damaged or truncated; download it again"


def bad(where: str, what: str, hint: str = REFETCH) -> BadCheckpoint:
    return BadCheckpoint(f"{where}: {what}", hint)


# fair-esm's checkpoints keep their config as an argparse.Namespace: the one non-container class
# the weights-only unpickler is allowed to build.
SAFE_GLOBALS = [argparse.Namespace]


def torch_load(path: str | os.PathLike, mmap: bool = True):
    """torch.load with weights_only=True (+ argparse.Namespace allowed), mmap when the format allows."""
    def _load(use_mmap: bool):
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(str(path), map_location="cpu", mmap=use_mmap, weights_only=True)
    try:
        try:
            return _load(mmap)
        except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
            if mmap and "mmap" in str(e):
                return _load(False)
            raise
    except Exception as e:
        msg = str(e)
        if "weights_only" in msg or "Unsupported global" in msg or "Weights only load failed" in msg:
            first = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln or "GLOBAL" in ln), "")
            raise BadCheckpoint(
                f"{path}: refusing to unpickle objects that are not tensors or plain containers"
                + (f" ({first})" if first else ""),
                "embed only loads checkpoints with torch.load(weights_only=True); re-save the weights "
                "as a plain state dict or as safetensors") from None
        first = msg.splitlines()[0] if msg else ""
        if len(first) > 200 and ". " in first:  # torch appends paragraphs of advice to one line
            first = first[:first.index(". ") + 1]
        raise BadCheckpoint(f"{path}: cannot read checkpoint: {type(e).__name__}: {first}",
                            "the file may be truncated or not a PyTorch checkpoint; download it again") from None


# safetensors dtype -> bytes per element (https://github.com/huggingface/safetensors, format spec)
_ST_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
              "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_ST_FLOATS = {"F64", "F32", "F16", "BF16"}
_ST_MAX_HEADER = 100 << 20  # bytes; safetensors itself refuses headers over 100 MB


class TensorInfo(NamedTuple):
    """What a checkpoint says of one tensor before any of it is read."""
    shape: tuple[int, ...]
    floating: bool
    file: str
    key: str  # its name in the file


def safetensors_header(path: Path, hint: str = REFETCH) -> dict[str, TensorInfo]:
    """Tensor shapes from a .safetensors header, checked against the file's size: a truncated
    file is named with how many bytes it lacks, before anything is allocated."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(size - 8, _ST_MAX_HEADER):
            raise bad(str(path), f"truncated or not a safetensors file ({size} bytes; "
                       + (f"its header claims {n} bytes)" if n >= 0 else "no header)"), hint)
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise bad(str(path), f"safetensors header is not valid JSON ({e})", hint) from None
    if not isinstance(header, dict):
        raise bad(str(path), "safetensors header is not a JSON object", hint)
    data = size - 8 - n
    out: dict[str, TensorInfo] = {}
    for key, t in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = t["dtype"], t["shape"], t["data_offsets"]
            ok = (dtype in _ST_DTYPES and all(isinstance(x, int) and x >= 0 for x in [*shape, lo, hi])
                  and lo <= hi and hi - lo == math.prod(shape) * _ST_DTYPES[dtype])
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise bad(str(path), f"tensor {key}: malformed safetensors entry {json.dumps(t)[:200]}", hint)
        if hi > data:
            raise bad(str(path), f"truncated: tensor {key} ends at byte {hi} of the data but the file holds "
                       f"{data} ({hi - data} bytes missing)", hint)
        out[key] = TensorInfo(tuple(shape), dtype in _ST_FLOATS, str(path), key)
    return out


# What an HF folder holds its weights in, in transformers' order of preference: safetensors (one
# file, else shards named by an index), then the pickle (one file, else shards named by an index;
# 4.x's save_pretrained(safe_serialization=False, max_shard_size=...)).
HF_SINGLE_ST, HF_INDEX_ST = "model.safetensors", "model.safetensors.index.json"
HF_SINGLE_BIN, HF_INDEX_BIN = "pytorch_model.bin", "pytorch_model.bin.index.json"
HF_WEIGHT_FILES = (HF_SINGLE_ST, HF_INDEX_ST, HF_SINGLE_BIN, HF_INDEX_BIN)


def _bin_infos(path: Path, hint: str) -> dict[str, TensorInfo]:
    """Shapes of a pickled state dict, memory-mapped (nothing is read until a tensor is used)."""
    return {k: TensorInfo(tuple(v.shape), v.is_floating_point(), str(path), k)
            for k, v in state_dict(torch_load(path), path, hint).items()}


def read_index(index: Path, hint: str = REFETCH) -> dict[str, str]:
    """A *.index.json's weight_map (tensor -> shard file name), every shard it names checked to be
    a plain file name present beside it."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise bad(str(index), f"unreadable index ({type(e).__name__}: {e}); expected {{\"weight_map\": {{tensor: file}}}}", hint) from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise bad(str(index), "weight_map must map tensor names to shard file names", hint)
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise bad(str(index), f"shard {shard!r} is not a file name (shards lie beside the index)", hint)
        if not (index.parent / shard).is_file():
            raise bad(str(index), f"names shard {shard}, which is missing from {index.parent}",
                      f"the download is incomplete; download {shard} (or the whole model folder) again")
    return weight_map


def _sharded(index: Path, hint: str) -> dict[str, TensorInfo]:
    """The tensors an index names, each from the shard its weight_map gives: .safetensors shards
    from their headers, .bin shards memory-mapped. A shard lacking a tensor listed for it, or holding
    one the index does not list for it, is an error naming the shard (index and shards disagree)."""
    weight_map = read_index(index, hint)
    by_shard: dict[str, list[str]] = {}
    for k, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(k)
    out: dict[str, TensorInfo] = {}
    for shard in sorted(by_shard):
        f = index.parent / shard
        infos = _bin_infos(f, hint) if shard.endswith(".bin") else safetensors_header(f, hint)
        lacking = sorted(k for k in by_shard[shard] if k not in infos)
        if lacking:
            raise bad(str(f), f"tensor {lacking[0]}, listed for this shard in {index.name}, is not in it"
                      + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""),
                      f"the shard is damaged or from another download; download {shard} again")
        stray = sorted(k for k in infos if weight_map.get(k) != shard)
        if stray:
            raise bad(str(f), f"tensor {stray[0]} is in this shard but {index.name} does not list it here"
                      + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""),
                      f"the index and the shards come from different downloads; download the model folder again")
        out.update(infos)
    return out


def hf_headers(folder: Path, hint: str = REFETCH) -> dict[str, TensorInfo]:
    """Every tensor of an HF folder, from headers only (model.safetensors, or its shards by
    model.safetensors.index.json) or memory-mapped (pytorch_model.bin, or its shards by
    pytorch_model.bin.index.json), whichever comes first in HF_WEIGHT_FILES."""
    if (folder / HF_SINGLE_ST).is_file():
        return safetensors_header(folder / HF_SINGLE_ST, hint)
    if (folder / HF_INDEX_ST).is_file():
        return _sharded(folder / HF_INDEX_ST, hint)
    if (folder / HF_SINGLE_BIN).is_file():
        return _bin_infos(folder / HF_SINGLE_BIN, hint)
    if (folder / HF_INDEX_BIN).is_file():
        return _sharded(folder / HF_INDEX_BIN, hint)
    raise BadCheckpoint(f"{folder}: no {', '.join(HF_WEIGHT_FILES[:-1])} or {HF_WEIGHT_FILES[-1]}",
                        "download the full model folder (config.json + weights)")


def hf_tensors(infos: dict[str, TensorInfo], keys: set[str], hint: str = REFETCH) -> dict[str, torch.Tensor]:
    """Read the tensors `keys` (names as `infos` has them; their headers already checked)."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    by_file: dict[str, list[str]] = {}
    for k in keys:
        by_file.setdefault(infos[k].file, []).append(k)
    for file, ks in by_file.items():
        try:
            if file.endswith(".bin"):
                sd = state_dict(torch_load(file), file, hint)
                out.update({k: sd[infos[k].key] for k in ks})
                continue
            with safe_open(file, framework="pt", device="cpu") as f:
                for k in ks:
                    out[k] = f.get_tensor(infos[k].key)
        except BadCheckpoint:
            raise
        except Exception as e:  # noqa: BLE001 (safetensors' own errors name no file)
            raise bad(file, f"cannot read tensors ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", hint) from None
    return out


def state_dict(sd, path, hint: str = REFETCH) -> dict[str, torch.Tensor]:
    """A dict of str -> tensor, or BadCheckpoint naming the first entry that is not."""
    if not isinstance(sd, dict):
        raise bad(str(path), f"expected a state dict, found a {type(sd).__name__}", hint)
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise bad(str(path), f"state dict entry {k!r} is a {type(v).__name__}, not a tensor", hint)
    return sd
