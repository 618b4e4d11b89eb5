/** The record table: truncation, ids across files, compact token storage, content digest. */
import { describe, expect, test } from "bun:test";
import { InputError } from "../src/errors.ts";
import { RecordTable } from "../src/input/records.ts";
import { idsOf } from "./helpers.ts";

const rec = (id: string, n: number, file = "a.fa", line = 1) => ({ id, tokens: Uint8Array.from({ length: n }, (_, i) => 4 + (i % 20)), file, line });

describe("RecordTable", () => {
  test("keeps tokens per record, truncates and counts", () => {
    const t = new RecordTable(5, "error");
    t.add(rec("a", 3));
    t.add(rec("b", 9));
    t.add(rec("c", 1));
    expect(Array.from(t.lengths())).toEqual([3, 5, 1]);
    expect(Array.from(t.tokens(1))).toEqual([4, 5, 6, 7, 8]);
    expect(t.summary()).toEqual({ records: 3, residues: 9, truncated: 1, longest: 5, renamed: 0 });
  });

  test("a duplicate id across files is an error naming both places", () => {
    const t = new RecordTable(1022, "error");
    t.add(rec("x", 3, "one.fa", 7));
    let err: unknown;
    try {
      t.add(rec("x", 3, "two.fa", 2));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toContain("two.fa:2");
    expect((err as InputError).message).toContain("one.fa:7");
    expect((err as InputError).hint).toContain("--duplicate-ids rename");
  });

  test("rename keeps duplicates distinct", () => {
    const t = new RecordTable(1022, "rename");
    for (const f of ["1.fa", "2.fa", "3.fa"]) t.add(rec("x", 2, f));
    t.add(rec("x_2", 2, "4.fa"));
    t.sealed();
    expect(idsOf(t)).toEqual(["x", "x_3", "x_4", "x_2"]);
    expect(t.renamed).toBe(2);
    expect(t.summary().renames).toEqual([
      { from: "x", to: "x_3", at: "2.fa:1" },
      { from: "x", to: "x_4", at: "3.fa:1" },
    ]);
  });

  test("the digest depends on ids and kept tokens only, in order", () => {
    const make = (ids: string[], n = 4) => {
      const t = new RecordTable(1022, "error");
      ids.forEach((id, i) => t.add(rec(id, n + i, `f${i}.fa`, i + 10)));
      return t.digest();
    };
    expect(make(["a", "b"])).toBe(make(["a", "b"]));
    expect(make(["a", "b"])).not.toBe(make(["b", "a"]));
    expect(make(["a", "b"])).not.toBe(make(["a", "b"], 5));
  });

  test("many records spill over several chunks without corruption", () => {
    const t = new RecordTable(1022, "error", false);
    for (let i = 0; i < 40_000; i++) t.add(rec(`r${i}`, 500 + (i % 500)));
    expect(t.size).toBe(40_000);
    for (const i of [0, 12_345, 39_999]) {
      const toks = t.tokens(i);
      expect(toks.length).toBe(500 + (i % 500));
      expect(toks[toks.length - 1]).toBe(4 + ((toks.length - 1) % 20));
      // The chunk and offset behind the view: the same bytes, in place.
      expect(t.tokenChunk(i).subarray(t.tokenOffset(i), t.tokenOffset(i) + toks.length)).toEqual(toks);
      expect(t.tokenChunk(i).buffer).toBe(toks.buffer);
    }
    expect(t.tokenChunk(0)).not.toBe(t.tokenChunk(39_999));
    expect(Array.from(t.indices().subarray(0, 3))).toEqual([0, 1, 2]);
    expect(t.indices().length).toBe(40_000);
    expect(Array.from(t.indices((i) => i % 10_000 === 7))).toEqual([7, 10_007, 20_007, 30_007]);
  });
});
