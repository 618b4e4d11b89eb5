/**
 * The reading a run's model family needs, chosen once (run.ts): ESM-2's protein alphabet
 * (tokenize.ts), or DNABERT-S's BPE (bpe.ts) built from the tokenizer.json of the folder the
 * worker loads; with the alphabet check and the [UNK] policy of the options (alphabet-guard.ts).
 */
import { readFileSync } from "node:fs";
import type { RunConfig } from "../config.ts";
import { ModelNotFoundError } from "../errors.ts";
import type { Family } from "../protocol.ts";
import type { ReadingOptions } from "./alphabet-guard.ts";
import { DnaBpeTokenizer } from "./bpe.ts";

/** The tokenizer read from `path` (a DNABERT-S tokenizer.json); ModelNotFoundError (exit 5) if unreadable. */
export function loadBpe(path: string): DnaBpeTokenizer {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ModelNotFoundError(`${path}: cannot read the tokenizer (${(e as Error).message})`, "restore the model folder's tokenizer.json (zhihan1996/DNABERT-S ships one), or download the model again");
  }
  return DnaBpeTokenizer.fromJson(json, path);
}

/** How `family`'s input is read under `cfg`'s options; `tokenizer` is DNABERT-S's tokenizer.json. */
export function readingFor(family: Family, tokenizer: string | undefined, cfg: Pick<RunConfig, "alphabetCheck" | "unknown"> & Partial<Pick<RunConfig, "tokenizerThreads">>): ReadingOptions {
  const checks = { alphabetCheck: cfg.alphabetCheck === "on", unknown: cfg.unknown };
  if (family === "esm2") return checks;
  if (!tokenizer) throw new ModelNotFoundError("a DNABERT-S model without a tokenizer.json", "pass --model DIR, a folder holding config.json, tokenizer.json and the weights");
  const threads = cfg.tokenizerThreads ?? 0;
  return { ...checks, bpe: loadBpe(tokenizer), ...(threads > 0 ? { bpeThreads: { tokenizer, threads } } : {}) };
}
