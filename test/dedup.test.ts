/**
 * `--dedup`: identical sequences (equal after truncation) embedded once, every id still written
 * exactly once. The grouping and the copied rows on their own, then the CLI with fake workers
 * (whose vectors depend only on a record's tokens): a dedup run's store equals a plain run's byte
 * for byte, also after kill -9 at random moments and a resume.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { groupIdentical, hashTokens, withCopies } from "../src/input/dedup.ts";
import { RecordTable } from "../src/input/records.ts";
import type { BatchResult } from "../src/protocol.ts";
import { fakeRunEnv, storeContent, toks } from "./helpers.ts";

setDefaultTimeout(120_000);

function table(seqs: string[], truncate = 1022): RecordTable {
  const t = new RecordTable(truncate, "error");
  seqs.forEach((s, i) => t.add({ id: `r${i}`, tokens: toks(s), file: "x.fa", line: 2 * i + 1 }));
  return t;
}

const all = (t: RecordTable) => Uint32Array.from(t.lengths().keys());

/** Groups as [first, ...copies], from the grouping under test. */
function groups(t: RecordTable, subset = all(t)): number[][] {
  const g = groupIdentical(t, subset);
  return Array.from(g.firsts, (f) => [f, ...g.copiesOf(f)]);
}

describe("groupIdentical", () => {
  test("each group's first is its earliest record; copies in input order", () => {
    const t = table(["MKV", "AAA", "MKV", "MK", "AAA", "MKV", "W"]);
    expect(groups(t)).toEqual([[0, 2, 5], [1, 4], [3], [6]]);
    expect(groupIdentical(t, all(t)).copies).toBe(3);
  });

  test("sequences equal after truncation are one group; a prefix of another is not", () => {
    const t = table(["MKVLA", "MKVLW", "MKV", "MKVL"], 4);
    expect(groups(t)).toEqual([[0, 1, 3], [2]]);
  });

  test("only the subset is grouped: a copy whose first is done becomes a first", () => {
    const t = table(["MKV", "AAA", "MKV", "MKV", "AAA"]);
    expect(groups(t, Uint32Array.of(1, 2, 3))).toEqual([[1], [2, 3]]);
    expect(groups(t, new Uint32Array(0))).toEqual([]);
  });

  test("sequences whose hashes collide are told apart by their tokens", () => {
    // A 32-bit hash collides among a few 100k sequences (birthday bound): find two of length 8.
    let seed = 3;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let k = 0; k < 2_000_000 && !pair; k++) {
      const s = Array.from({ length: 8 }, () => "ACDEFGHIKLMNPQRSTVWY"[rnd(20)]).join("");
      const h = hashTokens(toks(s));
      const other = seen.get(h);
      if (other !== undefined && other !== s) pair = [other, s];
      else seen.set(h, s);
    }
    expect(pair).toBeDefined();
    const [a, b] = pair!;
    expect(hashTokens(toks(a))).toBe(hashTokens(toks(b)));
    expect(groups(table([a, b, a, b]))).toEqual([[0, 2], [1, 3]]);
  });

  test("agrees with a string map on thousands of short sequences (slot collisions, probing)", () => {
    let seed = 11;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const seqs = Array.from({ length: 5000 }, () => Array.from({ length: 1 + rnd(3) }, () => "ACDEFGHIKL"[rnd(10)]).join(""));
    const byString = new Map<string, number[]>();
    seqs.forEach((s, i) => byString.set(s, [...(byString.get(s) ?? []), i]));
    const t = table(seqs);
    expect(groups(t)).toEqual([...byString.values()]);
  });
});

describe("withCopies", () => {
  // Batch of records 3 and 1 (in that order); record 3 has copies 4 and 6, record 1 has none.
  const t = table(["A", "MK", "W", "MKV", "MKV", "Y", "MKV"]);
  const g = groupIdentical(t, Uint32Array.of(1, 3, 4, 6));
  const lengths = t.lengths();
  const dim = 2;
  const records = Uint32Array.of(3, 1);
  const mean = Float32Array.of(30, 31, 10, 11);
  // per-residue rows: record 3 (3 residues) then record 1 (2 residues)
  const residues = Float16Array.of(300, 301, 302, 303, 304, 305, 100, 101, 102, 103);
  const result: BatchResult = {
    batch: 7,
    ms: 1,
    nonFinite: 0,
    outputs: [
      { kind: "mean", layer: 2, offset: 0, rows: 2, dim, dtype: "float32", data: mean },
      { kind: "residues", layer: 2, offset: 0, rows: 5, dim, dtype: "float16", data: residues },
    ],
  };

  test("appends each copy and its first's rows, per output and dtype", () => {
    const out = withCopies(records, result, g, lengths);
    expect(Array.from(out.records)).toEqual([3, 1, 4, 6]);
    const [m, r] = out.result.outputs;
    expect(m!.rows).toBe(4);
    expect(Array.from(m!.data)).toEqual([30, 31, 10, 11, 30, 31, 30, 31]);
    expect(r!.rows).toBe(11);
    expect(r!.data).toBeInstanceOf(Float16Array);
    const first = [300, 301, 302, 303, 304, 305];
    expect(Array.from(r!.data)).toEqual([...Array.from(residues), ...first, ...first]);
    expect(out.result.batch).toBe(7);
    // The worker's views are left as they were.
    expect(result.outputs[0]!.rows).toBe(2);
  });

  test("a batch without copies is returned as it is", () => {
    const lone = Uint32Array.of(1);
    const res = { ...result, outputs: [{ ...result.outputs[0]!, rows: 1, data: mean.subarray(2) }] };
    const out = withCopies(lone, res, g, lengths);
    expect(out.records).toBe(lone);
    expect(out.result).toBe(res);
  });
});

describe("embed run --dedup (fake workers)", () => {
  const tmp = mkdtempSync(join(tmpdir(), "embed-dedup-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const FASTA = join(tmp, "in.fa");
  const N = 300;
  let distinct = 0;
  let reference: Record<string, string>;
  let plainBatches = 0;
  const args = (out: string, extra: string[] = []) => [
    "run", FASTA, "-o", out, "--devices", "cpu", "--max-tokens", "300", "--shard-records", "20", "--truncate", "30",
    "--include", "mean,per-residue", ...extra,
  ];
  const spawn = (argv: string[]) =>
    Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdout: "pipe", stderr: "pipe", env: fakeRunEnv({ slowMs: 20 }) });
  async function run(argv: string[]) {
    const p = spawn(argv);
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, stdout, stderr };
  }

  beforeAll(async () => {
    // 300 records drawn from 90 sequences of 5-50 residues; some differ only past residue 30.
    let seed = 5;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const aa = "ACDEFGHIKLMNPQRSTVWY";
    const pool = Array.from({ length: 90 }, () => Array.from({ length: 5 + rnd(46) }, () => aa[rnd(20)]).join(""));
    for (let k = 0; k < 10; k++) pool.push(pool[k]!.padEnd(31, "A").slice(0, 30) + "W".repeat(k + 1));
    const seqs = Array.from({ length: N }, () => pool[rnd(pool.length)]!);
    distinct = new Set(seqs.map((s) => s.slice(0, 30))).size;
    writeFileSync(FASTA, seqs.map((s, i) => `>rec${i}\n${s}\n`).join(""));
    const out = join(tmp, "plain");
    const r = await run(args(out));
    expect(r.code).toBe(0);
    plainBatches = JSON.parse(r.stdout).batches;
    reference = storeContent(out);
  });

  test("the store equals a plain run's; each sequence embedded once", async () => {
    expect(distinct).toBeLessThan(N / 2);
    const out = join(tmp, "dedup");
    const r = await run(args(out, ["--dedup"]));
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.records).toBe(N);
    expect(summary.identical).toBe(N - distinct);
    expect(summary.batches).toBeLessThan(plainBatches);
    expect(r.stderr).toContain(`${N} records to write, ${N - distinct} of them copies of an identical sequence (embedded once)`);
    expect(storeContent(out)).toEqual(reference);
    const manifest = JSON.parse(await Bun.file(join(out, "manifest.json")).text());
    expect(manifest.run.identical).toBe(N - distinct);
    // NDJSON for pipelines: the start event says how many are copies; batch events count them in.
    const json = await run(args(join(tmp, "dedup-json"), ["--dedup", "--json"]));
    expect(json.code).toBe(0);
    const events = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ type: "start", records: N, todo: N, identical: N - distinct });
    expect(events.filter((e) => e.type === "batch").at(-1).records).toBe(N);
  });

  test("--dry --dedup plans the distinct sequences only", async () => {
    const r = await run(["run", FASTA, "--dry", "--devices", "cpu", "--truncate", "30", "--dedup"]);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.records.records).toBe(N);
    expect(plan.identical).toBe(N - distinct);
    expect(plan.plan.records).toBe(distinct);
  });

  test("killed at random moments and resumed (with or without --dedup), the store equals a plain run's", async () => {
    for (let trial = 0; trial < 3; trial++) {
      const out = join(tmp, `killed-${trial}`);
      for (const delay of [150 + Math.random() * 800, 100 + Math.random() * 500]) {
        const p = spawn(args(out, ["--dedup"]));
        await Bun.sleep(delay);
        p.kill("SIGKILL");
        await p.exited;
      }
      if (!existsSync(join(out, "manifest.json"))) {
        // The last trial resumes without --dedup: grouping changes no output, so mixing is allowed.
        const r = await run(args(out, trial === 2 ? [] : ["--dedup"]));
        expect(r.stderr).not.toContain("error");
        expect(r.code).toBe(0);
      }
      expect(storeContent(out)).toEqual(reference);
    }
  });
});
