/**
 * Identical sequences embedded once (`--dedup`). Records whose kept tokens are equal (after
 * truncation) have equal embeddings, so only the first of each group goes to a worker; the
 * others ("copies") get that record's rows, written in the same shard append as it (all or
 * nothing). Grouping covers only the records a run still has to do, so a resumed run is
 * grouped afresh: a copy whose first was committed before a crash is grouped with what is left
 * (and embedded, if nothing else is left of its group). Every record is still written exactly
 * once, and the store is the same as without `--dedup`.
 */
import type { RecordTable } from "./records.ts";
import type { BatchResult, OutputView } from "../protocol.ts";

export interface Identical {
  /** The first record of each group (input order), i.e. what is planned. */
  firsts: Uint32Array;
  /** Records that are copies of an earlier one and are not planned. */
  copies: number;
  /** The copies of `first` (a record of `firsts`), in input order. */
  copiesOf(first: number): number[];
}

/**
 * FNV-1a over `len` tokens of `t` from `at`, then the length, then MurmurHash3's finalizer (so
 * the low bits that pick a slot depend on every bit); 32 bits (exported for tests: collisions
 * are real).
 */
export function hashTokens(t: Uint8Array | Uint16Array, at = 0, len = t.length - at): number {
  let h = 0x811c9dc5;
  for (let k = at; k < at + len; k++) h = Math.imul(h ^ t[k]!, 0x01000193);
  h = Math.imul(h ^ len, 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function equalTokens(a: Uint8Array | Uint16Array, ai: number, b: Uint8Array | Uint16Array, bi: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (a[ai + k] !== b[bi + k]) return false;
  return true;
}

/**
 * Group the records `subset` (input indices, ascending) of `table` by their kept tokens: an
 * open-addressed hash table of each group's first, checked byte for byte on a hash match.
 */
export function groupIdentical(table: RecordTable, subset: Uint32Array): Identical {
  const m = subset.length;
  let cap = 2;
  while (cap < 1.5 * m) cap *= 2; // load ≤ 2/3: 128 MiB of slots at 10M records
  const mask = cap - 1;
  /** Slot s: [2s] = 1 + position in `subset` of a group's first (0: empty), [2s + 1] = its hash;
   * side by side, so a probe touches one cache line. */
  const slots = new Uint32Array(2 * cap);
  /** A first -> its latest copy, that copy -> the one before, ..., the earliest -> -1. */
  const next = new Int32Array(table.size).fill(-1);
  const firsts = new Uint32Array(m);
  const lengths = table.lengths();
  let nFirsts = 0;
  for (let k = 0; k < m; k++) {
    // Straight from the table's chunks: a view per record would be millions of objects.
    const r = subset[k]!;
    const len = lengths[r]!;
    const t = table.tokenChunk(r);
    const at = table.tokenOffset(r);
    const h = hashTokens(t, at, len);
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const f1 = slots[2 * s]!;
      if (f1 === 0) {
        slots[2 * s] = k + 1;
        slots[2 * s + 1] = h;
        firsts[nFirsts++] = r;
        break;
      }
      if (slots[2 * s + 1] !== h) continue;
      const f = f1 - 1;
      const g = subset[f]!;
      if (lengths[g] === len && equalTokens(table.tokenChunk(g), table.tokenOffset(g), t, at, len)) {
        next[r] = next[g]!;
        next[g] = r;
        break;
      }
    }
  }
  return {
    firsts: firsts.slice(0, nFirsts),
    copies: m - nFirsts,
    copiesOf(first: number): number[] {
      const out: number[] = [];
      for (let c = next[first]!; c >= 0; c = next[c]!) out.push(c);
      return out.reverse();
    },
  };
}

/**
 * A finished batch with its records' copies appended: `records` followed by every copy (input
 * indices), and each output's rows followed by the copied rows of each copy's first. Returns the
 * batch as it is when no record of it has a copy. `lengths` are residues per record (per-residue
 * rows).
 */
export function withCopies(
  records: Uint32Array,
  result: BatchResult,
  identical: Identical,
  lengths: Uint32Array,
): { records: Uint32Array; result: BatchResult } {
  const copies: number[] = [];
  const from: number[] = []; // position in the batch of each copy's first
  records.forEach((r, k) => {
    for (const c of identical.copiesOf(r)) {
      copies.push(c);
      from.push(k);
    }
  });
  if (copies.length === 0) return { records, result };
  const all = new Uint32Array(records.length + copies.length);
  all.set(records);
  all.set(copies, records.length);
  const outputs = result.outputs.map((o) => copyRows(o, records, from, lengths));
  return { records: all, result: { ...result, outputs } };
}

/** One output with the rows of the records at batch positions `from` appended, in that order. */
function copyRows(o: OutputView, records: Uint32Array, from: number[], lengths: Uint32Array): OutputView {
  const perResidue = o.kind === "residues";
  const rowsOf = (k: number) => (perResidue ? lengths[records[k]!]! : 1);
  /** First row of each batch position. */
  const start = new Uint32Array(records.length + 1);
  for (let k = 0; k < records.length; k++) start[k + 1] = start[k]! + rowsOf(k);
  let extra = 0;
  for (const k of from) extra += rowsOf(k);
  const rows = o.rows + extra;
  const data = o.data instanceof Float32Array ? new Float32Array(rows * o.dim) : new Float16Array(rows * o.dim);
  data.set(o.data.subarray(0, o.rows * o.dim));
  let at = o.rows * o.dim;
  for (const k of from) {
    const piece = o.data.subarray(start[k]! * o.dim, start[k + 1]! * o.dim);
    data.set(piece, at);
    at += piece.length;
  }
  return { ...o, rows, data };
}
