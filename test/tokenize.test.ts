import { describe, expect, test } from "bun:test";
import { ALL_TOKENS, BOS, CLS, EOS, MASK, PAD, RESIDUES, UNK, VOCAB_SIZE } from "../src/input/alphabet.ts";
import { BYTE_TO_ID, LineState, TokenizeError, tokenize, tokenizeLine } from "../src/input/tokenize.ts";

const ids = (s: string) => [...tokenize(s).tokens];

function error(s: string): TokenizeError {
  try {
    tokenize(s);
  } catch (e) {
    expect(e).toBeInstanceOf(TokenizeError);
    return e as TokenizeError;
  }
  throw new Error(`expected ${JSON.stringify(s)} to be rejected`);
}

describe("alphabet", () => {
  test("special ids and size", () => {
    expect([CLS, BOS, PAD, EOS, UNK, MASK, VOCAB_SIZE]).toEqual([0, 0, 1, 2, 3, 32, 33]);
    expect(ALL_TOKENS.length).toBe(VOCAB_SIZE);
    expect(ALL_TOKENS[MASK]).toBe("<mask>");
  });
  test("residues are ids 4..30 in fair-esm order", () => {
    expect(ids(RESIDUES)).toEqual(Array.from({ length: 27 }, (_, i) => 4 + i));
  });
});

describe("tokenize", () => {
  test("lowercase maps like uppercase", () => {
    expect(ids(RESIDUES.toLowerCase())).toEqual(ids(RESIDUES));
    expect(ids("mKtA")).toEqual(ids("MKTA"));
  });
  test("<mask> anywhere, counted", () => {
    expect(tokenize("<mask>").tokens).toEqual(new Uint8Array([MASK]));
    const t = tokenize("M<mask>K<mask><mask>");
    expect([...t.tokens]).toEqual([20, MASK, 15, MASK, MASK]);
    expect(t.masks).toBe(3);
    expect(tokenize("MKV").masks).toBe(0);
  });
  test("whitespace skipped, CRLF fine, lines joined", () => {
    expect(ids(" M K\tV\r\nLA G\r\n")).toEqual(ids("MKVLAG"));
  });
  test("terminal * stripped, also with trailing whitespace or on the last line", () => {
    expect(ids("MKV*")).toEqual(ids("MKV"));
    expect(ids("MKV* \r\n")).toEqual(ids("MKV"));
    expect(ids("MK\nV*")).toEqual(ids("MKV"));
    expect(ids("MKV\n*\n")).toEqual(ids("MKV"));
  });
  test("empty input gives no tokens (the reader rejects empty records)", () => {
    expect(ids("")).toEqual([]);
    expect(ids("*")).toEqual([]);
  });
  test("* before the end is an error with its position", () => {
    const e = error("MK*V");
    expect([e.reason, e.line, e.column, e.char]).toEqual(["stop-not-last", 1, 3, "*"]);
    const e2 = error("MKV*\nLA");
    expect([e2.reason, e2.line, e2.column]).toEqual(["stop-not-last", 1, 4]);
    expect(error("MK**").reason).toBe("stop-not-last");
  });
  test("invalid characters: which, line, column, and a hint", () => {
    const e = error("MKV\nLAJG");
    expect([e.char, e.line, e.column, e.reason]).toEqual(["J", 2, 3, "invalid"]);
    expect(e.message).toContain("'J'");
    expect(e.message).toContain("line 2, column 3");
    expect(e.hint).toContain("X");
    for (const bad of ["1", "#", "@", "!", "_", "é", "\u0000", "\u0007", ">"]) {
      expect(error(`MK${bad}`).column).toBe(3);
    }
    expect(error("M\u0000").message).toContain("binary");
    expect(error("M1").message).toContain("digit");
  });
  test("only <mask> is a special token; case-sensitive; on one line", () => {
    for (const s of ["M<cls>", "M<MASK>", "M<mas", "M<unk>", "<mas\nk>", "M<pad>"]) {
      expect(error(s).reason).toBe("bad-special");
    }
  });
  test("never emits <unk>", () => {
    for (let b = 0; b < 256; b++) expect(BYTE_TO_ID[b]).not.toBe(UNK);
  });
});

describe("tokenizeLine", () => {
  test("writes at an offset into a caller buffer and reports the error offset", () => {
    const src = new TextEncoder().encode("xxMKVxx");
    const dst = new Uint8Array(10);
    const st = new LineState();
    expect(tokenizeLine(src, 2, 5, dst, 4, st)).toBe(7);
    expect([...dst.subarray(4, 7)]).toEqual(ids("MKV"));
    const bad = new TextEncoder().encode("MK1");
    expect(tokenizeLine(bad, 0, 3, dst, 0, st)).toBe(-1);
    expect(st.errorOffset).toBe(2);
  });
});
