/**
 * Precision metrics, pure: compare a test vector with a reference vector, summarise per length
 * bin, judge against thresholds. All arithmetic in float64.
 */

import type { Family } from "../protocol.ts";

export interface LengthBin {
  name: string;
  /** Lengths in [lo, hi), in the family's unit ({@link LENGTH_UNIT}). */
  lo: number;
  hi: number;
}

/** Length bins (residues) used to stratify ESM-2 samples and reports. */
export const LENGTH_BINS = [
  { name: "<50", lo: 0, hi: 50 },
  { name: "50-200", lo: 50, hi: 200 },
  { name: "200-500", lo: 200, hi: 500 },
  { name: ">500", lo: 500, hi: Number.POSITIVE_INFINITY },
] as const satisfies readonly LengthBin[];

/**
 * DNABERT-S bins, in BPE tokens ([CLS]/[SEP] not counted): a token covers ≈ 4-6 bases, so a
 * 150-base short read is ≈ 30 tokens, a 300-base VirNucPro chunk ≈ 60, and 256 tokens ≈ 1.3 kb;
 * the --truncate default stops at 510.
 */
export const TOKEN_BINS = [
  { name: "≤32", lo: 0, hi: 33 },
  { name: "33-64", lo: 33, hi: 65 },
  { name: "65-128", lo: 65, hi: 129 },
  { name: "129-256", lo: 129, hi: 257 },
  { name: ">256", lo: 257, hi: Number.POSITIVE_INFINITY },
] as const satisfies readonly LengthBin[];

/** Each family's bins, and the unit a record's length is counted in. */
export const FAMILY_BINS: Readonly<Record<Family, readonly LengthBin[]>> = { esm2: LENGTH_BINS, "dnabert-s": TOKEN_BINS };
export const LENGTH_UNIT: Readonly<Record<Family, string>> = { esm2: "residues", "dnabert-s": "tokens" };

export type BinName = string;

/** The bin of a record `length` long among `bins` (they cover 0..∞, so one always holds it). */
export function binIn(length: number, bins: readonly LengthBin[]): BinName {
  for (const b of bins) if (length >= b.lo && length < b.hi) return b.name;
  return bins[bins.length - 1]!.name;
}

/** The ESM-2 bin of a record `residues` long. */
export const binOf = (residues: number): BinName => binIn(residues, LENGTH_BINS);

export interface VectorComparison {
  cosine: number;
  /** ‖test − ref‖ / ‖ref‖ */
  relL2: number;
  maxAbs: number;
  normRef: number;
  normTest: number;
  /** NaN/Inf values in the test vector. */
  nonFinite: number;
}

export function compareVectors(test: ArrayLike<number>, ref: ArrayLike<number>): VectorComparison {
  let dot = 0;
  let nt = 0;
  let nr = 0;
  let diff = 0;
  let maxAbs = 0;
  let nonFinite = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = test[i]!;
    const b = ref[i]!;
    if (!Number.isFinite(a)) {
      nonFinite++;
      continue;
    }
    dot += a * b;
    nt += a * a;
    nr += b * b;
    const d = a - b;
    diff += d * d;
    if (Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
  }
  const normTest = Math.sqrt(nt);
  const normRef = Math.sqrt(nr);
  const cosine = nonFinite ? Number.NaN : normTest === 0 && normRef === 0 ? 1 : dot / (normTest * normRef || Number.MIN_VALUE);
  return { cosine, relL2: Math.sqrt(diff) / (normRef || Number.MIN_VALUE), maxAbs, normRef, normTest, nonFinite };
}

/** Cosine of each row of two [rows, dim] matrices. */
export function rowCosines(test: Float32Array, ref: Float32Array, dim: number): Float64Array {
  const rows = ref.length / dim;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) out[r] = compareVectors(test.subarray(r * dim, (r + 1) * dim), ref.subarray(r * dim, (r + 1) * dim)).cosine;
  return out;
}

/** Value at quantile q of an ascending array (nearest rank, lower). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(q * (sorted.length - 1))))]!;
}

const asc = (xs: number[]) => Float64Array.from(xs).sort();

export interface RecordMetrics extends VectorComparison {
  id: string;
  residues: number;
  bin: BinName;
  /** Per-residue cosines (when per-residue output is compared): min and median over the record. */
  residueCosMin?: number;
  residueCosMedian?: number;
}

export interface Summary {
  n: number;
  cosine: { min: number; p1: number; median: number };
  relL2: { median: number; max: number };
  maxAbs: number;
  nonFinite: number;
  norm: { refMean: number; testMean: number; ratioMin: number; ratioMax: number };
  residueCosine?: { min: number; median: number };
}

export function summarize(ms: readonly RecordMetrics[]): Summary | null {
  if (!ms.length) return null;
  // NaN cosines (non-finite output) sort as the worst.
  const cos = asc(ms.map((m) => (Number.isNaN(m.cosine) ? -Infinity : m.cosine)));
  const rel = asc(ms.map((m) => m.relL2));
  const ratios = ms.map((m) => m.normTest / (m.normRef || Number.MIN_VALUE));
  const s: Summary = {
    n: ms.length,
    cosine: { min: cos[0]!, p1: quantile(cos, 0.01), median: quantile(cos, 0.5) },
    relL2: { median: quantile(rel, 0.5), max: rel[rel.length - 1]! },
    maxAbs: Math.max(...ms.map((m) => m.maxAbs)),
    nonFinite: ms.reduce((a, m) => a + m.nonFinite, 0),
    norm: {
      refMean: ms.reduce((a, m) => a + m.normRef, 0) / ms.length,
      testMean: ms.reduce((a, m) => a + m.normTest, 0) / ms.length,
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios),
    },
  };
  const withRes = ms.filter((m) => m.residueCosMin !== undefined);
  if (withRes.length) {
    const med = asc(withRes.map((m) => m.residueCosMedian!));
    s.residueCosine = { min: Math.min(...withRes.map((m) => m.residueCosMin!)), median: quantile(med, 0.5) };
  }
  return s;
}

export interface Thresholds {
  /** Every record's pooled cosine must reach this. */
  minCosine: number;
  /** The median pooled cosine must reach this. */
  medianCosine: number;
  /** A record embedded alone vs packed among others must agree to this cosine. */
  contaminationCosine: number;
  /** Optional: every record's relative L2 error must stay at or below this (e.g. 1e-5 for fp32). */
  maxRelL2?: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { minCosine: 0.999, medianCosine: 0.9999, contaminationCosine: 0.99999 };

/** Reasons the results fail the thresholds; empty when they pass. */
export function judge(overall: Summary, contaminationMin: number | null, t: Thresholds): string[] {
  const fails: string[] = [];
  if (overall.nonFinite > 0) fails.push(`${overall.nonFinite} NaN/Inf values in the output`);
  if (!(overall.cosine.min >= t.minCosine)) fails.push(`min pooled cosine ${fmt(overall.cosine.min)} < ${t.minCosine}`);
  if (!(overall.cosine.median >= t.medianCosine)) fails.push(`median pooled cosine ${fmt(overall.cosine.median)} < ${t.medianCosine}`);
  if (t.maxRelL2 !== undefined && !(overall.relL2.max <= t.maxRelL2)) fails.push(`max relative L2 error ${overall.relL2.max.toExponential(2)} > ${t.maxRelL2}`);
  if (contaminationMin !== null && !(contaminationMin >= t.contaminationCosine)) {
    fails.push(`packed vs alone cosine ${fmt(contaminationMin)} < ${t.contaminationCosine} (cross-sequence contamination)`);
  }
  return fails;
}

export const fmt = (x: number, digits = 6): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
