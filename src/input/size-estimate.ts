/**
 * How many tokens a run will embed, guessed from its inputs' sizes before they are read: workers
 * start while the input is still being read, and a GPU worker's `--kernels auto` leaves quack's
 * GEMMs unloaded for a run too short to repay their import (py gpu/arrange.py short_run). Only
 * the order of magnitude matters there: a FASTA file's bytes are mostly residues (headers and
 * line breaks are the rest), and gzip shrinks FASTA about threefold.
 */
import { statSync } from "node:fs";
import type { Family } from "../protocol.ts";

/** gzip's typical ratio on FASTA (protein and nucleotide alike: 2.5-4x). */
export const GZIP_RATIO = 3;

/** Input bytes per token: ESM-2 reads a residue a token; DNABERT-S's BPE merges ~4.5 bases a
 * token (150-bp reads' frames: ~151 bases, 34.6 tokens: 4.4 a token with [CLS] and [SEP], 4.6
 * without them). */
export const BYTES_PER_TOKEN: Record<Family, number> = { esm2: 1, "dnabert-s": 4.5 };

/** Tokens per worker for `inputs` split over `workers` (and over N slices with --slice I/N), at
 * `bytesPerToken` (BYTES_PER_TOKEN of the family); undefined when a size is unknown (standard
 * input, a pipe, a missing file). */
export function estimateTokens(inputs: readonly string[], workers: number, slices = 1, bytesPerToken = 1): number | undefined {
  let bytes = 0;
  for (const input of inputs) {
    if (input === "-") return undefined;
    try {
      const st = statSync(input);
      if (!st.isFile()) return undefined;
      bytes += /\.gz$/i.test(input) ? st.size * GZIP_RATIO : st.size;
    } catch {
      return undefined;
    }
  }
  return Math.ceil(bytes / bytesPerToken / Math.max(1, workers) / Math.max(1, slices));
}
