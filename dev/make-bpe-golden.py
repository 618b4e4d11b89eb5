#!/usr/bin/env python3
"""Write test/fixtures/dnabert-bpe-golden.json: DNABERT-S token ids for hand-picked sequences, from
Hugging Face `tokenizers` on test/fixtures/dnabert-s/tokenizer.json (the model's own file) with
padding and truncation switched off, as transformers' tokenizer call does. test/bpe.test.ts checks
src/input/bpe.ts against these ids without Python.

Line breaks: a case's `input` is a record's sequence as it sits in a FASTA file, line breaks
included; the ids are HF's on the line-joined sequence (ASCII whitespace removed), because
VirNucPro tokenizes what Biopython's FASTA reader returns and merges span line ends.

Usage: python dev/make-bpe-golden.py [OUT.json]
"""
from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "test" / "fixtures" / "dnabert-s" / "tokenizer.json"
DEFAULT_OUT = ROOT / "test" / "fixtures" / "dnabert-bpe-golden.json"
ASCII_WS = re.compile(r"[ \t\n\r\v\f]")


def golden_inputs() -> list[tuple[str, str]]:
    """(why, input) pairs: edge cases of the alphabet, merges, [UNK] and line breaks."""
    rng = random.Random(20250101)
    acgt = lambda n: "".join(rng.choice("ACGT") for _ in range(n))  # noqa: E731
    read = acgt(150)
    return [
        ("empty record", ""),
        ("one base each", "A"),
        ("one base", "T"),
        ("two bases", "AC"),
        ("every base", "ACGT"),
        ("N alone is one [UNK]", "N"),
        ("N in the middle: no merge crosses it", "ACGTACGNACGTACG"),
        ("runs of N", "NNNNACGTNNNN"),
        ("IUPAC codes, one [UNK] each", "ACGRYSWKMBDHVNTACG"),
        ("lowercase is not folded: [UNK] per base", "acgt"),
        ("mixed case", "ACGTacgtACGT"),
        ("U (RNA) is unknown", "ACGUACGU"),
        ("gap and stop characters", "ACG-T*ACG.T"),
        ("digits", "AC1GT2"),
        ("non-ASCII letters: one [UNK] per code point", "AAéAA€TT"),
        ("homopolymer longer than the longest token (32)", "A" * 70),
        ("tandem repeat", "CA" * 40),
        ("a 150-bp read", read),
        ("the same read split over FASTA lines of 60", "\n".join(read[i : i + 60] for i in range(0, 150, 60))),
        ("CRLF line ends", "\r\n".join(read[i : i + 50] for i in range(0, 150, 50))),
        ("line break inside a would-be token", "AAAAAAAA\nAAAAAAAA"),
        ("spaces and tabs inside a line", "ACGT ACGT\tACGT"),
        ("literal [MASK] is the mask token", "ACG[MASK]TTG"),
        ("literal [CLS] [SEP] [PAD] [UNK]", "A[CLS]C[SEP]G[PAD]T[UNK]A"),
        ("lowercase [mask] is not special", "AC[mask]GT"),
        ("unclosed bracket", "ACG[MAS"),
        ("longer than the stored truncation (2,000 tokens) is not truncated", acgt(12000)),
        ("N-rich read", "".join(rng.choice("ACGTN") for _ in range(300))),
        ("IUPAC-rich lowercase read", "".join(rng.choice("ACGTacgtRYKMN") for _ in range(300))),
    ]


def build() -> dict:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_padding()
    tok.no_truncation()
    cases = []
    for why, text in golden_inputs():
        ids = tok.encode(ASCII_WS.sub("", text)).ids
        cases.append({"why": why, "input": text, "ids": ids, "unknown": sum(1 for i in ids if i == 0)})
    return {
        "about": "DNABERT-S token ids ([CLS] ... [SEP]) from HF tokenizers Tokenizer.from_file(test/fixtures/dnabert-s/tokenizer.json), "
        "no padding, no truncation, on the input with ASCII whitespace removed. Regenerate: python dev/make-bpe-golden.py",
        "cases": cases,
    }


def dumps(data: dict) -> str:
    """JSON with one case per line, so diffs show which case changed."""
    cases = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in data["cases"])
    return "{\n" f' "about": {json.dumps(data["about"])},\n' f' "cases": [\n{cases}\n ]\n' "}\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    data = build()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(data), encoding="utf-8")
    print(f"wrote {len(data['cases'])} cases to {out}")


if __name__ == "__main__":
    main()
