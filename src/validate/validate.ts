/**
 * `embed validate`: embed records twice on the same weights — the production path (packed
 * batches, chosen precision) and an fp32 reference (one sequence per batch, exact attention) —
 * and report how far apart they are, per length bin, with a pass/fail verdict. A contamination
 * check embeds selected records alone with the production path and compares with their packed
 * result.
 */
import { z } from "zod";
import type { RunOptionsInput } from "../config.ts";
import { OptionsError } from "../errors.ts";
import { log } from "../log.ts";
import { binIn, compareVectors, DEFAULT_THRESHOLDS, FAMILY_BINS, judge, LENGTH_UNIT, rowCosines, summarize, quantile, type LengthBin, type RecordMetrics, type Summary, type Thresholds } from "./metrics.ts";
import type { RecordTable } from "../input/records.ts";
import { ingest } from "../input/ingest.ts";
import { readingFor } from "../input/reading.ts";
import { POOLING, type Family } from "../protocol.ts";
import { stratifiedSample } from "./sample.ts";
import { resolveRunProbed } from "../resolve.ts";
import { embedPlan, planRecords, startWorkers, workerLimits, type Precision } from "../workers/session.ts";
import type { HealthOptions } from "../workers/watchdog.ts";
import type { WorkerHandle } from "../workers/handle.ts";

/** Numbers may come as CLI strings; they are checked and coerced by `ValidateChecks`. */
export interface ValidateOptions extends Omit<RunOptionsInput, "output" | "include" | "dry" | "overwrite" | "outDtype" | "slice" | "shard"> {
  /** Validate at most this many records (a positive integer), stratified by length (default: all). */
  sample?: number | string;
  /** Also compare per-residue vectors. */
  perResidue?: boolean;
  /** Records checked alone vs packed (a positive integer, default 8). */
  contamination?: number | string;
  /** Cosines in [-1, 1]; maxRelL2 ≥ 0. */
  thresholds?: { [K in keyof Thresholds]?: number | string };
}

/** A number from the API or a CLI string ("" is not 0), accepted when `ok`; `allowed` says what is. */
const bounded = (allowed: string, ok: (n: number) => boolean) =>
  z
    .unknown()
    .refine((v) => (typeof v === "number" || (typeof v === "string" && v.trim() !== "")) && ok(Number(v)), allowed)
    .transform(Number);
const count = bounded("a positive integer", (n) => Number.isInteger(n) && n >= 1);

/**
 * Most records one run validates (and keeps per-record values of). Memory: both the production and
 * the reference pooled vectors of every sampled record are held until the comparison, 2 × dim × 4
 * bytes (20 kB at 3B's 2,560, 40 kB at 15B's 5,120: 1–2 GB at the bound), plus ≈ 150 bytes of
 * per-record values in the report; with --per-residue also 2 × residues × dim × 4 bytes per record
 * (sample fewer for long proteins). Time: the fp32 reference embeds one sequence per batch.
 */
export const MAX_SAMPLE = 50_000;
const cosine = bounded("a cosine between -1 and 1", (n) => n >= -1 && n <= 1);

/** The options only validate has, validated at its edge (resolveConfig checks the shared ones). */
const ValidateChecks = z.object({
  sample: bounded(`a positive integer ≤ ${MAX_SAMPLE}`, (n) => Number.isInteger(n) && n >= 1 && n <= MAX_SAMPLE).optional(),
  contamination: count.default(8),
  thresholds: z.object({
    minCosine: cosine.default(DEFAULT_THRESHOLDS.minCosine),
    medianCosine: cosine.default(DEFAULT_THRESHOLDS.medianCosine),
    contaminationCosine: cosine.default(DEFAULT_THRESHOLDS.contaminationCosine),
    maxRelL2: bounded("a number ≥ 0", (n) => Number.isFinite(n) && n >= 0).optional(),
  }),
});

/** Parse validate's own options; throws OptionsError naming the flag, the value and what is allowed. */
function resolveChecks(options: ValidateOptions): z.output<typeof ValidateChecks> {
  const parsed = ValidateChecks.safeParse({ ...options, thresholds: options.thresholds ?? {} }, { reportInput: true });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const flag = String(issue.path.at(-1)).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  throw new OptionsError(`--${flag} "${String(issue.input)}" is not ${issue.message}`, "see `embed validate --help`");
}

/** One validated record's comparison, as the JSON report keeps it (a NaN cosine is null in JSON). */
export type RecordResult = Pick<RecordMetrics, "id" | "residues" | "bin" | "cosine" | "relL2" | "maxAbs" | "nonFinite" | "residueCosMin" | "residueCosMedian">;

export interface ValidationReport {
  model: string;
  /** The model family (protocol.ts FAMILIES): how the input was read and the bins counted. */
  family: Family;
  /** What the compared vectors are, for this family (protocol.ts POOLING): mean, and per-residue if asked. */
  pooling: Record<string, string>;
  /** What a record's length (`residues` in each record, the bins) counts: residues, or BPE tokens
   * without [CLS]/[SEP]. */
  lengthUnit: string;
  /** When the run finished, ISO 8601 UTC. */
  date: string;
  layer: number;
  device: string;
  precision: Precision;
  reference: string;
  records: { input: number; validated: number };
  thresholds: Thresholds;
  overall: Summary;
  bins: Record<string, Summary | null>;
  /** The thresholds judged on each bin's records alone (empty: passes; null: no records). The run's
   * verdict is the overall one: a bin can miss the median threshold while the whole sample meets it. */
  binFailures: Record<string, string[] | null>;
  worst: Pick<RecordMetrics, "id" | "residues" | "cosine" | "relL2" | "maxAbs" | "nonFinite">[];
  contamination: { n: number; minCosine: number | null; maxAbs: number | null; worst: { id: string; residues: number; cosine: number }[] };
  ok: boolean;
  failures: string[];
  seconds: number;
  /** Every validated record, in input order (at most MAX_SAMPLE). */
  perRecord: RecordResult[];
}

interface Collected {
  mean: Float32Array[];
  residues: Float32Array[];
  nonFinite: number;
}

/** Embed `table` with `workers` under `plan`; copy the vectors out of the ring per record. */
async function collect(workers: WorkerHandle[], table: RecordTable, maxSeqs: number | undefined, withResidues: boolean, health: HealthOptions): Promise<Collected> {
  const { budget, maxSeqs: cap } = workerLimits(workers);
  const plan = planRecords(table, budget, Math.min(maxSeqs ?? cap, cap));
  const out: Collected = { mean: new Array(table.size), residues: new Array(table.size), nonFinite: 0 };
  const lengths = table.lengths();
  await embedPlan(
    workers,
    table,
    plan,
    (b, result) => {
    out.nonFinite += result.nonFinite;
    for (const o of result.outputs) {
      if (o.kind === "mean") {
        b.records.forEach((rec, j) => (out.mean[rec] = Float32Array.from(o.data.subarray(j * o.dim, (j + 1) * o.dim))));
      } else if (o.kind === "residues" && withResidues) {
        let row = 0;
        for (const rec of b.records) {
          const n = lengths[rec]!;
          out.residues[rec] = Float32Array.from(o.data.subarray(row * o.dim, (row + n) * o.dim));
          row += n;
        }
      }
    }
    },
    // NaN/Inf is a finding here, counted per record, not a reason to stop.
    { allowNonFinite: true, health },
  );
  return out;
}

/** Each record's production vectors against its reference vectors; `bins` are the family's. */
function compareAll(table: RecordTable, prod: Collected, ref: Collected, withRes: boolean, bins: readonly LengthBin[]): RecordMetrics[] {
  const lengths = table.lengths();
  const metrics: RecordMetrics[] = [];
  for (let i = 0; i < table.size; i++) {
    const m: RecordMetrics = { id: table.id(i), residues: lengths[i]!, bin: binIn(lengths[i]!, bins), ...compareVectors(prod.mean[i]!, ref.mean[i]!) };
    if (withRes && ref.residues[i]!.length) {
      const cos = rowCosines(prod.residues[i]!, ref.residues[i]!, ref.mean[i]!.length).sort();
      m.residueCosMin = cos[0]!;
      m.residueCosMedian = quantile(cos, 0.5);
    }
    metrics.push(m);
  }
  return metrics;
}

/** What the production path is compared with, per family: both run through a second worker. */
const REFERENCE: Record<Family, string> = {
  esm2: "fp32, one sequence per batch, exact attention, same weights",
  "dnabert-s": "fp32, one sequence per batch, the exact reference model (per-sequence ALiBi attention), same weights",
};

async function withWorkers<T>(start: () => Promise<WorkerHandle[]>, f: (ws: WorkerHandle[]) => Promise<T>): Promise<T> {
  const workers = await start();
  try {
    return await f(workers);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

export async function validate(options: ValidateOptions): Promise<ValidationReport> {
  const t0 = performance.now();
  const checks = resolveChecks(options);
  const thresholds: Thresholds = checks.thresholds;
  const include = options.perResidue ? ["mean", "per-residue"] : ["mean"];
  const { cfg, devices, precision, family, tokenizer } = await resolveRunProbed({ ...options, include, outDtype: "float32", dry: false });
  if (cfg.layers.length !== 1) throw new OptionsError("validate checks one layer at a time", "pass a single --layers value, e.g. -1");
  // The family's reading (ESM-2's alphabet, or DNABERT-S's BPE with the folder's tokenizer.json),
  // as `embed run` reads it, and the family's length bins (residues, or BPE tokens).
  const all = await ingest(cfg, readingFor(family, tokenizer, cfg));
  const lengthBins = FAMILY_BINS[family];
  const limit = checks.sample ?? MAX_SAMPLE;
  if (checks.sample === undefined && all.size > MAX_SAMPLE) log.info(`${all.size} records: validating a length-stratified sample of ${MAX_SAMPLE} (the most one run checks)`);
  const picked = all.size <= limit ? all.indices() : stratifiedSample(all.lengths(), limit, lengthBins);
  const table = picked.length === all.size ? all : all.subset(picked); // no copy when every record is checked
  const lengths = table.lengths();
  const checkAlone = stratifiedSample(lengths, checks.contamination, lengthBins); // spread over the length bins
  const withRes = options.perResidue ?? false;
  log.info(`validating ${table.size} of ${all.size} ${family} records: ${precision} packed vs fp32 one-at-a-time reference, on ${devices.map((d) => d.name).join(", ")}`);

  // Production path (packed), then the same workers embed the contamination picks one at a time.
  const { prod, alone, device, layer, model } = await withWorkers(
    () => startWorkers(cfg, devices, { precision }),
    async (ws) => {
      const prod = await collect(ws, table, undefined, withRes, cfg.health);
      const sub = table.subset(checkAlone);
      const alone = await collect(ws, sub, 1, false, cfg.health);
      const r = ws[0]!.ready;
      return { prod, alone, device: `${r.device} (${r.backend}, ${r.kernels} kernels)`, layer: r.layers[0]!, model: r.model.name };
    },
  );
  // fp32 reference: one sequence per batch; fp32 always takes the exact attention path.
  const ref = await withWorkers(
    () => startWorkers(cfg, devices, { precision: "fp32", fault: "", kernels: "eager" }),
    (ws) => collect(ws, table, 1, withRes, cfg.health),
  );

  const metrics = compareAll(table, prod, ref, withRes, lengthBins);
  const overall = summarize(metrics)!;
  const bins = Object.fromEntries(lengthBins.map((b) => [b.name, summarize(metrics.filter((m) => m.bin === b.name))]));
  const binFailures = Object.fromEntries(Object.entries(bins).map(([name, s]) => [name, s && judge(s, null, thresholds)]));
  const aloneCmp = Array.from(checkAlone, (rec, k) => ({ id: table.id(rec), residues: lengths[rec]!, ...compareVectors(alone.mean[k]!, prod.mean[rec]!) }));
  const contaminationMin = aloneCmp.length ? Math.min(...aloneCmp.map((c) => c.cosine)) : null;
  const failures = judge(overall, contaminationMin, thresholds);
  const byCos = (a: { cosine: number }, b: { cosine: number }) => (Number.isNaN(a.cosine) ? -1 : Number.isNaN(b.cosine) ? 1 : a.cosine - b.cosine);
  return {
    model,
    family,
    pooling: Object.fromEntries(cfg.include.map((k) => [k, POOLING[family][k]])),
    lengthUnit: LENGTH_UNIT[family],
    date: new Date().toISOString(),
    layer,
    device,
    precision,
    reference: REFERENCE[family],
    records: { input: all.size, validated: table.size },
    thresholds,
    overall,
    bins,
    binFailures,
    worst: [...metrics].sort(byCos).slice(0, 10).map(({ id, residues, cosine, relL2, maxAbs, nonFinite }) => ({ id, residues, cosine, relL2, maxAbs, nonFinite })),
    contamination: {
      n: aloneCmp.length,
      minCosine: contaminationMin,
      maxAbs: aloneCmp.length ? Math.max(...aloneCmp.map((c) => c.maxAbs)) : null,
      worst: [...aloneCmp].sort(byCos).slice(0, 5).map(({ id, residues, cosine }) => ({ id, residues, cosine })),
    },
    ok: failures.length === 0,
    failures,
    seconds: (performance.now() - t0) / 1000,
    perRecord: metrics.map(({ id, residues, bin, cosine, relL2, maxAbs, nonFinite, residueCosMin, residueCosMedian }) => ({ id, residues, bin, cosine, relL2, maxAbs, nonFinite, residueCosMin, residueCosMedian })),
  };
}
