/** The TypeScript API with the real worker and the test model: one Embedder reused across calls. */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Embedder, embed, InputError, type Embedding } from "../src/index.ts";
import { OptionsError } from "../src/errors.ts";
import { PACKAGE_ROOT } from "../src/config.ts";

setDefaultTimeout(120_000);
const EXAMPLE = join(PACKAGE_ROOT, "examples", "example.fasta");
let e: Embedder;
beforeAll(async () => {
  e = await Embedder.create({ model: "test-tiny", include: "mean,per-residue", layers: "0,-1" });
});
afterAll(() => e.close());

async function all(it: AsyncIterable<Embedding>): Promise<Embedding[]> {
  const out: Embedding[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe("TypeScript API", () => {
  test("a FASTA path: one embedding per record, layer and kind", async () => {
    const got = await all(e.embed(EXAMPLE));
    expect(got.length).toBe(6 * 2 * 2);
    const mean = got.filter((x) => x.kind === "mean" && x.layer === 2);
    expect(mean.map((x) => x.index).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(mean.every((x) => x.vector.length === 64)).toBe(true);
    const hba = got.find((x) => x.kind === "residues" && x.id === "sp|P69905|HBA_HUMAN" && x.layer === 2)!;
    expect(hba.vector.length).toBe(142 * 64);
    expect(e.info.model.dim).toBe(64);
  });

  test("FASTA text, iterables and async iterables give the same vectors as the file (workers reused)", async () => {
    const byId = (xs: Embedding[]) => new Map(xs.filter((x) => x.kind === "mean" && x.layer === 2).map((x) => [x.id, Array.from(x.vector)]));
    const fromFile = byId(await all(e.embed(EXAMPLE)));
    const text = await Bun.file(EXAMPLE).text();
    const fromText = byId(await all(e.embed(text)));
    const records = [{ id: "read_0001_frame+1", sequence: "KVLSTEQRLWAAGHQ" }, { id: "short_1", sequence: "m" }];
    const fromIter = byId(await all(e.embed(records)));
    async function* gen() {
      yield* records;
    }
    const fromAsync = byId(await all(e.embed(gen())));
    expect(fromText).toEqual(fromFile);
    for (const m of [fromIter, fromAsync]) {
      for (const [id, v] of m) {
        const ref = fromFile.get(id)!;
        for (let i = 0; i < v.length; i++) expect(Math.abs(v[i]! - ref[i]!)).toBeLessThan(1e-5);
      }
    }
  });

  test("dedup: repeated sequences come back under every id, equal to embedding each", async () => {
    const seqs = ["MKTAYIAKQR", "KVLSTEQRLW", "MKTAYIAKQR", "GHQ", "KVLSTEQRLW", "MKTAYIAKQR"];
    const records = seqs.map((sequence, i) => ({ id: `s${i}`, sequence }));
    const d = await Embedder.create({ model: "test-tiny", include: "mean,per-residue", layers: "0,-1", dedup: true });
    try {
      const got = await all(d.embed(records));
      const plain = await all(e.embed(records));
      expect(got.length).toBe(plain.length);
      const key = (x: Embedding) => `${x.id} ${x.layer} ${x.kind}`;
      const ref = new Map(plain.map((x) => [key(x), x]));
      for (const x of got) {
        const r = ref.get(key(x))!;
        expect(x.index).toBe(r.index);
        expect(x.vector.length).toBe(r.vector.length);
        let worst = 0;
        for (let i = 0; i < x.vector.length; i++) worst = Math.max(worst, Math.abs(x.vector[i]! - r.vector[i]!));
        expect(worst).toBeLessThan(1e-5);
      }
      // Copies carry their first's vectors exactly.
      const of = (id: string, kind: string) => got.find((x) => x.id === id && x.kind === kind && x.layer === 2)!.vector;
      for (const kind of ["mean", "residues"]) {
        expect(Array.from(of("s2", kind))).toEqual(Array.from(of("s0", kind)));
        expect(Array.from(of("s5", kind))).toEqual(Array.from(of("s0", kind)));
        expect(Array.from(of("s4", kind))).toEqual(Array.from(of("s1", kind)));
      }
    } finally {
      await d.close();
    }
  });

  test("bad records are InputErrors naming the record", async () => {
    const err = await all(e.embed([{ id: "ok", sequence: "MKV" }, { id: "bad", sequence: "MK1" }])).catch((x) => x);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toContain('"bad"');
  });

  test("bad FASTA text is an InputError naming <text> and the line; no temp file is written", async () => {
    const before = readdirSync(tmpdir()).filter((f) => f.startsWith("embed-api-"));
    const err = await all(e.embed(">ok\nMKV\n>bad\nMK1\n")).catch((x) => x);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toContain("<text>:4");
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith("embed-api-"))).toEqual(before);
  });

  test("options are checked before a worker starts: --layers against the model's depth", async () => {
    const err = await Embedder.create({ model: "test-tiny", layers: "5" }).catch((x) => x);
    expect(err).toBeInstanceOf(OptionsError);
    expect(err.message).toContain("layer 5 is out of range for a 2-layer model");
  });

  test("info names the compute precision", () => {
    expect(e.info.precision).toBe("fp32");
  });

  test("the one-shot embed() starts and stops its own workers", async () => {
    const got = [];
    for await (const x of embed([{ id: "a", sequence: "MKTAYIAKQR" }], { model: "test-tiny" })) got.push(x);
    expect(got.length).toBe(1);
    expect(got[0]!.id).toBe("a");
  });
});

/**
 * Leaving a for-await loop early (break, throw) must stop the call's batches before the next call
 * on the same Embedder, and a consumer that stops pulling must stop the workers. A 64-token budget
 * packs the 24 records of 25 residues two to a batch: 12 batches, many more than the worker's 2
 * ring slots.
 */
describe("early exit and backpressure", () => {
  const records = Array.from({ length: 24 }, (_, i) => ({ id: `r${i}`, sequence: "ACDEFGHIKLMNPQRSTVWY".repeat(2).slice(i % 15, (i % 15) + 25) }));
  const BATCHES = 12;
  let small: Embedder;
  let reference: Map<string, number[]>;
  const byId = (xs: Embedding[]) => new Map(xs.map((x) => [x.id, Array.from(x.vector)]));
  /** Batches the worker has finished since it started (its own count, over the control channel). */
  const workerBatches = async () => (await small["workers"][0]!.ping()).batches;

  beforeAll(async () => {
    small = await Embedder.create({ model: "test-tiny", maxTokens: 64 });
    reference = byId(await all(small.embed(records)));
    expect(reference.size).toBe(24);
  });
  afterAll(() => small?.close());

  async function expectReusable() {
    const again = byId(await all(small.embed(records)));
    expect(again).toEqual(reference);
  }

  test("break after the first embedding: the next call on the same Embedder returns the same vectors", async () => {
    const before = await workerBatches();
    for await (const x of small.embed(records)) {
      expect(x.id).toMatch(/^r\d+$/);
      break;
    }
    // The loop's exit stopped the plan: the worker did the window's batches, not all 12.
    expect((await workerBatches()) - before).toBeLessThanOrEqual(2 * small["workers"][0]!.slots);
    await expectReusable();
  });

  test("a throw inside the loop: the error reaches the caller and the Embedder stays usable", async () => {
    const err = await (async () => {
      for await (const _ of small.embed(records)) throw new Error("consumer failed");
    })().catch((x) => x);
    expect(err.message).toBe("consumer failed");
    await expectReusable();
  });

  test("an AbortSignal: the batches in flight come out, then the reason is thrown; the Embedder stays usable", async () => {
    const ac = new AbortController();
    const err = await (async () => {
      for await (const _ of small.embed(records, { signal: ac.signal })) ac.abort(new Error("stop"));
    })().catch((x) => x);
    expect(err.message).toBe("stop");
    await expectReusable();
  });

  test("a consumer that stops pulling stops the workers within a window of batches", async () => {
    const slots = small["workers"][0]!.slots;
    const before = await workerBatches();
    const t0 = performance.now();
    const it = small.embed(records)[Symbol.asyncIterator]();
    const got = [(await it.next()).value as Embedding];
    // Stalled after pulling one batch: the workers fill the window (`slots` finished batches wait)...
    while ((await workerBatches()) - before < 1 + slots);
    // ...and then send nothing more. A negative needs an interval: 4x the time those batches took,
    // enough for all 12 without backpressure; a longer wait could only catch more, never flake.
    await Bun.sleep(4 * (performance.now() - t0));
    // 1 pulled + up to `slots` - 1 waiting when the last lanes passed the gate + `slots` in flight.
    expect((await workerBatches()) - before).toBeLessThanOrEqual(2 * slots);
    for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
    expect(byId(got)).toEqual(reference);
    expect((await workerBatches()) - before).toBe(BATCHES);
  });

  test("break out of the one-shot embed(): its workers are stopped, none is started after", async () => {
    /** This test process's worker children, as "pid args" lines. */
    const children = () => new Set(Bun.spawnSync(["ps", "-o", "pid=,args=", "--ppid", String(process.pid)]).stdout.toString().split("\n").filter((l) => l.includes("embed_worker")));
    const before = children();
    for await (const _ of embed(records, { model: "test-tiny", maxTokens: 64 })) break;
    // Before the fix the abandoned run saw its stopped worker as dead and had started another by now.
    expect([...children()].filter((p) => !before.has(p))).toEqual([]);
  });
});

describe("examples/neighbours.ts", () => {
  test("runs with the test model and prints a nearest neighbour for every protein", async () => {
    const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "examples", "neighbours.ts")], { stdout: "pipe", stderr: "pipe" });
    const [out, , code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(0);
    const lines = out.trim().split("\n");
    expect(lines[0]).toContain("6 proteins, test-tiny layer 2, dim 64");
    expect(lines.slice(1).length).toBe(6);
    for (const l of lines.slice(1)) expect(l).toMatch(/\tnearest: \S+\tcosine -?[01]\.\d{4}$/);
  });
});
