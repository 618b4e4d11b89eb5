"""Per-batch GPU time of the first pass over a workload after the worker's warm-up, against a second
pass: finds one-time costs (kernel compiles, autotuning) that land inside a run's embedding phase.

    python3 scripts/first_batches.py [--model esm2_t33_650M_UR50D] [--workload uniprot] [--records 5000]
                                     [--kernels quack] [--warm tiny|long]

--warm tiny: the worker's warm-up forward (one 5-token batch); long: also one forward over two
1,024-token sequences. Prints one JSON line per batch and pass.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/ (bench puts py/ on the path)

import torch  # noqa: E402

import workloads  # noqa: E402
from bench import encode, plan  # noqa: E402
from embed_worker import testmodel  # noqa: E402
from embed_worker.weights import load_model  # noqa: E402


@torch.inference_mode()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="esm2_t33_650M_UR50D")
    ap.add_argument("--workload", default="uniprot")
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--kernels", default="quack")
    ap.add_argument("--warm", default="tiny")
    ap.add_argument("--budget", type=int, default=65536)
    a = ap.parse_args()
    paths = testmodel.write_like("/tmp/embed-models", a.model, fmt="hf")
    model, mcfg, _ = load_model(paths["hf"], "cuda", torch.float16)
    model.use_kernels(a.kernels)
    layer = mcfg.num_layers
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    model(torch.tensor([0, 5, 6, 7, 2, 0, 8, 2], device=dev), torch.tensor([0, 5, 8], dtype=torch.int32, device=dev), 5, [layer])
    if a.warm == "long":
        toks = torch.full((2048,), 5, device=dev)
        toks[0] = toks[1024] = 0
        toks[1023] = toks[2047] = 2
        model(toks, torch.tensor([0, 1024, 2048], dtype=torch.int32, device=dev), 1024, [layer])
    torch.cuda.synchronize()
    print(json.dumps({"warm": a.warm, "s": round(time.perf_counter() - t0, 2)}), flush=True)
    seqs = workloads.sequences(a.workload, a.records, seed=21)
    batches = [[seqs[i] for i in b] for b in plan(seqs, a.budget)]
    for pas in (1, 2):
        for i, b in enumerate(batches):
            ids = torch.tensor([t for s in b for t in encode(s)], dtype=torch.long, device=dev)
            cu = torch.zeros(len(b) + 1, dtype=torch.int32)
            cu[1:] = torch.cumsum(torch.tensor([len(s) + 2 for s in b]), 0)
            torch.cuda.synchronize()
            t = time.perf_counter()
            model(ids, cu.to(dev), max(len(s) for s in b) + 2, [layer])
            torch.cuda.synchronize()
            print(json.dumps({"pass": pas, "batch": i, "max_len": max(len(s) for s in b) + 2, "tokens": int(cu[-1]),
                              "ms": round((time.perf_counter() - t) * 1000, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
