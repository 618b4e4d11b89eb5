/**
 * Nothing lost, nothing duplicated: the CLI with fake workers (real protocol, no torch) killed
 * with SIGKILL at random moments and resumed, interrupted with SIGINT, workers crashing
 * mid-batch, batches running out of memory, and refusals to mix different runs in one store.
 * Every finished store must equal an uninterrupted run's, byte for byte.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { fakeRunEnv, randomFasta, storeContent } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-resume-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const N = 300;

const env = (fake: Record<string, unknown> = {}) => fakeRunEnv(fake);

const args = (out: string, extra: string[] = []) => ["run", FASTA, "-o", out, "--devices", "cpu", "--max-tokens", "400", "--shard-records", "25", ...extra];

function spawn(argv: string[], e = env()) {
  return Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdout: "pipe", stderr: "pipe", env: e });
}

async function run(argv: string[], e = env()) {
  const p = spawn(argv, e);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

const content = storeContent;

/** Wait (bounded) until the run has committed at least one shard. */
async function firstShard(out: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (existsSync(join(out, "shards")) && readdirSync(join(out, "shards")).some((f) => f.endsWith(".meta.json"))) return;
    await Bun.sleep(10);
  }
  throw new Error(`no shard committed in ${out}`);
}

async function fakeWorkersGone(): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const r = Bun.spawnSync(["pgrep", "-f", `${tmp}|fake_worker`]);
    if (r.exitCode !== 0) return true;
    await Bun.sleep(50);
  }
  return false;
}

let reference: Record<string, string>;

beforeAll(async () => {
  writeFileSync(FASTA, randomFasta(N));
  const out = join(tmp, "reference");
  const r = await run(args(out, ["--include", "mean,per-residue"]));
  expect(r.code).toBe(0);
  reference = content(out);
  expect(Object.keys(reference)).toEqual(["ids.txt", "mean.layer4.npy", "residues.layer4.npy", "residues.offsets.npy"]);
  expect(readFileSync(join(out, "ids.txt"), "utf8").split("\n").filter(Boolean).length).toBe(N);
});

describe("resume after kill -9", () => {
  test("killed at random moments, each resumed run equals the uninterrupted one", async () => {
    for (let trial = 0; trial < 5; trial++) {
      const out = join(tmp, `killed-${trial}`);
      // Kill twice at random moments, then let it finish.
      // (An uninterrupted run takes about 1.5 s here.)
      for (const delay of [150 + Math.random() * 1000, 100 + Math.random() * 700]) {
        const p = spawn(args(out, ["--include", "mean,per-residue"]));
        await Bun.sleep(delay);
        p.kill("SIGKILL");
        await p.exited;
      }
      expect(await fakeWorkersGone()).toBe(true);
      // A kill that came after the end leaves a complete store, which a rerun would refuse.
      if (!existsSync(join(out, "manifest.json"))) {
        const r = await run(args(out, ["--include", "mean,per-residue"]));
        expect(r.stderr).not.toContain("error");
        expect(r.code).toBe(0);
      }
      expect(content(out)).toEqual(reference);
      expect(existsSync(join(out, "shards"))).toBe(false);
      expect(existsSync(join(out, "run.json"))).toBe(false);
    }
  });

  test("an unfinished store refuses a run with different options or input", async () => {
    const out = join(tmp, "mixed");
    const p = spawn(args(out, ["--include", "mean,per-residue"]));
    await firstShard(out);
    p.kill("SIGKILL");
    await p.exited;
    const other = await run(args(out, ["--include", "mean"]));
    expect(other.code).toBe(6);
    expect(other.stderr).toContain("unfinished run with different outputs (--include)");
    expect(other.stderr).toContain("--overwrite");
  });
});

describe("interrupts and faults", () => {
  test("SIGINT finishes in-flight batches, commits, exits 130; the same command resumes", async () => {
    const out = join(tmp, "sigint");
    const p = spawn(args(out, ["--include", "mean,per-residue"]), env({ slowMs: 80 }));
    await firstShard(out);
    p.kill("SIGINT");
    const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(130);
    expect(stderr).toContain("rerun the same command to resume");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
    expect(readdirSync(join(out, "shards")).some((f) => f.endsWith(".meta.json"))).toBe(true);
    const r = await run(args(out, ["--include", "mean,per-residue"]));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).resumed).toBeGreaterThan(0);
    expect(content(out)).toEqual(reference);
  });

  test("a worker killed mid-batch is replaced; every id exactly once", async () => {
    const out = join(tmp, "crash");
    const r = await run(args(out, ["--include", "mean,per-residue"]), env({ crashAfter: 4, crashOnce: join(tmp, "crashed-once") }));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).restarts).toBe(1);
    expect(r.stderr).toContain("starting a replacement");
    expect(content(out)).toEqual(reference);
  });

  test("a worker that keeps dying fails the run after the restart bound", async () => {
    const out = join(tmp, "crashloop");
    const r = await run(args(out, ["--max-restarts", "2"]), env({ crashAfter: 1 }));
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("giving up");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
  });

  test("out of memory: batches are split and retried, the worker's budget lowered", async () => {
    const out = join(tmp, "oom");
    // Planned batches are up to 400 tokens; the fake worker fails any batch over 150.
    const r = await run(args(out, ["--include", "mean,per-residue"]), env({ oomAbove: 150, slowMs: 10 }));
    expect(r.code).toBe(0);
    expect(content(out)).toEqual(reference);
    const ooms = [...r.stderr.matchAll(/cpu: out of memory on a batch of (\d+) tokens; split in two, budget lowered to (\d+)/g)].map((m) => ({
      tokens: Number(m[1]),
      budget: Number(m[2]),
    }));
    // Each failure halves that worker's budget to half the failed batch.
    expect(ooms.length).toBeGreaterThan(0);
    for (const o of ooms) {
      expect(o.tokens).toBeGreaterThan(150);
      expect(o.budget).toBe(Math.floor(o.tokens / 2));
    }
    expect(ooms.at(-1)!.budget).toBeLessThanOrEqual(150);
    // With the budget lowered, later batches over it are split before they are sent: a handful of
    // failures (two batches in flight, two halvings: about 3 here) instead of one per batch over
    // 150 tokens (84 when the budget is not lowered), and more splits than failures.
    expect(ooms.length).toBeLessThanOrEqual(8);
    const { splits } = JSON.parse(r.stdout);
    expect(splits).toBeGreaterThan(ooms.length);
  });

  test("out of memory on a single sequence fails naming it", async () => {
    const r = await run(args(join(tmp, "oom1")), env({ oomAbove: 40 }));
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/single sequence \(record "rec\d+" \(\d+ aa\)\)/);
  });

  test("a worker that never becomes ready fails the run after the READY timeout", async () => {
    const out = join(tmp, "hang");
    const r = await run(args(out), { ...env({ failStart: "hang" }), EMBED_READY_TIMEOUT_MS: "1500" });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("not ready after 1.5 s");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
    expect(await fakeWorkersGone()).toBe(true);
  });

  test("an unwritable output directory fails cleanly", async () => {
    const file = join(tmp, "a-file");
    writeFileSync(file, "x");
    const r = await run(args(join(file, "sub")));
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("hint:");
    expect(await fakeWorkersGone()).toBe(true);
  });
});
