/** DNABERT-S's BPE on tokenizer threads (src/input/bpe-pool.ts): the table is the one the in-line
 * tokenizer makes, record for record, across block and input boundaries; errors and repeats are
 * still found where they stand; the threads stop when reading stops. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { InputError } from "../src/errors.ts";
import type { ReadingOptions } from "../src/input/alphabet-guard.ts";
import { BpePool, type BpeBlockResult } from "../src/input/bpe-pool.ts";
import { readFastaChecked } from "../src/input/fasta.ts";
import { ingest } from "../src/input/ingest.ts";
import { loadBpe, readingFor } from "../src/input/reading.ts";
import { RecordTable } from "../src/input/records.ts";
import { resolveConfig } from "../src/config.ts";
import { OptionsError } from "../src/errors.ts";
import { scratchFiles } from "./helpers.ts";

const TOKENIZER = join(import.meta.dir, "fixtures", "dnabert-s", "tokenizer.json");
const bpe = loadBpe(TOKENIZER);
const { file } = scratchFiles("embed-bpe-pool-");

/** Reads of random lengths (1–700 bases), some with IUPAC codes and lowercase, wrapped at 60. */
function reads(count: number, seed: number): string {
  let s = seed >>> 0 || 1;
  const rnd = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = 1 + Math.floor(rnd() * (rnd() < 0.1 ? 700 : 160));
    let seq = "";
    for (let k = 0; k < len; k++) {
      const r = rnd();
      seq += r < 0.01 ? "N" : r < 0.012 ? "R" : r < 0.02 ? "acgt"[Math.floor(rnd() * 4)] : "ACGT"[Math.floor(rnd() * 4)];
    }
    out.push(`>r${seed}_${i} some description\n${seq.match(/.{1,60}/g)!.join("\n")}\n`);
  }
  return out.join("");
}

const cfg = (inputs: string[]) => ({ inputs, truncate: 100_000, duplicateIds: "error" as const });
/** The table with the tokenizer in line, and with `threads` threads over blocks of `blockBytes`. */
async function both(inputs: string[], threads: number, blockBytes: number, o: Omit<ReadingOptions, "bpe"> = {}) {
  const inline = await ingest(cfg(inputs), { ...o, bpe });
  const pool = new BpePool(TOKENIZER, threads, blockBytes);
  const table = new RecordTable(100_000, "error", true, 2);
  try {
    for (const input of inputs) table.inputs.push(await readFastaChecked(input, { ...table.parserOptions(), reading: { ...o, bpe }, bpePool: pool }));
  } finally {
    pool.close();
  }
  return { inline, pooled: table.sealed() };
}

function expectSameTable(a: RecordTable, b: RecordTable) {
  expect(b.size).toBe(a.size);
  expect(b.unknown).toBe(a.unknown);
  expect(b.digest()).toBe(a.digest());
  for (let i = 0; i < a.size; i++) {
    expect(b.id(i)).toBe(a.id(i));
    expect([...b.tokens(i)]).toEqual([...a.tokens(i)]);
  }
}

describe("BPE on tokenizer threads", () => {
  test("equal to the in-line tokenizer record for record: many small blocks, a record longer than a block, two inputs (one gzipped)", async () => {
    const a = file(reads(3000, 7));
    const b = file(gzipSync(reads(1500, 11)), "b.fa.gz");
    for (const [threads, blockBytes] of [[1, 4096], [3, 2048], [2, 500]] as const) {
      const { inline, pooled } = await both([a, b], threads, blockBytes);
      expect(inline.size).toBe(4500);
      expect(inline.unknown).toBeGreaterThan(0);
      expectSameTable(inline, pooled);
      expect(pooled.summary()).toEqual(inline.summary());
    }
  });

  test("a planted fault shows: a pool that hands back two blocks' results swapped fails the comparison", async () => {
    /** Gives block 0 the result of block 1 and block 1 that of block 0. */
    class SwappingPool extends BpePool {
      private calls = 0;
      private first?: { settle: (r: BpeBlockResult) => void; real: Promise<BpeBlockResult> };
      override encode(bases: Uint8Array, offsets: Uint32Array, count: number): Promise<BpeBlockResult> {
        const real = super.encode(bases, offsets, count);
        const call = this.calls++;
        if (call === 0) return new Promise((settle) => (this.first = { settle, real }));
        if (call === 1) {
          real.then(this.first!.settle);
          return this.first!.real;
        }
        return real;
      }
    }
    const a = file(reads(400, 3));
    const inline = await ingest(cfg([a]), { bpe });
    const pool = new SwappingPool(TOKENIZER, 2, 1024);
    const table = new RecordTable(100_000, "error", true, 2);
    const got = await readFastaChecked(a, { ...table.parserOptions(), reading: { bpe }, bpePool: pool })
      .then(() => table.sealed().digest(), (e: Error) => `threw: ${e.message}`)
      .finally(() => pool.close());
    expect(got).not.toBe(inline.digest());
  });

  test("an input smaller than one block starts no thread", async () => {
    const pool = new BpePool(TOKENIZER, 2);
    const table = new RecordTable(100_000, "error", true, 2);
    table.inputs.push(await readFastaChecked(file(reads(50, 5)), { ...table.parserOptions(), reading: { bpe }, bpePool: pool }));
    expect(table.size).toBe(50);
    expect((pool as unknown as { workers: unknown[] }).workers.length).toBe(0);
    pool.close();
  });

  test("a bad letter after blocks went out is still refused at its line and record", async () => {
    const good = reads(2000, 9);
    const lines = good.split("\n").length;
    const f = file(`${good}>bad1\nACGTACGT\nACGTQACG\n`);
    const pool = new BpePool(TOKENIZER, 2, 2048);
    const table = new RecordTable(100_000, "error", true, 2);
    let err: unknown;
    try {
      await readFastaChecked(f, { ...table.parserOptions(), reading: { bpe, alphabetCheck: true }, bpePool: pool });
    } catch (e) {
      err = e;
    } finally {
      pool.close();
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(`${f}:${lines + 2} (record "bad1")`);
    expect((err as Error).message).toContain("'Q' at column 5");
  });

  test("a repeated id across blocks is refused naming both lines", async () => {
    const f = file(`>dup\nACGT\n${reads(15_000, 13)}>dup\nGGCC\n`); // > one 1 MiB block: the threads start
    const { error } = await ingest(cfg([f]), readingFor("dnabert-s", TOKENIZER, { alphabetCheck: "on", unknown: "count", tokenizerThreads: 2 })).then(
      () => ({ error: undefined }),
      (e) => ({ error: e as Error }),
    );
    expect(error).toBeInstanceOf(InputError);
    expect(error!.message).toContain('duplicate id "dup"');
    expect(error!.message).toContain("(first seen at line 1)");
  });

  test("EMBED_TOKENIZER_THREADS: a count, 0 for none; anything else is an option error", () => {
    expect(resolveConfig({ inputs: ["x.fa"], out: "o" } as never, { EMBED_TOKENIZER_THREADS: "3" }).tokenizerThreads).toBe(3);
    expect(resolveConfig({ inputs: ["x.fa"], out: "o" } as never, { EMBED_TOKENIZER_THREADS: "0" }).tokenizerThreads).toBe(0);
    expect(resolveConfig({ inputs: ["x.fa"], out: "o" } as never, {}).tokenizerThreads).toBeGreaterThanOrEqual(1);
    expect(() => resolveConfig({ inputs: ["x.fa"], out: "o" } as never, { EMBED_TOKENIZER_THREADS: "two" })).toThrow(OptionsError);
    expect(readingFor("dnabert-s", TOKENIZER, { alphabetCheck: "on", unknown: "count", tokenizerThreads: 0 }).bpeThreads).toBeUndefined();
    expect(readingFor("dnabert-s", TOKENIZER, { alphabetCheck: "on", unknown: "count", tokenizerThreads: 4 }).bpeThreads).toEqual({ tokenizer: TOKENIZER, threads: 4 });
  });
});
