#!/usr/bin/env bun
/**
 * Throughput of the DNABERT-S BPE tokenizer (src/input/bpe.ts) on one core: N random reads of
 * L bases (uniform A/C/G/T, fixed seed), tokenized from bytes as the FASTA reader would pass them.
 * Prints one JSON line: reads/s, bases/s, tokens/s (tokens include [CLS]/[SEP]).
 *
 * Usage: bun dev/bench-bpe.ts [--reads 1000000] [--length 150] [--tokenizer PATH/tokenizer.json]
 */
import { parseArgs } from "node:util";
import { DnaBpeTokenizer } from "../src/input/bpe.ts";

const { values } = parseArgs({
  options: {
    reads: { type: "string", default: "1000000" },
    length: { type: "string", default: "150" },
    tokenizer: { type: "string", default: "test/fixtures/dnabert-s/tokenizer.json" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log("Usage: bun dev/bench-bpe.ts [--reads 1000000] [--length 150] [--tokenizer PATH/tokenizer.json]");
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
