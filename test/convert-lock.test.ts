/**
 * `embed convert` takes the writer lock of the directory it writes into (lock.ts), as `embed run`
 * and `embed merge` do: the output directory of `--to npy -o DIR` (and of any format written to a
 * directory), or the store itself when the output goes inside it. A second writer exits 6 naming
 * the holder and writes nothing; a stale lock of this host is taken over; no lock is left behind.
 * The store is written by `embed run` with fake workers (real protocol, no torch).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { convertTarget } from "../src/store/formats.ts";
import { fakeRunEnv, randomFasta } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-convert-lock-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const STORE = join(tmp, "store");
const LOCK = ".embed-lock";

async function embed(argv: string[], env: Record<string, string>) {
  const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}
const convert = (argv: string[]) => embed(["convert", ...argv], { ...(process.env as Record<string, string>), NO_COLOR: "1", EMBED_PYTHON: pythonBin() });

/** A lock held by a live process of this host (this test's own process). */
const liveLock = (command: string) => JSON.stringify({ pid: process.pid, host: hostname(), since: "2024-05-01T10:00:00.000Z", command, token: "live" }) + "\n";

async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  return p.pid;
}

beforeAll(async () => {
  writeFileSync(join(tmp, "in.fa"), randomFasta(30));
  const r = await embed(["run", join(tmp, "in.fa"), "-o", STORE, "--devices", "cpu", "--max-tokens", "400"], fakeRunEnv());
  if (r.code !== 0) throw new Error(r.stderr);
});

describe("embed convert holds the writer lock", () => {
  test("what it locks: the output directory, an HDF5 file's directory, or the store when writing inside it", () => {
    expect(convertTarget(STORE, true, "hdf5")).toBe(STORE);
    expect(convertTarget(STORE, true, "virnucpro", join(STORE, "virnucpro"))).toBe(STORE);
    expect(convertTarget(STORE, true, "npy", join(tmp, "copy"))).toBe(join(tmp, "copy"));
    expect(convertTarget(STORE, true, "hdf5", join(tmp, "h5", "e.h5"))).toBe(join(tmp, "h5"));
    expect(convertTarget(join(tmp, "x.h5"), false, "parquet")).toBe(tmp);
  });

  test("--to npy -o DIR while DIR is held: exit 6 naming the holder, nothing written, the lock left alone", async () => {
    const out = join(tmp, "held");
    mkdirSync(out);
    const lock = liveLock("embed run big.fa -o held");
    writeFileSync(join(out, LOCK), lock);
    const r = await convert([STORE, "--to", "npy", "-o", out]);
    expect(r.code).toBe(6);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${out} is in use by another embed process: pid ${process.pid} on ${hostname()}, since 2024-05-01T10:00:00.000Z (embed run big.fa -o held)`);
    expect(readdirSync(out)).toEqual([LOCK]);
    expect(readFileSync(join(out, LOCK), "utf8")).toBe(lock);
  });

  test("into the store (default hdf5) while a run or merge holds the store: exit 6, no embeddings.h5", async () => {
    const lock = liveLock("embed merge store a b");
    writeFileSync(join(STORE, LOCK), lock);
    try {
      const r = await convert([STORE, "--to", "hdf5"]);
      expect(r.code).toBe(6);
      expect(r.stderr).toContain(`${STORE} is in use by another embed process: pid ${process.pid}`);
      expect(existsSync(join(STORE, "embeddings.h5"))).toBe(false);
      expect(readFileSync(join(STORE, LOCK), "utf8")).toBe(lock);
    } finally {
      rmSync(join(STORE, LOCK), { force: true });
    }
  });

  test("a stale lock of this host is taken over with a log line; the conversion finishes and leaves no lock", async () => {
    const out = join(tmp, "stale");
    mkdirSync(out);
    const pid = await deadPid();
    writeFileSync(join(out, LOCK), JSON.stringify({ pid, host: hostname(), since: "2020-01-01T00:00:00.000Z", command: "embed convert x", token: "old" }) + "\n");
    const r = await convert([STORE, "--to", "npy", "-o", out, "--json"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`${join(out, LOCK)} was left by pid ${pid} on ${hostname()}, since 2020-01-01T00:00:00.000Z (embed convert x), which is no longer running: taking it over`);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: "npy", records: 30 });
    expect(readdirSync(out)).not.toContain(LOCK);
    expect(readdirSync(out)).toContain("manifest.json");
  });

  test("a finished conversion into the store or a new directory leaves no lock; a refused one no new directory", async () => {
    const ok = await convert([STORE, "--to", "parquet"]);
    expect(ok.code).toBe(0);
    expect(existsSync(join(STORE, LOCK))).toBe(false);
    const copy = join(tmp, "new", "copy");
    expect((await convert([STORE, "--to", "npy", "-o", copy])).code).toBe(0);
    expect(existsSync(join(copy, LOCK))).toBe(false);
    const refused = await convert([STORE, "--to", "npy", "-o", join(tmp, "never", "x"), "--layer", "99"]);
    expect(refused.code).toBe(2);
    expect(existsSync(join(tmp, "never"))).toBe(false);
  });
});
