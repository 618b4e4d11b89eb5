#!/usr/bin/env python3
"""Write test/fixtures/tokenizer-golden.json: ESM-2 token ids for a set of sequences, from
fair-esm's Alphabet batch converter and from Hugging Face's EsmTokenizer, asserting the two
agree. test/tokenize-parity.test.ts checks the TypeScript tokenizer against these ids, and
py/tests/test_tokenizer_golden.py regenerates them to detect drift in either library.

The HF tokenizer is built offline from a vocab.txt written from fair-esm's token list (the
same file facebook/esm2_* checkpoints ship), so no hub access is needed.

Usage: python dev/make-tokenizer-golden.py [OUT.json]
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "test" / "fixtures" / "tokenizer-golden.json"

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
EXTRA = "XBUZO.-"


def golden_inputs() -> list[str]:
    """Fixture sequences: every token, <mask> in several places, length 1 and long ones."""
    rng = random.Random(20240611)
    seqs = [
        STANDARD,
        STANDARD + EXTRA,
        "LAGVSERTIDPKQNFYMHWCXBUZO.-",
        "M",
        "X",
        "-",
        ".",
        "<mask>",
        "<mask>MKTAYIAKQR",
        "MKTAYIAKQR<mask>",
        "MKT<mask>YIAK<mask>QR",
        "<mask><mask><mask>",
        "M<mask>",
        "MKV.-.-LAG",
        "BZUOX" * 7,
        "".join(rng.choice(STANDARD) for _ in range(1022)),
        "".join(rng.choice(STANDARD + EXTRA) for _ in range(300)),
    ]
    for n in (2, 3, 50, 127):
        seqs.append("".join(rng.choice(STANDARD) for _ in range(n)))
    masked = list("".join(rng.choice(STANDARD) for _ in range(200)))
    for pos in sorted(rng.sample(range(200), 15), reverse=True):
        masked[pos] = "<mask>"
    seqs.append("".join(masked))
    return seqs


def fair_esm_ids(seqs: list[str]) -> tuple[list[str], list[list[int]]]:
    import esm

    alphabet = esm.Alphabet.from_architecture("ESM-1b")
    convert = alphabet.get_batch_converter()
    ids = []
    for i, s in enumerate(seqs):
        # One sequence per batch: batching pads to the longest, we want exact ids.
        _, _, tokens = convert([(f"s{i}", s)])
        ids.append([int(t) for t in tokens[0].tolist()])
    return list(alphabet.all_toks), ids


def hf_ids(all_toks: list[str], seqs: list[str]) -> list[list[int]]:
    from transformers import EsmTokenizer

    with tempfile.TemporaryDirectory() as d:
        vocab = os.path.join(d, "vocab.txt")
        with open(vocab, "w") as f:
            f.write("\n".join(all_toks) + "\n")
        tok = EsmTokenizer(vocab_file=vocab)
        return [list(tok(s)["input_ids"]) for s in seqs]


def build() -> dict:
    seqs = golden_inputs()
    all_toks, esm_ids = fair_esm_ids(seqs)
    hf = hf_ids(all_toks, seqs)
    for s, a, b in zip(seqs, esm_ids, hf):
        if a != b:
            raise SystemExit(f"fair-esm and HF EsmTokenizer disagree on {s[:40]!r}: {a[:12]} vs {b[:12]}")
    return {
        "about": "ESM-2 token ids (with <cls>/<eos>) from fair-esm Alphabet.from_architecture('ESM-1b') batch converter; "
        "identical to transformers EsmTokenizer. Regenerate: python dev/make-tokenizer-golden.py",
        "alphabet": all_toks,
        "cases": [{"input": s, "ids": ids} for s, ids in zip(seqs, esm_ids)],
    }


def dumps(data: dict) -> str:
    """JSON with one case per line, so diffs show which case changed."""
    cases = ",\n".join("  " + json.dumps(c) for c in data["cases"])
    return (
        "{\n"
        f' "about": {json.dumps(data["about"])},\n'
        f' "alphabet": {json.dumps(data["alphabet"])},\n'
        f' "cases": [\n{cases}\n ]\n'
        "}\n"
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    data = build()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        f.write(dumps(data))
    print(f"wrote {len(data['cases'])} cases to {out}")


if __name__ == "__main__":
    main()
