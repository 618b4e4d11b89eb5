"""Synthetic sequence workloads with realistic length mixes (speed does not depend on content).

  reads:   VirNucPro-like six-frame peptides, 30-70 aa (mean about 49)
  short:   50-170 aa
  uniprot: log-normal lengths, median about 300, clipped to 1..1022
"""
from __future__ import annotations

import math
import random

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def lengths(workload: str, n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    if workload == "reads":
        return [max(30, min(70, round(rng.gauss(49, 9)))) for _ in range(n)]
    if workload == "short":
        return [rng.randint(50, 170) for _ in range(n)]
    if workload == "uniprot":
        return [max(1, min(1022, round(math.exp(rng.gauss(math.log(300), 0.6))))) for _ in range(n)]
    raise ValueError(f"unknown workload {workload!r}")


def sequences(workload: str, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed + 1)
    return ["".join(rng.choices(RESIDUES, k=L)) for L in lengths(workload, n, seed)]


def write_fasta(path: str, workload: str, n: int, seed: int = 0) -> int:
    """Write n records; returns the number of residues."""
    total = 0
    with open(path, "w") as f:
        for i, s in enumerate(sequences(workload, n, seed)):
            f.write(f">{workload}_{i}\n{s}\n")
            total += len(s)
    return total
