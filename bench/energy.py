"""Energy per token of each timed arm of a bench.py run, from the GPU samples taken alongside it.

A sustained run holds the H200 at its power cap, so tokens per joule is what throughput follows:
a change that makes a kernel faster but draws more power while it runs can leave tokens/s where it
was (docs/decisions/benchmark-method.md). scripts/bench-gpu samples `nvidia-smi --query-gpu=timestamp,
clocks.sm,clocks.mem,power.draw,... --format=csv -lms 250` into smi.csv (columns are found by the
header's names, in any order; power.draw.instant, where sampled, is read instead of power.draw, the
one-second average that lags a capped load); bench.py records each arm's timed
window (wall_start, wall_end: Unix seconds). This joins the two.

    python3 bench/energy.py bench.jsonl smi.csv[.gz] [--utc-offset-h 0]

One JSON line per arm: mean power (W), mean SM clock (MHz), samples, joules and tokens per joule.
nvidia-smi writes local time; the device machines run in UTC (--utc-offset-h otherwise).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import sys


def _find(header: list[str], *names: str) -> int | None:
    """Index of the first header field named one of names, unit aside (nvidia-smi writes
    "clocks.current.sm [MHz]" for the query clocks.sm), or None."""
    for i, f in enumerate(h.strip().split(" [")[0] for h in header):
        if f in names:
            return i
    return None


def _column(header: list[str], path: str, *names: str) -> int:
    """_find's index, or a SystemExit that says how to sample."""
    i = _find(header, *names)
    if i is not None:
        return i
    fields = [h.strip() for h in header]
    raise SystemExit(f"{path}: no {' or '.join(names)} column in its header ({', '.join(fields)}); "
                     "sample with nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,... --format=csv")


def read_samples(path: str, utc_offset_h: float = 0.0) -> list[tuple[float, float, float]]:
    """(Unix time, SM MHz, W) of each nvidia-smi sample, columns found by the CSV header's names;
    unparsable lines (a sample nvidia-smi could not read) skipped."""
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            return out
        ts = _column(header, path, "timestamp")
        sm_col = _column(header, path, "clocks.current.sm", "clocks.sm")
        # power.draw.instant where sampled: power.draw is a one-second average that lags a
        # power-capped load (measured on an H200: 655 W read against 682 W instantaneous)
        w_col = _find(header, "power.draw.instant")
        w_col = _column(header, path, "power.draw") if w_col is None else w_col
        for row in rows:
            try:
                t = dt.datetime.strptime(row[ts].strip(), "%Y/%m/%d %H:%M:%S.%f")
                sm, watts = float(row[sm_col].split()[0]), float(row[w_col].split()[0])
            except (ValueError, IndexError):
                continue
            t = t.replace(tzinfo=dt.timezone(dt.timedelta(hours=utc_offset_h)))
            out.append((t.timestamp(), sm, watts))
    return out


def arm_energy(arm: dict, samples: list[tuple[float, float, float]]) -> dict | None:
    """Mean power and SM clock over the arm's timed window, and tokens per joule; None when the
    window holds fewer than two samples (too short to say)."""
    inside = [(sm, w) for t, sm, w in samples if arm["wall_start"] <= t <= arm["wall_end"]]
    if len(inside) < 2:
        return None
    watts = sum(w for _, w in inside) / len(inside)
    joules = watts * (arm["wall_end"] - arm["wall_start"])
    return {k: arm.get(k) for k in ("model", "workload", "implementation", "tokens", "tokens_per_s")} | {
        "samples": len(inside), "mean_w": round(watts, 1), "mean_sm_mhz": round(sum(s for s, _ in inside) / len(inside)),
        "joules": round(joules, 2), "tokens_per_joule": round(arm["tokens"] / joules, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench")
    ap.add_argument("smi")
    ap.add_argument("--utc-offset-h", type=float, default=0.0)
    a = ap.parse_args()
    samples = read_samples(a.smi, a.utc_offset_h)
    arms = [json.loads(line) for line in open(a.bench) if line.strip()]
    arms = [r for r in arms if "wall_start" in r and "tokens" in r]
    if not arms:
        print(f"{a.bench}: no arm records a timed window (bench.py before commit fe9bc6a did not)", file=sys.stderr)
        return 2
    for arm in arms:
        e = arm_energy(arm, samples)
        print(json.dumps(e if e else {"implementation": arm.get("implementation"), "workload": arm.get("workload"),
                                      "error": "fewer than two GPU samples in the timed window"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
