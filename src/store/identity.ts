/**
 * What a store records about the run that wrote it, built in one place: its identity (run.json,
 * compared when a run resumes, so that two runs never mix in one store) and its manifest fields.
 * Names: `precision` is the compute precision, `dtype` the stored (output) dtype; a `slice` is
 * one job's part of the input (`--slice I/N`), a shard the commit unit inside a store.
 */
import { join } from "node:path";
import type { InputDigest } from "../input/fasta.ts";
import type { Family } from "../protocol.ts";
import type { RecordsSummary } from "../input/records.ts";

/**
 * What a `--slice I/N` job's store records of the whole input (manifest `slice`; stores written
 * before the rename call it `shard`, see {@link sliceOf}), so that `embed merge` can check that N
 * stores are the N slices of one input, embedded alike. ("Shard" is the commit unit inside a store.)
 */
export interface SliceInfo {
  index: number;
  count: number;
  /** The whole input: records, digest (as an unsharded run's manifest has it) and counts. */
  records: number;
  recordsSha256: string;
  counts: RecordsSummary;
}

/** What must be equal for a resumed run to continue a store. */
export interface RunIdentity {
  recordsSha256: string;
  records: number;
  model: { name: string; path: string; numLayers: number; dim: number };
  layers: number[];
  include: string[];
  dtype: string;
  precision: string;
  /** The model family (stores written before families existed are ESM-2's: see identityDiff). */
  family: Family;
  truncate: number;
  duplicateIds: string;
  /** `I/N` for a `--slice` job; absent otherwise. */
  slice?: string;
}

/** A manifest's or run state's slice under its name, or under `shard`, its name before. */
export function sliceOf<T>(m: { slice?: T; shard?: T }): T | undefined {
  return m.slice ?? m.shard;
}

/** What a run writes, as its workers' READY described it and the run resolved it: the store's
 * identity (run.json, compared on resume) and its manifest are both built from this. */
export interface RunFacts {
  model: { name: string; path: string; format?: string; numLayers: number; dim: number; heads?: number };
  /** Absolute layers. */
  layers: number[];
  include: string[];
  /** Output dtype (--out-dtype). */
  dtype: string;
  /** Compute precision (--precision, resolved). */
  precision: string;
  /** The model family: how the input was tokenized, what each output is. */
  family: Family;
  /** Each output kind written and what it is for this family (protocol.ts POOLING). */
  pooling: Record<string, string>;
  truncate: number;
  duplicateIds: string;
  /** The records embedded: digest and count (a slice's, for a --slice job). */
  recordsSha256: string;
  records: number;
  slice?: SliceInfo;
}

export function runIdentity(f: RunFacts): RunIdentity {
  const { name, path, numLayers, dim } = f.model;
  return {
    recordsSha256: f.recordsSha256,
    records: f.records,
    model: { name, path, numLayers, dim },
    layers: f.layers,
    include: f.include,
    dtype: f.dtype,
    precision: f.precision,
    family: f.family,
    truncate: f.truncate,
    duplicateIds: f.duplicateIds,
    ...(f.slice ? { slice: `${f.slice.index}/${f.slice.count}` } : {}),
  };
}

/** How to read a store from Python (the manifest's `load`, and the line `embed run` prints). */
export function loadHint(dir: string, include: readonly string[], layers: readonly number[]): string {
  // join: `embed merge all/ ...` gives "all/", which must not print as "all//mean..."
  return `import numpy as np; X = np.load("${join(dir, `${include[0]}.layer${layers.at(-1)}.npy`)}", mmap_mode="r"); ids = open("${join(dir, "ids.txt")}").read().split()`;
}

/** A run's manifest fields (Store.finalize adds format, version and files). */
export function runManifest(dir: string, f: RunFacts, r: { counts: RecordsSummary; inputs: readonly string[]; inputChecksums: InputDigest[]; run: Record<string, unknown> }): Record<string, unknown> {
  return {
    complete: true,
    createdAt: new Date().toISOString(),
    model: f.model,
    family: f.family,
    layers: f.layers,
    include: f.include,
    pooling: f.pooling,
    dtype: f.dtype,
    precision: f.precision,
    truncate: f.truncate,
    counts: r.counts,
    inputs: r.inputs,
    inputChecksums: r.inputChecksums,
    recordsSha256: f.recordsSha256,
    ...(f.slice ? { slice: f.slice } : {}),
    run: r.run,
    load: loadHint(dir, f.include, f.layers),
  };
}

/** The fields of run state `a` (an unfinished run's) that differ from `b`, by option name. Run
 * state written before the rename names the slice `shard`. */
export function identityDiff(prev: Omit<RunIdentity, "family"> & { family?: Family; shard?: string }, b: RunIdentity): string[] {
  const { shard: _, ...rest } = prev;
  // Run state written before model families existed has no family: it was ESM-2's.
  const a: RunIdentity = { ...rest, family: prev.family ?? "esm2", ...(sliceOf(prev) ? { slice: sliceOf(prev) } : {}) };
  const names: Record<keyof RunIdentity, string> = {
    recordsSha256: "input records",
    records: "record count",
    model: "model",
    layers: "layers",
    include: "outputs (--include)",
    dtype: "--out-dtype",
    precision: "precision",
    family: "model family",
    truncate: "--truncate",
    duplicateIds: "--duplicate-ids",
    slice: "--slice",
  };
  return (Object.keys(names) as (keyof RunIdentity)[]).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) => names[k]);
}
