/**
 * What a run was asked, recorded in its manifest (`run.request`), so that rerunning `embed run` on
 * a complete store with the same input and the same options that decide its content is a no-op
 * that succeeds (rerun.ts): a whole job array can be resubmitted after one task failed.
 *
 * "The same" is what the run was asked (manifest `run.request`) plus the records' digest
 * (manifest `recordsSha256`, the slice's for a --slice job): comparing what was asked rather than
 * what the workers resolved (model path, compute precision) decides without starting a worker.
 * Options that change speed but not content (devices, --max-tokens, kernels, threads, transport,
 * --dedup, --shard-records, --max-restarts) do not count.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RunConfig } from "../config.ts";
import { MANIFEST } from "./store.ts";
import { checkStore, damagedError, type CheckedManifest } from "./verify.ts";

/** What a run was asked that decides what its store holds (manifest `run.request`). */
export interface RunRequest {
  model: string;
  family: string;
  /** As given: relative layers (-1) stay relative. */
  layers: number[];
  include: string[];
  precision: string;
  outDtype: string;
  truncate: number;
  duplicateIds: string;
  /** `I/N` for a --slice job, null otherwise. */
  slice: string | null;
}

/** The request of `cfg` (resolved: the family and its --truncate default are known). */
export function runRequest(cfg: RunConfig): RunRequest {
  return {
    model: cfg.model,
    family: cfg.family ?? "esm2",
    layers: [...cfg.layers],
    include: [...cfg.include],
    precision: cfg.precision,
    outDtype: cfg.outDtype,
    truncate: cfg.truncate,
    duplicateIds: cfg.duplicateIds,
    slice: cfg.slice ? `${cfg.slice.index}/${cfg.slice.count}` : null,
  };
}

/** A complete store's manifest, as far as a rerun needs it. */
export interface CompleteManifest extends CheckedManifest {
  recordsSha256?: string;
  layers?: number[];
  include?: string[];
  model?: { name?: string; dim?: number };
  counts?: { records?: number; residues?: number; truncated?: number; renamed?: number };
  run?: { request?: RunRequest; devices?: string[] };
}

/** The manifest of the complete store in `dir`, or undefined when there is none. */
export function completeManifest(dir: string): CompleteManifest | undefined {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as CompleteManifest;
  } catch {
    return undefined; // unreadable: Store.checkTarget refuses it with the usual message
  }
}

/**
 * How the complete store `m` in `dir` differs from what `request` on records of digest
 * `recordsSha256` would write, by option name: [] when it is the same store (a rerun is a no-op).
 * Undefined for a store written before requests were recorded (no `run.request`): never the same,
 * refused as before. A match whose files are damaged throws (exit 6), rather than report a
 * finished run over a broken store.
 */
export function requestDiff(dir: string, m: CompleteManifest, request: RunRequest, recordsSha256: string): string[] | undefined {
  const asked = m.run?.request;
  if (!asked) return undefined;
  const names: Record<keyof RunRequest, string> = {
    model: "--model",
    family: "model family",
    layers: "--layers",
    include: "--include",
    precision: "--precision",
    outDtype: "--out-dtype",
    truncate: "--truncate",
    duplicateIds: "--duplicate-ids",
    slice: "--slice",
  };
  const diff = (Object.keys(names) as (keyof RunRequest)[]).filter((k) => JSON.stringify(asked[k]) !== JSON.stringify(request[k])).map((k) => names[k]);
  if (m.recordsSha256 !== recordsSha256) diff.unshift("input records");
  if (diff.length) return diff;
  const { damaged } = checkStore(dir, m);
  if (damaged.length) throw damagedError(dir, damaged);
  return [];
}
