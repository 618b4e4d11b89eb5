import { describe, expect, test } from "bun:test";
import { OptionsError } from "../src/errors.ts";
import { type Plan, planBatches, planSummary, sortByLengthDesc, splitBatch } from "../src/plan.ts";

/** Deterministic PRNG (mulberry32) so failures reproduce from the seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every invariant a plan must satisfy. */
function checkPlan(lengths: Uint32Array, plan: Plan, budget: number, maxSeqs?: number): void {
  const seen = new Uint8Array(lengths.length);
  let total = 0;
  const order: number[] = [];
  for (const b of plan.batches) {
    expect(b.records.length).toBeGreaterThan(0);
    if (maxSeqs !== undefined) expect(b.records.length).toBeLessThanOrEqual(maxSeqs);
    let tokens = 0;
    let maxLen = 0;
    for (const r of b.records) {
      expect(seen[r]).toBe(0);
      seen[r] = 1;
      order.push(r);
      tokens += lengths[r]! + 2;
      maxLen = Math.max(maxLen, lengths[r]! + 2);
    }
    expect(b.tokens).toBe(tokens);
    expect(b.maxLen).toBe(maxLen);
    expect(b.tokens).toBeLessThanOrEqual(budget);
    total += tokens;
  }
  expect(seen.every((s) => s === 1)).toBe(true); // every record exactly once
  expect(plan.records).toBe(lengths.length);
  expect(plan.tokens).toBe(total);
  expect(plan.density).toBeCloseTo(plan.batches.length === 0 ? 0 : total / (plan.batches.length * budget), 12);
  // Sorted: length descending, ties by original index.
  for (let k = 1; k < order.length; k++) {
    const a = order[k - 1]!;
    const b = order[k]!;
    expect(lengths[a]! > lengths[b]! || (lengths[a] === lengths[b] && a < b)).toBe(true);
  }
  // Greedy: a batch only closes when the next record would not fit (or maxSeqs is reached).
  for (let i = 0; i + 1 < plan.batches.length; i++) {
    const b = plan.batches[i]!;
    const next = lengths[plan.batches[i + 1]!.records[0]!]! + 2;
    expect(b.tokens + next > budget || (maxSeqs !== undefined && b.records.length === maxSeqs)).toBe(true);
  }
}

describe("planBatches", () => {
  test("small example", () => {
    const lengths = Uint32Array.from([5, 10, 3, 10, 1]);
    const plan = planBatches(lengths, { budget: 20 });
    expect(plan.batches.map((b) => [...b.records])).toEqual([[1], [3, 0], [2, 4]]);
    expect(plan.batches.map((b) => b.tokens)).toEqual([12, 19, 8]);
    expect(plan.tokens).toBe(39);
    expect(plan.density).toBeCloseTo(39 / 60, 12);
    checkPlan(lengths, plan, 20);
  });
  test("budget exactly fits the longest record; too small throws OptionsError with a hint", () => {
    const lengths = Uint32Array.from([3, 8]);
    expect(planBatches(lengths, { budget: 10 }).batches.length).toBe(2);
    try {
      planBatches(lengths, { budget: 9, describe: (i) => `record "r${i}"` });
      throw new Error("expected a throw");
    } catch (e) {
      expect(e).toBeInstanceOf(OptionsError);
      expect((e as OptionsError).message).toContain('record "r1"');
      expect((e as OptionsError).hint).toContain("--max-tokens");
      expect((e as OptionsError).hint).toContain("--truncate");
    }
  });
  test("invalid options", () => {
    const lengths = Uint32Array.from([1]);
    expect(() => planBatches(lengths, { budget: 0 })).toThrow(OptionsError);
    expect(() => planBatches(lengths, { budget: 1.5 })).toThrow(OptionsError);
    expect(() => planBatches(lengths, { budget: 10, maxSeqs: 0 })).toThrow(OptionsError);
  });
  test("no records: no batches, density 0", () => {
    const plan = planBatches(new Uint32Array(0), { budget: 100 });
    expect(plan.batches).toEqual([]);
    expect(plan.density).toBe(0);
    expect(planSummary(plan).batchTokens).toEqual({ min: 0, median: 0, max: 0 });
  });
  test("maxSeqs caps sequences per batch", () => {
    const lengths = new Uint32Array(10).fill(1);
    const plan = planBatches(lengths, { budget: 1000, maxSeqs: 3 });
    expect(plan.batches.map((b) => b.records.length)).toEqual([3, 3, 3, 1]);
    checkPlan(lengths, plan, 1000, 3);
  });
  test("deterministic, and the plan survives structuredClone", () => {
    const r = rng(7);
    const lengths = Uint32Array.from({ length: 500 }, () => 1 + Math.floor(r() * 300));
    const a = planBatches(lengths, { budget: 2048 });
    const b = planBatches(lengths, { budget: 2048 });
    expect(b).toEqual(a);
    const c = structuredClone(a);
    expect(c).toEqual(a);
    expect(c.batches[0]!.records.buffer.byteLength).toBe(c.batches[0]!.records.byteLength);
  });
  test("randomized invariants over many seeds", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const n = Math.floor(r() * 400);
      const maxLen = 1 + Math.floor(r() * (r() < 0.5 ? 50 : 3000));
      const lengths = Uint32Array.from({ length: n }, () => 1 + Math.floor(r() * maxLen));
      let longest = 0;
      for (const l of lengths) longest = Math.max(longest, l);
      const budget = longest + 2 + Math.floor(r() * 5000);
      const maxSeqs = r() < 0.3 ? 1 + Math.floor(r() * 20) : undefined;
      checkPlan(lengths, planBatches(lengths, { budget, maxSeqs }), budget, maxSeqs);
    }
  });
  test("sortByLengthDesc: counting sort and comparison sort agree", () => {
    const r = rng(99);
    // Small n with huge lengths takes the comparison-sort path.
    for (const [n, max] of [[1000, 50], [20, 10_000_000], [5000, 1022]] as const) {
      const lengths = Uint32Array.from({ length: n }, () => Math.floor(r() * max));
      const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
      expect([...sortByLengthDesc(lengths)]).toEqual(expected);
    }
  });
});

describe("splitBatch", () => {
  test("halves keep the order, the first takes the odd record; tokens and maxLen recomputed", () => {
    const lengths = Uint32Array.from([5, 10, 3, 10, 1]);
    const plan = planBatches(lengths, { budget: 1000 });
    const [a, b] = splitBatch(plan.batches[0]!, lengths)!;
    expect([...a.records]).toEqual([1, 3, 0]);
    expect([...b.records]).toEqual([2, 4]);
    expect([a.tokens, a.maxLen, b.tokens, b.maxLen]).toEqual([31, 12, 8, 5]);
    expect(a.tokens + b.tokens).toBe(plan.batches[0]!.tokens);
  });
  test("a single record cannot be split", () => {
    const lengths = Uint32Array.from([7]);
    expect(splitBatch(planBatches(lengths, { budget: 100 }).batches[0]!, lengths)).toBeNull();
  });
});

describe("planSummary", () => {
  test("counts, density, histogram, longest; JSON round-trips", () => {
    const lengths = Uint32Array.from([5, 10, 3, 10, 1]);
    const s = planSummary(planBatches(lengths, { budget: 20 }));
    expect(s).toEqual({
      records: 5,
      batches: 3,
      budget: 20,
      maxSeqs: null,
      tokens: 39,
      density: 0.65,
      batchTokens: { min: 8, median: 12, max: 19 },
      batchSeqs: { min: 1, median: 2, max: 2 },
      longest: 12,
    });
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });
});
