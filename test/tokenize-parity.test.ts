/** The TS tokenizer (+BOS/EOS) must give fair-esm's / HF's ids on every golden string. */
import { describe, expect, test } from "bun:test";
import { ALL_TOKENS, BOS, EOS } from "../src/input/alphabet.ts";
import { tokenize } from "../src/input/tokenize.ts";
import golden from "./fixtures/tokenizer-golden.json";

describe("tokenizer parity with fair-esm and HF EsmTokenizer", () => {
  test("alphabet matches fair-esm's all_toks", () => {
    expect(golden.alphabet).toEqual([...ALL_TOKENS]);
  });
  test("fixture covers every residue token and <mask>", () => {
    const all = golden.cases.map((c) => c.input).join("");
    for (const ch of "LAGVSERTIDPKQNFYMHWCXBUZO.-") expect(all).toContain(ch);
    expect(all).toContain("<mask>");
  });
  for (const c of golden.cases) {
    test(`ids for ${c.input.slice(0, 30)}${c.input.length > 30 ? "…" : ""} (${c.input.length} chars)`, () => {
      const { tokens } = tokenize(c.input);
      expect([BOS, ...tokens, EOS]).toEqual(c.ids);
    });
  }
});
