/** The TypeScript API with the real worker and the test model: one Embedder reused across calls. */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { Embedder, embed, InputError, type Embedding } from "../src/index.ts";
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

  test("bad records are InputErrors naming the record", async () => {
    const err = await all(e.embed([{ id: "ok", sequence: "MKV" }, { id: "bad", sequence: "MK1" }])).catch((x) => x);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toContain('"bad"');
  });

  test("the one-shot embed() starts and stops its own workers", async () => {
    const got = [];
    for await (const x of embed([{ id: "a", sequence: "MKTAYIAKQR" }], { model: "test-tiny" })) got.push(x);
    expect(got.length).toBe(1);
    expect(got[0]!.id).toBe("a");
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
