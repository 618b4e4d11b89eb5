/**
 * One writer per store: OUT/.embed-lock is taken before a run writes, names its holder to a second
 * writer (exit 6), is taken over when its process is gone, and is gone after every way a run ends.
 * The CLI with fake workers (real protocol, no torch).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { fakeRunEnv, randomFasta, storeContent } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-lock-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const LOCK = ".embed-lock";

const args = (out: string, extra: string[] = []) => ["run", FASTA, "-o", out, "--devices", "cpu", "--max-tokens", "400", "--shard-records", "10", ...extra];

function spawn(argv: string[], fake: Record<string, unknown> = {}) {
  return Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: fakeRunEnv(fake) });
}

async function finish(p: ReturnType<typeof spawn>) {
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr, pid: p.pid };
}

const run = (argv: string[], fake: Record<string, unknown> = {}) => finish(spawn(argv, fake));

/** Wait (bounded) until `ok()`. */
async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (ok()) return;
    await Bun.sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const committed = (out: string) => existsSync(join(out, "shards")) && readdirSync(join(out, "shards")).some((f) => f.endsWith(".meta.json"));

/** A pid that no process has now: one of a process that has exited. */
async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  return p.pid;
}

let reference: Record<string, string>;
beforeAll(async () => {
  writeFileSync(FASTA, randomFasta(150));
  const r = await run(args(join(tmp, "reference")));
  expect(r.code).toBe(0);
  reference = storeContent(join(tmp, "reference"));
});

describe("one writer per store", () => {
  test("two runs started together into one -o: one proceeds, the other exits 6 naming it; the store equals a single run's", async () => {
    const out = join(tmp, "race");
    // Slow batches: the first to take the lock is still running when the other tries.
    const [a, b] = await Promise.all([run(args(out), { slowMs: 150 }), run(args(out), { slowMs: 150 })]);
    const [winner, loser] = a.code === 0 ? [a, b] : [b, a];
    expect(winner.code).toBe(0);
    expect(loser.code).toBe(6);
    expect(loser.stderr).toContain(`${out} is in use by another embed process: pid ${winner.pid} on ${hostname()}, since `);
    expect(loser.stderr).toContain("wait for it to finish");
    expect(loser.stdout).toBe("");
    expect(storeContent(out)).toEqual(reference);
    expect(existsSync(join(out, "shards"))).toBe(false);
    expect(existsSync(join(out, "run.json"))).toBe(false);
    expect(existsSync(join(out, LOCK))).toBe(false);
  });

  test("while a run holds the store, its lock records pid, host, start time and command", async () => {
    const out = join(tmp, "held");
    const p = spawn(args(out), { slowMs: 150 });
    await until(() => existsSync(join(out, LOCK)), "the lock");
    await until(() => readFileSync(join(out, LOCK), "utf8").endsWith("\n"), "the lock's content");
    const holder = JSON.parse(readFileSync(join(out, LOCK), "utf8"));
    expect(holder).toMatchObject({ pid: p.pid, host: hostname(), command: expect.stringContaining(`embed run ${FASTA} -o ${out}`) });
    expect(Date.parse(holder.since)).not.toBeNaN();
    const second = await run(args(out));
    expect(second.code).toBe(6);
    expect(second.stderr).toContain(`pid ${p.pid} on ${hostname()}, since ${holder.since}`);
    const first = await finish(p);
    expect(first.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
    expect(existsSync(join(out, LOCK))).toBe(false);
  });

  test("a lock left by a dead process on this host is taken over, with a log line", async () => {
    const out = join(tmp, "stale");
    mkdirSync(out);
    writeFileSync(join(out, ".embed-store"), "{}\n");
    const pid = await deadPid();
    writeFileSync(join(out, LOCK), JSON.stringify({ pid, host: hostname(), since: "2020-01-01T00:00:00.000Z", command: "embed run x", token: "old" }) + "\n");
    const r = await run(args(out));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`${join(out, LOCK)} was left by pid ${pid} on ${hostname()}, since 2020-01-01T00:00:00.000Z (embed run x), which is no longer running: taking it over`);
    expect(storeContent(out)).toEqual(reference);
    expect(existsSync(join(out, LOCK))).toBe(false);
  });

  test("a lock from another host is reported with the hint to remove it, and left alone", async () => {
    const out = join(tmp, "remote");
    mkdirSync(out);
    writeFileSync(join(out, ".embed-store"), "{}\n");
    const lock = JSON.stringify({ pid: 4242, host: "node-17.cluster", since: "2020-01-01T00:00:00.000Z", command: "embed run y", token: "remote" }) + "\n";
    writeFileSync(join(out, LOCK), lock);
    const r = await run(args(out));
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("in use by another embed process: pid 4242 on node-17.cluster");
    expect(r.stderr).toContain(`if that job is gone (its host cannot be checked from here), remove ${join(out, LOCK)}`);
    expect(readFileSync(join(out, LOCK), "utf8")).toBe(lock);
    expect(readdirSync(out).sort()).toEqual([".embed-lock", ".embed-store"]);
  });
});

describe("the lock is released on every way out", () => {
  test("a run that fails (the model is not found) leaves no lock", async () => {
    const out = join(tmp, "failed");
    const r = await run(args(out), { failStart: "model-not-found" });
    expect(r.code).toBe(5);
    expect(existsSync(join(out, ".embed-store"))).toBe(true); // the run had claimed the store
    expect(existsSync(join(out, LOCK))).toBe(false);
  });

  test("SIGTERM: the run drains, exits 130 and leaves no lock; the same command resumes", async () => {
    const out = join(tmp, "sigterm");
    const p = spawn(args(out), { slowMs: 100 });
    await until(() => committed(out), "a committed shard");
    expect(existsSync(join(out, LOCK))).toBe(true);
    p.kill("SIGTERM");
    const r = await finish(p);
    expect(r.code).toBe(130);
    expect(existsSync(join(out, LOCK))).toBe(false);
    const again = await run(args(out));
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumed).toBeGreaterThan(0);
    expect(storeContent(out)).toEqual(reference);
  });

  test("a second SIGTERM (exit at once) leaves no lock either", async () => {
    const out = join(tmp, "sigterm2");
    const p = spawn(args(out), { slowMs: 300 });
    await until(() => committed(out), "a committed shard");
    p.kill("SIGTERM");
    await until(() => existsSync(join(out, LOCK)), "the lock"); // still held while draining
    p.kill("SIGTERM");
    const r = await finish(p);
    expect(r.code).toBe(130);
    expect(existsSync(join(out, LOCK))).toBe(false);
  });

  test("kill -9 leaves the lock; the next run takes it over and finishes the store", async () => {
    const out = join(tmp, "killed");
    const p = spawn(args(out), { slowMs: 100 });
    await until(() => committed(out), "a committed shard");
    p.kill("SIGKILL");
    await p.exited;
    expect(JSON.parse(readFileSync(join(out, LOCK), "utf8")).pid).toBe(p.pid);
    const r = await run(args(out));
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("which is no longer running: taking it over");
    expect(storeContent(out)).toEqual(reference);
    expect(existsSync(join(out, LOCK))).toBe(false);
  });
});
