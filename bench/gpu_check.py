"""GPU check, one device-tool call: precision of packed fp16/bf16 against an fp32 Hugging Face
reference on the same random weights of a real config, and worker-loop throughput.

    python3 bench/gpu_check.py --out DIR [--config esm2_t33_650M_UR50D] [--tokens 2000000]

Writes DIR/gpu_check.json and prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "py"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch  # noqa: E402

from embed_worker.tools import testmodel  # noqa: E402
from embed_worker.esm2.weights import load_model  # noqa: E402
import workloads  # noqa: E402
from bench import embed_packed, hf_padded, load_hf  # noqa: E402

def stats(cos: torch.Tensor) -> dict:
    c = sorted(cos.tolist())
    return {"n": len(c), "min": round(c[0], 6), "p1": round(c[max(0, len(c) // 100 - 1)], 6),
            "median": round(statistics.median(c), 6)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="esm2_t33_650M_UR50D")
    ap.add_argument("--models", default="/tmp/embed-models")
    ap.add_argument("--tokens", type=int, default=2_000_000, help="tokens of the `reads` throughput run")
    ap.add_argument("--budget", type=int, default=16384)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dev = torch.device("cuda", 0)
    t0 = time.perf_counter()
    paths = testmodel.write_like(a.models, a.config, fmt="hf")
    made_s = time.perf_counter() - t0
    report = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "config": a.config,
              "checkpoint": paths["hf"], "make_checkpoint_s": round(made_s, 1)}

    # Precision: packed fp16 / bf16 vs fp32 HF EsmModel on the same weights.
    hf = load_hf(paths["hf"], torch.float32, "eager")
    sample = {w: workloads.sequences(w, n, seed=1) for w, n in (("reads", 256), ("short", 128), ("uniprot", 64))}
    report["precision"] = {}
    with torch.inference_mode():
        ref = {w: hf_padded(hf, s, 8192, True)[0] for w, s in sample.items()}
        del hf
        torch.cuda.empty_cache()
        for prec, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            model, mcfg, _ = load_model(paths["hf"], dev, dtype)
            layer = mcfg.num_layers
            per = {}
            for w, s in sample.items():
                got = embed_packed(model, s, a.budget, layer)[0]
                cos = torch.nn.functional.cosine_similarity(got, ref[w], dim=1)
                per[w] = {**stats(cos), "nonfinite": int((~torch.isfinite(got)).sum())}
            report["precision"][prec] = per
            if prec == "fp16":
                # Throughput of the bare worker forward on `reads`.
                n = a.tokens // 51
                seqs = workloads.sequences("reads", n, seed=2)
                embed_packed(model, seqs[:2000], a.budget, layer)  # warm-up
                torch.cuda.reset_peak_memory_stats(dev)
                for budget in (a.budget, 4 * a.budget):
                    secs = embed_packed(model, seqs, budget, layer)[1]
                    toks = sum(len(x) + 2 for x in seqs)
                    report.setdefault("throughput", []).append({
                        "workload": "reads", "impl": "embed packed fp16 forward loop", "budget": budget,
                        "seqs": n, "tokens": toks, "seconds": round(secs, 2),
                        "tokens_per_s": round(toks / secs), "seqs_per_s": round(n / secs),
                        "peak_mem_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)})
            del model
            torch.cuda.empty_cache()
    fp16_min = min(v["min"] for v in report["precision"]["fp16"].values())
    report["fp16_min_cosine"] = fp16_min
    report["fp16_ok"] = fp16_min >= 0.9999
    with open(os.path.join(a.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report))
    return 0 if report["fp16_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
