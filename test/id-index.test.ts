import { describe, expect, test } from "bun:test";
import { IdIndex } from "../src/id-index.ts";

const enc = new TextEncoder();

describe("IdIndex", () => {
  test("insert reports the first line of a repeat", () => {
    const idx = new IdIndex();
    expect(idx.insertString("a", 1)).toBe(-1);
    expect(idx.insertString("b", 3)).toBe(-1);
    expect(idx.insertString("a", 5)).toBe(1);
    expect(idx.insertString("ab", 7)).toBe(-1);
    expect(idx.size).toBe(3);
  });
  test("staged ids: duplicates within and across commits, in order", () => {
    const idx = new IdIndex();
    const buf = enc.encode("x y x z y");
    idx.stage(buf, 0, 1, 1);
    idx.stage(buf, 2, 3, 2);
    idx.stage(buf, 4, 5, 3);
    const dups: [number, number][] = [];
    idx.commit((k, line) => dups.push([k, line]));
    expect(dups).toEqual([[2, 1]]);
    idx.stage(buf, 6, 7, 4);
    idx.stage(buf, 8, 9, 5);
    idx.commit((k, line) => dups.push([k, line]));
    expect(dups).toEqual([[2, 1], [1, 2]]);
    expect(idx.size).toBe(3);
  });
  test("many ids across rehashes, all found again, none confused", () => {
    const idx = new IdIndex();
    const n = 100_000;
    for (let i = 0; i < n; i++) expect(idx.insertString(`id${i}`, i + 1)).toBe(-1);
    for (let i = 0; i < n; i += 997) expect(idx.insertString(`id${i}`, 0)).toBe(i + 1);
    expect(idx.insertString("id", 0)).toBe(-1);
    expect(idx.size).toBe(n + 1);
  });
  test("non-ASCII ids compare by bytes", () => {
    const idx = new IdIndex();
    expect(idx.insertString("é", 1)).toBe(-1);
    expect(idx.insertString("e", 2)).toBe(-1);
    expect(idx.insertString("é", 3)).toBe(1);
  });
});
