/**
 * Job arrays: `embed run --slice I/N` embeds slice I of N of an input, and `embed merge` joins the
 * N stores into one equal, byte for byte, to a single run's (fake workers: vectors depend only on
 * a record's tokens). Then every way a merge must refuse: a slice missing or given twice, a store
 * of other options or another input, an unfinished or unsharded store, an existing output.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { fakeRunEnv, randomFasta, storeContent } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-merge-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const N = 301; // not a multiple of 3: the slices differ in size
const OPTS = ["--devices", "cpu", "--max-tokens", "400", "--truncate", "40", "--duplicate-ids", "rename", "--include", "mean,bos,per-residue"];

async function cli(argv: string[], env = fakeRunEnv({ slowMs: 5 })) {
  const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdout: "pipe", stderr: "pipe", env });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}
const part = (i: number) => join(tmp, `part-${i}`);
const manifest = (dir: string) => JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));

let reference: Record<string, string>;
const jobs: { records: number; slice: string; truncated: number; renamed: number }[] = [];
let jobStderr: string[] = [];

beforeAll(async () => {
  // Random records (5-64 residues, so some pass --truncate 40), three of them with a repeated id.
  const text = randomFasta(N - 3) + ">rec5 again\nMKV\n>rec9\nMKVLA\n>rec5\nW\n";
  writeFileSync(FASTA, text);
  const ref = await cli(["run", FASTA, "-o", join(tmp, "whole"), ...OPTS]);
  expect(ref.code).toBe(0);
  reference = storeContent(join(tmp, "whole"));
  expect(Object.keys(reference)).toEqual(["bos.layer4.npy", "ids.txt", "mean.layer4.npy", "residues.layer4.npy", "residues.offsets.npy"]);
  // Job 3 uses --shard, the deprecated name of --slice: it still works, and says so.
  const runs = await Promise.all([1, 2, 3].map((i) => cli(["run", FASTA, "-o", part(i), i === 3 ? "--shard" : "--slice", `${i}/3`, ...OPTS])));
  jobStderr = runs.map((r) => r.stderr);
  for (const r of runs) {
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    jobs.push(JSON.parse(r.stdout));
  }
});

describe("embed run --slice I/N", () => {
  test("each job embeds every N-th record from its index, and counts its own slice", () => {
    expect(jobs.map((j) => j.records)).toEqual([101, 100, 100]);
    expect(jobs.map((j) => j.slice)).toEqual(["1/3", "2/3", "3/3"]);
    const whole = manifest(join(tmp, "whole")).counts;
    expect(whole.truncated).toBeGreaterThan(0);
    expect(whole.renamed).toBe(3);
    expect(jobs.reduce((a, j) => a + j.truncated, 0)).toBe(whole.truncated);
    expect(jobs.reduce((a, j) => a + j.renamed, 0)).toBe(3);
    const ids = readFileSync(join(part(2), "ids.txt"), "utf8").split("\n").filter(Boolean);
    expect(ids.slice(0, 3)).toEqual(["rec1", "rec4", "rec7"]);
    // The store records the whole input, for the merge to check.
    const m = manifest(part(2));
    expect(m.slice).toMatchObject({ index: 2, count: 3, records: N, recordsSha256: manifest(join(tmp, "whole")).recordsSha256 });
    expect(m.slice.counts).toEqual(whole);
    expect(m.shard).toBeUndefined();
  });

  test("--shard I/N still works as a deprecated alias, said once on stderr", () => {
    expect(manifest(part(3)).slice).toMatchObject({ index: 3, count: 3 });
    expect(jobStderr[2]!.match(/--shard I\/N is deprecated/g)?.length).toBe(1);
    expect(jobStderr[0]).not.toContain("deprecated");
  });

  test("--slice and --shard that disagree are a bad option", async () => {
    const r = await cli(["run", FASTA, "--dry", "--slice", "1/3", "--shard", "2/3"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--slice 1/3 and --shard 2/3 disagree");
  });

  test("embed inspect names a job's slice and how to join it", async () => {
    const r = await cli(["inspect", part(2), "--json"]);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.slice).toEqual({ index: 2, count: 3, of: N });
    expect(info.hint).toContain("embed merge");
  });

  test("--dry plans the slice only", async () => {
    const r = await cli(["run", FASTA, "--dry", "--slice", "3/3", ...OPTS]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).plan.records).toBe(100);
  });

  test("a bad --slice is a bad option", async () => {
    for (const bad of ["0/3", "4/3", "2", "a/b", "1/0"]) {
      const r = await cli(["run", FASTA, "--dry", "--slice", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--slice: "${bad}" is not I/N with 1 ≤ I ≤ N`);
    }
  });

  test("an unfinished job's store refuses another slice", async () => {
    const out = join(tmp, "unfinished");
    const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", FASTA, "-o", out, "--slice", "1/3", "--shard-records", "10", ...OPTS], {
      stdout: "pipe", stderr: "pipe", env: fakeRunEnv({ slowMs: 200 }),
    });
    for (let i = 0; i < 300 && !(existsSync(join(out, "shards")) && readdirSync(join(out, "shards")).some((f) => f.endsWith(".meta.json"))); i++) await Bun.sleep(20);
    p.kill("SIGKILL");
    await p.exited;
    const r = await cli(["run", FASTA, "-o", out, "--slice", "2/3", ...OPTS]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("--slice");
    const m = await cli(["merge", join(tmp, "never"), out, part(2), part(3)]);
    expect(m.code).toBe(6);
    expect(m.stderr).toContain(`${out} is unfinished`);
    expect(m.stderr).toContain("rerun its job");
    // Nor is a merge written over an unfinished run.
    const into = await cli(["merge", out, part(1), part(2), part(3)]);
    expect(into.code).toBe(6);
    expect(into.stderr).toContain(`${out} holds an unfinished embed run`);
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
  });
});

describe("embed merge", () => {
  test("the merged store equals the single run's, byte for byte, and says so in its manifest", async () => {
    const out = join(tmp, "merged");
    const r = await cli(["merge", out, part(3), part(1), part(2)]); // any order
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ slices: 3, records: N });
    expect(storeContent(out)).toEqual(reference);
    const m = manifest(out);
    const whole = manifest(join(tmp, "whole"));
    expect(m.recordsSha256).toBe(whole.recordsSha256);
    expect(m.counts).toEqual(whole.counts);
    expect(m.slice).toBeUndefined();
    expect(m.shard).toBeUndefined();
    expect(m.run.merged.map((x: { slice: string }) => x.slice)).toEqual(["1/3", "2/3", "3/3"]);
    const inspect = await cli(["inspect", out, "--json"]);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ state: "complete", records: N });
    // A complete output is left alone unless --overwrite.
    const again = await cli(["merge", out, part(1), part(2), part(3)]);
    expect(again.code).toBe(6);
    expect(again.stderr).toContain("already holds a complete store");
    const over = await cli(["merge", out, part(1), part(2), part(3), "--overwrite"]);
    expect(over.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
  });

  test("in small blocks (a record larger than a block, blocks ending mid-round) the result is the same", async () => {
    const { mergeStores } = await import("../src/store/merge.ts");
    for (const blockBytes of [1, 700, 5000]) {
      const out = join(tmp, `blocks-${blockBytes}`);
      expect(mergeStores(out, [part(1), part(2), part(3)], { blockBytes }).records).toBe(N);
      expect(storeContent(out)).toEqual(reference);
    }
  });

  test("float16 stores (--out-dtype float16), two slices", async () => {
    const opts = [...OPTS, "--out-dtype", "float16"];
    const ref = await cli(["run", FASTA, "-o", join(tmp, "whole16"), ...opts]);
    expect(ref.code).toBe(0);
    for (const i of [1, 2]) expect((await cli(["run", FASTA, "-o", join(tmp, `half16-${i}`), "--slice", `${i}/2`, ...opts])).code).toBe(0);
    const r = await cli(["merge", join(tmp, "merged16"), join(tmp, "half16-2"), join(tmp, "half16-1")]);
    expect(r.code).toBe(0);
    expect(storeContent(join(tmp, "merged16"))).toEqual(storeContent(join(tmp, "whole16")));
  });

  test("slices written before the rename (manifest field `shard`) still merge and inspect", async () => {
    const old = [1, 2, 3].map((i) => {
      const dir = join(tmp, `old-${i}`);
      cpSync(part(i), dir, { recursive: true });
      const m = manifest(dir);
      const { slice, ...rest } = m;
      writeFileSync(join(dir, "manifest.json"), JSON.stringify({ ...rest, shard: slice }, null, 2) + "\n");
      return dir;
    });
    const info = JSON.parse((await cli(["inspect", old[1]!, "--json"])).stdout);
    expect(info.slice).toEqual({ index: 2, count: 3, of: N });
    const out = join(tmp, "merged-old");
    const r = await cli(["merge", out, ...old]);
    expect(r.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
  });

  test("refuses a missing slice, a slice twice, the output among the inputs, and an unsharded store", async () => {
    const out = join(tmp, "refused");
    let r = await cli(["merge", out, part(1), part(3)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("slice 2/3 missing");
    expect(r.stderr).toContain("--slice 2/3");
    r = await cli(["merge", out, part(1), part(2), part(2), part(3)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("are both slice 2/3");
    r = await cli(["merge", part(1), part(1), part(2), part(3)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is one of the stores to merge");
    r = await cli(["merge", out, join(tmp, "whole"), part(1)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("was not written with --slice I/N");
    r = await cli(["merge", out, join(tmp, "nothing-here")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is not an embed store");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
  });

  test("refuses slices of other options or of another input", async () => {
    const other = join(tmp, "other-include");
    let r = await cli(["run", FASTA, "-o", other, "--slice", "2/3", ...OPTS.slice(0, -1), "mean"]);
    expect(r.code).toBe(0);
    r = await cli(["merge", join(tmp, "x"), part(1), other, part(3)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${other} differs from ${part(1)} in outputs (--include)`);
    const fasta2 = join(tmp, "in2.fa");
    writeFileSync(fasta2, readFileSync(FASTA, "utf8").replace(">rec0 ", ">recX "));
    const moved = join(tmp, "other-input");
    r = await cli(["run", fasta2, "-o", moved, "--slice", "3/3", ...OPTS]);
    expect(r.code).toBe(0);
    r = await cli(["merge", join(tmp, "x"), part(1), part(2), moved]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("in input (records digest)");
    expect(r.stderr).toContain("one job array");
  });

  test("a damaged slice (an array cut short) fails the merge and leaves no complete store", async () => {
    const bad = join(tmp, "damaged");
    mkdirSync(bad);
    for (const f of readdirSync(part(2))) writeFileSync(join(bad, f), readFileSync(join(part(2), f)));
    const mean = join(bad, "mean.layer4.npy");
    const bytes = readFileSync(mean);
    writeFileSync(mean, bytes.subarray(0, bytes.length - 100));
    const out = join(tmp, "from-damaged");
    const r = await cli(["merge", out, part(1), bad, part(3)]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("damaged");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
  });
});

describe("embed merge OUT/ (a trailing slash, as `embed merge all/ parts/*` is typed)", () => {
  test("the manifest's load line names each file once, with no doubled slash", async () => {
    const out = join(tmp, "slashed");
    const r = await cli(["merge", `${out}/`, part(1), part(2), part(3)]);
    expect(r.code).toBe(0);
    const load = manifest(out).load as string;
    expect(load).toContain(`np.load("${out}/mean.layer4.npy"`);
    expect(load).toContain(`open("${out}/ids.txt")`);
    expect(load).not.toContain("//");
  });
});
