"""One end-to-end run through the CLI as a benchmark record next to bench.py's (issue 4: the
orchestrator's overhead as JSON and in the markdown table).

    python3 bench/e2e_record.py --bench DIR/bench.jsonl --summary e2e.json --fasta e2e.fa \
        --model esm2_t33_650M_UR50D --workload reads [--loop-impl embed-quack] [--command ...]

Reads the run summary `embed run` printed (stdout), the FASTA it embedded (for FLOPs per token)
and bench.py's records of the same run folder (the matmul ceiling; the worker loop alone on the
same model and workload). Appends one object to bench.jsonl — implementation "embed-cli",
tokens_per_s and seqs_per_s of the embedding phase, mfu, of_loop (e2e ÷ the loop's tokens/s),
orchestrator_overhead (1 − of_loop), busy (the share of the embedding phase each worker spent
computing), startup_s — and a table of these to bench.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from embed_worker.esm2.registry import KNOWN, TEST_TINY  # noqa: E402


def fasta_lengths(path: str) -> list[int]:
    """Residues per record of a FASTA file (the benchmark's own, written by workloads.write_fasta)."""
    lens, n = [], None
    with open(path) as f:
        for line in f:
            if line.startswith(">"):
                if n is not None:
                    lens.append(n)
                n = 0
            elif n is not None:
                n += len(line.strip())
    if n is not None:
        lens.append(n)
    return lens


def model_config(name: str):
    """The geometry of a released model (or test-tiny), as bench.py names them (NAME@L: L layers)."""
    import dataclasses
    from bench import model_spec
    base, layers = model_spec(name)
    cfg = (KNOWN[base] if base in KNOWN else TEST_TINY).cfg
    return dataclasses.replace(cfg, num_layers=layers) if layers else cfg


def loop_arm(summary: dict) -> str:
    """bench.py's arm that runs what the run's first worker reported ("cuda:0 (..., quack, fp16)")."""
    kinds = summary["devices"][0]
    for kernels in ("quack", "triton", "compile"):
        if f", {kernels}," in kinds:
            return {"compile": "embed-compiled"}.get(kernels, f"embed-{kernels}")
    return "embed"


def record(bench: list[dict], summary: dict, lens: list[int], model: str, workload: str, loop_impl: str,
           truncate: int = 1022) -> dict:
    """The e2e record from bench.py's records of the same run, the CLI's summary and the records'
    residue counts."""
    from bench import flops_per_token
    ceiling = next(r["tflops"] for r in bench if r.get("measurement") == "matmul_ceiling")  # 0.0 on a CPU
    loop = next((r for r in bench if r.get("model") == model and r.get("workload") == workload
                 and r.get("implementation") == loop_impl and "tokens_per_s" in r), None)
    tps = summary["tokensPerSecond"]
    fpt = flops_per_token(model_config(model), [min(n, truncate) + 2 for n in lens])
    of_loop = tps / loop["tokens_per_s"] if loop else None
    return {"model": model, "workload": workload, "implementation": "embed-cli", "seqs": summary["records"],
            "tokens": round(tps * summary["embedSeconds"]), "seconds": round(summary["embedSeconds"], 3),
            "tokens_per_s": round(tps), "seqs_per_s": round(summary["records"] / summary["embedSeconds"]),
            "mfu": round(tps * fpt / (ceiling * 1e12), 4) if ceiling else None, "flops_per_token": round(fpt), "peak_mem_gib": None,
            "batches": summary["batches"], "budget": summary["budget"], "density": round(summary["density"], 4),
            "loop_implementation": loop_impl, "loop_tokens_per_s": loop["tokens_per_s"] if loop else None,
            "of_loop": None if of_loop is None else round(of_loop, 4),
            "orchestrator_overhead": None if of_loop is None else round(1 - of_loop, 4),
            "busy": summary["busy"], "startup_s": round(summary["startupSeconds"], 2),
            "devices": summary["devices"]}


HEADER = "| model | workload | e2e tokens/s | loop tokens/s | e2e ÷ loop | orchestrator overhead | busy | MFU |"


def markdown(rows: list[dict], header: bool = True) -> str:
    """Table rows for e2e records, under the table's header (header=False: rows only, to append
    below a table already written)."""
    out = ["", "", HEADER, "|---|---|---|---|---|---|---|---|"] if header else []
    pct = lambda x: "–" if x is None else f"{x:.1%}"  # noqa: E731
    for r in rows:
        loop = "–" if r["loop_tokens_per_s"] is None else f"{r['loop_tokens_per_s']:,}"
        busy = ", ".join(f"{k} {v:.0%}" for k, v in r["busy"].items())
        out.append(f"| {r['model']} | {r['workload']} | {r['tokens_per_s']:,} | {loop} | {pct(r['of_loop'])} | "
                   f"{pct(r['orchestrator_overhead'])} | {busy} | {pct(r['mfu'])} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="bench.jsonl of the same run folder (appended to)")
    ap.add_argument("--summary", required=True, help="the JSON summary `embed run` printed")
    ap.add_argument("--fasta", required=True, help="the FASTA that run embedded")
    ap.add_argument("--model", required=True, help="the model's name as bench.py recorded it")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--loop-impl", default="auto", help="bench.py's arm to compare with (auto: the one "
                    "running the kernels the run's first worker reported)")
    ap.add_argument("--md", default="", help="bench.md to append the table to (default: beside --bench)")
    ap.add_argument("--command", default=" ".join(sys.argv))
    a = ap.parse_args()
    bench = [json.loads(line) for line in open(a.bench) if line.strip()]
    try:
        summary = json.load(open(a.summary))
    except (OSError, json.JSONDecodeError) as e:
        print(f"e2e_record: {a.summary}: no run summary ({e}); did `embed run` fail? see its log", file=sys.stderr)
        return 1
    r = record(bench, summary, fasta_lengths(a.fasta), a.model, a.workload,
               loop_arm(summary) if a.loop_impl == "auto" else a.loop_impl)
    gpu = next((b.get("gpu") for b in bench if b.get("gpu")), None)
    r.update({"gpu": gpu, "date": datetime.date.today().isoformat(), "command": a.command})
    with open(a.bench, "a") as f:
        f.write(json.dumps(r) + "\n")
    md = a.md or os.path.join(os.path.dirname(a.bench), "bench.md")
    has_table = os.path.exists(md) and HEADER in open(md).read()
    with open(md, "a") as f:
        f.write(markdown([r], header=not has_table))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
