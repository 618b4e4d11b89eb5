/**
 * src/input/bpe.ts against Hugging Face `tokenizers` (Tokenizer.from_file on the DNABERT-S
 * tokenizer.json, padding and truncation off) on 120,000 seeded random reads: uniform A/C/G/T of
 * 1–400 bases, and reads with N, IUPAC codes, lowercase and FASTA line breaks. Every read's ids
 * must be identical. Reads go to Python as JSON lines; ids come back as raw uint16 + uint32 lengths.
 * Line breaks: Python gets the line-joined read (what Biopython gives VirNucPro); bpe.ts gets the
 * read with its line breaks.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pythonBin } from "../src/config.ts";
import { DnaBpeTokenizer } from "../src/input/bpe.ts";

const TOKENIZER = join(import.meta.dir, "fixtures", "dnabert-s", "tokenizer.json");
const python = pythonBin();
const hasTokenizers = Bun.spawnSync([python, "-c", "import tokenizers"], { stderr: "ignore" }).exitCode === 0;

const HF = `
import json, re, sys
from array import array
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1]); tok.no_padding(); tok.no_truncation()
ws = re.compile(r"[ \\t\\n\\r\\v\\f]")
reads = [ws.sub("", json.loads(l)) for l in open(sys.argv[2], encoding="utf-8")]
ids, lens = array("H"), array("I")
for enc in tok.encode_batch(reads):
    ids.extend(enc.ids); lens.append(len(enc.ids))
with open(sys.argv[3], "wb") as f: ids.tofile(f)
with open(sys.argv[4], "wb") as f: lens.tofile(f)
`;

/** mulberry32: a seeded PRNG, so a failure names a reproducible read index. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeReads(n: number, seed: number): string[] {
  const r = rng(seed);
  const pick = (s: string) => s[Math.floor(r() * s.length)]!;
  const reads: string[] = [];
  for (let k = 0; k < n; k++) {
    const len = 1 + Math.floor(r() * 400);
    const kind = k % 10;
    // 0-5 uniform ACGT; 6 N; 7 IUPAC; 8 lowercase stretches; 9 line breaks (with some N).
    const alphabet = kind === 6 ? "ACGTACGTACGTN" : kind === 7 ? "ACGTACGTACGTRYSWKMBDHVN" : kind === 9 ? "ACGTACGTACGTACGTN" : "ACGT";
    let s = "";
    for (let i = 0; i < len; i++) s += pick(alphabet);
    if (kind === 8) {
      const a = Math.floor(r() * len);
      const b = Math.min(len, a + 1 + Math.floor(r() * 40));
      s = s.slice(0, a) + s.slice(a, b).toLowerCase() + s.slice(b);
    }
    if (kind === 9) {
      const width = 1 + Math.floor(r() * 80);
      const eol = r() < 0.3 ? "\r\n" : "\n";
      const lines: string[] = [];
      for (let i = 0; i < s.length; i += width) lines.push(s.slice(i, i + width));
      s = lines.join(eol) + (r() < 0.5 ? eol : "");
    }
    reads.push(s);
  }
  return reads;
}

describe("DNABERT-S BPE parity with HF tokenizers", () => {
  test.skipIf(!hasTokenizers)(`120,000 random reads give identical ids${hasTokenizers ? "" : ` (skipped: ${python} cannot import tokenizers)`}`, () => {
    const reads = makeReads(120_000, 20250101);
    const dir = mkdtempSync(join(tmpdir(), "bpe-parity-"));
    try {
      const readsFile = join(dir, "reads.jsonl");
      writeFileSync(readsFile, reads.map((s) => JSON.stringify(s)).join("\n") + "\n");
      const idsFile = join(dir, "ids.u16");
      const lensFile = join(dir, "lens.u32");
      const py = Bun.spawnSync([python, "-c", HF, TOKENIZER, readsFile, idsFile, lensFile], { stderr: "pipe" });
      expect({ code: py.exitCode, stderr: py.stderr.toString() }).toEqual({ code: 0, stderr: "" });
      const hfBytes = readFileSync(idsFile);
      const hf = new Uint16Array(hfBytes.buffer, hfBytes.byteOffset, hfBytes.byteLength / 2);
      const lensBytes = readFileSync(lensFile);
      const lens = new Uint32Array(lensBytes.buffer, lensBytes.byteOffset, lensBytes.byteLength / 4);
      expect(lens.length).toBe(reads.length);

      const tok = DnaBpeTokenizer.fromJson(JSON.parse(readFileSync(TOKENIZER, "utf8")));
      const bytes = new TextEncoder();
      let at = 0;
      let mismatches = 0;
      let firstMismatch: unknown;
      let unknownSeen = 0;
      for (let k = 0; k < reads.length; k++) {
        const want = hf.subarray(at, at + lens[k]!);
        at += lens[k]!;
        // Alternate string and byte input: both paths must agree with HF.
        const got = k % 2 === 0 ? tok.encode(reads[k]!) : tok.encode(bytes.encode(reads[k]!));
        unknownSeen += got.unknown;
        const same = got.ids.length === want.length && got.ids.every((v, i) => v === want[i]) && got.unknown === want.filter((v) => v === 0).length;
        if (!same) {
          mismatches++;
          firstMismatch ??= { read: k, input: reads[k], want: [...want], got: [...got.ids] };
        }
      }
      expect(at).toBe(hf.length);
      expect({ mismatches, firstMismatch }).toEqual({ mismatches: 0, firstMismatch: undefined });
      expect(unknownSeen).toBeGreaterThan(10_000); // the N/IUPAC/lowercase reads did exercise [UNK]
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
