"""Check a store written by `embed run` against fair-esm's own ESM2 on the same checkpoint.

    python test/verify_store.py STORE FASTA CHECKPOINT.pt

Loads the store with plain NumPy (as users do), recomputes every record with fair-esm (fp32,
unpacked, one sequence at a time) and prints JSON: counts and the worst relative error per
output. Exit 1 if ids/counts differ or an error exceeds 1e-5.
"""
import argparse
import json
import sys

import numpy as np
import torch


def read_fasta(path):
    recs, cur = [], None
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            cur = [line[1:].split()[0], ""]
            recs.append(cur)
        elif line:
            cur[1] += line
    return [(i, s.upper().replace("<MASK>", "<mask>").rstrip("*")) for i, s in recs]


def main():
    store, fasta, ckpt = sys.argv[1:4]
    import esm
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(ckpt, map_location="cpu", weights_only=True)
    model, alphabet, state = esm.pretrained._load_model_and_alphabet_core_v2(data)
    model.load_state_dict(state, strict=False)
    model.eval()
    manifest = json.load(open(f"{store}/manifest.json"))
    ids = open(f"{store}/ids.txt").read().split()
    recs = read_fasta(fasta)
    out = {"records": len(ids), "fasta_records": len(recs), "ids_match": ids == [r[0] for r in recs], "max_rel_err": {}}
    layers, include = manifest["layers"], manifest["include"]
    arrays = {(k, L): np.load(f"{store}/{k}.layer{L}.npy", mmap_mode="r") for k in include for L in layers}
    offsets = np.load(f"{store}/residues.offsets.npy") if "residues" in include else None
    conv = alphabet.get_batch_converter()
    worst = {}
    with torch.no_grad():
        for i, (rid, seq) in enumerate(recs):
            _, _, toks = conv([(rid, seq)])
            reps = model(toks, repr_layers=layers)["representations"]
            n = toks.shape[1] - 2
            for (k, L), arr in arrays.items():
                r = reps[L][0].double()
                ref = {"mean": r[1:n + 1].mean(0, keepdim=True), "bos": r[0:1],
                       "residues": r[1:n + 1]}[k]
                got = torch.from_numpy(np.array(arr[i:i + 1] if k != "residues" else arr[offsets[i]:offsets[i + 1]])).double()
                err = float(((got - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-30)).max())
                worst[f"{k}.layer{L}"] = max(worst.get(f"{k}.layer{L}", 0.0), err)
    out["max_rel_err"] = worst
    ok = out["ids_match"] and out["records"] == out["fasta_records"] and all(v <= 1e-5 for v in worst.values())
    out["ok"] = ok
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
