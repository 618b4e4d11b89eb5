"""How tools/virnucpro.py writes a set of VirNucPro files (`save_set`, the one way, whether one
process writes them all or a pool does), and the pool (`write_sets`).

Why a pool: a set of 10,000 records costs ~1.7 s of one core (measured on a 2-core CPU host:
the DNABERT_S file ~0.6 s, 0.4 s of it building 7.7 M Python floats and 0.25 s writing them with
`save_builtins`, where torch.save took 2.0-2.3 s calling its Python persistent_id once a float;
the ESM and merged files ~0.5 s each; the whole set took 3.3-4.3 s before), so the 57 sets of a
1 M-read run take ~1.6 minutes in one process and ~8 s in 16.

Each task is one set k: a spawned process maps the two stores' .npy files (np.load with
mmap_mode='r'), copies out its own rows only (133 MB for 10,000 x 3,328 float32; a writer peaks
near 0.6 GB with the float lists), torch.saves the three files into the staging folder and
fsyncs them. The parent reads ids.txt and checks the two stores' ids before it hands out a set,
and meanwhile reads both arrays front to back in two threads against the manifest's SHA-256
(store_source.VerifiedArray, which a single writer does as it goes). Nothing is renamed into the
output until every set is written and both arrays verified, so a damaged store, a failed set or a
killed tool leave no complete-looking file. Workers are bound to the tool (lifeline): killed, it
takes them with it.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import lifeline
from ..threads import choose_threads, read_grant
from .sources import ConvertError, require_package
from .store_source import VerifiedArray

MAX_JOBS = 16
"""Writers at most: past this the disk, not the CPU, sets the pace, and each holds ~0.6 GB."""
VERIFY_BYTES = 64 << 20
"""Bytes a verifying thread reads at a time."""


def default_jobs() -> int:
    """The CPUs granted (threads.py: affinity mask, cgroup quota, SLURM_CPUS_PER_TASK), at most MAX_JOBS."""
    granted, _ = read_grant()
    return min(MAX_JOBS, choose_threads(None, granted, os.cpu_count() or 1))


class NotBuiltinsError(TypeError):
    """A value for `save_builtins` held something other than str/int/float/bool/None/list/tuple/dict."""


class _BuiltinsPickler(pickle.Pickler):
    """A pickler with no persistent_id that refuses any object outside the built-in types.

    CPython's C pickler writes None, bool, int, float, str, bytes, list, tuple, dict (exact types)
    itself and asks `reducer_override` only about the rest, so this guard costs nothing per float.
    A tensor, storage, NumPy scalar or subclass lands here and is refused: it is where torch.save's
    persistent_id would have returned something other than None, and the bytes would differ."""

    def reducer_override(self, obj):
        raise NotBuiltinsError(f"save_builtins: the value holds a {type(obj).__module__}.{type(obj).__qualname__}, "
                               "which torch.save writes through its persistent_id; save it with torch.save")


class _NoPersistentIdPickler(pickle.Pickler):
    """The class torch.save builds its pickler from (torch 2.x `_save`: `class PyTorchPickler(
    pickle_module.Pickler)` with a `persistent_id` method; older ones assign `pickler.persistent_id`).
    Either way `dump` ignores it and pickles with a fresh `_BuiltinsPickler` on the same buffer and
    protocol. torch's persistent_id is a Python call per pickled object, 7.7 M floats in a
    DNABERT_S set; it returns None for every object that is not a storage, and a pickler that never
    asks writes the same bytes."""

    def __init__(self, file, protocol=None, **kw):
        super().__init__(file, protocol, **kw)
        self._args = (file, protocol, kw)

    def dump(self, obj):
        file, protocol, kw = self._args
        _BuiltinsPickler(file, protocol, **kw).dump(obj)


_BUILTINS_PICKLE = types.ModuleType("embed_builtins_pickle", "torch.save's pickle_module for values with no tensor")
_BUILTINS_PICKLE.Pickler = _NoPersistentIdPickler  # all of the module torch.save's zip format uses
_BUILTINS_PICKLE.Unpickler, _BUILTINS_PICKLE.dump, _BUILTINS_PICKLE.load = pickle.Unpickler, pickle.dump, pickle.load


def save_builtins(torch, value, path: Path) -> None:
    """torch.save(value, path), byte for byte, for a value of built-in types only (no tensor or
    storage: NotBuiltinsError, raised before anything is renamed into the output). ~10x faster on
    lists of floats: 0.2 s instead of 2.2 s for a DNABERT_S set of 10,000 x 768."""
    torch.save(value, path, pickle_module=_BUILTINS_PICKLE)


def save_set(torch, k: int, ids: list[str], dna_rows, pep_rows, staging: Path) -> list[str]:
    """output_{k}_{DNABERT_S,ESM,merged}.pt of these rows into `staging`, under their final names
    (torch.save names the archive's root folder after the file: the same rows give the same bytes)."""
    dna = torch.from_numpy(np.array(dna_rows, dtype=np.float32))
    pep = torch.from_numpy(np.array(pep_rows, dtype=np.float32))
    files = {
        "DNABERT_S": {"nucleotide": ids,
                      "data": [{"label": i, "mean_representation": row} for i, row in zip(ids, dna.tolist())]},
        # One tensor with its own storage per protein, as `embedding.float().cpu()` gave.
        "ESM": {"proteins": ids, "data": [pep[i].clone() for i in range(len(ids))]},
        "merged": {"ids": ids, "data": torch.cat((dna, pep), dim=1)},
    }
    names = []
    for kind, value in files.items():
        name = f"output_{k}_{kind}.pt"
        if kind == "DNABERT_S":  # str ids and Python floats only (tolist), the file torch.save writes
            save_builtins(torch, value, staging / name)
        else:
            torch.save(value, staging / name)
        names.append(name)
    return names


def _start_writer() -> None:
    lifeline.bind_to_parent({})  # {}: the parent is the tool, not an orchestrator named in the env
    require_package("torch", "the VirNucPro .pt files").set_num_threads(1)  # one writer, one core


def _write_task(k: int, ids: list[str], a: int, dna: str, pep: str, staging: str) -> tuple[str, list[str] | str, dict]:
    """One set in a pool process -> ("ok", names, seconds) or ("error", why, seconds): no pickled
    exceptions. `seconds`: {"write": building and saving the files, "sync": fsyncing them}."""
    seconds = {"write": 0.0, "sync": 0.0}
    try:
        torch = require_package("torch", "the VirNucPro .pt files")
        b = a + len(ids)
        t = time.perf_counter()
        names = save_set(torch, k, ids, np.load(dna, mmap_mode="r")[a:b], np.load(pep, mmap_mode="r")[a:b], Path(staging))
        seconds["write"] = time.perf_counter() - t
        for name in names:  # flushed here, in parallel; the parent's rename then finds them clean
            with open(Path(staging) / name, "rb+") as f:
                os.fsync(f.fileno())
        seconds["sync"] = time.perf_counter() - t - seconds["write"]
        return "ok", names, seconds
    except Exception as e:  # noqa: BLE001 - reported to the parent as text, named there
        return "error", f"{type(e).__name__}: {e}", seconds


class _Verify:
    """Both arrays read front to back in threads (hashlib and file reads release the GIL), each
    check's ConvertError kept for `result`."""

    def __init__(self, arrays: Iterable[VerifiedArray]) -> None:
        self.stop = threading.Event()
        self.errors: list[ConvertError] = []
        self.threads = [threading.Thread(target=self._read, args=(a,), daemon=True) for a in arrays]
        for t in self.threads:
            t.start()

    def _read(self, arr: VerifiedArray) -> None:
        rows, step = arr.shape[0], max(1, VERIFY_BYTES // (arr.shape[1] * arr.dtype.itemsize))
        try:
            for a in range(0, rows, step):
                if self.stop.is_set():
                    return
                arr[a:a + step]  # hashed; the last rows check the SHA-256 and size
        except ConvertError as e:
            self.errors.append(e)

    def result(self) -> None:
        for t in self.threads:
            t.join()
        if self.errors:
            raise self.errors[0]


def write_sets(chunks: Iterable[tuple[int, list[str], int]], dna: VerifiedArray, pep: VerifiedArray,
               staging: Path, jobs: int, seconds: dict | None = None) -> list[str]:
    """Every set of `chunks` ((k, ids, first row), ids already checked) written into `staging` by
    `jobs` spawned processes; the file names in order, once all are written and both arrays verified.
    `seconds`, when given, gets the writers' summed "write" and "sync" time and the wall "verify"
    wait left after the last set."""
    verify = _Verify([dna, pep])
    ex = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_writer)
    done = False
    try:
        futures = [(k, ex.submit(_write_task, k, ids, a, str(dna.path), str(pep.path), str(staging)))
                   for k, ids, a in chunks]
        names: list[str] = []
        for k, f in futures:
            status, got, took = f.result()
            if seconds is not None:
                for key, v in took.items():
                    seconds[key] = seconds.get(key, 0.0) + v
            if status != "ok":
                raise ConvertError(f"writing output_{k}_*.pt in {staging.parent} failed: {got}",
                                   "check free space and permissions of the output path")
            names += got
        done = True
    except BrokenProcessPool as e:
        raise ConvertError(f"a process writing the VirNucPro files died ({e}): out of memory, or (calling "
                           "write() from a script) the script lacks `if __name__ == '__main__':`, which spawned "
                           "processes need", f"each writer needs ~0.6 GB: rerun with fewer (--jobs, now {jobs})")
    finally:
        if not done:
            verify.stop.set()  # failed: no point reading the rest
        ex.shutdown(wait=True, cancel_futures=True)
    t = time.perf_counter()
    verify.result()
    if seconds is not None:
        seconds["verify"] = time.perf_counter() - t
    return names
