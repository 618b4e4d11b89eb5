import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { BYTES_PER_TOKEN, estimateTokens, GZIP_RATIO } from "../src/input/size-estimate.ts";

describe("estimateTokens: a run's tokens per worker from its inputs' sizes", () => {
  const tmp = mkdtempSync(join(tmpdir(), "embed-estimate-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const a = join(tmp, "a.fa");
  const b = join(tmp, "b.fa.gz");
  writeFileSync(a, ">x\nACDEFGHIK\n".repeat(100)); // 1,300 bytes
  const gz = gzipSync(">y\nMKV\n".repeat(50));
  writeFileSync(b, gz);

  test("bytes of plain files, gzip ones times its ratio, shared out over workers and slices", () => {
    expect(estimateTokens([a], 1)).toBe(1300);
    expect(estimateTokens([a], 4)).toBe(325);
    expect(estimateTokens([a], 2, 5)).toBe(130);
    expect(estimateTokens([a, b], 1)).toBe(1300 + gz.length * GZIP_RATIO);
  });
  test("DNABERT-S's BPE: a token per ~4.5 bases, so a nucleotide file is fewer tokens than bytes", () => {
    expect(BYTES_PER_TOKEN.esm2).toBe(1);
    expect(estimateTokens([a], 1, 1, BYTES_PER_TOKEN["dnabert-s"])).toBe(Math.ceil(1300 / 4.5));
  });
  test("unknown when any size is: standard input, a missing file, a directory", () => {
    expect(estimateTokens(["-"], 1)).toBeUndefined();
    expect(estimateTokens([a, join(tmp, "missing.fa")], 1)).toBeUndefined();
    expect(estimateTokens([tmp], 1)).toBeUndefined();
  });
});
