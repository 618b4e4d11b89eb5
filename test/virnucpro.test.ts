/**
 * `embed virnucpro` end to end on the CPU. With the real worker, the bundled ESM-2 test model and
 * a tiny random DNABERT-S folder: 200 random reads (some with N; many frames end at a stop codon
 * and are dropped) give VirNucPro's three kinds of .pt files, loaded with
 * torch.load(weights_only=True) and compared with the two stores value for value (ids, DNABERT-S
 * first in the merged rows, dims, float32, numbering per --per-file), and a rerun of the finished
 * command is a no-op. With fake workers (real protocol, slowed down so that a run can be caught
 * mid-step): a run killed with SIGKILL in the DNABERT-S step or in the ESM-2 step and rerun
 * writes the same bytes as an uninterrupted one.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, PYTHON_PACKAGE_DIR } from "../src/config.ts";
import { fakeRunEnv, realPython, runText } from "./helpers.ts";

// Real torch workers start twice per run: seconds each on 2 shared cores.
setDefaultTimeout(240_000);

const tmp = mkdtempSync(join(tmpdir(), "embed-virnucpro-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const READS = join(tmp, "reads.fa");
const DNABERT = join(tmp, "tiny-dnabert-s");
/** The tiny DNABERT-S folder's width (hidden_size below). */
const DNABERT_DIM = 32;
const PER_FILE = 50;

/** `n` random reads of 40-130 bases, every seventh with two N, the same for a seed. */
function randomReads(n: number, seed = 11): string {
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
  let text = "";
  for (let i = 0; i < n; i++) {
    const bases = Array.from({ length: 40 + Math.floor(rnd() * 91) }, () => "ACGT"[Math.floor(rnd() * 4)]!);
    if (i % 7 === 0) bases.splice(10, 2, "N", "N");
    text += `>read${i} sample read\n${bases.join("")}\n`;
  }
  return text;
}

const TINY_DNABERT = `
import sys
from embed_worker.dnabert_s.config import DNABERTConfig
from embed_worker.dnabert_s.testmodel import write_folder
write_folder(sys.argv[1], DNABERTConfig(hidden_size=${DNABERT_DIM}, num_layers=2, num_heads=4, intermediate_size=48, vocab_size=4096), seed=5, tokenizer=sys.argv[2])
`;

/** Every .pt file against the stores it was written from; prints facts and any differences. */
const CHECK = `
import json, os, re, sys
import numpy as np, torch
out, per = sys.argv[1], int(sys.argv[2])
def store(name):
    d = os.path.join(out, name)
    m = json.load(open(os.path.join(d, "manifest.json")))
    ids = open(os.path.join(d, "ids.txt")).read().split("\\n")[:-1]
    return ids, np.load(os.path.join(d, f"mean.layer{m['layers'][-1]}.npy")), m
def headers(path):
    return [l[1:].split()[0] for l in open(path) if l.startswith(">")]
dids, dmean, dm = store("dnabert-s")
eids, emean, em = store("esm2")
ddim, edim, n = dmean.shape[1], emean.shape[1], len(dids)
bad = []
files = sorted(os.listdir(os.path.join(out, "virnucpro")))
ks = sorted({int(re.match(r"output_(\\d+)_(DNABERT_S|ESM|merged)\\.pt$", f).group(1)) for f in files})
load = lambda k, kind: torch.load(os.path.join(out, "virnucpro", f"output_{k}_{kind}.pt"), weights_only=True)
for k in ks:
    a, b = (k - 1) * per, min(k * per, n)
    D, E, M = load(k, "DNABERT_S"), load(k, "ESM"), load(k, "merged")
    if sorted(D) != ["data", "nucleotide"] or D["nucleotide"] != dids[a:b]: bad.append(f"{k}: DNABERT_S ids")
    if [x["label"] for x in D["data"]] != dids[a:b]: bad.append(f"{k}: DNABERT_S labels")
    if not all(type(v) is float and len(x["mean_representation"]) == ddim for x in D["data"] for v in x["mean_representation"]): bad.append(f"{k}: DNABERT_S values not {ddim} floats")
    if not np.array_equal(np.array([x["mean_representation"] for x in D["data"]], dtype=np.float32), dmean[a:b]): bad.append(f"{k}: DNABERT_S values")
    if sorted(E) != ["data", "proteins"] or E["proteins"] != eids[a:b]: bad.append(f"{k}: ESM ids")
    if not all(t.dtype == torch.float32 and tuple(t.shape) == (edim,) for t in E["data"]): bad.append(f"{k}: ESM tensors")
    if not np.array_equal(torch.stack(E["data"]).numpy(), emean[a:b]): bad.append(f"{k}: ESM values")
    if sorted(M) != ["data", "ids"] or M["ids"] != dids[a:b]: bad.append(f"{k}: merged ids")
    if M["data"].dtype != torch.float32 or tuple(M["data"].shape) != (b - a, ddim + edim): bad.append(f"{k}: merged shape {tuple(M['data'].shape)}")
    elif not (np.array_equal(M["data"][:, :ddim].numpy(), dmean[a:b]) and np.array_equal(M["data"][:, ddim:].numpy(), emean[a:b])): bad.append(f"{k}: merged values (DNABERT-S first)")
print(json.dumps({"ks": ks, "files": len(files), "records": n, "ddim": ddim, "edim": edim, "bad": bad,
                  "sameIds": dids == eids == headers(os.path.join(out, "frames.fna")) == headers(os.path.join(out, "frames.faa")),
                  "families": [dm["family"], em["family"]], "layers": [dm["layers"], em["layers"]],
                  "numLayers": [dm["model"]["numLayers"], em["model"]["numLayers"]]}))
`;

function spawn(argv: string[], env: Record<string, string | undefined>) {
  return Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...env, NO_COLOR: "1" } });
}

async function run(argv: string[], env: Record<string, string | undefined> = process.env) {
  const p = spawn(argv, env);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

const args = (out: string, extra: string[] = []) => ["virnucpro", READS, "-o", out, "--esm-model", "test-tiny", "--dnabert-model", DNABERT, "--devices", "cpu", "--per-file", String(PER_FILE), ...extra];

/** Each .pt file's bytes, by name. */
function ptFiles(out: string): Record<string, string> {
  const dir = join(out, "virnucpro");
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, Bun.hash(readFileSync(join(dir, f))).toString()]));
}

beforeAll(async () => {
  writeFileSync(READS, randomReads(200));
  const r = await runText([realPython(), "-c", TINY_DNABERT, DNABERT, join(PACKAGE_ROOT, "test", "fixtures", "dnabert-s", "tokenizer.json")], { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR });
  expect(r.stderr).not.toContain("Traceback");
  expect(r.code).toBe(0);
});

describe("embed virnucpro with the real worker (tiny models)", () => {
  const out = join(tmp, "real");

  test("reads in, VirNucPro's three kinds of .pt files out, equal to the two stores", async () => {
    const r = await run(args(out));
    expect(r.stderr).not.toMatch(/\[error\]|Traceback/);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect([s.translate.skipped, s.dnabert.skipped, s.esm.skipped, s.files.skipped]).toEqual([false, false, false, false]);
    // each step's wall time, in order; together the whole run's
    expect(Object.keys(s.stepSeconds)).toEqual(["prepare", "translate", "dnabert-s", "esm2", "files"]);
    const steps = Object.values(s.stepSeconds) as number[];
    expect(steps.every((x) => x >= 0) && steps[2]! > 0 && steps[3]! > 0).toBe(true);
    expect(Math.abs(steps.reduce((a, b) => a + b, 0) - s.seconds)).toBeLessThan(0.1);
    expect(s.translate.records).toBe(200);
    // Frames with a stop codon are dropped: far fewer than six per read remain.
    expect(s.translate.frames).toBeGreaterThan(PER_FILE * 2);
    expect(s.translate.frames).toBeLessThan(6 * 200);
    expect(readFileSync(join(out, "frames.fna"), "utf8")).toMatch(/^[ACGT]*N[ACGTN]*$/m);

    const c = await runText([realPython(), "-c", CHECK, out, String(PER_FILE)], process.env);
    expect(c.stderr).not.toContain("Traceback");
    expect(c.code).toBe(0);
    const facts = JSON.parse(c.stdout);
    expect(facts.bad).toEqual([]);
    expect(facts.sameIds).toBe(true);
    expect(facts.records).toBe(s.translate.frames);
    // Numbered from 1, PER_FILE records each (the last fewer), three files per number.
    const files = Math.ceil(facts.records / PER_FILE);
    expect(facts.ks).toEqual(Array.from({ length: files }, (_, i) => i + 1));
    expect(facts.files).toBe(3 * files);
    expect(s.files).toMatchObject({ files, records: facts.records, perFile: PER_FILE, mergedDim: DNABERT_DIM + facts.edim });
    expect(facts.ddim).toBe(DNABERT_DIM);
    expect(facts.families).toEqual(["dnabert-s", "esm2"]);
    // Each model's last layer.
    expect(facts.layers).toEqual([[facts.numLayers[0]], [facts.numLayers[1]]]);
  });

  test("a rerun of the finished command does nothing and exits 0", async () => {
    const before = ptFiles(out);
    const state = readFileSync(join(out, "virnucpro.json"), "utf8");
    const r = await run(args(out));
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect([s.translate.skipped, s.dnabert.skipped, s.esm.skipped, s.files.skipped]).toEqual([true, true, true, true]);
    expect(r.stderr).not.toContain("embedding with"); // no worker started
    expect(ptFiles(out)).toEqual(before);
    expect(readFileSync(join(out, "virnucpro.json"), "utf8")).toBe(state);
  });

  test("the .pt tool refuses stores given in the wrong order, naming the family", async () => {
    const r = await runText([realPython(), "-m", "embed_worker.tools.virnucpro", join(out, "esm2"), join(out, "dnabert-s"), join(tmp, "swapped")], { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR });
    expect(r.code).toBe(1);
    const wire = JSON.parse(r.stderr.trim().split("\n").at(-1)!);
    expect(wire.message).toContain("holds esm2 embeddings; the DNABERT-S store must hold dnabert-s");
    expect(wire.hint).toContain("DNABERT_STORE ESM_STORE");
    expect(existsSync(join(tmp, "swapped")) ? readdirSync(join(tmp, "swapped")) : []).toEqual([]);
  });

  test("other --chunk into the same directory is refused (exit 6) until --overwrite", async () => {
    const r = await run(args(out, ["--chunk", "60"]));
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("holds an embed virnucpro run of --chunk (none)");
    expect(r.stderr).toContain("--overwrite");
  });
});

describe("resume after kill -9 (fake workers)", () => {
  // Fake workers embed deterministically (fake_worker.py), 40 ms a batch of at most 120 tokens;
  // the .pt tool needs torch, so the worker Python is the real one.
  const env = fakeRunEnv({ slowMs: 40 }, { EMBED_PYTHON: realPython() });
  const fast = ["--max-tokens", "120", "--shard-records", "10"];
  let reference: Record<string, string>;

  beforeAll(async () => {
    const out = join(tmp, "fake-reference");
    const r = await run(args(out, fast), env);
    expect(r.stderr).not.toMatch(/\[error\]|Traceback/);
    expect(r.code).toBe(0);
    reference = ptFiles(out);
    expect(Object.keys(reference).length).toBeGreaterThanOrEqual(9);
  });

  /** Wait (bounded) until `store` has committed a shard; false if the run ended first. */
  async function shardIn(store: string, p: { exitCode: number | null }): Promise<boolean> {
    for (let i = 0; i < 3000 && p.exitCode === null; i++) {
      const shards = join(store, "shards");
      if (existsSync(shards) && readdirSync(shards).some((f) => f.endsWith(".meta.json"))) return true;
      await Bun.sleep(10);
    }
    return false;
  }

  test("the ESM-2 step's workers load while DNABERT-S embeds: that step finds them ready", async () => {
    // Workers of both steps take 1.5 s to say READY. Started only when its step began, the ESM-2
    // step would wait those 1.5 s again; started with the DNABERT-S step, they are ready by then.
    const out = join(tmp, "fake-prestart");
    const r = await run(args(out, fast), fakeRunEnv({ slowMs: 40, readyAfterMs: 1500 }, { EMBED_PYTHON: realPython() }));
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.dnabert.run.startupSeconds).toBeGreaterThanOrEqual(1.5);
    expect(s.esm.run.startupSeconds).toBeLessThan(1.0);
    expect(ptFiles(out)).toEqual(reference);
  });

  for (const step of ["dnabert-s", "esm2"]) {
    test(`killed while the ${step} store fills, the same command resumes it and writes the same files`, async () => {
      const out = join(tmp, `fake-killed-${step}`);
      const p = spawn(args(out, fast), env);
      expect(await shardIn(join(out, step), p)).toBe(true);
      p.kill("SIGKILL");
      await p.exited;
      expect(existsSync(join(out, step, "manifest.json"))).toBe(false); // killed mid-step
      const r = await run(args(out, fast), env);
      expect(r.stderr).not.toMatch(/\[error\]|Traceback/);
      expect(r.code).toBe(0);
      const s = JSON.parse(r.stdout);
      expect(s.translate.skipped).toBe(true);
      const resumed = step === "dnabert-s" ? s.dnabert : s.esm;
      expect(resumed.skipped).toBe(false);
      expect(resumed.run.resumed).toBeGreaterThan(0);
      if (step === "esm2") expect(s.dnabert.skipped).toBe(true);
      expect(ptFiles(out)).toEqual(reference);
    });
  }
});

describe("a .pt ESM-2 model is probed once (fake workers)", () => {
  test("embed virnucpro --esm-model FILE.pt runs the shape probe once, though it resolves the model twice", async () => {
    const calls = join(tmp, "python-calls.log");
    const python = join(tmp, "counting-python"); // the real Python (the .pt tool needs torch), each call logged
    writeFileSync(python, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${realPython()}' "$@"\n`, { mode: 0o755 });
    const model = join(PACKAGE_ROOT, ".models", "test-tiny.pt");
    const out = join(tmp, "probe-once");
    const argv = ["virnucpro", READS, "-o", out, "--esm-model", model, "--dnabert-model", DNABERT, "--devices", "cpu", "--per-file", String(PER_FILE)];
    const r = await run(argv, fakeRunEnv({ slowMs: 0 }, { EMBED_PYTHON: python }));
    expect(r.stderr).not.toMatch(/\[error\]|Traceback/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).esm.model).toBe(model);
    const lines = readFileSync(calls, "utf8").trim().split("\n");
    expect(lines.filter((l) => l.includes("embed_worker.esm2.probe"))).toEqual([`-m embed_worker.esm2.probe ${model}`]);
  });
});
