/**
 * The mistakes a new user makes on the command line (fair-esm extract.py habits on `embed run`,
 * typos, a model or output directory given as an input, a bad value), run through the real CLI
 * (`bun src/cli.ts ...`). Each row asserts the exit code and the words that tell the user the fix;
 * rows whose options are bad run without --dry and assert that no worker started (`embedding with`
 * is logged as workers start, `ready` when one has loaded its model).
 *
 * To add a case, append a {@link Mistake} to `CASES`: files to create in its directory (`$D`), the
 * arguments after `embed`, the exit code and the stderr words. `<shared>` is a directory shared by the
 * rows (a one-slice store built once, with the fake worker).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { PACKAGE_ROOT } from "../src/config.ts";
import { expectWords, fakeRunEnv, runText } from "./helpers.ts";

setDefaultTimeout(60_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-mistakes-"));
const shared = join(tmp, "shared");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Mistake {
  name: string;
  files?: Record<string, string>;
  /** Further state in `$D` (a model folder). */
  setup?: (dir: string) => void;
  /** Arguments after `embed`: `$D` is the case's directory, `<shared>` the shared one. */
  args: string[];
  env?: Record<string, string>;
  code: number;
  stderr: (string | RegExp)[];
  notStderr?: (string | RegExp)[];
  /** What stdout must hold (for cases that succeed). */
  stdout?: (string | RegExp)[];
  /** Files `$D` must (true) or must not (false) hold after the run. */
  after?: Record<string, boolean>;
  skip?: string;
}

const FA = { "a.fa": ">a\nMKV\n>b\nLLAG\n" };
const TINY = ["-m", "test-tiny", "--devices", "cpu"];
/** No worker started: the lines logged as workers start and once one has loaded its model. */
const NO_WORKER = ["embedding with", /\bready\b/, "Traceback"];
const noTiny = existsSync(join(PACKAGE_ROOT, ".models", "test-tiny", "config.json")) ? undefined : "no .models/test-tiny (scripts/setup)";
/** A GPU 7 here would make `--devices 7` valid. */
const gpu7 = existsSync("/dev/nvidia7") ? "this machine has a GPU 7" : undefined;

/** An ESM-1b-style Hugging Face folder (absolute position embeddings): the worker refuses it. */
function esm1Folder(dir: string): void {
  const src = join(PACKAGE_ROOT, ".models", "test-tiny");
  mkdirSync(join(dir, "m"));
  const c = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(dir, "m", "config.json"), JSON.stringify({ ...c, position_embedding_type: "absolute" }));
  writeFileSync(join(dir, "m", "model.safetensors"), readFileSync(join(src, "model.safetensors")));
}

const CASES: Mistake[] = [
  // fair-esm extract.py habits on `embed run`
  { name: "--repr-layers=2 is not taken silently", files: FA, args: ["run", "$D/a.fa", "--repr-layers=2", "--dry"], code: 2, stderr: ["unknown option --repr-layers", "did you mean --layers?"] },
  { name: "--repr_layers 0 32 33 (extract.py's spelling)", files: FA, args: ["run", "$D/a.fa", "--repr_layers", "0", "32", "33", "--dry"], code: 2, stderr: ["did you mean --layers?", "--layers 0,32,33", "embed extract MODEL FASTA OUT_DIR"] },
  { name: "--nogpu", files: FA, args: ["run", "$D/a.fa", "--nogpu", "--dry"], code: 2, stderr: ["unknown option --nogpu", "--devices cpu"] },
  { name: "--toks_per_batch", files: FA, args: ["run", "$D/a.fa", "--toks_per_batch", "4096", "--dry"], code: 2, stderr: ["did you mean --max-tokens?", "--max-tokens 4096"] },
  { name: "--truncation_seq_length", files: FA, args: ["run", "$D/a.fa", "--truncation_seq_length", "1022", "--dry"], code: 2, stderr: ["did you mean --truncate?", "--truncate 1022"] },
  { name: "an option with underscores", files: FA, args: ["run", "$D/a.fa", "--max_tokens", "512", "--dry"], code: 2, stderr: ["unknown option --max_tokens", "did you mean --max-tokens?"] },
  {
    name: "--include per_tok is per-residue",
    files: FA,
    args: ["run", "$D/a.fa", "-o", "$D/out", "--include", "per_tok", "--devices", "cpu"],
    env: fakeRunEnv(),
    code: 0,
    stderr: [],
    after: { "out/residues.offsets.npy": true, "out/manifest.json": true },
  },
  { name: "--include mean per_tok (spaced, as extract.py takes it)", files: FA, args: ["run", "$D/a.fa", "--include", "mean", "per_tok", "--dry"], code: 2, stderr: ["--include takes one comma list", "--include mean,per_tok"], notStderr: ["input file not found"] },
  { name: "--layers 0 32 33 (spaced)", files: FA, args: ["run", "$D/a.fa", "--layers", "0", "32", "33", "--dry"], code: 2, stderr: ["--layers takes one comma list", "--layers 0,32,33"], notStderr: ["input file not found"] },
  {
    name: "--layer 2: a typo, refused before any worker starts",
    files: FA,
    args: ["run", "$D/a.fa", "-o", "$D/out", "--layer", "2", ...TINY],
    code: 2,
    stderr: ["unknown option --layer", "did you mean --layers?"],
    notStderr: ["input file not found", ...NO_WORKER],
    after: { out: false },
  },
  // positionals
  { name: "two inputs are two inputs", files: { ...FA, "b.fa": ">c\nMKV\n" }, args: ["run", "$D/a.fa", "$D/b.fa", "--dry"], code: 0, stderr: [], stdout: ['"records": 3'] },
  { name: "a checkpoint file as an input", files: { ...FA, "model.pt": "" }, args: ["run", "-o", "$D/out", "$D/model.pt", "$D/a.fa"], code: 2, stderr: ["model.pt is a model, not a FASTA input", "--model $D/model.pt"], notStderr: NO_WORKER },
  {
    name: "extract.py's order: MODEL FASTA OUT_DIR",
    files: FA,
    args: ["run", "esm2_t33_650M_UR50D", "$D/a.fa", "$D/out/"],
    code: 2,
    stderr: ["esm2_t33_650M_UR50D is a model, not a FASTA input", "--model esm2_t33_650M_UR50D", "embed extract"],
    notStderr: ["input file not found"],
  },
  { name: "a model folder as an input", files: FA, setup: (d) => (mkdirSync(join(d, "m")), writeFileSync(join(d, "m", "config.json"), "{}")), args: ["run", "$D/a.fa", "$D/m", "--dry"], code: 2, stderr: ["is a model, not a FASTA input", "--model $D/m"] },
  { name: "an output store as an input", files: FA, args: ["run", "$D/a.fa", "<shared>/part1", "--dry"], code: 2, stderr: ["looks like an output directory", "-o <shared>/part1"] },
  // option values, all checked before any worker starts
  {
    name: "--layers 99 against a named model's depth, before any worker",
    files: FA,
    args: ["run", "$D/a.fa", "-o", "$D/out", "--layers", "99", ...TINY],
    code: 2,
    stderr: ["--layers: layer 99 is out of range for a 2-layer model (test-tiny)", "use 0..2, or -1"],
    notStderr: NO_WORKER,
    after: { out: false },
    ...(noTiny ? { skip: noTiny } : {}),
  },
  { name: "--layers 99 against the default model", files: FA, args: ["run", "$D/a.fa", "--layers", "99", "--dry"], code: 2, stderr: ["33-layer model (esm2_t33_650M_UR50D)", "use 0..33"] },
  { name: "--layers abc", files: FA, args: ["run", "$D/a.fa", "-o", "$D/out", "--layers", "abc", ...TINY], code: 2, stderr: ['--layers: layer "abc" is not an integer', "0,6,-1"], notStderr: NO_WORKER },
  { name: "--max-tokens 0", files: FA, args: ["run", "$D/a.fa", "-o", "$D/out", "--max-tokens", "0", ...TINY], code: 2, stderr: ["--max-tokens: must be auto or a whole number of tokens per batch >=3", "4096"], notStderr: NO_WORKER },
  {
    name: "--devices 7 with no GPU 7",
    files: FA,
    args: ["run", "$D/a.fa", "-o", "$D/out", "--devices", "7", "-m", "test-tiny"],
    code: 2,
    stderr: ["--devices 7: GPU 7 is not visible"],
    notStderr: NO_WORKER,
    ...(gpu7 ? { skip: gpu7 } : {}),
  },
  { name: "--format xyz", files: FA, args: ["run", "$D/a.fa", "-o", "$D/out", "--format", "xyz", ...TINY], code: 2, stderr: ['--format: unknown format "xyz"', "npy, hdf5, parquet"], notStderr: NO_WORKER },
  { name: "--slice 3/2", files: FA, args: ["run", "$D/a.fa", "--slice", "3/2", "--dry"], code: 2, stderr: ['--slice: "3/2" is not I/N with 1 ≤ I ≤ N', "--slice $SLURM_ARRAY_TASK_ID/4"] },
  { name: "-o pointing at a file", files: { ...FA, "out.txt": "x\n" }, args: ["run", "$D/a.fa", "-o", "$D/out.txt", ...TINY], code: 6, stderr: ["out.txt is a file, not a directory", "new or empty directory"], notStderr: NO_WORKER },
  { name: "no -o", files: FA, args: ["run", "$D/a.fa"], code: 2, stderr: ["--output is required", "-o OUT_DIR"] },
  {
    name: "bad input is reported before a worker has loaded",
    files: { "j.fa": ">x\nMKJ\n" },
    args: ["run", "$D/j.fa", "-o", "$D/out", ...TINY],
    code: 3,
    stderr: ['j.fa:2 (record "x"): invalid character \'J\' at column 3', "Replace it with X"],
    notStderr: [/\bready\b/, "Traceback"],
    ...(noTiny ? { skip: noTiny } : {}),
  },
  // other commands
  { name: "embed merge with one slice of two", args: ["merge", "$D/all", "<shared>/part1"], code: 2, stderr: ["slice 2/2 missing", "--slice 2/2"] },
  { name: "embed merge with no store", args: ["merge", "$D/all"], code: 2, stderr: ["Missing required positional argument: STORES", "embed merge --help"] },
  { name: "embed convert of a non-store", files: FA, args: ["convert", "$D", "--to", "hdf5"], code: 6, stderr: ["is not an embed store", "give a store directory (-o of `embed run`)"] },
  { name: "embed validate --sample -5", files: FA, args: ["validate", "$D/a.fa", "--sample", "-5"], code: 2, stderr: ['--sample "-5" is not a positive integer'] },
  { name: "a misspelt command", args: ["runn", "a.fa"], code: 2, stderr: ["Unknown command runn (did you mean run?)", "embed --help"] },
  { name: "embed --version", args: ["--version"], code: 0, stderr: [], stdout: [pkg.version] },
  { name: "embed help", args: ["help"], code: 0, stderr: [], stdout: ["USAGE embed ", "run"] },
  { name: "embed help run", args: ["help", "run"], code: 0, stderr: [], stdout: ["USAGE embed run", "--layers"] },
  // a worker's error
  {
    name: "a bad checkpoint folder: one message with a hint, no traceback",
    files: FA,
    setup: esm1Folder,
    args: ["run", "$D/a.fa", "-o", "$D/out", "--model", "$D/m", "--devices", "cpu"],
    code: 5,
    stderr: ["$D/m/config.json: position_embedding_type is 'absolute'", "hint: ESM-1/ESM-1b models are not supported; use an ESM-2 model"],
    notStderr: ["Traceback", "worker failed", "at remoteError"],
    ...(noTiny ? { skip: noTiny } : {}),
  },
  {
    name: "a bad checkpoint folder with --verbose: the traceback too",
    files: FA,
    setup: esm1Folder,
    args: ["run", "$D/a.fa", "-o", "$D/out", "--model", "$D/m", "--devices", "cpu", "--verbose"],
    code: 5,
    stderr: ["position_embedding_type is 'absolute'", "use an ESM-2 model", "Traceback (most recent call last)", "BadModelError"],
    ...(noTiny ? { skip: noTiny } : {}),
  },
];

beforeAll(async () => {
  // A store of slice 1/2 (fake worker): an output directory, and half of a job array.
  mkdirSync(shared);
  writeFileSync(join(shared, "a.fa"), FA["a.fa"]);
  const r = await runText(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(shared, "a.fa"), "-o", join(shared, "part1"), "--slice", "1/2", "--devices", "cpu"], fakeRunEnv());
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
});

describe("user mistakes: the CLI names the fix, with a meaningful exit code", () => {
  test("the table covers at least 20 mistakes, each named once", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(20);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });
  CASES.forEach((c, k) => {
    test.skipIf(c.skip !== undefined)(`${c.name}${c.skip ? ` (skipped: ${c.skip})` : ""}`, async () => {
      const dir = join(tmp, `case${k}`);
      mkdirSync(dir);
      for (const [name, content] of Object.entries(c.files ?? {})) writeFileSync(join(dir, name), content);
      c.setup?.(dir);
      const sub = (s: string) => s.replaceAll("$D", dir).replaceAll("<shared>", shared);
      const env = { ...(c.env ?? (process.env as Record<string, string>)), NO_COLOR: "1" };
      const r = await runText(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...c.args.map(sub)], env);
      const show = { code: r.code, stderr: r.stderr };
      expect(show).toEqual({ ...show, code: c.code });
      expectWords(r.stderr, c.stderr, c.notStderr, sub);
      if (c.code !== 0) expect(r.stdout).toBe("");
      expectWords(r.stdout, c.stdout ?? []);
      for (const [f, present] of Object.entries(c.after ?? {})) expect({ [f]: existsSync(join(dir, f)) }).toEqual({ [f]: present });
    });
  });
});
