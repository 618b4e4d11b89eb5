"""bench/e2e_record.py on a real CPU run: bench.py's loop on test-tiny, then `embed run` through
Bun on a FASTA of the same workload, then the e2e record joined to the loop's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


@pytest.mark.skipif(shutil.which("bun") is None, reason="needs Bun on PATH (scripts/test puts it there)")
def test_e2e_run_becomes_a_record_beside_the_loop(tmp_path):
    import workloads
    py = sys.executable
    r = subprocess.run([py, str(ROOT / "bench" / "bench.py"), "--out", str(tmp_path), "--models", "test-tiny",
                        "--workloads", "reads", "--tokens", "3000", "--impls", "embed"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    fa = tmp_path / "e2e.fa"
    workloads.write_fasta(str(fa), "reads", 80, seed=21)
    run = subprocess.run(["bun", str(ROOT / "src" / "cli.ts"), "run", str(fa), "-o", str(tmp_path / "store"),
                          "--model", "/tmp/embed-models/test-tiny-random", "--devices", "cpu"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "EMBED_PYTHON": py})
    assert run.returncode == 0, run.stderr[-3000:]
    (tmp_path / "e2e.json").write_text(run.stdout)
    summary = json.loads(run.stdout)
    rec = subprocess.run([py, str(ROOT / "bench" / "e2e_record.py"), "--bench", str(tmp_path / "bench.jsonl"),
                          "--summary", str(tmp_path / "e2e.json"), "--fasta", str(fa), "--model", "test-tiny",
                          "--workload", "reads"], capture_output=True, text=True, timeout=120)
    assert rec.returncode == 0, rec.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    loop = next(x for x in rows if x.get("implementation") == "embed" and "tokens_per_s" in x)
    ceiling = next(x["tflops"] for x in rows if x.get("measurement") == "matmul_ceiling")
    e2e = rows[-1]
    assert e2e["implementation"] == "embed-cli" and e2e["model"] == "test-tiny" and e2e["workload"] == "reads"
    assert e2e["seqs"] == 80 and e2e["tokens_per_s"] == round(summary["tokensPerSecond"])
    assert e2e["loop_implementation"] == "embed" and e2e["loop_tokens_per_s"] == loop["tokens_per_s"]
    assert e2e["of_loop"] == pytest.approx(summary["tokensPerSecond"] / loop["tokens_per_s"], rel=1e-3)
    assert e2e["orchestrator_overhead"] == pytest.approx(1 - e2e["of_loop"], abs=1e-4)
    assert e2e["busy"] == summary["busy"] and e2e["date"] and e2e["command"]
    # FLOPs per token from the FASTA's records: test-tiny's 2 layers of 24 D^2 + 4 L D, reads' L <= 72
    assert 2 * 24 * 64 ** 2 < e2e["flops_per_token"] <= 2 * (24 * 64 ** 2 + 4 * 72 * 64)
    if ceiling:  # a GPU host's ceiling with this CPU run: an MFU near 0, kept to 4 decimals as bench.py's
        assert e2e["mfu"] == pytest.approx(summary["tokensPerSecond"] * e2e["flops_per_token"] / (ceiling * 1e12),
                                           rel=2e-3, abs=5e-5)
    else:  # bench.py rounds a CPU's ceiling to 0.0 TFLOP/s: no MFU then; with a GPU's, this run's MFU
        assert e2e["mfu"] is None
        import e2e_record
        half = summary["tokensPerSecond"] * e2e["flops_per_token"] / 0.5e12  # a ceiling this run is half of
        gpu_like = [dict(x, tflops=half) if x.get("measurement") == "matmul_ceiling" else x for x in rows[:-1]]
        again = e2e_record.record(gpu_like, summary, e2e_record.fasta_lengths(str(fa)), "test-tiny", "reads", "embed")
        assert again["mfu"] == pytest.approx(0.5, abs=1e-3)
    md = (tmp_path / "bench.md").read_text()
    assert "| test-tiny | reads | " in md.split("e2e ÷ loop")[1]
