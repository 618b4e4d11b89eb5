/** ingest: inputs parsed straight into the record table; ids checked within and across files. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { resolveConfig } from "../src/config.ts";
import { InputError, OptionsError } from "../src/errors.ts";
import { ingest } from "../src/input/ingest.ts";
import { writeAtomicFile } from "../src/store/shards.ts";
import { tokenize } from "../src/input/tokenize.ts";
import { idsOf } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "embed-ingest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (content: string | Uint8Array, name = `f${n++}.fa`) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};
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
