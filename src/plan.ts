/**
 * Batch planner: packs records into token-budgeted batches. Pure: no I/O.
 *
 * Batches are packed (variable-length attention, no padding), so a batch's cost is the sum of
 * its sequences' token counts, each `residues + 2` (BOS and EOS). Records are sorted by length,
 * longest first (ties by original index, so the plan is deterministic), and packed greedily in
 * that order: a batch takes the next record while it fits in `budget` tokens (and `maxSeqs`
 * sequences), else a new batch starts. With lengths descending, a batch wastes less than one
 * record's tokens, so density is high, and the longest (slowest, most memory-hungry) batches
 * run first, where an out-of-memory shows up at once rather than at the end.
 *
 * The `Plan` holds only numbers and typed arrays, so it survives `structuredClone` /
 * `postMessage` (each batch owns its `records` array; none is a view of a shared buffer).
 * Batch bookkeeping (tokens, longest sequence) lives here only: a batch split after an
 * out-of-memory is made by {@link splitBatch}.
 */
import { OptionsError } from "./errors.ts";

/** Tokens added to every sequence: BOS (`<cls>`) and EOS. */
export const SPECIAL_TOKENS_PER_SEQ = 2;

/** One batch: which records, and its size. */
export interface PlannedBatch {
  /** Original record indices, in packing order (longest first). */
  records: Uint32Array;
  /** Real tokens in the batch: sum of (residues + 2). Never above the plan's budget. */
  tokens: number;
  /** Longest sequence in the batch, in tokens including BOS/EOS (varlen attention's max_seqlen). */
  maxLen: number;
}

export interface Plan {
  /** Max tokens per batch, including BOS/EOS of every sequence. */
  budget: number;
  /** Max sequences per batch, or null for no limit. */
  maxSeqs: number | null;
  /** Number of records planned. */
  records: number;
  /** Real tokens over all records, including BOS/EOS. */
  tokens: number;
  /** Batches in run order: longest records first. */
  batches: PlannedBatch[];
  /** tokens / (batches × budget): the fraction of the token budget doing real work; 0 with no batches. */
  density: number;
}

export interface PlanOptions {
  /** Max tokens per batch, including BOS/EOS per sequence. */
  budget: number;
  /** Max sequences per batch (e.g. a worker's cu_seqlens capacity). */
  maxSeqs?: number;
  /** Names record `i` in error messages (e.g. its FASTA id and line). */
  describe?: (index: number) => string;
}

function checkPositiveInt(value: number, what: string, flag: string): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new OptionsError(`${what} must be a positive integer, got ${value}`, `Pass a whole number ≥ 1 to ${flag}.`);
  }
}

/**
 * Order of records for packing: by length descending, ties by index ascending. Counting sort
 * (stable, O(n + maxLen)) when lengths are bounded, which they are after truncation; a
 * comparison sort otherwise.
 */
export function sortByLengthDesc(lengths: Uint32Array): Uint32Array {
  const n = lengths.length;
  const order = new Uint32Array(n);
  let max = 0;
  for (let i = 0; i < n; i++) if (lengths[i]! > max) max = lengths[i]!;
  if (max <= 4 * n + (1 << 16)) {
    // starts[L] = first output slot of length L, walking from the longest length down.
    const starts = new Uint32Array(max + 2);
    for (let i = 0; i < n; i++) starts[max - lengths[i]! + 1]!++;
    for (let k = 1; k < starts.length; k++) starts[k]! += starts[k - 1]!;
    for (let i = 0; i < n; i++) order[starts[max - lengths[i]!]!++] = i;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  return order.sort((a, b) => lengths[b]! - lengths[a]! || a - b);
}

/**
 * Plan batches for records of the given lengths (residues, after truncation). Throws
 * {@link OptionsError} when the budget cannot hold the longest record.
 */
export function planBatches(lengths: Uint32Array, opts: PlanOptions): Plan {
  const { budget } = opts;
  checkPositiveInt(budget, "token budget", "--max-tokens");
  const maxSeqs = opts.maxSeqs ?? Number.POSITIVE_INFINITY;
  if (opts.maxSeqs !== undefined) checkPositiveInt(opts.maxSeqs, "max sequences per batch", "--max-seqs");

  const order = sortByLengthDesc(lengths);
  const n = order.length;
  if (n > 0) {
    const longest = order[0]!;
    const need = lengths[longest]! + SPECIAL_TOKENS_PER_SEQ;
    if (need > budget) {
      const who = opts.describe ? opts.describe(longest) : `record #${longest}`;
      throw new OptionsError(
        `token budget ${budget} is too small: ${who} has ${lengths[longest]} residues, which need ${need} tokens with BOS/EOS`,
        `Raise --max-tokens to at least ${need}, or lower --truncate to at most ${budget - SPECIAL_TOKENS_PER_SEQ}.`,
      );
    }
  }

  const batches: PlannedBatch[] = [];
  let total = 0;
  let start = 0;
  let tokens = 0;
  let maxLen = 0;
  const close = (end: number): void => {
    batches.push({ records: order.slice(start, end), tokens, maxLen });
    start = end;
    tokens = 0;
    maxLen = 0;
  };
  for (let k = 0; k < n; k++) {
    const t = lengths[order[k]!]! + SPECIAL_TOKENS_PER_SEQ;
    if (k > start && (tokens + t > budget || k - start >= maxSeqs)) close(k);
    tokens += t;
    total += t;
    if (t > maxLen) maxLen = t;
  }
  if (n > start) close(n);

  return {
    budget,
    maxSeqs: opts.maxSeqs ?? null,
    records: n,
    tokens: total,
    batches,
    density: batches.length === 0 ? 0 : total / (batches.length * budget),
  };
}

/** The batch of `records` (in that order, input indices into `lengths`): tokens and longest sequence. */
function batchOf(records: Uint32Array, lengths: Uint32Array): PlannedBatch {
  let tokens = 0;
  let maxLen = 0;
  for (const r of records) {
    const t = lengths[r]! + SPECIAL_TOKENS_PER_SEQ;
    tokens += t;
    if (t > maxLen) maxLen = t;
  }
  return { records, tokens, maxLen };
}

/**
 * Halves of `batch` (the first takes the extra record of an odd count), for a worker that ran
 * out of memory on it; null when it holds a single record.
 */
export function splitBatch(batch: PlannedBatch, lengths: Uint32Array): [PlannedBatch, PlannedBatch] | null {
  const { records } = batch;
  if (records.length < 2) return null;
  const half = Math.ceil(records.length / 2);
  return [batchOf(records.slice(0, half), lengths), batchOf(records.slice(half), lengths)];
}

/** JSON-friendly digest of a plan, for `embed plan` output and logs. */
export interface PlanSummary {
  records: number;
  batches: number;
  budget: number;
  maxSeqs: number | null;
  tokens: number;
  /** Rounded to 4 decimals. */
  density: number;
  /** Tokens per batch (including BOS/EOS). */
  batchTokens: { min: number; median: number; max: number };
  /** Sequences per batch. */
  batchSeqs: { min: number; median: number; max: number };
  /** Longest sequence, in tokens including BOS/EOS. */
  longest: number;
}

function minMedMax(values: number[]): { min: number; median: number; max: number } {
  if (values.length === 0) return { min: 0, median: 0, max: 0 };
  const s = values.slice().sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]! };
}

export function planSummary(plan: Plan): PlanSummary {
  return {
    records: plan.records,
    batches: plan.batches.length,
    budget: plan.budget,
    maxSeqs: plan.maxSeqs,
    tokens: plan.tokens,
    density: Math.round(plan.density * 1e4) / 1e4,
    batchTokens: minMedMax(plan.batches.map((b) => b.tokens)),
    batchSeqs: minMedMax(plan.batches.map((b) => b.records.length)),
    longest: plan.batches[0]?.maxLen ?? 0,
  };
}
