"""bench/bench.py on the CPU (its smoke-test mode: fp32, the test-tiny geometry): arms one after
the other and interleaved batch by batch, each with its correctness gate against Hugging Face."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(out: Path, *args: str) -> list[dict]:
    cmd = [sys.executable, str(ROOT / "bench" / "bench.py"), "--out", str(out), "--models", "test-tiny",
           "--workloads", "reads,uniprot", "--tokens", "3000", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("interleave", [False, True])
def test_bench_times_every_arm_and_gates_it(tmp_path, interleave):
    """Every arm of every workload gets a speed record and embed's arms a passing gate. Interleaved,
    embed's arms share the same batches (equal counts, equal tokens), say so and carry no timed
    window of their own (bench/energy.py must not read one); arms run alone keep theirs."""
    rows = _bench(tmp_path, "--impls", "embed,embed@base,hf-sorted", "--base-kernels",
                  str(ROOT / "py" / "embed_worker" / "gpu" / "attention_kernels.py"), *(["--interleave"] if interleave else []))
    speed = {(r["workload"], r["implementation"]): r for r in rows if "tokens_per_s" in r}
    gates = {(r["workload"], r["implementation"]): r for r in rows if r.get("measurement") == "correctness_gate"}
    assert set(speed) == {(w, i) for w in ("reads", "uniprot") for i in ("embed", "embed@base", "hf-sorted")}
    assert set(gates) == {(w, i) for w in ("reads", "uniprot") for i in ("embed", "embed@base")}
    assert all(g["ok"] and g["nonfinite"] == 0 and g["min"] > 0.99999 for g in gates.values())
    for w in ("reads", "uniprot"):
        a, b, hf = speed[(w, "embed")], speed[(w, "embed@base")], speed[(w, "hf-sorted")]
        assert a["tokens"] == b["tokens"] == hf["tokens"] and a["batches"] == b["batches"] >= 1
        assert a["seconds"] > 0 and b["seconds"] > 0
        assert ("wall_start" in hf) and not hf.get("interleaved")
        for arm in (a, b):
            assert arm.get("interleaved", False) is interleave
            assert arm.get("runs_per_batch", 1) == (2 if interleave else 1)  # A B B A: each arm twice
            assert ("wall_start" in arm) is not interleave


def test_hugging_face_arms_run_on_a_prefix_of_the_workload(tmp_path):
    """--hf-tokens: the HF arms time the workload's first sequences up to that many tokens (their
    records say how many sequences and tokens, and their MFU uses those lengths); embed's arms time
    the whole workload."""
    rows = _bench(tmp_path, "--workloads", "uniprot", "--impls", "embed,hf-input", "--hf-tokens", "1000")
    speed = {r["implementation"]: r for r in rows if "tokens_per_s" in r}
    ours, hf = speed["embed"], speed["hf-input"]
    assert ours["tokens"] >= 3000 and 1000 <= hf["tokens"] < 1000 + 1024 and hf["seqs"] < ours["seqs"]
    # seqs/s from the unrounded time; "seconds" is rounded to 1 ms, so bound it both ways
    secs = hf["seconds"]
    assert hf["seqs"] / (secs + 0.0005) - 1 <= hf["seqs_per_s"] <= hf["seqs"] / max(secs - 0.0005, 1e-9) + 1
    # FLOPs per token from the prefix's own lengths: 24 D^2 + 4 L D per layer, L its token-weighted mean
    assert hf["flops_per_token"] != ours["flops_per_token"]


def test_bench_runs_a_model_at_a_chosen_depth(tmp_path):
    """NAME@L: NAME's width and heads at L layers (how a 15B-wide model fits a benchmark machine),
    written as its own checkpoint, named so in the records and gated like any other."""
    rows = _bench(tmp_path, "--models", "test-tiny@1L", "--workloads", "reads", "--impls", "embed")
    speed = [r for r in rows if "tokens_per_s" in r]
    gates = [r for r in rows if r.get("measurement") == "correctness_gate"]
    assert [r["model"] for r in speed] == ["test-tiny@1L"] and speed[0]["tokens_per_s"] > 0
    assert len(gates) == 1 and gates[0]["ok"]
    cfg = json.loads(Path("/tmp/embed-models/test-tiny-random-1l/config.json").read_text())
    assert cfg["num_hidden_layers"] == 1 and cfg["hidden_size"] == 64 and cfg["num_attention_heads"] == 4
    # one layer's FLOPs per token, 24 D^2 + 4 L D with reads' L <= 72 tokens (a whole test-tiny: twice that)
    assert 24 * 64 ** 2 <= speed[0]["flops_per_token"] <= 24 * 64 ** 2 + 4 * 72 * 64


def test_interleaved_arms_run_each_batch_twice_in_a_palindrome(monkeypatch):
    """A B B A within a batch (the first half's order rotated from batch to batch): every arm sits
    at the same mean position, so a position effect cannot favour one arm; the reported time is one
    pass's (the two runs' mean)."""
    import types

    import torch
    sys.path.insert(0, str(ROOT / "bench"))
    import bench
    calls: list[str] = []
    monkeypatch.setattr(bench, "set_impl", lambda model, impl: calls.append(impl))
    monkeypatch.setattr(bench, "batch_means", lambda model, ids, cu, mx, layer: torch.zeros(cu.numel() - 1, 4))
    seqs = ["A" * 50] * 6  # 52 tokens each, two per 110-token batch: three batches
    model = types.SimpleNamespace(cfg=types.SimpleNamespace(embed_dim=4))
    res = bench.embed_interleaved(model, ["x", "y", "z"], seqs, 110, 1)
    assert calls == ["x", "y", "z", "z", "y", "x",  "y", "z", "x", "x", "z", "y",  "z", "x", "y", "y", "x", "z"]
    for impl in ("x", "y", "z"):
        means, secs, batches, toks, _ = res[impl]
        assert means.shape == (6, 4) and batches == 3 and toks == 6 * 52 and secs >= 0
