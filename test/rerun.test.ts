/**
 * Rerunning `embed run` on a complete store (store/request.ts): the command that wrote it, again, is
 * a no-op that exits 0 and leaves every byte as it was, so a job array can be resubmitted whole
 * after one task failed; options that change only speed do not count; another input, other
 * options or another slice is refused (exit 6) naming what differs; a store written before runs
 * recorded their request is refused as before; a damaged store is reported, not passed. With
 * --format, the same command writes only the asked formats whose outputs are missing or older
 * than the manifest. The CLI with fake workers (real protocol, no torch), the venv's Python for
 * the converter (h5py, pyarrow).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { fakeRunEnv, randomFasta } from "./helpers.ts";

setDefaultTimeout(60_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-rerun-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const OTHER = join(tmp, "other.fa");
const OPTS = ["--devices", "cpu", "--max-tokens", "400", "--include", "mean,per-residue"];

async function run(argv: string[]) {
  // The converter (--format) needs h5py and pyarrow: the venv's Python runs the fake worker too.
  const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: fakeRunEnv({ slowMs: 0 }, { EMBED_PYTHON: pythonBin() }) });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** Every file of a store directory with its bytes (as hashes), manifest included. */
function bytes(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).filter((f) => !f.startsWith(".")).sort().map((f) => [f, Bun.hash(readFileSync(join(dir, f))).toString()]));
}

/** Every plain file of a store directory, with its modification time (ms). */
function mtimes(dir: string): Record<string, number> {
  return Object.fromEntries(readdirSync(dir).filter((f) => !f.startsWith(".") && statSync(join(dir, f)).isFile()).sort().map((f) => [f, statSync(join(dir, f)).mtimeMs]));
}

const whole = join(tmp, "whole");
const slice = join(tmp, "slice-2");
const formatted = join(tmp, "formatted");
const FORMATS = ["--format", "npy,hdf5,parquet"];
const CONVERTED = ["embeddings.h5", "mean.layer4.parquet", "residues.layer4.parquet"];

beforeAll(async () => {
  writeFileSync(FASTA, randomFasta(60));
  writeFileSync(OTHER, randomFasta(60, 11));
  const [a, b, c] = await Promise.all([run([FASTA, "-o", whole, ...OPTS]), run([FASTA, "-o", slice, "--slice", "2/3", ...OPTS]), run([FASTA, "-o", formatted, ...OPTS, ...FORMATS])]);
  expect(a.code).toBe(0);
  expect(b.code).toBe(0);
  expect(c.code).toBe(0);
  for (const f of CONVERTED) expect(existsSync(join(formatted, f))).toBe(true);
});

/** A copy of the store with --format outputs, times kept (the rerun compares them with the manifest's). */
function copyFormatted(name: string): string {
  const dir = join(tmp, name);
  cpSync(formatted, dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

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

describe("embed run --format on a complete store", () => {
  test("the same command again exits 0 and writes nothing: every format's outputs are there", async () => {
    const before = bytes(formatted);
    const times = mtimes(formatted);
    const r = await run([FASTA, "-o", formatted, ...OPTS, ...FORMATS]);
    expect(r.stderr).toContain("already holds this run's complete store: nothing to do");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ unchanged: true, records: 60, batches: 0 });
    expect(summary.formats).toEqual([
      { format: "npy", files: [] },
      { format: "hdf5", files: [join(formatted, "embeddings.h5")] },
      { format: "parquet", files: [join(formatted, "mean.layer4.parquet"), join(formatted, "residues.layer4.parquet")] },
    ]);
    expect(bytes(formatted)).toEqual(before);
    expect(mtimes(formatted)).toEqual(times);
  });

  test("a run killed while converting (a format's output missing, a .partial left): the rerun writes only that format", async () => {
    const dir = copyFormatted("killed-converting");
    rmSync(join(dir, "residues.layer4.parquet"));
    writeFileSync(join(dir, ".residues.layer4.parquet.x1y2.partial"), "half a file");
    const h5 = statSync(join(dir, "embeddings.h5")).mtimeMs;
    const manifest = readFileSync(join(dir, "manifest.json"), "utf8");
    const r = await run([FASTA, "-o", dir, ...OPTS, ...FORMATS]);
    expect(r.stderr).toContain("wrote only the missing parquet");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).unchanged).toBe(true);
    expect(bytes(dir)["residues.layer4.parquet"]).toBe(bytes(formatted)["residues.layer4.parquet"]); // the same rows as the first conversion
    expect(statSync(join(dir, "embeddings.h5")).mtimeMs).toBe(h5); // hdf5 was complete: not rewritten
    expect(readFileSync(join(dir, "manifest.json"), "utf8")).toBe(manifest);
  });

  test("a format not asked before is written too (the embeddings are final); the others are left alone", async () => {
    const dir = copyFormatted("new-format");
    const times = mtimes(dir);
    const r = await run([FASTA, "-o", dir, ...OPTS, "--format", "hdf5,virnucpro"]);
    expect(r.stderr).toContain("wrote only the missing virnucpro");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).formats.map((f: { format: string }) => f.format)).toEqual(["npy", "hdf5", "virnucpro"]);
    expect(readdirSync(join(dir, "virnucpro"))).toEqual(["output_1_ESM.pt"]);
    expect(mtimes(dir)).toEqual(times);
    // Asked again, the virnucpro files are there: nothing to do.
    const again = await run([FASTA, "-o", dir, ...OPTS, "--format", "hdf5,virnucpro"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("nothing to do");
  });

  test("an output older than the manifest (converted from an earlier store here) is written again", async () => {
    const dir = copyFormatted("stale");
    const m = statSync(join(dir, "manifest.json")).mtimeMs / 1000;
    utimesSync(join(dir, "embeddings.h5"), m - 60, m - 60);
    const r = await run([FASTA, "-o", dir, ...OPTS, ...FORMATS]);
    expect(r.stderr).toContain("wrote only the missing hdf5");
    expect(r.code).toBe(0);
    expect(statSync(join(dir, "embeddings.h5")).mtimeMs).toBeGreaterThanOrEqual(statSync(join(dir, "manifest.json")).mtimeMs);
  });

  test("other options with --format are still refused (exit 6) and nothing is converted", async () => {
    const dir = copyFormatted("other-options");
    rmSync(join(dir, "embeddings.h5"));
    const r = await run([FASTA, "-o", dir, ...OPTS, ...FORMATS, "--out-dtype", "float16"]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("already holds a complete store of other --out-dtype");
    expect(existsSync(join(dir, "embeddings.h5"))).toBe(false);
  });
});
