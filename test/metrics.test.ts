/** Precision metrics and stratified sampling (pure). */
import { describe, expect, test } from "bun:test";
import { binOf, compareVectors, DEFAULT_THRESHOLDS, judge, quantile, summarize, type RecordMetrics } from "../src/validate/metrics.ts";
import { stratifiedSample } from "../src/validate/sample.ts";

describe("metrics", () => {
  test("compareVectors", () => {
    const c = compareVectors([1, 0, 0], [1, 0, 0]);
    expect(c.cosine).toBe(1);
    expect(c.relL2).toBe(0);
    const d = compareVectors([0, 1, 0], [1, 0, 0]);
    expect(d.cosine).toBe(0);
    expect(d.relL2).toBeCloseTo(Math.SQRT2, 12);
    expect(d.maxAbs).toBe(1);
    const n = compareVectors([Number.NaN, 1, 0], [1, 1, 0]);
    expect(n.nonFinite).toBe(1);
    expect(Number.isNaN(n.cosine)).toBe(true);
  });
  test("bins and quantiles", () => {
    expect([1, 49, 50, 199, 200, 499, 500, 1022].map(binOf)).toEqual(["<50", "<50", "50-200", "50-200", "200-500", "200-500", ">500", ">500"]);
    expect(quantile([1, 2, 3, 4, 5], 0.5)).toBe(3);
    expect(quantile([1, 2, 3, 4, 5], 0)).toBe(1);
  });
  test("summary and verdict: NaN is the worst, thresholds fail when they should", () => {
    const m = (id: string, cosine: number, nonFinite = 0): RecordMetrics => ({ id, residues: 10, bin: "<50", cosine, relL2: 1 - cosine, maxAbs: 0.1, normRef: 1, normTest: 1, nonFinite });
    const good = summarize([m("a", 0.99999), m("b", 0.999995), m("c", 1)])!;
    expect(judge(good, 1, DEFAULT_THRESHOLDS)).toEqual([]);
    const low = summarize([m("a", 0.998), m("b", 1), m("c", 1)])!;
    expect(judge(low, 1, DEFAULT_THRESHOLDS)[0]).toContain("min pooled cosine");
    const nan = summarize([m("a", Number.NaN, 3), m("b", 1)])!;
    expect(nan.cosine.min).toBe(-Infinity);
    expect(judge(nan, null, DEFAULT_THRESHOLDS).join(" ")).toContain("3 NaN/Inf");
    expect(judge(good, 0.9, DEFAULT_THRESHOLDS).join(" ")).toContain("contamination");
    expect(judge(good, 1, { ...DEFAULT_THRESHOLDS, maxRelL2: 1e-9 }).join(" ")).toContain("relative L2");
  });
});

describe("stratifiedSample", () => {
  const lengths = Uint32Array.from([...Array(1000).fill(40), ...Array(50).fill(120), ...Array(5).fill(300), ...Array(2).fill(800)]);
  test("every bin represented, deterministic, no repeats", () => {
    const s = stratifiedSample(lengths, 40);
    expect(s.length).toBe(40);
    expect(new Set(s).size).toBe(40);
    const counts = { a: 0, b: 0, c: 0, d: 0 };
    for (const i of s) {
      const L = lengths[i]!;
      if (L < 50) counts.a++;
      else if (L < 200) counts.b++;
      else if (L < 500) counts.c++;
      else counts.d++;
    }
    // Small bins are taken whole; the rest is shared equally.
    expect(counts).toEqual({ a: 17, b: 16, c: 5, d: 2 });
    expect(Array.from(stratifiedSample(lengths, 40))).toEqual(Array.from(s));
  });
  test("n at or above the size takes everything", () => {
    expect(stratifiedSample(lengths, 5000).length).toBe(lengths.length);
  });
});
