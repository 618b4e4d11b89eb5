"""`python -m embed_worker.tools.virnucpro DNABERT_STORE ESM_STORE OUT_DIR`: VirNucPro's feature
files from the two stores `embed virnucpro` embeds (src/virnucpro.ts), one set per PER_FILE records:

  output_{k}_DNABERT_S.pt  {'nucleotide': [ids], 'data': [{'label': id, 'mean_representation': [floats]}]}
  output_{k}_ESM.pt        {'proteins': [ids], 'data': [Tensor(esm_dim) float32, one per protein]}
  output_{k}_merged.pt     {'ids': [ids], 'data': Tensor[n, dnabert_dim + esm_dim] float32}, DNABERT-S first

k counts from 1. What the reference writes, read in Li-Jing-1997/VirNucPro `prediction.py` and
broadinstitute/virnucpro-broad `units.py`: `split_fasta_file` cuts the identified nucleotide and
protein FASTA into `output_{file_count}.fa` of 10,000 records, file_count from 1;
`extract_DNABERT_S` saves `embedding_mean.squeeze().cpu().tolist()` (Python floats of float32
values) per record; `extract_esm` saves one float32 tensor per protein; `merge_data` stacks
`torch.cat((torch.tensor(mean_representation), esm))` per nucleotide id (torch.tensor of Python
floats is float32 again, so the merged rows are the two float32 vectors side by side) under
`'ids': DNABERT_S_outfile['nucleotide']`. The frame ids are the same on both sides
(`{read}F1`...`{read}R3`); the reference pairs them by id and skips, with a warning, an id
missing from one side. Here the two stores must hold the same ids in the same order (both were
embedded from `embed translate`'s two files, written record for record together), checked chunk
by chunk; a difference is an error naming the first record that differs, never a silent skip.

Streams: PER_FILE records of each store at a time (the merged block of 10,000 x 3,328 float32 is 133
MB). Each file is written in a staging folder inside OUT_DIR under its final name (torch.save names
the archive's root folder after the file, so the bytes depend on nothing but the stores) and renamed
into place (atomic.py); files of an earlier run numbered beyond this one's count, and the staging
folder of a killed one, are removed. Sets are written by a pool of processes, one set a task, when
there is more than one set and CPU (virnucpro_pool.py: same bytes; renamed only once all are
written and the arrays verified); `--jobs 1`, or HDF5 / Parquet sources, write them one by one here. With ``--json`` the summary goes to stdout; a failure exits 1
with its last stderr line ``{"name", "message", "hint"}``.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .atomic import commit
from .cli import run_tool
from .open_source import open_source
from .sources import ConvertError, Source, require_package
from .store_source import VerifiedArray
from .virnucpro_pool import default_jobs, save_set, write_sets

PER_FILE = 10_000
KINDS = ("DNABERT_S", "ESM", "merged")
OUTPUT = re.compile(r"^output_(\d+)_(DNABERT_S|ESM|merged)\.pt$")
STAGING = ".embed-virnucpro-"


def _mean_of_last(store: Source, family: str, what: str):
    """The store's mean of its last stored layer (VirNucPro: DNABERT-S's last hidden state, ESM-2
    3B's layer 36), checked to be of `family`."""
    got = store.manifest.get("family", "esm2")
    if got != family:
        raise ConvertError(f"{store.path} holds {got} embeddings; the {what} store must hold {family}",
                           "give the stores in the order DNABERT_STORE ESM_STORE")
    if "mean" not in store.kinds:
        raise ConvertError(f"{store.path} holds no mean output (it holds {', '.join(store.kinds)})",
                           "embed it again with --include mean")
    (kind, layer), = store.select(None, "mean")[-1:]
    return store.array(kind, layer), layer


def write(dnabert: str | Path, esm: str | Path, out: str | Path, per_file: int = PER_FILE,
          jobs: int | None = None) -> dict:
    """`jobs`: processes writing sets at once (default: the CPUs granted, at most 16; 1 writes
    them here, front to back). Either way the files hold the same bytes."""
    require_package("torch", "the VirNucPro .pt files", load=False)  # imported where it writes (a pool's writers import their own)
    if per_file < 1:
        raise ConvertError(f"--per-file {per_file}: must be at least 1", "VirNucPro writes 10,000 records per file")
    if jobs is not None and jobs < 1:
        raise ConvertError(f"--jobs {jobs}: must be at least 1", "leave it out to use the CPUs granted")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():  # what a killed run was writing
        if p.name.startswith(STAGING) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
    try:
        return _write(Path(dnabert), Path(esm), out, staging, per_file, jobs, t0)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(dnabert: Path, esm: Path, out: Path, staging: Path, per_file: int, jobs: int | None, t0: float) -> dict:
    with open_source(dnabert) as d, open_source(esm) as e:
        if d.records != e.records:
            raise ConvertError(f"{d.path} holds {d.records} records and {e.path} {e.records}: they are not the "
                               "nucleotide and peptide frames of one translation",
                               "embed both from the same `embed translate` output (rerun `embed virnucpro` with --overwrite)")
        d_rows, d_layer = _mean_of_last(d, "dnabert-s", "DNABERT-S")
        e_rows, e_layer = _mean_of_last(e, "esm2", "ESM-2")
        sets = -(-d.records // per_file)
        jobs = min(default_jobs() if jobs is None else jobs, sets)
        timing: dict = {}
        if jobs > 1 and isinstance(d_rows, VerifiedArray) and isinstance(e_rows, VerifiedArray):
            names = write_sets(_checked_chunks(d, e, per_file), d_rows, e_rows, staging, jobs, timing)
            for name in names:  # all verified: renamed into place only now
                commit(staging / name, out / name)
        else:  # one writer, or HDF5 / Parquet sources (no .npy to map): front to back here
            torch = require_package("torch", "the VirNucPro .pt files")
            names = []
            for k, ids, at in _checked_chunks(d, e, per_file):
                for name in save_set(torch, k, ids, d_rows[at:at + len(ids)], e_rows[at:at + len(ids)], staging):
                    commit(staging / name, out / name)
                    names.append(name)
        keep = set(names)
        for p in out.iterdir():  # an earlier run's files beyond this one's count
            if OUTPUT.match(p.name) and p.name not in keep:
                p.unlink()
        return {
            "out": str(out), "files": len(names) // len(KINDS), "records": d.records, "perFile": per_file,
            "jobs": max(1, jobs), "dnabert": {"store": str(d.path), "layer": d_layer, "dim": d.dim},
            "esm": {"store": str(e.path), "layer": e_layer, "dim": e.dim},
            "mergedDim": d.dim + e.dim, "seconds": round(time.perf_counter() - t0, 3),
            # the pool's writers, summed over them (CPU and disk), and the wait for verification
            **({"writerSeconds": {k: round(v, 3) for k, v in timing.items()}} if timing else {}),
        }


def _checked_chunks(d: Source, e: Source, per_file: int) -> Iterator[tuple[int, list[str], int]]:
    """(k, ids, first row) of each file set, the two stores' ids checked equal first."""
    at = 0
    for k, (ids, e_ids) in enumerate(zip(d.id_chunks(per_file), e.id_chunks(per_file)), start=1):
        if ids != e_ids:
            i = next(i for i, (a, b) in enumerate(zip(ids, e_ids)) if a != b)
            raise ConvertError(f"record {at + i + 1}: {d.path} has id {ids[i]!r} where {e.path} has {e_ids[i]!r}; "
                               "the frames must be the same records in the same order",
                               "embed both from the same `embed translate` output (rerun `embed virnucpro` with --overwrite)")
        yield k, ids, at
        at += len(ids)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embed_worker.tools.virnucpro", description=__doc__.split("\n\n")[0])
    p.add_argument("dnabert", help="the DNABERT-S store (the nucleotide frames)")
    p.add_argument("esm", help="the ESM-2 store (the peptide frames, same ids in the same order)")
    p.add_argument("out", help="directory for output_{k}_{DNABERT_S,ESM,merged}.pt")
    p.add_argument("--per-file", type=int, default=PER_FILE, help="records per file (VirNucPro: 10,000)")
    p.add_argument("--jobs", type=int, default=None, help="processes writing file sets at once (default: the CPUs granted, at most 16)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    a = p.parse_args(argv)
    return run_tool(lambda: write(a.dnabert, a.esm, a.out, a.per_file, a.jobs), as_json=a.json, output=a.out,
                    human=lambda s: f"{s['records']} records -> {s['files']} x 3 files in {s['out']}")


if __name__ == "__main__":
    sys.exit(main())
