/**
 * Rerunning `embed run` on a complete store (store/request.ts): the command that wrote it, again, is
 * a no-op that exits 0 and leaves every byte as it was, so a job array can be resubmitted whole
 * after one task failed; options that change only speed do not count; another input, other
 * options or another slice is refused (exit 6) naming what differs; a store written before runs
 * recorded their request is refused as before; a damaged store is reported, not passed. The CLI
 * with fake workers (real protocol, no torch).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { fakeRunEnv, randomFasta } from "./helpers.ts";

setDefaultTimeout(60_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-rerun-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const OTHER = join(tmp, "other.fa");
const OPTS = ["--devices", "cpu", "--max-tokens", "400", "--include", "mean,per-residue"];

async function run(argv: string[]) {
  const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: fakeRunEnv({ slowMs: 0 }) });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** Every file of a store directory with its bytes (as hashes), manifest included. */
function bytes(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).filter((f) => !f.startsWith(".")).sort().map((f) => [f, Bun.hash(readFileSync(join(dir, f))).toString()]));
}

const whole = join(tmp, "whole");
const slice = join(tmp, "slice-2");

beforeAll(async () => {
  writeFileSync(FASTA, randomFasta(60));
  writeFileSync(OTHER, randomFasta(60, 11));
  const [a, b] = await Promise.all([run([FASTA, "-o", whole, ...OPTS]), run([FASTA, "-o", slice, "--slice", "2/3", ...OPTS])]);
  expect(a.code).toBe(0);
  expect(b.code).toBe(0);
});

describe("embed run on a complete store", () => {
  test("the same command again exits 0, does nothing and says so; the store's bytes are unchanged", async () => {
    const before = bytes(whole);
    const r = await run([FASTA, "-o", whole, ...OPTS]);
    expect(r.stderr).toContain("already holds this run's complete store: nothing to do");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ unchanged: true, records: 60, resumed: 60, batches: 0 });
    expect(bytes(whole)).toEqual(before);
  });

  test("options that change only speed (--max-tokens, --dedup, --shard-records) are the same run", async () => {
    const before = bytes(whole);
    const r = await run([FASTA, "-o", whole, ...OPTS, "--max-tokens", "900", "--dedup", "--shard-records", "7"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).unchanged).toBe(true);
    expect(bytes(whole)).toEqual(before);
  });

  test("a --slice job's rerun is a no-op too; another slice into its store is refused", async () => {
    const before = bytes(slice);
    const same = await run([FASTA, "-o", slice, "--slice", "2/3", ...OPTS]);
    expect(same.code).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ unchanged: true, slice: "2/3", records: 20 });
    const other = await run([FASTA, "-o", slice, "--slice", "3/3", ...OPTS]);
    expect(other.code).toBe(6);
    expect(other.stderr).toContain(`${slice} already holds a complete store of other input records, --slice`);
    expect(bytes(slice)).toEqual(before);
  });

  test("another input or other content options are refused (exit 6), naming what differs; --overwrite replaces", async () => {
    const before = bytes(whole);
    const input = await run([OTHER, "-o", whole, ...OPTS]);
    expect(input.code).toBe(6);
    expect(input.stderr).toContain("already holds a complete store of other input records");
    expect(input.stderr).toContain("--overwrite");
    const layers = await run([FASTA, "-o", whole, ...OPTS, "--layers", "2", "--out-dtype", "float16"]);
    expect(layers.code).toBe(6);
    expect(layers.stderr).toContain("of other --layers, --out-dtype");
    expect(bytes(whole)).toEqual(before);
    const copy = join(tmp, "over");
    cpSync(whole, copy, { recursive: true });
    const over = await run([OTHER, "-o", copy, ...OPTS, "--overwrite"]);
    expect(over.code).toBe(0);
    expect(JSON.parse(over.stdout).unchanged).toBeUndefined();
    expect(bytes(copy)["mean.layer4.npy"]).not.toBe(before["mean.layer4.npy"]); // same ids, other sequences
  });

  test("a store that recorded no request (written before reruns were recognised) is refused as before", async () => {
    const old = join(tmp, "old");
    cpSync(whole, old, { recursive: true });
    const m = JSON.parse(readFileSync(join(old, "manifest.json"), "utf8"));
    delete m.run.request;
    writeFileSync(join(old, "manifest.json"), JSON.stringify(m, null, 2) + "\n");
    const r = await run([FASTA, "-o", old, ...OPTS]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain(`${old} already holds a complete store`);
  });

  test("the same command on a damaged store exits 6 naming the damaged file", async () => {
    const bad = join(tmp, "bad");
    cpSync(whole, bad, { recursive: true });
    truncateSync(join(bad, "mean.layer4.npy"), 100);
    const r = await run([FASTA, "-o", bad, ...OPTS]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("damaged store");
    expect(r.stderr).toContain("mean.layer4.npy");
  });
});
