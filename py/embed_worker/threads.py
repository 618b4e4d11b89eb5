"""How many threads a CPU worker runs: the CPUs this process was granted, not the ones it can see.
Torch-free; the decision (`granted_cpus`, `choose_threads`) is pure, `read_grant` gathers its inputs.

A batch scheduler or container grants CPUs three ways, and each hides from os.cpu_count():
  - the affinity mask (taskset, cpusets, SLURM's task binding): os.sched_getaffinity;
  - a CPU-time quota (docker --cpus, Kubernetes limits): cgroup v2 `cpu.max` ("200000 100000"
    = 2 CPUs, "max 100000" = none), or cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`
    (quota -1 = none); a parent cgroup's quota binds too, so every level is read;
  - SLURM_CPUS_PER_TASK, what `srun -c N` granted even where no mask enforces it.
The grant is the smallest of those present; `--threads` overrides it.

Oversubscription is only half of what made busy machines slow: OpenMP threads that spin while
waiting for their siblings (GNU OpenMP's default) burn the time slices the sibling needs. With 4
`yes` processes on 2 cores, a 400-record test-tiny run took 105-145 s embedding with 2 spinning
threads against 6-11 s with 1 thread and ~1.3 s with 2 threads and OMP_WAIT_POLICY=PASSIVE, so
CPU workers wait passively (`omp_env`). The price on an idle machine: 1.15 s against 0.90 s for
the same run (test-tiny's many tiny parallel regions; a real model's GEMMs hide the wake-ups).
A dedicated machine can set OMP_WAIT_POLICY=ACTIVE, which the worker then leaves alone.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

CGROUP_ROOT = "sys/fs/cgroup"


def quota_cpus(quota_us: int, period_us: int) -> int:
    """CPUs a CFS quota amounts to, rounded down (a 1.5-CPU quota runs 1 thread without
    throttling), at least 1."""
    return max(1, math.floor(quota_us / period_us))


def parse_cpu_max(text: str) -> int | None:
    """cgroup v2 cpu.max ("QUOTA PERIOD" or "max PERIOD") -> CPUs, or None for no limit or an
    unreadable value."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota_cpus(quota, period) if quota > 0 and period > 0 else None


def parse_cfs(quota: str, period: str) -> int | None:
    """cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us -> CPUs, or None (quota -1: no limit)."""
    try:
        q, p = int(quota.strip()), int(period.strip())
    except ValueError:
        return None
    return quota_cpus(q, p) if q > 0 and p > 0 else None


def parse_slurm(value: str | None) -> int | None:
    try:
        n = int(value) if value else 0
    except ValueError:
        return None
    return n if n > 0 else None


def granted_cpus(affinity: int | None, quotas: list[int], slurm: int | None) -> tuple[int | None, str]:
    """The smallest of the limits present -> (CPUs or None where nothing limits, which limit it was)."""
    found = [(n, why) for n, why in [(affinity, "affinity mask"), (min(quotas, default=None), "cgroup CPU quota"),
                                     (slurm, "SLURM_CPUS_PER_TASK")] if n is not None]
    if not found:
        return None, "no limit found"
    n, why = min(found, key=lambda x: x[0])
    return n, why


def choose_threads(requested: int | None, granted: int | None, visible: int) -> int:
    """--threads if given, else the grant, else every CPU visible."""
    if requested:
        return requested
    return max(1, granted if granted is not None else visible)


def _cgroup_dirs(root: Path, proc_cgroup: str) -> tuple[list[Path], list[Path]]:
    """(v2 dirs, v1 cpu dirs) whose limits apply to this process: its own cgroup and every
    ancestor, under each place the hierarchy may be mounted (a container sees its own cgroup as
    the mount root, so that is read too)."""
    base = root / CGROUP_ROOT
    v2: list[Path] = []
    v1: list[Path] = []
    for line in proc_cgroup.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, rel = fields
        rel_parts = [p for p in rel.split("/") if p]
        if controllers == "":
            mounts = [base, base / "unified"]
            into = v2
        elif "cpu" in controllers.split(","):
            mounts = [base / controllers, base / "cpu", base / "cpu,cpuacct"]
            into = v1
        else:
            continue
        for m in mounts:
            for i in range(len(rel_parts), -1, -1):
                d = m.joinpath(*rel_parts[:i])
                if d not in into:
                    into.append(d)
    return v2, v1


def read_grant(root: str | os.PathLike = "/", env: Mapping[str, str] = os.environ,
               affinity: Callable[[], int | None] | None = None) -> tuple[int | None, str]:
    """Read the three limits (files under `root`, so tests can fake them) -> granted_cpus."""
    root = Path(root)

    def read(p: Path) -> str | None:
        try:
            return p.read_text()
        except OSError:
            return None

    if affinity is None:
        def affinity() -> int | None:
            try:
                return len(os.sched_getaffinity(0))
            except (AttributeError, OSError):  # not Linux
                return None
    v2, v1 = _cgroup_dirs(root, read(root / "proc/self/cgroup") or "")
    quotas = [n for d in v2 if (t := read(d / "cpu.max")) is not None and (n := parse_cpu_max(t)) is not None]
    for d in v1:
        q, p = read(d / "cpu.cfs_quota_us"), read(d / "cpu.cfs_period_us")
        if q is not None and p is not None and (n := parse_cfs(q, p)) is not None:
            quotas.append(n)
    return granted_cpus(affinity(), quotas, parse_slurm(env.get("SLURM_CPUS_PER_TASK")))


def omp_env(env: Mapping[str, str]) -> dict[str, str]:
    """Variables to set before torch loads its OpenMP runtime, where the user has not: waiting
    threads sleep instead of spinning (GNU and Intel OpenMP read OMP_WAIT_POLICY; Intel's
    KMP_BLOCKTIME=0 says the same)."""
    if "OMP_WAIT_POLICY" in env or "KMP_BLOCKTIME" in env:
        return {}  # the user chose
    return {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
