/** ingest: inputs parsed straight into the record table; ids checked within and across files. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { resolveConfig } from "../src/config.ts";
import { InputError, OptionsError } from "../src/errors.ts";
import { ingest } from "../src/input/ingest.ts";
import { SAMPLE_RECORDS, type ReadingOptions } from "../src/input/alphabet-guard.ts";
import { groupIdentical } from "../src/input/dedup.ts";
import { FastaParser } from "../src/input/fasta-parser.ts";
import { loadBpe } from "../src/input/reading.ts";
import { RecordTable } from "../src/input/records.ts";
import { writeAtomicFile } from "../src/store/shards.ts";
import { tokenize } from "../src/input/tokenize.ts";
import { idsOf, scratchFiles } from "./helpers.ts";

const { dir, file } = scratchFiles("embed-ingest-");
let n = 0;
const read = (inputs: string[], duplicateIds: "error" | "rename" = "error", truncate = 1022) => ingest({ inputs, truncate, duplicateIds });
/** ids.txt's bytes, written as Store.finalize writes them. */
const idsTxt = (t: Awaited<ReturnType<typeof read>>) => {
  const out = join(dir, `ids${n++}.txt`);
  writeAtomicFile(out, t.idLines());
  return readFileSync(out, "utf8");
};
async function error(inputs: string[]): Promise<InputError> {
  try {
    await read(inputs);
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error("expected an error");
}

describe("ingest", () => {
  test("records, ids and tokens in input order, over plain and gzip inputs", async () => {
    const text = ">a desc\nMKV\nLA\n>b\r\nW<mask>*\n>c\nG\n";
    const a = file(text);
    const b = file(gzipSync(">d x\nMK\n>e\nV\n"), "two.fa.gz");
    const t = await read([a, b]);
    expect(t.size).toBe(5);
    expect(idsOf(t)).toEqual(["a", "b", "c", "d", "e"]);
    const expected = ["MKVLA", "W<mask>", "G", "MK", "V"].map((s) => [...tokenize(s).tokens]);
    for (let i = 0; i < t.size; i++) expect([...t.tokens(i)]).toEqual(expected[i]!);
    expect(idsTxt(t)).toBe("a\nb\nc\nd\ne\n");
  });

  test("truncation keeps the first --truncate residues and counts the records cut", async () => {
    const seqs = ["M", "MKVLA", "MKVLAG", "MKVLAGW".repeat(14)];
    const t = await read([file(seqs.map((s, i) => `>r${i}\n${s}\n`).join(""))], "error", 5);
    expect([...t.lengths()]).toEqual([1, 5, 5, 5]);
    expect(t.truncated).toBe(2);
    expect([...t.tokens(3)]).toEqual([...tokenize("MKVLA").tokens]);
    expect(t.summary()).toEqual({ records: 4, residues: 16, truncated: 2, longest: 5, renamed: 0 });
  });

  test("--truncate defaults to fair-esm's 1022 and must be a positive integer", () => {
    expect(resolveConfig({ inputs: ["x.fa"] }).truncate).toBe(1022);
    for (const bad of [0, 1.5, "x"]) expect(() => resolveConfig({ inputs: ["x.fa"], truncate: bad as number })).toThrow(OptionsError);
    expect(() => resolveConfig({ inputs: ["x.fa"], truncate: 0 })).toThrow(/--truncate/);
  });

  test("a duplicate id across files names both places", async () => {
    const one = file(">x\nM\n>y\nK\n", "one.fa");
    const two = file(">z\nM\n>y\nK\n", "two.fa");
    const e = await error([one, two]);
    expect(e.message).toContain(`duplicate id "y" (first seen at ${one}:3)`);
    expect(e.location).toEqual({ file: two, line: 3, recordId: "y" });
    expect(e.hint).toContain("--duplicate-ids rename");
  });

  test("a duplicate id within a file names the first line", async () => {
    const e = await error([file(">x\nM\n>x\nK\n")]);
    expect(e.message).toContain(`duplicate id "x" (first seen at line 1)`);
  });

  test("rename within and across files keeps every id distinct", async () => {
    const one = file(">x\nM\n>x\nK\n");
    const two = file(">x\nM\n>x_2\nK\n>y\nL\n");
    const t = await read([one, two], "rename");
    // x_2 is an input id, so the repeats of x skip it.
    expect(idsOf(t)).toEqual(["x", "x_3", "x_4", "x_2", "y"]);
    expect(t.renamed).toBe(2);
    expect(t.summary().renamed).toBe(2);
    expect(t.summary().renames!.map((r) => `${r.from}->${r.to}`)).toEqual(["x->x_3", "x->x_4"]);
  });

  test("non-ASCII ids are kept as UTF-8; an id that is not valid UTF-8 is refused where it is", async () => {
    const bytes = (s: string) => new Uint8Array([...s].map((c) => c.charCodeAt(0)));
    const t = await read([file(Buffer.from(">é\nM\n>b\nK\n"))]);
    expect(idsOf(t)).toEqual(["é", "b"]);
    expect(idsTxt(t)).toBe("é\nb\n");
    const e = await error([file(Buffer.concat([bytes(">ok\nM\n"), bytes(">a\xff desc\nK\n")]))]);
    expect(e.message).toContain(':3 (record "a\\xFF"): id is not valid UTF-8: byte 0xFF at column 3 (byte offset 8 of the input)');
    expect(e.hint).toContain("iconv -f LATIN1 -t UTF-8");
  });

  test("long ids and header lines, ids beyond one arena chunk", async () => {
    const long = "L".repeat(5 << 20);
    const t = await read([file(`>short ${"d".repeat(6 << 20)}\nM\n>${long}\nK\n>after\nV\n>${long}x\nW\n`)]);
    expect(t.size).toBe(4);
    expect(t.id(0)).toBe("short");
    expect(t.id(1)).toBe(long);
    expect(t.id(2)).toBe("after");
    expect(t.id(3)).toBe(`${long}x`);
    expect(idsTxt(t)).toBe(`short\n${long}\nafter\n${long}x\n`);
    const e = await error([file(`>${long}\nM\n>${long}\nK\n`)]);
    expect(e.message).toContain("first seen at line 1");
  });

  test("many records: ids, digest and ids.txt agree with a string join", async () => {
    const count = 60_000; // ids.txt over 1 MiB: written in more than one piece
    const p = file(Array.from({ length: count }, (_, i) => `>sp|B${i}|BENCH_${i} d\nMKV${"L".repeat(i % 7)}\n`).join(""));
    const t = await read([p]);
    expect(t.size).toBe(count);
    const ids = Array.from({ length: count }, (_, i) => `sp|B${i}|BENCH_${i}`);
    expect(idsOf(t)).toEqual(ids);
    expect(idsTxt(t)).toBe(ids.join("\n") + "\n");
    const h = new Bun.CryptoHasher("sha256");
    h.update(ids.join("\n") + "\n");
    const lens = t.lengths();
    h.update(new Uint8Array(lens.buffer, lens.byteOffset, lens.byteLength));
    for (let i = 0; i < count; i++) h.update(t.tokens(i));
    expect(t.digest()).toBe(h.digest("hex"));
    const sub = t.subset([5, 2, 29_999]);
    expect(idsOf(sub)).toEqual([ids[5]!, ids[2]!, ids[29_999]!]);
    expect([...sub.tokens(2)]).toEqual([...t.tokens(29_999)]);
  });

  test("errors inside a record name the record", async () => {
    const e = await error([file(">a\nMK\n>b c\nMJ\n")]);
    expect(e.location).toEqual({ file: expect.any(String), line: 4, recordId: "b" });
  });
});

// ---- DNABERT-S: nucleotide FASTA through the same parser, BPE over each whole record ----------

const bpe = loadBpe(join(import.meta.dir, "fixtures", "dnabert-s", "tokenizer.json"));
const dna = (inputs: string[], o: Omit<ReadingOptions, "bpe"> = {}, truncate = 510) => ingest({ inputs, truncate, duplicateIds: "error" }, { ...o, bpe });
/** The reference: bpe.ts on the record's whole sequence, upper-cased, framing dropped. */
const reference = (seq: string) => [...bpe.encode(seq.replace(/\s/g, "").toUpperCase()).ids.subarray(1, -1)];
async function refused(p: Promise<unknown>): Promise<InputError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error("expected an InputError");
}

describe("ingest for DNABERT-S", () => {
  // Long enough for merges of several bases, so a line break inside a merge would show.
  const read1 = "ATGCGTACGTTAGCCGATCGATCGGCTAGCTAGGATCCGATCGATCGTAGCTAGCTGACTGACTGATCGTAGCTAGCTAGCTGATCG";
  const read2 = "ttgacgatcgatcgatgctagctagctagcNNNNacgtacgtagctagctagctgatcgatcgtagctagctagctgatcgatgc";

  test("2-byte BPE ids equal bpe.ts on the whole record: line breaks inside merges, lowercase upper-cased, N as [UNK]", async () => {
    const wrapped = (s: string, w: number) => s.match(new RegExp(`.{1,${w}}`, "g"))!.join("\n");
    const t = await dna([file(`>r1 desc\n${wrapped(read1, 7)}\n>r2\r\n${wrapped(read2, 13).replace(/\n/g, "\r\n")}\n>r3\nACGT ACGT\tAC\n`)]);
    expect(t.width).toBe(2);
    expect(t.tokens(0)).toBeInstanceOf(Uint16Array);
    expect([...t.tokens(0)]).toEqual(reference(read1));
    expect([...t.tokens(1)]).toEqual(reference(read2));
    expect([...t.tokens(2)]).toEqual(reference("ACGTACGTAC"));
    // Joined before BPE: tokenizing each line apart would give other (more) tokens.
    const perLine = wrapped(read1, 7).split("\n").flatMap((l) => reference(l));
    expect(perLine).not.toEqual(reference(read1));
    // Lowercase is read as upper case (VirNucPro upper-cases): the same tokens, no [UNK] but the Ns.
    expect(reference(read2)).toEqual(reference(read2.toUpperCase()));
    expect(t.unknown).toBe(4);
    expect([...t.lengths()]).toEqual([0, 1, 2].map((i) => t.tokens(i).length));
    expect(t.summary()).toMatchObject({ records: 3, unknown: 4, residues: [...t.lengths()].reduce((a, b) => a + b, 0) });
  });

  test("the same records wrapped differently give the same tokens and digest (resume compares it)", async () => {
    const a = await dna([file(`>r1\n${read1}\n>r2\n${read2}\n`)]);
    const b = await dna([file(`>r1\n${read1.slice(0, 40)}\n${read1.slice(40)}\n\n>r2\n${read2.toUpperCase()}\n`)]);
    expect(b.digest()).toBe(a.digest());
    const c = await dna([file(`>r1\n${read1}\n>r2\n${read2.replace("NNNN", "NNNA")}\n`)]);
    expect(c.digest()).not.toBe(a.digest());
  });

  test("truncation is in tokens (--truncate); dedup and --slice keep 2-byte tokens and the [UNK] counts", async () => {
    const t = await dna([file(`>a\n${read2}\n>b\n${read1}\n>c\n${read2}\n>d\nACGT\n`)], {}, 5);
    expect([...t.lengths()]).toEqual([5, 5, 5, reference("ACGT").length]);
    expect(t.truncated).toBe(3);
    expect([...t.tokens(1)]).toEqual(reference(read1).slice(0, 5));
    const groups = groupIdentical(t, t.indices());
    expect(groups.copies).toBe(1);
    expect(groups.copiesOf(0)).toEqual([2]);
    const s = t.slice(1, 2); // records a and c
    expect(s.tokens(0)).toBeInstanceOf(Uint16Array);
    expect(s.summary()).toMatchObject({ records: 2, unknown: 8, truncated: 2 });
  });

  test("protein letters are refused where they stand, with the override; off makes them [UNK]", async () => {
    const f = file(">ok\nACGTACGT\n>prot1 a protein\nACGT\nMKVLEF\n");
    const e = await refused(dna([f]));
    expect(e.message).toContain(`${f}:5 (record "prot1")`);
    expect(e.message).toContain("'L' at column 4 is a protein letter"); // M, K and V are IUPAC codes
    expect(e.hint).toContain("--alphabet-check off");
    expect(e.exitCode).toBe(3);
    const t = await dna([f], { alphabetCheck: false });
    expect([...t.tokens(1)]).toEqual(reference("ACGTMKVLEF"));
    expect(t.unknown).toBe(6);
    // Gaps and digits stay errors either way.
    for (const check of [true, false]) {
      const g = await refused(dna([file(">g\nACG-T\n")], { alphabetCheck: check }));
      expect(g.message).toContain("alignment gap '-' at column 4");
    }
  });

  test("--unknown error refuses the first letter that would become [UNK], naming line, column and record", async () => {
    const f = file(">clean\nACGT\n>withN\nACGTAC\nGGnA\n");
    const e = await refused(dna([f], { unknown: "error" }));
    expect(e.message).toContain(`${f}:5 (record "withN")`);
    expect(e.message).toContain("'n' at column 3 is not A/C/G/T");
    expect(e.hint).toContain("--unknown count");
    expect((await dna([f])).unknown).toBe(1);
  });
});

describe("ESM-2 refuses nucleotide-looking input", () => {
  const reads = Array.from({ length: 5 }, (_, i) => `>read${i}\n${"ACGTTGCAAN".repeat(4)}\nACGTRYACGT\n`).join("");

  test("first records ≥90% A/C/G/T/U/N: a located error before the table is used, and the override", async () => {
    const f = file(reads);
    const e = await refused(ingest({ inputs: [f], truncate: 1022, duplicateIds: "error" }, { alphabetCheck: true }));
    expect(e.message).toContain(`${f}:1 (record "read0")`);
    expect(e.message).toMatch(/looks like nucleotide FASTA, not protein: 9\d\.\d% of the 250 letters of the first 5 record/);
    expect(e.hint).toContain("--alphabet-check off");
    expect(e.hint).toContain("--model DNABERT-S");
    const t = await ingest({ inputs: [f], truncate: 1022, duplicateIds: "error" }, { alphabetCheck: false });
    expect(t.size).toBe(5);
  });

  test("proteins pass, and so do a few short nucleotide-like peptides (too few letters to judge)", async () => {
    const proteins = Array.from({ length: 50 }, (_, i) => `>p${i}\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAAN\n`).join("");
    expect((await ingest({ inputs: [file(proteins)], truncate: 1022, duplicateIds: "error" }, { alphabetCheck: true })).size).toBe(50);
    expect((await ingest({ inputs: [file(">pep\nGATTACA\n")], truncate: 1022, duplicateIds: "error" }, { alphabetCheck: true })).size).toBe(1);
  });

  test("the check is decided after the first records, and says so (onSampled) before the input ends", () => {
    let sampled = 0;
    const table = new RecordTable(1022, "error");
    const parser = new FastaParser("big.fa", { ...table.parserOptions(), reading: { alphabetCheck: true, onSampled: () => sampled++ } });
    const record = (i: number) => new TextEncoder().encode(`>p${i}\nMKTAYIAKQRQISFVK\n`);
    for (let i = 0; i < SAMPLE_RECORDS - 1; i++) parser.push(record(i));
    expect(sampled).toBe(0);
    parser.push(record(SAMPLE_RECORDS - 1));
    parser.push(record(SAMPLE_RECORDS)); // the header that completes record 999
    expect(sampled).toBe(1);
    parser.end();
    expect(sampled).toBe(1);
    // Nucleotide records past the sample are not judged (the first records decide).
    const late = new FastaParser("late.fa", { ...new RecordTable(1022, "error").parserOptions(), reading: { alphabetCheck: true } });
    for (let i = 0; i < SAMPLE_RECORDS; i++) late.push(record(i));
    late.push(new TextEncoder().encode(`>dna\n${"ACGT".repeat(100)}\n`));
    late.end();
  });

  test("a failed check never says sampled, so a run starts no worker", async () => {
    let sampled = 0;
    await refused(ingest({ inputs: [file(reads)], truncate: 1022, duplicateIds: "error" }, { alphabetCheck: true, onSampled: () => sampled++ }));
    expect(sampled).toBe(0);
  });
});
