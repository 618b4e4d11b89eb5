import { describe, expect, test } from "bun:test";
import { IdIndex, firstInvalidUtf8 } from "../src/input/id-index.ts";

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
  test("stageWord (with or without a DataView) finds, stores and hashes the first word like stage", () => {
    const idx = new IdIndex();
    const line = enc.encode("abcdefgh\x01ij more words");
    const view = new DataView(line.buffer, line.byteOffset, line.byteLength);
    expect(idx.stageWord(line, 0, line.length, 1, view)).toBe(0);
    expect(idx.stageWord(line, 0, line.length, 2)).toBe(1);
    idx.stage(enc.encode("abcdefgh\x01ij"), 0, 11, 3);
    idx.stage(enc.encode("more"), 0, 4, 4);
    const dups: number[][] = [];
    idx.commit((k, firstLine, entry, firstEntry) => dups.push([k, firstLine, entry, firstEntry]));
    expect(dups).toEqual([[1, 1, 1, 0], [2, 1, 2, 0]]);
    expect(idx.idString(0)).toBe("abcdefgh\x01ij");
    expect(idx.idString(3)).toBe("more");
    for (const sep of [" ", "\t", "\r", "\v", "\f"]) {
      const b = enc.encode(`ab${sep}c`);
      const i = idx.stageWord(b, 0, b.length, 9, new DataView(b.buffer));
      expect(idx.idString(i)).toBe("ab");
    }
  });
  test("rename gives a repeat a free id; text() lists ids one per line", () => {
    const idx = new IdIndex();
    for (const id of ["a", "a_2", "a"]) idx.stage(enc.encode(id), 0, id.length, 1);
    idx.commit((_k, _line, entry) => {
      expect(idx.rename(entry, "a_2")).toBe(false);
      expect(idx.rename(entry, "a_3")).toBe(true);
    });
    expect(idx.insertString("a_3", 5)).toBe(1);
    // A piece is valid until the next one is asked for (one buffer, reused): copy to keep.
    expect(new TextDecoder().decode(Buffer.concat(Array.from(idx.text(0, 3, 4), (p) => p.slice())))).toBe("a\na_2\na_3\n");
    expect(new Set(Array.from(idx.text(0, 3, 4), (p) => p.buffer)).size).toBe(1);
    idx.dropLookup();
    expect(idx.idString(2)).toBe("a_3");
    expect(() => idx.insertString("b", 1)).toThrow();
  });
  test("firstInvalidUtf8 agrees with a fatal UTF-8 decoder, and names the first bad byte", () => {
    const cases: [number[], number][] = [
      [[0x61, 0x62], -1],
      [[...enc.encode("é€😀")], -1],
      [[0x63, 0x61, 0x66, 0xe9], 3], // Latin-1 é
      [[0xc0, 0x80], 0], // overlong NUL
      [[0xe0, 0x80, 0x80], 0], // overlong
      [[0xed, 0xa0, 0x80], 0], // surrogate
      [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
      [[0x61, 0xe2, 0x82], 1], // cut short
      [[0x61, 0x80], 1], // lone continuation byte
    ];
    const fatal = new TextDecoder("utf-8", { fatal: true });
    for (const [bytes, at] of cases) {
      const b = Uint8Array.from(bytes);
      expect({ bytes, at: firstInvalidUtf8(b) }).toEqual({ bytes, at });
      let valid = true;
      try {
        fatal.decode(b);
      } catch {
        valid = false;
      }
      expect(valid).toBe(at < 0);
    }
    // The index names the last invalid id it stored (the reader refuses it).
    const idx = new IdIndex();
    idx.stage(Uint8Array.from([0x61, 0xff]), 0, 2, 4);
    expect(idx.invalid).toEqual({ entry: 0, offset: 1, byte: 0xff });
  });
});
