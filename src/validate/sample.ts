/**
 * Deterministic stratified sampling by length, pure. Each non-empty length bin gets an equal
 * share of the sample (what a bin cannot fill goes to the others), so long sequences, which
 * are rare but where precision is hardest, are always represented.
 */
import { binIn, LENGTH_BINS, type BinName, type LengthBin } from "./metrics.ts";

/** A fixed scramble of record indices, so a sample does not follow input order. */
const scramble = (i: number): number => Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) >>> 0;

/** Indices (ascending) of at most `n` records, stratified by length over `lengthBins` (the family's). */
export function stratifiedSample(lengths: Uint32Array, n: number, lengthBins: readonly LengthBin[] = LENGTH_BINS): Uint32Array {
  if (n >= lengths.length) return Uint32Array.from(lengths.keys());
  const bins = new Map<BinName, number[]>(lengthBins.map((b) => [b.name, []]));
  for (let i = 0; i < lengths.length; i++) bins.get(binIn(lengths[i]!, lengthBins))!.push(i);
  const groups = [...bins.values()].filter((g) => g.length).map((g) => g.sort((a, b) => scramble(a) - scramble(b)));
  const take = new Array<number>(groups.length).fill(0);
  let left = n;
  // Round-robin one at a time: equal shares, and spare capacity flows to larger bins.
  while (left > 0) {
    let progressed = false;
    for (let g = 0; g < groups.length && left > 0; g++) {
      if (take[g]! < groups[g]!.length) {
        take[g]!++;
        left--;
        progressed = true;
      }
    }
    if (!progressed) break;
  }
  return Uint32Array.from(groups.flatMap((g, i) => g.slice(0, take[i]))).sort();
}

