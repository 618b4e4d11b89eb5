/**
 * embed never deletes or overwrites a file it did not create: an input inside the output
 * directory is refused before anything is written (exit 2), a directory holding foreign files of
 * the names a store consists of is refused (exit 6, the file named), and --overwrite replaces
 * only embed's own files. The CLI with fake workers (real protocol, no torch).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { fakeRunEnv, randomFasta, storeContent } from "./helpers.ts";

setDefaultTimeout(60_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-ownership-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FASTA = join(tmp, "in.fa");
const TEXT = randomFasta(40);
const CLI = join(PACKAGE_ROOT, "src", "cli.ts");

/** `embed run ARGV` in `cwd` with fake workers: exit code, stdout and stderr. */
async function run(argv: string[], cwd = tmp) {
  const p = Bun.spawn(["bun", CLI, "run", ...argv, "--devices", "cpu", "--max-tokens", "400"], { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: fakeRunEnv({ slowMs: 0 }) });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** Every file under `dir` with its content, to show that nothing changed. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, `${rel}${e.name}/`);
      else out[`${rel}${e.name}`] = readFileSync(p, "utf8");
    }
  };
  walk(dir, "");
  return out;
}

let reference: Record<string, string>;
beforeAll(async () => {
  writeFileSync(FASTA, TEXT);
  const r = await run([FASTA, "-o", join(tmp, "reference")]);
  expect(r.code).toBe(0);
  reference = storeContent(join(tmp, "reference"));
});

describe("an input inside the output directory is refused before anything is written", () => {
  test("an input at OUT/ids.txt", async () => {
    const out = join(tmp, "in-ids");
    mkdirSync(out);
    writeFileSync(join(out, "ids.txt"), TEXT);
    const r = await run([join(out, "ids.txt"), "-o", out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the input ${join(out, "ids.txt")} is inside the output directory ${out}`);
    expect(snapshot(out)).toEqual({ "ids.txt": TEXT });
  });

  test("an input at OUT/shards/in.fa", async () => {
    const out = join(tmp, "in-shards");
    mkdirSync(join(out, "shards"), { recursive: true });
    writeFileSync(join(out, "shards", "in.fa"), TEXT);
    const r = await run([join(out, "shards", "in.fa"), "-o", out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is inside the output directory");
    expect(snapshot(out)).toEqual({ "shards/in.fa": TEXT });
  });

  test("-o . in the directory that holds the input (realpaths compared)", async () => {
    const dir = join(tmp, "dot-input");
    mkdirSync(dir);
    writeFileSync(join(dir, "in.fa"), TEXT);
    const r = await run(["in.fa", "-o", "."], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the input in.fa is inside the output directory .");
    expect(snapshot(dir)).toEqual({ "in.fa": TEXT });
  });
});

describe("a directory holding someone else's files of embed's names is refused", () => {
  test("-o . over a user's ids.txt (no embed store there), with and without --overwrite", async () => {
    const dir = join(tmp, "dot-ids");
    mkdirSync(dir);
    writeFileSync(join(dir, "ids.txt"), "my own list\n");
    for (const extra of [[], ["--overwrite"]]) {
      const r = await run([FASTA, "-o", ".", ...extra], dir);
      expect(r.code).toBe(6);
      expect(r.stderr).toContain("ids.txt exists and was not written by embed");
      expect(r.stderr).toContain("choose an empty or new output directory");
      expect(snapshot(dir)).toEqual({ "ids.txt": "my own list\n" });
    }
  });

  test("a user's .npy of a name embed writes, and a user's shards/ directory", async () => {
    for (const [name, make] of [
      ["mean.layer4.npy", (d: string) => writeFileSync(join(d, "mean.layer4.npy"), "mine")],
      ["shards", (d: string) => (mkdirSync(join(d, "shards")), writeFileSync(join(d, "shards", "a.txt"), "mine"))],
    ] as const) {
      const out = join(tmp, `foreign-${name}`);
      mkdirSync(out);
      make(out);
      const before = snapshot(out);
      const r = await run([FASTA, "-o", out, "--overwrite"]);
      expect(r.code).toBe(6);
      expect(r.stderr).toContain(`${join(out, name)} exists and was not written by embed`);
      expect(snapshot(out)).toEqual(before);
    }
  });

  test("unrelated files beside a new store are fine and stay", async () => {
    const out = join(tmp, "beside");
    mkdirSync(out);
    writeFileSync(join(out, "README.txt"), "notes");
    const r = await run([FASTA, "-o", out]);
    expect(r.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
    expect(readFileSync(join(out, "README.txt"), "utf8")).toBe("notes");
    expect(existsSync(join(out, ".embed-store"))).toBe(true);
  });
});

describe("--overwrite replaces only embed's own files", () => {
  test("files a user put into a store (and into its shards/) survive --overwrite", async () => {
    const out = join(tmp, "overwrite");
    expect((await run([FASTA, "-o", out, "--include", "mean,bos"])).code).toBe(0);
    expect(existsSync(join(out, "bos.layer4.npy"))).toBe(true);
    writeFileSync(join(out, "notes.txt"), "mine");
    writeFileSync(join(out, "my-pca.npy"), "mine too");
    mkdirSync(join(out, "shards"));
    writeFileSync(join(out, "shards", "keep.txt"), "and this");
    const r = await run([FASTA, "-o", out, "--overwrite"]);
    expect(r.code).toBe(0);
    const { "my-pca.npy": _, ...store } = storeContent(out);
    expect(store).toEqual(reference);
    expect(readFileSync(join(out, "notes.txt"), "utf8")).toBe("mine");
    expect(readFileSync(join(out, "my-pca.npy"), "utf8")).toBe("mine too");
    expect(readFileSync(join(out, "shards", "keep.txt"), "utf8")).toBe("and this");
    expect(r.stderr).toContain("kept: it holds files embed did not write (keep.txt)");
    // The old store's bos array (listed in its manifest) went; no run state is left.
    expect(existsSync(join(out, "bos.layer4.npy"))).toBe(false);
    expect(existsSync(join(out, "run.json"))).toBe(false);
  });

  test("a store written before the mark existed is still embed's", async () => {
    const out = join(tmp, "unmarked");
    expect((await run([FASTA, "-o", out])).code).toBe(0);
    rmSync(join(out, ".embed-store"));
    // Its own command again is a no-op (not a refusal of foreign files); another one is refused.
    const same = await run([FASTA, "-o", out]);
    expect(same.stderr).toContain("nothing to do");
    expect(same.code).toBe(0);
    const again = await run([FASTA, "-o", out, "--out-dtype", "float16"]);
    expect(again.code).toBe(6);
    expect(again.stderr).toContain("already holds a complete store of other --out-dtype");
    const r = await run([FASTA, "-o", out, "--overwrite"]);
    expect(r.code).toBe(0);
    expect(storeContent(out)).toEqual(reference);
    expect(existsSync(join(out, ".embed-store"))).toBe(true);
  });
});

describe("embed merge claims its output like a run", () => {
  test("a foreign ids.txt or another host's lock in OUT is refused; a merge leaves the mark and no lock", async () => {
    const parts = [1, 2].map((i) => join(tmp, `part-${i}`));
    for (const [i, part] of parts.entries()) expect((await run([FASTA, "-o", part, "--shard", `${i + 1}/2`])).code).toBe(0);
    const merge = async (out: string) => {
      const p = Bun.spawn(["bun", CLI, "merge", out, ...parts], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: fakeRunEnv() });
      const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
      return { code, stderr };
    };
    const foreign = join(tmp, "merge-foreign");
    mkdirSync(foreign);
    writeFileSync(join(foreign, "ids.txt"), "mine\n");
    let r = await merge(foreign);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain(`${join(foreign, "ids.txt")} exists and was not written by embed`);
    expect(snapshot(foreign)).toEqual({ "ids.txt": "mine\n" });

    const held = join(tmp, "merge-held");
    mkdirSync(held);
    writeFileSync(join(held, ".embed-store"), "{}\n");
    writeFileSync(join(held, ".embed-lock"), JSON.stringify({ pid: 7, host: "elsewhere", since: "2020-01-01T00:00:00.000Z", command: "embed merge", token: "x" }) + "\n");
    r = await merge(held);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("in use by another embed process: pid 7 on elsewhere");

    const fresh = join(tmp, "merge-fresh");
    r = await merge(fresh);
    expect(r.code).toBe(0);
    expect(storeContent(fresh)).toEqual(reference);
    expect(existsSync(join(fresh, ".embed-store"))).toBe(true);
    expect(existsSync(join(fresh, ".embed-lock"))).toBe(false);
  });
});
