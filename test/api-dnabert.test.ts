/**
 * The TypeScript API with a real worker and a tiny DNABERT-S folder: nucleotide FASTA paths, FASTA
 * text and (async) iterables of reads are read with the folder's tokenizer.json, and give the same
 * vectors; per-residue rows are one per BPE token; protein letters are refused where they stand.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Embedder, InputError, type Embedding } from "../src/index.ts";
import { loadBpe } from "../src/input/reading.ts";
import { DNABERT_TOKENIZER, randomReads, readsFasta, TINY_DNABERT, writeTinyDnabert } from "./dnabert-folder.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-api-dna-"));
const folder = join(tmp, "tiny-dnabert-s");
const READS = randomReads(7, 30, 400, 21);
const fastaPath = join(tmp, "reads.fna");
const bpe = loadBpe(DNABERT_TOKENIZER);
/** BPE tokens of a read, [CLS]/[SEP] not counted. */
const tokenCount = (seq: string) => bpe.encode(new TextEncoder().encode(seq.toUpperCase())).ids.length - 2;

let e: Embedder;
beforeAll(async () => {
  await writeTinyDnabert(folder);
  writeFileSync(fastaPath, readsFasta(READS));
  e = await Embedder.create({ model: folder, devices: "cpu", include: "mean,per-residue", layers: "0,-1" });
});
afterAll(async () => {
  await e?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function all(it: AsyncIterable<Embedding>): Promise<Embedding[]> {
  const out: Embedding[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const meanById = (xs: Embedding[], layer: number) => new Map(xs.filter((x) => x.kind === "mean" && x.layer === layer).map((x) => [x.id, Array.from(x.vector)]));

describe("TypeScript API, DNABERT-S", () => {
  test("the Embedder says the family; a FASTA path gives a mean per read and a row per BPE token", async () => {
    expect(e.info.family).toBe("dnabert-s");
    expect(e.info.model.dim).toBe(TINY_DNABERT.hidden_size);
    expect(e.info.layers).toEqual([0, TINY_DNABERT.num_layers]);
    const got = await all(e.embed(fastaPath));
    expect(got.length).toBe(READS.length * 2 * 2);
    for (const r of READS) {
      const res = got.find((x) => x.kind === "residues" && x.id === r.id && x.layer === 2)!;
      expect(res.vector.length).toBe(tokenCount(r.seq) * TINY_DNABERT.hidden_size);
    }
    expect([...meanById(got, 2).keys()].sort()).toEqual(READS.map((r) => r.id).sort());
  });

  test("FASTA text, iterables and async iterables of reads give the file's vectors", async () => {
    const fromFile = meanById(await all(e.embed(fastaPath)), 2);
    const fromText = meanById(await all(e.embed(readsFasta(READS))), 2);
    const records = READS.map((r) => ({ id: r.id, sequence: r.seq }));
    const fromIter = meanById(await all(e.embed(records)), 2);
    async function* gen() {
      yield* records;
    }
    const fromAsync = meanById(await all(e.embed(gen())), 2);
    expect(fromText).toEqual(fromFile);
    for (const m of [fromIter, fromAsync]) {
      expect(m.size).toBe(READS.length);
      for (const [id, v] of m) {
        const ref = fromFile.get(id)!;
        // Same records, possibly packed differently: fp32 rounding only.
        for (let i = 0; i < v.length; i++) expect(Math.abs(v[i]! - ref[i]!)).toBeLessThan(1e-5);
      }
    }
    // A lowercase read is its uppercase read (the tokenizer would make lowercase bases [UNK]).
    const [lo, up] = meanById(await all(e.embed([{ id: "lo", sequence: "acgtacgattcgagct" }, { id: "up", sequence: "ACGTACGATTCGAGCT" }])), 2).values();
    for (let i = 0; i < lo!.length; i++) expect(Math.abs(lo![i]! - up![i]!)).toBeLessThan(1e-5);
  });

  test("a protein letter in an iterable read is an InputError naming the record and the column", async () => {
    const err = await all(e.embed([{ id: "ok", sequence: "ACGT" }, { id: "p1", sequence: "ACGTEFIL" }])).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(`<input>:2 (record "p1"): 'E' at column 5 is a protein letter`);
  });

  test("protein FASTA text is refused at its line", async () => {
    const err = await all(e.embed(">a\nACGT\n>b\nMKVLAAGIEF\n")).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(`<text>:4 (record "b")`);
  });
});
