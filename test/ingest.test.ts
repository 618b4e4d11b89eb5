/** ingest: inputs parsed straight into the record table; ids checked within and across files. */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { InputError } from "../src/errors.ts";
import { readFasta } from "../src/fasta.ts";
import { ingest } from "../src/ingest.ts";
import { tokenize } from "../src/tokenize.ts";

const dir = mkdtempSync(join(tmpdir(), "embed-ingest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (content: string | Uint8Array, name = `f${n++}.fa`) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};
const read = (inputs: string[], duplicateIds: "error" | "rename" = "error") => ingest({ inputs, truncate: 1022, duplicateIds });
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
  test("same records, ids and tokens as readFasta, over plain and gzip inputs", async () => {
    const text = ">a desc\nMKV\nLA\n>b\r\nW<mask>*\n>c\nG\n";
    const a = file(text);
    const b = file(gzipSync(">d x\nMK\n>e\nV\n"), "two.fa.gz");
    const t = await read([a, b]);
    const expected = [...(await Array.fromAsync(readFasta(a))), ...(await Array.fromAsync(readFasta(b)))];
    expect(t.size).toBe(5);
    expect(Array.from({ length: t.size }, (_, i) => t.id(i))).toEqual(expected.map((r) => r.id));
    expect(t.ids).toEqual(["a", "b", "c", "d", "e"]);
    for (let i = 0; i < t.size; i++) expect([...t.tokens(i)]).toEqual([...expected[i]!.tokens]);
    expect([...t.tokens(1)]).toEqual([...tokenize("W<mask>").tokens]);
    expect(new TextDecoder().decode(t.idsText())).toBe("a\nb\nc\nd\ne\n");
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
    expect(t.ids).toEqual(["x", "x_2", "x_3", "x_2_2", "y"]);
    expect(t.renamed).toBe(3);
    expect(t.summary().renamed).toBe(3);
  });

  test("non-ASCII and invalid UTF-8 ids become their string form (equal strings are duplicates)", async () => {
    const bytes = (s: string) => new Uint8Array([...s].map((c) => c.charCodeAt(0)));
    const t = await read([file(Buffer.concat([Buffer.from(">é\nM\n"), bytes(">a\xff\nK\n")]))]);
    expect(t.ids).toEqual(["é", "a\uFFFD"]);
    expect(new TextDecoder().decode(t.idsText())).toBe("é\na\uFFFD\n");
    const e = await error([file(Buffer.concat([bytes(">a\xff\nM\n"), bytes(">a\xfe\nK\n")]))]);
    expect(e.message).toContain("duplicate id");
  });

  test("long ids and header lines, ids beyond one arena chunk", async () => {
    const long = "L".repeat(5 << 20);
    const t = await read([file(`>short ${"d".repeat(6 << 20)}\nM\n>${long}\nK\n>after\nV\n>${long}x\nW\n`)]);
    expect(t.size).toBe(4);
    expect(t.id(0)).toBe("short");
    expect(t.id(1)).toBe(long);
    expect(t.id(2)).toBe("after");
    expect(t.id(3)).toBe(`${long}x`);
    const e = await error([file(`>${long}\nM\n>${long}\nK\n`)]);
    expect(e.message).toContain("first seen at line 1");
  });

  test("many records: ids, digest and writeIds agree with a string join", async () => {
    const count = 30_000;
    const p = file(Array.from({ length: count }, (_, i) => `>sp|B${i}|BENCH_${i} d\nMKV${"L".repeat(i % 7)}\n`).join(""));
    const t = await read([p]);
    expect(t.size).toBe(count);
    const ids = Array.from({ length: count }, (_, i) => `sp|B${i}|BENCH_${i}`);
    expect(t.ids).toEqual(ids);
    const out = join(dir, "ids.txt");
    const fd = openSync(out, "w");
    t.writeIds(fd);
    closeSync(fd);
    expect(readFileSync(out, "utf8")).toBe(ids.join("\n") + "\n");
    const h = new Bun.CryptoHasher("sha256");
    h.update(ids.join("\n") + "\n");
    const lens = t.lengths();
    h.update(new Uint8Array(lens.buffer, lens.byteOffset, lens.byteLength));
    for (let i = 0; i < count; i++) h.update(t.tokens(i));
    expect(t.digest()).toBe(h.digest("hex"));
    const sub = t.subset([5, 2, 29_999]);
    expect(sub.ids).toEqual([ids[5]!, ids[2]!, ids[29_999]!]);
    expect([...sub.tokens(2)]).toEqual([...t.tokens(29_999)]);
  });

  test("errors inside a record name the record", async () => {
    const e = await error([file(">a\nMK\n>b c\nMJ\n")]);
    expect(e.location).toEqual({ file: expect.any(String), line: 4, recordId: "b" });
  });
});
