/**
 * The README's Quick start and Use sections, walked as a new user would: the one set-up command it
 * gives, then every `embed …` line of its `sh` blocks as written, each in a new login shell
 * (`bash -lc`) whose environment is only an empty HOME and what the shell's profile sets, plus the
 * `export PATH=…` line the set-up printed (the README says to run it). Lines that need what this
 * machine cannot have are skipped by name, with the reason, in SKIP.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";

setDefaultTimeout(240_000);
const root = mkdtempSync(join(tmpdir(), "embed-readme-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** README lines not run here, each with why (kept small: only what a CPU test machine lacks). */
const SKIP: [RegExp, string][] = [[/esm2_t36_3B_UR50D/, "esm2_t36_3B_UR50D is an 11 GB download (no network here), and --layers 36 needs the real model"]];

const README = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");

/**
 * The lines of the `sh` code blocks of README section `## title` up to its first `###` subsection
 * (those are worked examples of other set-ups: fair-esm's extract.py, a SLURM array), comments kept
 * (bash drops them).
 */
function shLines(title: string): string[] {
  const start = README.indexOf(`\n## ${title}\n`);
  expect(start).toBeGreaterThan(0);
  const end = README.slice(start + 1).search(/\n###? /) + start + 1;
  const text = README.slice(start, end < 0 ? undefined : end);
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split("\n")).filter((l) => l.trim());
}

/** A line that runs the `embed` command (alone or at the end of a pipe). */
const isEmbedLine = (l: string) => /^(embed |.*\| *embed )/.test(l);

/** A new login shell with only HOME set; the result's stdout, stderr and exit code together. */
async function login(script: string, cwd: string, home: string) {
  const p = Bun.spawn([Bun.which("bash")!, "-lc", script], { cwd, env: { HOME: home }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** The user's empty home, with the 650M checkpoint where its download would put it (see below). */
const home = join(root, "home");
// The network step replaced: a released name missing from every cache is downloaded into the torch
// hub cache (README "Use"); a checkpoint of that name there stands in for the 2.5 GB download (the
// bundled test model: embed reads the shape from the file), so the lines using the default model run.
mkdirSync(join(home, ".cache", "torch", "hub", "checkpoints"), { recursive: true });
copyFileSync(join(PACKAGE_ROOT, ".models", "test-tiny.pt"), join(home, ".cache", "torch", "hub", "checkpoints", "esm2_t33_650M_UR50D.pt"));

let dirs = 0;
/** A fresh working directory: the checkout's examples/ and the README's input names (6 proteins). */
function workDir(): string {
  const d = join(root, `work${++dirs}`);
  mkdirSync(d);
  symlinkSync(join(PACKAGE_ROOT, "examples"), join(d, "examples"));
  const fasta = readFileSync(join(PACKAGE_ROOT, "examples", "example.fasta"));
  writeFileSync(join(d, "proteins.fasta"), fasta);
  for (const gz of ["reads.faa.gz", "x.fa.gz", "big.fa.gz"]) writeFileSync(join(d, gz), Bun.gzipSync(fasta));
  return d;
}

const quick = shLines("Quick start");
const use = shLines("Use");
const setupLine = quick.find((l) => l.startsWith("scripts/setup"));
/** What the set-up asked to run in each new shell (empty when it linked embed onto the PATH). */
let prelude: string | undefined;

describe("README walk", () => {
  test("Quick start gives one set-up command, and the sections have embed lines to walk", () => {
    expect(quick.filter((l) => !l.startsWith("#") && !isEmbedLine(l))).toEqual([setupLine!]);
    expect(quick.filter(isEmbedLine).length).toBeGreaterThanOrEqual(2);
    expect(use.filter(isEmbedLine).length).toBe(use.length); // every Use line runs embed
  });

  test(`the set-up (${setupLine}) in a new shell leaves a working embed command`, async () => {
    const r = await login(setupLine!, PACKAGE_ROOT, home);
    expect(r.code).toBe(0);
    // ~/.local/bin is not on this empty home's PATH, so the set-up prints the one line to run.
    const exports = r.stderr.split("\n").filter((l) => /^\s*export PATH=/.test(l));
    expect(exports).toEqual([`  export PATH="${PACKAGE_ROOT}/.tools/bin:$PATH"`]);
    prelude = exports[0]!.trim();
    expect(existsSync(join(home, ".local", "bin", "embed"))).toBe(false); // and touched nothing in HOME
    const without = await login("embed --version", root, home);
    expect(without.code).toBe(127); // a new shell has no embed until that line is run
    const v = await login(`${prelude}\nembed --version`, root, home);
    expect(v.stdout.trim()).toBe(JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")).version);
  });

  test("with ~/.local/bin on the login PATH (as Debian's default ~/.profile puts it), the set-up links embed there", async () => {
    const h = join(root, "home-local-bin");
    mkdirSync(join(h, ".local", "bin"), { recursive: true });
    writeFileSync(join(h, ".profile"), 'PATH="$HOME/.local/bin:$PATH"\n');
    const r = await login(setupLine!, PACKAGE_ROOT, h);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`linked ${h}/.local/bin/embed -> ${PACKAGE_ROOT}/.tools/bin/embed`);
    expect(r.stderr).not.toMatch(/^\s*export PATH=/m);
    const v = await login("embed --version", root, h);
    expect(v.code).toBe(0);
  });

  let cwd = workDir();
  for (const line of [...quick, ...use].filter(isEmbedLine)) {
    const skip = SKIP.find(([re]) => re.test(line));
    if (skip) {
      test.skip(`${line}   [skipped: ${skip[1]}]`, () => {});
      continue;
    }
    test(line, async () => {
      expect(prelude).toBeDefined();
      // The README's `embed run … -o out/` lines are alternatives, each writing out/: each starts in
      // a fresh directory, and the lines after it (convert, inspect) read what it wrote.
      if (/embed run .*-o out\/ /.test(`${line} `)) cwd = workDir();
      const r = await login(`${prelude}\n${line}`, cwd, home);
      expect({ line, code: r.code, stderr: r.code ? r.stderr.slice(-2000) : "" }).toEqual({ line, code: 0, stderr: "" });
    });
  }
});
