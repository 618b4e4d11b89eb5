/**
 * Faults that leave a worker alive but useless, and a disk that fills up: the CLI with fake
 * workers (real protocol, no torch). A worker that hangs in a batch or stops answering pings is
 * killed by the health check and replaced; an exception in a batch replaces the worker and retries
 * the batch once; one that ignores `shutdown` is stopped with SIGTERM,
 * then SIGKILL; a wrong row count fails the run; a write that fails mid-batch leaves a shard that
 * commits without that batch; Ctrl-C to the whole process group still finishes the batches in
 * flight. Every finished store must equal an uninterrupted run's, byte for byte.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawn as spawnChild } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { fakeRunEnv, randomFasta, runText, storeContent } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-faults-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const CLI = join(PACKAGE_ROOT, "src", "cli.ts");
const args = (out: string, extra: string[] = []) => ["run", FASTA, "-o", out, "--devices", "cpu", "--max-tokens", "400", "--include", "mean,per-residue", "--shard-records", "25", ...extra];
/** Health checks at test speed: every 200 ms, pings answered within 1.5 s. */
const FAST_HEALTH = { EMBED_HEALTH_INTERVAL_MS: "200", EMBED_PING_TIMEOUT_MS: "1500" };

function run(argv: string[], env = fakeRunEnv(), prefix: string[] = []) {
  return runText([...prefix, "bun", CLI, ...argv], env);
}

/** Whether a fake worker still runs whose environment holds `marker` (in its EMBED_FAKE; the CLI
 * that started it holds the same environment, so the command line must be the worker's too). */
function running(marker: string): boolean {
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "latin1").includes("fake_worker") && readFileSync(`/proc/${pid}/environ`, "latin1").includes(marker)) return true;
    } catch {} // gone meanwhile, or not ours to read
  }
  return false;
}

let reference: Record<string, string>;

beforeAll(async () => {
  writeFileSync(FASTA, randomFasta(300));
  const out = join(tmp, "reference");
  const r = await run(args(out));
  expect(r.code).toBe(0);
  reference = storeContent(out);
});

/** A run that lost its worker once and finished anyway: exit 0, one replacement, the reference store. */
function expectReplacedOnce(r: Awaited<ReturnType<typeof run>>, out: string): void {
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).restarts).toBe(1);
  expect(storeContent(out)).toEqual(reference);
}

describe("health checks", () => {
  test("a worker that hangs in a batch is killed after its batch limit and replaced", async () => {
    const out = join(tmp, "hang");
    const r = await run(args(out), fakeRunEnv({ hangOn: 3, hangOnce: join(tmp, "hung-once") }, { ...FAST_HEALTH, EMBED_BATCH_TIMEOUT_MS: "1000" }));
    // The limit is the larger of EMBED_BATCH_TIMEOUT_MS and 20x the slowest batch so far (the fake
    // worker's ~50 ms batches make that 1.0-1.2 s on a busy machine).
    const limit = r.stderr.match(/no result for \d+\.\d s with \d batch\(es\) in flight \(limit (\d+\.\d) s\); killing it/);
    expect(limit).not.toBeNull();
    expect(Number(limit![1])).toBeGreaterThanOrEqual(1.0);
    expect(r.stderr).toContain("starting a replacement");
    expectReplacedOnce(r, out);
  });

  test("a worker that stops answering pings is killed and replaced", async () => {
    const out = join(tmp, "deaf");
    const r = await run(args(out), fakeRunEnv({ deafAfter: 3, deafOnce: join(tmp, "deaf-once") }, FAST_HEALTH));
    expect(r.stderr).toContain("no answer to a health-check ping within 1.5 s; killing it");
    expectReplacedOnce(r, out);
  });

  test("healthy workers are left alone by frequent checks", async () => {
    const out = join(tmp, "healthy");
    const r = await run(args(out), fakeRunEnv({}, FAST_HEALTH));
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain("killing it");
    expect(JSON.parse(r.stdout).restarts).toBe(0);
  });

  test("a bad health setting is refused before anything starts", async () => {
    const r = await run(args(join(tmp, "badenv")), fakeRunEnv({}, { EMBED_BATCH_TIMEOUT_MS: "soon" }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("EMBED_BATCH_TIMEOUT_MS=soon: not a positive number of milliseconds");
    expect(existsSync(join(tmp, "badenv"))).toBe(false);
  });
});

describe("exceptions in a batch", () => {
  test("once: the worker is replaced and the batch retried; the store equals the reference", async () => {
    const out = join(tmp, "raise-once");
    const r = await run(args(out), fakeRunEnv({ raiseOn: 4, raiseOnce: join(tmp, "raised-once") }));
    expect(r.stderr).toMatch(/ValueError: fake failure on batch 4 \(records "rec\d+" \(\d+ aa\)/);
    expect(r.stderr).toContain("replacing the worker and retrying the batch once");
    expectReplacedOnce(r, out);
  });

  test("twice on the same batch: the run fails naming its records; what finished is kept for a resume", async () => {
    const out = join(tmp, "raise-always");
    const r = await run(args(out), fakeRunEnv({ raiseOn: 4 }));
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("batch 4 failed twice, on two workers");
    expect(r.stderr).toMatch(/the failing records: records? "rec\d+"/);
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
    const again = await run(args(out));
    expect(again.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
  });
});

describe("worker events", () => {
  test("--json: a lowered budget and a replacement are worker events in the NDJSON stream", async () => {
    const out = join(tmp, "events");
    const r = await run(args(out, ["--json"]), fakeRunEnv({ oomAbove: 150, hangOn: 0, hangOnce: join(tmp, "events-hung-once") }, { ...FAST_HEALTH, EMBED_BATCH_TIMEOUT_MS: "1000" }));
    expect(r.code).toBe(0);
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const workers = events.filter((e) => e.type === "worker");
    expect(workers.some((e) => e.state === "budget-lowered" && e.worker === "cpu" && /at most 1\d\d tokens/.test(e.detail))).toBe(true);
    expect(workers.some((e) => e.state === "replaced" && e.worker === "cpu")).toBe(true);
    expect(events.at(-1).type).toBe("summary");
    // Splits counted once: the last batch event says all are done, and the summary agrees.
    const batches = events.filter((e) => e.type === "batch");
    expect(batches.at(-1).batches).toBe(batches.at(-1).totalBatches);
    expect(events.at(-1).batches).toBe(batches.length);
    expect(events.at(-1).splits).toBeGreaterThan(0);
    expect(storeContent(out)).toEqual(reference);
  });
});

describe("shutdown and interrupts", () => {
  test("a worker that ignores shutdown and SIGTERM is killed with SIGKILL; the run still ends", async () => {
    const out = join(tmp, "stubborn");
    const marker = `stubborn-${process.pid}-${Date.now()}`;
    const r = await run(args(out), fakeRunEnv({ stubborn: true, marker }));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/still running 5 s after shutdown; sending SIGTERM/);
    expect(r.stderr).toMatch(/still running 3 s after SIGTERM; sending SIGKILL/);
    expect(storeContent(out)).toEqual(reference);
    expect(running(marker)).toBe(false);
  });

  test("Ctrl-C while the models load: exit 130 at once with the resume hint, nothing written, no worker left", async () => {
    const out = join(tmp, "ctrl-c-loading");
    const marker = `loading-${process.pid}-${Date.now()}`;
    const p = spawnChild("bun", [CLI, ...args(out)], { env: fakeRunEnv({ readyAfterMs: 4000, marker }), detached: true, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr!.on("data", (d) => (stderr += d));
    const exited = new Promise<number>((r) => p.on("exit", (code) => r(code ?? -1)));
    for (let i = 0; i < 300 && !running(marker); i++) await Bun.sleep(10);
    await Bun.sleep(500); // past the worker's start-up: it is loading (and ignores SIGINT from here on)
    const t0 = performance.now();
    process.kill(-p.pid!, "SIGINT");
    expect(await exited).toBe(130);
    expect(performance.now() - t0).toBeLessThan(3000); // not after the 4 s load
    expect(stderr).toContain("rerun the same command to resume");
    expect(existsSync(join(out, "shards"))).toBe(false);
    for (let i = 0; i < 100 && running(marker); i++) await Bun.sleep(100);
    expect(running(marker)).toBe(false);
  });

  test("Ctrl-C to the whole process group: workers keep going, in-flight batches are committed, exit 130, resumable", async () => {
    const out = join(tmp, "ctrl-c");
    // A terminal sends SIGINT to every process of the foreground group: the orchestrator and its workers.
    const p = spawnChild("bun", [CLI, ...args(out)], { env: fakeRunEnv({ slowMs: 80 }), detached: true, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr!.on("data", (d) => (stderr += d));
    const exited = new Promise<number>((r) => p.on("exit", (code) => r(code ?? -1)));
    for (let i = 0; i < 400 && !existsSync(join(out, "shards")); i++) await Bun.sleep(10);
    await Bun.sleep(300);
    process.kill(-p.pid!, "SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toContain("finishing the batches in flight");
    expect(stderr).not.toContain("died");
    expect(stderr).not.toContain("KeyboardInterrupt");
    const again = await run(args(out));
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumed).toBeGreaterThan(0);
    expect(storeContent(out)).toEqual(reference);
  });
});

describe("counts and writes", () => {
  test("a worker that returns a wrong row count fails the run; nothing of that batch is kept; the same command resumes", async () => {
    const out = join(tmp, "rows");
    const r = await run(args(out), fakeRunEnv({ wrongRows: 5 }));
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/batch 5: \d+ mean rows, expected \d+/);
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
    const again = await run(args(out));
    expect(again.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
  });

  test("a write that fails mid-batch (file size limit, as a full disk) rolls the batch back; the same command resumes", async () => {
    const out = join(tmp, "full");
    // One shard for the whole run, so its per-residue file passes the limit part way; SIGXFSZ
    // ignored, so the write fails with EFBIG as it would with ENOSPC on a full disk.
    const big = args(out, ["--shard-records", "100000"]);
    const r = await run(big, fakeRunEnv(), ["bash", "-c", `trap '' XFSZ; ulimit -f 128; exec "$@"`, "limited"]);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/writing .*residues\.layer4\.f32\.partial failed: EFBIG/);
    expect(r.stderr).toContain("rerun the same command to resume");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
    const again = await run(big);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumed).toBeGreaterThan(0);
    expect(storeContent(out)).toEqual(reference);
  });
});
