/**
 * Test helpers for DNABERT-S runs with a real worker: a tiny random-weight model folder (the
 * released layout, config.json with small sizes, and the released tokenizer.json from
 * test/fixtures) and random reads. Both are deterministic for a seed.
 */
import { join } from "node:path";
import { expect } from "bun:test";
import { PACKAGE_ROOT, PYTHON_PACKAGE_DIR } from "../src/config.ts";
import { realPython, runText } from "./helpers.ts";

/** The released DNABERT-S tokenizer (4,096 BPE ids; [UNK]=0 [CLS]=1 [SEP]=2). */
export const DNABERT_TOKENIZER = join(PACKAGE_ROOT, "test", "fixtures", "dnabert-s", "tokenizer.json");

/** Sizes of the tiny model: 2 layers, 32 wide, 4 heads, GeGLU 48 wide, the released vocabulary. */
export const TINY_DNABERT = { hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 48, vocab_size: 4096 };

/** Write a tiny DNABERT-S folder at `folder` (dnabert_s/testmodel.py), with the real tokenizer.json. */
export async function writeTinyDnabert(folder: string, seed = 3): Promise<string> {
  const code = `
import sys
from embed_worker.dnabert_s.config import DNABERTConfig
from embed_worker.dnabert_s.testmodel import write_folder
write_folder(sys.argv[1], DNABERTConfig(**${JSON.stringify(TINY_DNABERT)}), tokenizer=sys.argv[2], seed=${seed})
`;
  const r = await runText([realPython(), "-c", code, folder, DNABERT_TOKENIZER], { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR });
  expect(r.stderr).not.toContain("Traceback");
  expect(r.code).toBe(0);
  return folder;
}

/** `n` random reads (`read0`, ...) of `minLen`..`maxLen` bases over A/C/G/T, lowercase every third,
 * an N in every fifth, wrapped at 60 bases: the same for a seed. */
export function randomReads(n: number, minLen: number, maxLen: number, seed = 11): { id: string; seq: string }[] {
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
  return Array.from({ length: n }, (_, i) => {
    let seq = Array.from({ length: minLen + Math.floor(rnd() * (maxLen - minLen + 1)) }, () => "ACGT"[Math.floor(rnd() * 4)]).join("");
    if (i % 5 === 4) seq = `${seq.slice(0, 7)}N${seq.slice(8)}`;
    if (i % 3 === 2) seq = seq.toLowerCase();
    return { id: `read${i}`, seq };
  });
}

/** FASTA text of `reads`, sequence lines wrapped at 60 bases. */
export function readsFasta(reads: { id: string; seq: string }[]): string {
  return reads.map((r) => `>${r.id} len=${r.seq.length}\n${r.seq.replace(/(.{60})/g, "$1\n").replace(/\n$/, "")}\n`).join("");
}
