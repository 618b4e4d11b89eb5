"""scripts/attention_sweep.py end to end on a tiny plan (on the CPU under the Triton interpreter:
its smoke-test mode): every variant of every batch runs, agrees with the reference, and is timed
in rotated rounds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_times_every_variant_against_the_reference(tmp_path):
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    cmd = [sys.executable, str(ROOT / "scripts" / "attention_sweep.py"), "--no-fa4", "--dims", "128",
           "--workloads", "short", "--tokens", "240", "--budget", "256", "--iters", "1", "--rounds", "2",
           "--settle-ms", "1", "--pace-ms", "1", "--aligned-qtail", "32x4", "--aligned", "32x32x4x3",
           "--base-kernels", str(ROOT / "py" / "embed_worker" / "kernels.py")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert not [x for x in rows if "error" in x], r.stdout[-3000:]
    per_batch = [x for x in rows if "variant" in x]
    summary = [x for x in rows if x.get("summary")]
    want = {"torch-varlen", "packed", "aligned", "product", "aligned 32x32x4x3", "aligned-qtail 32x4",
            "packed@base", "aligned@base"}
    assert len(summary) == 1 and set(summary[0]["ms_per_65k"]) == want
    assert {x["variant"] for x in per_batch} == want and len(per_batch) == len(want) * summary[0]["batches"]
    assert all(x["ms"] > 0 and x["max_abs_err_vs_torch_varlen"] <= 4e-3 for x in per_batch)
