/**
 * The DNABERT-S BPE tokenizer (src/input/bpe.ts) against ids from Hugging Face `tokenizers`
 * (test/fixtures/dnabert-bpe-golden.json, written by dev/make-bpe-golden.py), plus its own rules.
 * Runs without Python; the randomized comparison with HF is test/bpe-parity.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EmbedError, ExitCode } from "../src/errors.ts";
import { DnaBpeTokenizer } from "../src/input/bpe.ts";
import golden from "./fixtures/dnabert-bpe-golden.json";

const FIXTURE = join(import.meta.dir, "fixtures", "dnabert-s", "tokenizer.json");
const json = () => JSON.parse(readFileSync(FIXTURE, "utf8")) as Record<string, any>;
const tok = DnaBpeTokenizer.fromJson(json());
const ids = (s: string | Uint8Array) => [...tok.encode(s).ids];

describe("DNABERT-S tokenizer.json facts", () => {
  test("4,096 entries, specials 0-4, bases 5-8, [CLS] $A [SEP]", () => {
    expect(tok.vocabSize).toBe(4096);
    expect(tok.tokens.slice(0, 9)).toEqual(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "A", "C", "G", "T"]);
    expect([tok.unkId, tok.clsId, tok.sepId]).toEqual([0, 1, 2]);
  });
  test("the file stores padding and truncation to 2,000; neither is applied", () => {
    const j = json();
    expect(j.padding.strategy).toEqual({ Fixed: 2000 });
    expect(j.truncation.max_length).toBe(2000);
    expect(ids("A")).toEqual([1, 5, 2]);
    expect(tok.encode("ACGT".repeat(3000)).ids.length).toBeGreaterThan(2000);
  });
});

describe("golden ids from HF tokenizers", () => {
  for (const c of golden.cases) {
    test(`${c.why}`, () => {
      const got = tok.encode(c.input);
      expect([...got.ids]).toEqual(c.ids);
      expect(got.unknown).toBe(c.unknown);
      // Bytes as read from a file give the same ids as the string.
      expect([...tok.encode(new TextEncoder().encode(c.input)).ids]).toEqual(c.ids);
    });
  }
});

describe("rules", () => {
  test("every token of a pure A/C/G/T read spells the read back", () => {
    const read = "ACGTTGCAAGGCTTACCAGTTTAGGGCCCATATATCGCGATCGATTTTTTTAAAAACCCGG".repeat(5);
    const out = tok.encode(read);
    expect(out.unknown).toBe(0);
    expect([...out.ids.slice(1, -1)].map((i) => tok.tokens[i]).join("")).toBe(read);
  });
  test("non-ACGT characters are one [UNK] each and split the merges around them", () => {
    const left = "ACGTTGCAAGGCTTACC";
    const right = "GGGCCCATATATCGCG";
    for (const mid of ["N", "R", "n", "a", "-", "é"]) {
      const out = tok.encode(left + mid + right);
      expect(out.unknown).toBe(1);
      expect([...out.ids]).toEqual([...ids(left).slice(0, -1), 0, ...ids(right).slice(1)]);
    }
  });
  test("line breaks are skipped and merges span them", () => {
    const read = "AAAAAAAAAAAAAAAAAAAACGTACGTACGGGGGGGGGGGGTTTTTTTTTT";
    for (let cut = 1; cut < read.length; cut += 7) {
      expect(ids(`${read.slice(0, cut)}\n${read.slice(cut)}`)).toEqual(ids(read));
      expect(ids(`${read.slice(0, cut)}\r\n${read.slice(cut)}`)).toEqual(ids(read));
    }
  });
  test("reuses its scratch safely: a long record between short ones", () => {
    const short = ids("ACGTAC");
    const long = "GATTACA".repeat(10_000);
    const first = ids(long);
    expect(ids("ACGTAC")).toEqual(short);
    expect(ids(long)).toEqual(first);
  });
});

describe("tokenizer.json that this module cannot reproduce is refused", () => {
  const refuse = (edit: (j: Record<string, any>) => void, message: RegExp) => {
    const j = json();
    edit(j);
    let err: unknown;
    try {
      DnaBpeTokenizer.fromJson(j, "models/x/tokenizer.json");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EmbedError);
    expect((err as EmbedError).exitCode).toBe(ExitCode.modelNotFound);
    expect((err as EmbedError).message).toMatch(/^models\/x\/tokenizer\.json: /);
    expect((err as EmbedError).message).toMatch(message);
    expect((err as EmbedError).hint).toBeTruthy();
  };
  test("a WordPiece model", () => refuse((j) => (j.model.type = "WordPiece"), /model\.type is "WordPiece"/));
  test("a lowercasing normalizer", () => refuse((j) => (j.normalizer = { type: "Lowercase" }), /normalizer/));
  test("another pre-tokenizer", () => refuse((j) => (j.pre_tokenizer = { type: "ByteLevel" }), /pre_tokenizer/));
  test("a template without [SEP]", () => refuse((j) => j.post_processor.single.pop(), /template/));
  test("a merge of unknown tokens", () => refuse((j) => j.model.merges.push("X Y"), /merge 4087 "X Y"/));
  test("merges out of training order", () => refuse((j) => j.model.merges.reverse(), /training order/));
});
