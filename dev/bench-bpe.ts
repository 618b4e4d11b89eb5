#!/usr/bin/env bun
/**
 * Throughput of the DNABERT-S BPE tokenizer (src/input/bpe.ts) on one core: N random reads of
 * L bases (uniform A/C/G/T, fixed seed), tokenized from bytes as the FASTA reader would pass them.
 * Prints one JSON line: reads/s, bases/s, tokens/s (tokens include [CLS]/[SEP]).
 * With `--threads 0,2,...`: the same reads as a FASTA file read by `ingest` (parser + BPE, the
 * whole reading of a run) with that many tokenizer threads (src/input/bpe-pool.ts), the arms
 * interleaved over `--rounds`; one JSON line per run.
 *
 * Usage: bun dev/bench-bpe.ts [--reads 1000000] [--length 150] [--tokenizer PATH/tokenizer.json]
 *                             [--threads 0,2 --rounds 3]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DnaBpeTokenizer } from "../src/input/bpe.ts";
import { ingest } from "../src/input/ingest.ts";
import { readingFor } from "../src/input/reading.ts";

const { values } = parseArgs({
  options: {
    reads: { type: "string", default: "1000000" },
    length: { type: "string", default: "150" },
    tokenizer: { type: "string", default: "test/fixtures/dnabert-s/tokenizer.json" },
    threads: { type: "string" },
    rounds: { type: "string", default: "3" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log("Usage: bun dev/bench-bpe.ts [--reads 1000000] [--length 150] [--tokenizer PATH/tokenizer.json] [--threads 0,2 --rounds 3]");
  process.exit(0);
}
const reads = Number(values.reads);
const length = Number(values.length);
const tok = DnaBpeTokenizer.fromJson(await Bun.file(values.tokenizer).json(), values.tokenizer);

// xorshift32, fixed seed: the same reads every run.
let state = 0x9e3779b9;
const BASES = [65, 67, 71, 84];
const pool = new Uint8Array(reads * length);
for (let i = 0; i < pool.length; i++) {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  pool[i] = BASES[(state >>> 0) & 3]!;
}

for (let i = 0; i < Math.min(reads, 20_000); i++) tok.encode(pool.subarray(i * length, (i + 1) * length)); // warm the JIT
let tokens = 0;
const t0 = performance.now();
for (let i = 0; i < reads; i++) tokens += tok.encode(pool.subarray(i * length, (i + 1) * length)).ids.length;
const s = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ reads, length, seconds: +s.toFixed(3), readsPerS: Math.round(reads / s), basesPerS: Math.round((reads * length) / s), tokensPerS: Math.round(tokens / s), tokensPerRead: +(tokens / reads).toFixed(2) }));

if (values.threads !== undefined) {
  const dir = mkdtempSync(join(tmpdir(), "bench-bpe-"));
  const fasta = join(dir, "reads.fa");
  const dec = new TextDecoder();
  writeFileSync(fasta, Array.from({ length: reads }, (_, i) => `>read${i}\n${dec.decode(pool.subarray(i * length, (i + 1) * length))}\n`).join(""));
  try {
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const threads of values.threads.split(",").map(Number)) {
        const t = performance.now();
        const table = await ingest({ inputs: [fasta], truncate: 1 << 20, duplicateIds: "error" }, readingFor("dnabert-s", values.tokenizer, { alphabetCheck: "on", unknown: "count", tokenizerThreads: threads }));
        const sec = (performance.now() - t) / 1000;
        console.log(JSON.stringify({ ingest: true, round, threads, reads: table.size, seconds: +sec.toFixed(3), readsPerS: Math.round(table.size / sec) }));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
