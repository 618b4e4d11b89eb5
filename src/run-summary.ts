/**
 * What a run reports when it ends (`embedToStore`'s result, the CLI's `--json` line): a type of
 * its own so that the run (run.ts) and the rerun check (rerun.ts) share it without importing
 * each other.
 */
import type { RecordsSummary } from "./input/records.ts";
import type { Family } from "./protocol.ts";

export interface RunSummary {
  output: string;
  /** The model family (protocol.ts FAMILIES): how the input was tokenized. */
  family: Family;
  /** What each output is, for this family (protocol.ts POOLING). */
  pooling: Record<string, string>;
  records: number;
  /** Tokens kept (residues for ESM-2, BPE tokens for DNABERT-S), framing excluded. */
  residues: number;
  truncated: number;
  renamed: number;
  /** DNABERT-S: [UNK] tokens in the input (letters other than A/C/G/T); absent for ESM-2. */
  unknown?: number;
  /** The first renamed ids (`--duplicate-ids rename`): from, to, file:line; absent when none. */
  renames?: RecordsSummary["renames"];
  /** Records written as copies of an identical earlier one (`--dedup`), not embedded themselves. */
  identical: number;
  /** `I/N` for a `--slice` job (its counts are the slice's). */
  slice?: string;
  batches: number;
  budget: number;
  density: number;
  devices: string[];
  model: string;
  layers: number[];
  include: string[];
  /** Wall time of the whole call, `finishSeconds` included. */
  seconds: number;
  /** From the call until every worker was READY and the plan was made (model load, input read). */
  startupSeconds: number;
  /** Where each worker's start-up went, in seconds (WorkerHandle.startup): python, torch,
   * device, load, kernels, ring, warm-up. */
  workerStartup: Record<string, Record<string, number>>;
  /** From the first batch sent to the store committed. */
  embedSeconds: number;
  /** Real tokens (BOS/EOS included) per second of `embedSeconds`. */
  tokensPerSecond: number;
  /** After the last batch: the store's arrays assembled from its shards, checksummed and synced,
   * the manifest written, other formats converted. */
  finishSeconds: number;
  perWorker: Record<string, number>;
  /** Fraction of the embedding phase each worker spent computing batches (1 = never waited for the orchestrator). */
  busy: Record<string, number>;
  /** Records found committed by an earlier, interrupted run of the same command. */
  resumed: number;
  /** Workers replaced after dying. */
  restarts: number;
  /** Batches split after running out of memory. */
  splits: number;
  /** Formats written (npy is the store itself; others converted after the run). */
  formats: { format: string; files: string[] }[];
  /** The output already held this run's complete store (same input and options): nothing was done. */
  unchanged?: true;
}
