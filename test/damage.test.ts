/**
 * Damage is always noticed: a store whose files are not what its manifest records (an array
 * truncated, emptied, a bit flipped, a header of another dtype or shape; an ids line missing or
 * extra; a file gone) is refused by every reader, each naming the damaged file: `embed inspect`
 * (sizes and headers; `--verify` for checksums), `embed convert` to every format, `embed merge`.
 * The stores are two slices of one input (fake workers), so that merge has a partner slice; the
 * damage is done to a copy of slice 2.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { parseNpyHeader } from "../src/store/npy.ts";
import { fakeRunEnv, randomFasta } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-damage-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const part = (i: number) => join(tmp, `part-${i}`);
const CONVERT_ENV = { ...fakeRunEnv(), EMBED_PYTHON: pythonBin() };

async function cli(argv: string[], env: Record<string, string> = fakeRunEnv({ slowMs: 1 })) {
  const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdout: "pipe", stderr: "pipe", env });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

beforeAll(async () => {
  const fasta = join(tmp, "in.fa");
  writeFileSync(fasta, randomFasta(40));
  for (const i of [1, 2]) {
    const r = await cli(["run", fasta, "-o", part(i), "--devices", "cpu", "--include", "mean,per-residue", "--shard", `${i}/2`]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
});

/** Flip one bit of `file`, three quarters of the way in (inside the data). */
function flipBit(file: string): void {
  const bytes = readFileSync(file);
  const at = Math.floor(bytes.length * 0.75);
  bytes[at] = bytes[at]! ^ 0x10;
  writeFileSync(file, bytes);
}

/** Replace `from` by `to` in a .npy header, keeping the header's length (its padding absorbs it). */
function editHeader(file: string, from: string, to: string): void {
  const bytes = readFileSync(file);
  const h = parseNpyHeader(bytes)!;
  const text = new TextDecoder().decode(bytes.subarray(10, h.dataStart));
  expect(text).toContain(from);
  const edited = text.replace(from, to).trimEnd();
  const padded = edited + " ".repeat(text.length - 1 - edited.length) + "\n";
  bytes.set(new TextEncoder().encode(padded), 10);
  writeFileSync(file, bytes);
}

/** Each damage: what it does to a copy of slice 2, and the file it damages. */
const DAMAGES: {
  name: string;
  file: string;
  damage: (dir: string) => void;
  /** inspect without --verify misses it (it reads no data) */
  needsVerify?: boolean;
  /** conversions that never read the damaged file (virnucpro takes one per-protein output) */
  unread?: string[];
}[] = [
  { name: "truncated array", file: "mean.layer4.npy", damage: (d) => truncateSync(join(d, "mean.layer4.npy"), statSync(join(d, "mean.layer4.npy")).size - 40) },
  { name: "zero-byte array", file: "residues.layer4.npy", damage: (d) => truncateSync(join(d, "residues.layer4.npy"), 0) },
  { name: "one bit flipped in the data", file: "mean.layer4.npy", damage: (d) => flipBit(join(d, "mean.layer4.npy")), needsVerify: true },
  { name: "one bit flipped in the per-residue data", file: "residues.layer4.npy", damage: (d) => flipBit(join(d, "residues.layer4.npy")), needsVerify: true, unread: ["virnucpro"] },
  { name: "one bit flipped in the offsets", file: "residues.offsets.npy", damage: (d) => flipBit(join(d, "residues.offsets.npy")), needsVerify: true, unread: ["virnucpro"] },
  { name: "header of another dtype", file: "mean.layer4.npy", damage: (d) => editHeader(join(d, "mean.layer4.npy"), "'<f4'", "'<f2'") },
  { name: "header of another shape", file: "mean.layer4.npy", damage: (d) => editHeader(join(d, "mean.layer4.npy"), "(20, 8)", "(8, 20)") },
  { name: "ids line missing", file: "ids.txt", damage: (d) => writeFileSync(join(d, "ids.txt"), readFileSync(join(d, "ids.txt"), "utf8").replace(/[^\n]*\n$/, "")) },
  { name: "ids line extra", file: "ids.txt", damage: (d) => writeFileSync(join(d, "ids.txt"), readFileSync(join(d, "ids.txt"), "utf8") + "extra\n") },
  { name: "array missing", file: "mean.layer4.npy", damage: (d) => rmSync(join(d, "mean.layer4.npy")) },
];

const FORMAT_OUT: Record<string, string> = { hdf5: "out.h5", parquet: "pq", npy: "npy", virnucpro: "vnp" };

/**
 * Nothing a failed command wrote may remain at `out` (a file, or a directory of files), beside
 * the marker that claims a directory for embed's output (`.embed-store`, which holds no data).
 */
function leftBehind(out: string): string[] {
  if (!existsSync(out)) return [];
  return statSync(out).isDirectory() ? readdirSync(out, { recursive: true }).map(String).filter((f) => f !== ".embed-store") : [out];
}

describe.each(DAMAGES)("a store with $name ($file)", ({ name, file, damage, needsVerify, unread }) => {
  const dir = join(tmp, `damaged-${name.replaceAll(" ", "-")}`);
  beforeAll(() => {
    cpSync(part(2), dir, { recursive: true });
    damage(dir);
  });

  test("embed inspect --verify: complete false, the file named in `damaged`, exit 6", async () => {
    const r = await cli(["inspect", dir, "--verify", "--json"]);
    expect(r.code).toBe(6);
    const info = JSON.parse(r.stdout);
    expect(info).toMatchObject({ state: "damaged", complete: false, checksums: "verified" });
    expect(info.damaged.map((d: { file: string }) => d.file)).toEqual([file]);
    expect(r.stderr).toContain(file);
  });

  test(`embed inspect without --verify: ${needsVerify ? "sizes and headers agree, so complete (the checksum is not read)" : "sizes and headers show it, exit 6"}`, async () => {
    const r = await cli(["inspect", dir, "--json"]);
    const info = JSON.parse(r.stdout);
    if (needsVerify) {
      expect(r.code).toBe(0);
      expect(info).toMatchObject({ state: "complete", complete: true, damaged: [], checksums: "recorded" });
    } else {
      expect(r.code).toBe(6);
      expect(info.complete).toBe(false);
      expect(info.damaged.map((d: { file: string }) => d.file)).toEqual([file]);
      expect(r.stderr).toContain(file);
    }
  });

  test.each(Object.keys(FORMAT_OUT))("embed convert --to %s: exit 6 naming the file, nothing written", async (format) => {
    const out = join(tmp, `conv-${name.replaceAll(" ", "-")}-${FORMAT_OUT[format]}`);
    const r = await cli(["convert", dir, "--to", format, "-o", out], CONVERT_ENV);
    expect(r.stderr).not.toContain("likely a bug");
    if (unread?.includes(format)) {
      // Checksums are checked over the bytes a conversion reads; this one reads none of that file.
      expect(r.code).toBe(0);
      return;
    }
    expect(r.code).toBe(6);
    expect(r.stderr).toContain(join(dir, file));
    expect(leftBehind(out)).toEqual([]);
  });

  test("embed merge with the other slice: exit 6 naming the file, no merged store", async () => {
    const out = join(tmp, `merged-${name.replaceAll(" ", "-")}`);
    const r = await cli(["merge", out, part(1), dir]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain(join(dir, file));
    expect(leftBehind(out)).toEqual([]);
  });
});

describe("checksums in the manifest", () => {
  test("a run's and a merge's manifests record every file's size and SHA-256; inspect --verify passes them", async () => {
    const m = JSON.parse(readFileSync(join(part(1), "manifest.json"), "utf8"));
    const files = [m.files.ids, ...m.files.arrays].sort();
    expect(Object.keys(m.files.checksums)).toEqual(files);
    for (const f of files) {
      const bytes = readFileSync(join(part(1), f));
      expect(m.files.checksums[f]).toEqual({ bytes: bytes.length, sha256: new Bun.CryptoHasher("sha256").update(bytes).digest("hex") });
    }
    const out = join(tmp, "merged-ok");
    expect((await cli(["merge", out, part(1), part(2)])).code).toBe(0);
    const r = await cli(["inspect", out, "--verify", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: "complete", complete: true, damaged: [], checksums: "verified" });
  });

  test("convert --to npy writes a store whose checksums verify", async () => {
    const out = join(tmp, "npy-ok");
    expect((await cli(["convert", part(1), "--to", "npy", "-o", out], CONVERT_ENV)).code).toBe(0);
    const r = await cli(["inspect", out, "--verify", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ complete: true, checksums: "verified" });
  });

  test("a store written before checksums: inspect says none were recorded, still checks sizes; convert reads it", async () => {
    const old = join(tmp, "old");
    cpSync(part(1), old, { recursive: true });
    const m = JSON.parse(readFileSync(join(old, "manifest.json"), "utf8"));
    delete m.files.checksums;
    writeFileSync(join(old, "manifest.json"), JSON.stringify(m));
    const r = await cli(["inspect", old, "--verify", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ complete: true, checksums: "none" });
    expect((await cli(["convert", old, "--to", "hdf5", "-o", join(tmp, "old.h5")], CONVERT_ENV)).code).toBe(0);
    truncateSync(join(old, "mean.layer4.npy"), 100);
    const bad = await cli(["inspect", old, "--json"]);
    expect(bad.code).toBe(6);
    expect(JSON.parse(bad.stdout).damaged[0]).toMatchObject({ file: "mean.layer4.npy" });
  });
});
