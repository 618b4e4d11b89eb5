"""Start-up of `embed run`, call to first batch, arms interleaved on one warm machine.

    python3 bench/startup.py --model DIR_OR_NAME [--kernels triton,quack] [--repeats 3]
                             [--embed "bun src/cli.ts"] [--records 64] [--out results.jsonl]

Each run embeds a small FASTA of short random peptides (one batch) into a fresh store with
`--json`, and is timed from the spawn of the command to the arrival of its first `batch`
event: what a job-array task pays before its first result. The run summary's `workerStartup`
(the worker's phases: python, torch, device, read, load, kernel-libs, kernels, ring, warm-up)
says where the seconds went. Arms (one per --kernels value) run in turn, repeat after repeat
(A B A B ...); the first round fills the compile caches (Triton, the CuTe DSL) and Python's
bytecode caches and is reported as `cold`, later rounds as warm. Prints one JSON line per run
and a median line per arm over the warm runs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def write_fasta(path: str, records: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(records):
            f.write(f">p{i}\n{''.join(rng.choices(AMINO, k=rng.randint(30, 70)))}\n")


def one_run(embed: list[str], fasta: str, out: str, model: str, kernels: str, extra: list[str]) -> dict:
    """Spawn the CLI, time to its first batch event, then its summary."""
    cmd = [*embed, "run", fasta, "-o", out, "--model", model, "--kernels", kernels, "--json", *extra]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    last = ""
    assert p.stdout is not None
    for line in p.stdout:
        if first is None and '"type":"batch"' in line:
            first = time.perf_counter() - t0
        if line.strip():
            last = line
    err = p.stderr.read() if p.stderr else ""
    rc = p.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"run failed (rc {rc}): {shlex.join(cmd)}\n{err[-3000:]}")
    summary = json.loads(last)
    startup = next(iter(summary.get("workerStartup", {}).values()), {})
    return {"kernels": kernels, "first_batch_s": round(first, 2) if first is not None else None,
            "wall_s": round(wall, 2), "worker_startup": startup,
            "worker_total_s": round(sum(startup.values()), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model name or path, as --model takes it")
    ap.add_argument("--kernels", default="triton,quack", help="arms: --kernels values, comma-separated")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the first is the cold one")
    ap.add_argument("--embed", default=f"bun {os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src', 'cli.ts')}",
                    help="the command that runs embed")
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--extra", default="--no-download", help="more options for every run")
    ap.add_argument("--out", help="append the JSON lines to this file too")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="embed-startup-")
    fasta = os.path.join(work, "in.fa")
    write_fasta(fasta, a.records)
    arms = [k for k in a.kernels.split(",") if k]
    runs: list[dict] = []
    sink = open(a.out, "a") if a.out else None

    def emit(rec: dict) -> None:
        line = json.dumps(rec)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")

    try:
        for r in range(a.repeats):
            for k in arms:
                out = os.path.join(work, f"out-{k}-{r}")
                rec = {"measurement": "startup", "model": a.model, "round": r, "cold": r == 0,
                       **one_run(shlex.split(a.embed), fasta, out, a.model, k, shlex.split(a.extra))}
                shutil.rmtree(out, ignore_errors=True)
                runs.append(rec)
                emit(rec)
        for k in arms:
            warm = [x for x in runs if x["kernels"] == k and not x["cold"]] or [x for x in runs if x["kernels"] == k]
            phases = list(dict.fromkeys(p for x in warm for p in x["worker_startup"]))  # the worker's order
            med = {"measurement": "startup_median", "model": a.model, "kernels": k, "runs": len(warm),
                   "first_batch_s": statistics.median(x["first_batch_s"] for x in warm),
                   "first_batch_range": [min(x["first_batch_s"] for x in warm), max(x["first_batch_s"] for x in warm)],
                   "phases": {p: statistics.median(x["worker_startup"].get(p, 0.0) for x in warm) for p in phases}}
            emit(med)
    finally:
        if sink:
            sink.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
