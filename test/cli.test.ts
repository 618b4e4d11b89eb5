/**
 * The CLI end to end, with the real worker and the bundled random-weight test model: a run whose
 * store loads from Python and equals fair-esm, the dry plan, and every bad-input / bad-option
 * case exiting non-zero with its message.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { loadBpe } from "../src/input/reading.ts";
import { fakeRunEnv } from "./helpers.ts";

// These tests spawn Python workers; torch alone takes seconds to import on 2 cores.
setDefaultTimeout(120_000);

const tmp = mkdtempSync(join(tmpdir(), "embed-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const EXAMPLE = join(PACKAGE_ROOT, "examples", "example.fasta");
const MODEL_DIR = process.env.EMBED_MODEL_DIR ?? join(PACKAGE_ROOT, ".models");

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function embed(args: string[], stdin?: string, env: Record<string, string> = {}): Promise<Ran> {
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...args], {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

function fasta(name: string, text: string | Uint8Array): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

describe("embed run (real worker, test model)", () => {
  test("embeds the example; the store loads with NumPy and equals fair-esm", async () => {
    const out = join(tmp, "store");
    const r = await embed(["run", EXAMPLE, "-o", out, "--model", "test-tiny", "--include", "mean,bos,per-residue", "--layers", "0,-1"]);
    expect(r.stderr).toContain("6 records embedded");
    expect(r.stderr).toMatch(/time each worker spent computing: cpu \d+%/);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.records).toBe(6);
    expect(summary.layers).toEqual([0, 2]);
    // One CPU worker did every batch; its busy fraction is a fraction of the embedding phase.
    expect(Object.keys(summary.busy)).toEqual(Object.keys(summary.perWorker));
    for (const f of Object.values(summary.busy) as number[]) expect(f > 0 && f <= 1.01).toBe(true);
    // Where the worker's start-up went: the interpreter, then its phases in order, in seconds,
    // summing to no more than the whole start-up.
    const startup = summary.workerStartup.cpu as Record<string, number>;
    expect(Object.keys(startup)).toEqual(["python", "torch", "device", "read", "load", "kernels", "ring", "warm-up"]);
    for (const s of Object.values(startup)) expect(s).toBeGreaterThanOrEqual(0);
    expect(startup.torch!).toBeGreaterThan(0);
    const sum = Object.values(startup).reduce((a, b) => a + b, 0);
    expect(sum).toBeLessThanOrEqual(summary.startupSeconds + 0.05);
    expect(r.stderr).toMatch(/ready .*startup.*torch \d+\.\d s, device/);
    expect(readdirSync(out).filter((f) => f.endsWith(".partial"))).toEqual([]);
    const verify = Bun.spawnSync([pythonBin(), join(PACKAGE_ROOT, "test", "verify_store.py"), out, EXAMPLE, join(MODEL_DIR, "test-tiny.pt")], { stderr: "pipe" });
    const report = JSON.parse(verify.stdout.toString());
    expect(report.ids_match).toBe(true);
    expect(report.records).toBe(6);
    for (const err of Object.values(report.max_rel_err) as number[]) expect(err).toBeLessThanOrEqual(1e-5);
    expect(verify.exitCode).toBe(0);
    // The manifest's input checksums: size and CRC-32 of the FASTA text as read.
    const text = await Bun.file(EXAMPLE).bytes();
    const manifest = JSON.parse(await Bun.file(join(out, "manifest.json")).text());
    expect(manifest.inputChecksums).toEqual([
      { input: EXAMPLE, gzip: false, records: 6, bytes: text.length, crc32: (Bun.hash.crc32(text) >>> 0).toString(16).padStart(8, "0") },
    ]);

    // The same command again is a no-op (a resubmitted job array): exit 0, the store as it was.
    const written = await Bun.file(join(out, "manifest.json")).text();
    const same = await embed(["run", EXAMPLE, "-o", out, "--model", "test-tiny", "--include", "mean,bos,per-residue", "--layers", "0,-1"]);
    expect(same.stderr).toContain("nothing to do");
    expect(same.code).toBe(0);
    expect(await Bun.file(join(out, "manifest.json")).text()).toBe(written);
    // Other options into the same store are refused, and the store is left as it was.
    const again = await embed(["run", EXAMPLE, "-o", out, "--model", "test-tiny"]);
    expect(again.code).toBe(6);
    expect(again.stderr).toContain("already holds a complete store of other --layers, --include");
    expect(await Bun.file(join(out, "manifest.json")).text()).toBe(written);
    // The same command asking for another format too (as a run that stopped while converting
    // would be rerun) writes only that format; the store is left as it was.
    const formats = await embed(["run", EXAMPLE, "-o", out, "--model", "test-tiny", "--include", "mean,bos,per-residue", "--layers", "0,-1", "--format", "npy,hdf5"]);
    expect(formats.stderr).toContain("wrote only the missing hdf5");
    expect(formats.code).toBe(0);
    expect(existsSync(join(out, "embeddings.h5"))).toBe(true);
    expect(await Bun.file(join(out, "manifest.json")).text()).toBe(written);
  });

  test("stdin, gzip and the Hugging Face folder of the same weights give the same vectors", async () => {
    const gz = fasta("ex.fa.gz", gzipSync(await Bun.file(EXAMPLE).bytes()));
    const a = join(tmp, "a");
    const b = join(tmp, "b");
    const [ra, rb] = await Promise.all([
      embed(["run", "-", "-o", a, "--model", "test-tiny"], await Bun.file(EXAMPLE).text()),
      embed(["run", gz, "-o", b, "--model", join(MODEL_DIR, "test-tiny")]),
    ]);
    expect(ra.code).toBe(0);
    expect(rb.code).toBe(0);
    const x = new Float32Array((await Bun.file(join(a, "mean.layer2.npy")).arrayBuffer()).slice(128));
    const y = new Float32Array((await Bun.file(join(b, "mean.layer2.npy")).arrayBuffer()).slice(128));
    expect(x.length).toBe(6 * 64);
    let maxDiff = 0;
    for (let i = 0; i < x.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x[i]! - y[i]!));
    expect(maxDiff).toBeLessThan(1e-5);
    // The same text through stdin and through gzip: the same checksum (of the text, not the file).
    const sums = await Promise.all([a, b].map(async (d) => JSON.parse(await Bun.file(join(d, "manifest.json")).text()).inputChecksums[0]));
    expect(sums[0]).toMatchObject({ input: "<stdin>", gzip: false });
    expect(sums[1]).toMatchObject({ input: gz, gzip: true });
    expect(sums[0].crc32).toBe(sums[1].crc32);
    expect(sums[0].bytes).toBe(sums[1].bytes);
  });

  test("--kernels triton on a CPU worker warns and runs the eager reference arrangement", async () => {
    const r = await embed(["run", EXAMPLE, "-o", join(tmp, "kern"), "--model", "test-tiny", "--kernels", "triton"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("--kernels triton applies to GPU workers only");
    expect(JSON.parse(r.stdout).devices[0]).toContain(", eager, fp32)");
    const bad = await embed(["run", EXAMPLE, "-o", join(tmp, "kern2"), "--kernels", "fast"]);
    expect(bad.code).toBe(2);
  });

  test("--dry prints the plan as JSON and starts no worker", async () => {
    const r = await embed(["run", EXAMPLE, "--dry", "--max-tokens", "200", "--devices", "cpu"]);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.dry).toBe(true);
    expect(plan.budget).toBe(200);
    expect(plan.records.records).toBe(6);
    expect(plan.plan.batches).toBeGreaterThan(1);
    expect(r.stderr).not.toContain("ready");
  });

  test("--dry prints the budget the run will use, or says that each GPU worker decides it", async () => {
    const cpu = JSON.parse((await embed(["run", EXAMPLE, "--dry", "--devices", "cpu", "--model", "test-tiny", "--layers", "0,-1"])).stdout);
    expect(cpu).toMatchObject({ budget: 4096, budgetSource: "cpu-default", planBudget: 4096, layers: [0, 2] });
    expect(cpu.modelShape).toEqual({ numLayers: 2, dim: 64, heads: 4, source: "table" });
    // No GPU is needed to plan for one: CUDA_VISIBLE_DEVICES names it.
    const gpu = JSON.parse((await embed(["run", EXAMPLE, "--dry", "--devices", "0"], undefined, { CUDA_VISIBLE_DEVICES: "GPU-0" })).stdout);
    expect(gpu.devices).toEqual(["cuda:0"]);
    expect(gpu.budget).toBeNull();
    expect(gpu.budgetSource).toBe("gpu-worker");
    expect(gpu.budgetRule).toContain("each GPU worker decides at start-up");
    expect(gpu.planBudget).toBe(65536);
    // A .pt file's shape is read by the one-shot Python probe (its cfg), before any worker starts.
    const pt = JSON.parse((await embed(["run", EXAMPLE, "--dry", "--devices", "cpu", "--model", join(MODEL_DIR, "test-tiny.pt")])).stdout);
    expect(pt.modelShape).toEqual({ numLayers: 2, dim: 64, heads: 4, source: "checkpoint" });
    expect(pt.layers).toEqual([2]);
  });

  test("--layers beyond a .pt model's depth is refused (exit 2) before any worker starts", async () => {
    const r = await embed(["run", EXAMPLE, "-o", join(tmp, "pt-layers"), "--devices", "cpu", "--model", join(MODEL_DIR, "test-tiny.pt"), "--layers", "99"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("layer 99 is out of range for a 2-layer model (test-tiny.pt)");
    expect(r.stderr).not.toContain("ready");
    expect(existsSync(join(tmp, "pt-layers"))).toBe(false);
  });

  test("a layer out of range is a bad option (exit 2), refused before any worker starts", async () => {
    const r = await embed(["run", EXAMPLE, "-o", join(tmp, "bad-layer"), "--model", "test-tiny", "--layers", "7"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--layers: layer 7 is out of range for a 2-layer model (test-tiny)");
    expect(r.stderr).not.toContain("embedding with"); // no worker was started
    expect(existsSync(join(tmp, "bad-layer"))).toBe(false); // nor the output claimed
    const dry = await embed(["run", EXAMPLE, "--dry", "--model", "test-tiny", "--layers", "-4"]);
    expect(dry.code).toBe(2);
    expect(dry.stderr).toContain("layer -4 is out of range");
    // A .pt file's depth is known once the worker has opened it: the worker reports it, exit 2 too.
    const pt = await embed(["run", EXAMPLE, "-o", join(tmp, "bad-layer-pt"), "--model", join(MODEL_DIR, "test-tiny.pt"), "--layers", "7"]);
    expect(pt.code).toBe(2);
    expect(pt.stderr).toContain("layer 7 is out of range for a 2-layer model");
    expect(existsSync(join(tmp, "bad-layer-pt", "manifest.json"))).toBe(false);
  });

  test("a model in no cache and no network exits 5, listing where it looked and the URL tried", async () => {
    // Port 9 on loopback: nothing listens, so the download fails at once, whatever the network.
    const env = { EMBED_MODEL_URL: "http://127.0.0.1:9", TORCH_HOME: join(tmp, "th-none") };
    const r = await embed(["run", EXAMPLE, "-o", join(tmp, "nomodel"), "--model", "esm2_t6_8M_UR50D"], undefined, env);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain("hub/checkpoints");
    expect(r.stderr).toContain("downloading http://127.0.0.1:9/esm2_t6_8M_UR50D.pt failed");
    expect(r.stderr).toContain("EMBED_MODEL_URL");
    // --no-download: no attempt, the same paths, and how to allow it.
    const off = await embed(["run", EXAMPLE, "-o", join(tmp, "nomodel"), "--model", "esm2_t6_8M_UR50D", "--no-download"], undefined, env);
    expect(off.code).toBe(5);
    expect(off.stderr).toContain("hub/checkpoints");
    expect(off.stderr).not.toContain("downloading");
    expect(off.stderr).toContain("rerun without --no-download");
    // An unknown name is never downloaded: it lists the known ones.
    const unknown = await embed(["run", EXAMPLE, "-o", join(tmp, "nomodel"), "--model", "esm3_open"], undefined, env);
    expect(unknown.code).toBe(5);
    expect(unknown.stderr).toContain("known ESM-2 models");
  });
});

describe("bad input exits 3 with file:line, record id and a hint", () => {
  const cases: [string, string | Uint8Array, RegExp][] = [
    ["invalid.fa", ">ok\nMKV\n>bad one\nMKJV\n", /invalid\.fa:4.*"bad".*J/],
    ["empty.fa", ">a\nMKV\n>empty\n>c\nMK\n", /empty\.fa:3.*"empty"/],
    ["noheader.fa", "MKVL\n>a\nMK\n", /noheader\.fa:1/],
    ["dup.fa", ">x\nMK\n>x\nMV\n", /dup\.fa:3.*"x"/],
    ["binary.fa", new Uint8Array([0x3e, 0x61, 0x0a, 0x00, 0x01, 0xff, 0x4d]), /binary\.fa/],
  ];
  for (const [name, text, pattern] of cases) {
    test(name, async () => {
      const r = await embed(["run", fasta(name, text), "--dry", "--devices", "cpu"]);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).toContain("hint:");
      expect(r.stdout).toBe("");
    });
  }

  test("a truncated .gz", async () => {
    const text = Array.from({ length: 3000 }, (_, i) => `>r${i}\nMKVLA\n`).join("");
    const full = gzipSync(new TextEncoder().encode(text));
    const r = await embed(["run", fasta("cut.fa.gz", full.subarray(0, full.length / 2)), "--dry"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cut\.fa\.gz.*(truncated|corrupt)/);
  });

  test("a missing file", async () => {
    const r = await embed(["run", join(tmp, "nope.fa"), "--dry"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("nope.fa");
  });

  test("bad input during a real run: workers stopped, nothing written", async () => {
    const out = join(tmp, "badrun");
    const r = await embed(["run", fasta("bad2.fa", ">a\nMK1\n"), "-o", out, "--model", "test-tiny"]);
    expect(r.code).toBe(3);
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
  });

  test("bad input is reported without waiting for the model to load", async () => {
    // A worker that would take 10 minutes to say READY: the input error must come first.
    const env = fakeRunEnv({ readyAfterMs: 600_000 });
    const r = await embed(["run", fasta("bad3.fa", ">a\nMK\n>b\nMK1\n"), "-o", join(tmp, "badslow"), "--devices", "cpu"], undefined, env);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("bad3.fa:4");
    expect(existsSync(join(tmp, "badslow", "manifest.json"))).toBe(false);
  }, 60_000);

  test("duplicates kept distinct with --duplicate-ids rename", async () => {
    const r = await embed(["run", fasta("dup2.fa", ">x\nMK\n>x\nMV\n"), "--dry", "--duplicate-ids", "rename"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).records.records).toBe(2);
  });
});

describe("bad options exit 2", () => {
  test("--layers not a number", async () => {
    const r = await embed(["run", EXAMPLE, "--dry", "--layers", "last"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--layers");
  });
  test("--include unknown", async () => {
    const r = await embed(["run", EXAMPLE, "--dry", "--include", "max"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown output");
  });
  test("no -o without --dry", async () => {
    const r = await embed(["run", EXAMPLE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--output is required");
  });
  test("budget smaller than the longest record", async () => {
    const r = await embed(["run", EXAMPLE, "--dry", "--max-tokens", "50", "--devices", "cpu"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--max-tokens");
  });
});

describe("README quick start", () => {
  test("scripts/demo sets up (already done: fast), embeds the example and prints a load line that works", async () => {
    const proc = Bun.spawn(["bash", join(PACKAGE_ROOT, "scripts", "demo")], { cwd: PACKAGE_ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ records: 6, output: "out/demo" });
    const line = stderr.match(/load in Python: (.+)$/m)?.[1];
    expect(line).toBeDefined();
    const check = Bun.spawnSync([pythonBin(), "-c", `${line}\nassert X.shape == (6, 64), X.shape\nassert len(ids) == 6\nprint("ok")`], { cwd: PACKAGE_ROOT, stderr: "pipe" });
    expect(check.stderr.toString()).toBe("");
    expect(check.stdout.toString().trim()).toBe("ok");
  });
});

describe("embed models / doctor", () => {
  test("models lists the ESM-2 family and finds the test model", async () => {
    const r = await embed(["models", "--json"]);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { name: string; layers: number; dim: number; heads: number; path: string | null }[];
    const byName = Object.fromEntries(rows.map((m) => [m.name, m]));
    expect(byName.esm2_t36_3B_UR50D).toMatchObject({ layers: 36, dim: 2560, heads: 40 });
    expect(byName.esm2_t33_650M_UR50D).toMatchObject({ layers: 33, dim: 1280, heads: 20 });
    expect(Object.keys(byName)).toEqual(expect.arrayContaining(["esm2_t6_8M_UR50D", "esm2_t12_35M_UR50D", "esm2_t30_150M_UR50D", "esm2_t48_15B_UR50D", "test-tiny"]));
    expect(byName["test-tiny"]!.path).toContain("test-tiny");
    // A model found nowhere says where a download would put it: its folder in the Hugging Face cache
    // (the default source), or the torch hub cache when EMBED_MODEL_URL names a fair-esm mirror.
    const missing = rows.filter((m) => m.path === null && (m as { family?: string }).family === "esm2") as unknown as { name: string; download_to: string }[];
    for (const m of missing) expect(m.download_to).toMatch(process.env.EMBED_MODEL_URL ? new RegExp(`/checkpoints/${m.name}\\.pt$`) : new RegExp(`/models--facebook--${m.name}$`));
    expect(byName["test-tiny"]!).toMatchObject({ download_to: null, family: "esm2" });
    // DNABERT-S rows: the released shape, and (not found) the command that fetches it
    expect(byName["DNABERT-S"]).toMatchObject({ family: "dnabert-s", layers: 12, dim: 768, heads: 12 });
    expect(byName["DNABERT-2-117M"]).toMatchObject({ family: "dnabert-s", layers: 12, dim: 768 });
    for (const name of ["DNABERT-S", "DNABERT-2-117M"]) {
      const m = byName[name] as unknown as { path: string | null; how: string | null };
      if (m.path === null) expect(m.how).toContain(`hf download zhihan1996/${name}`);
    }
  });

  test("doctor reports torch and the attention backend", async () => {
    const r = await embed(["doctor", "--json"]);
    const report = JSON.parse(r.stdout);
    expect(report.python.torch).toMatch(/^\d+\.\d+/);
    expect(report.python.attention.cpu).toBe("exact");
    expect(report.cpus).toBeGreaterThanOrEqual(1);
    expect(report.tokenizerThreads).toBe(Math.min(8, report.cpus));
    expect(report.python.kernels.cpu).toBe("eager");
    expect(["quack", "triton", "compile"]).toContain(report.python.kernels.gpu);
    // On a machine without a GPU the only finding is the CPU warning, which does not fail.
    expect(report.problems.filter((p: { severity?: string }) => p.severity !== "warn")).toEqual([]);
    expect(r.code).toBe(0);
  });

  test("doctor fails with a fix hint when the Python has no torch", async () => {
    const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "doctor", "--json"], {
      env: { ...process.env, EMBED_PYTHON: "python3", PYTHONPATH: "", PYTHONNOUSERSITE: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    const report = JSON.parse(out);
    if (report.python?.torch) return; // this machine's python3 has torch: nothing to check here
    expect(code).toBe(4);
    expect(err).toContain("scripts/setup");
  });
});

describe("embed run --format", () => {
  test("hdf5 and parquet written after the run and readable; --overwrite drops arrays of the old run", async () => {
    const out = join(tmp, "formats");
    const first = await embed(["run", EXAMPLE, "-o", out, "--model", "test-tiny", "--layers", "0,-1"]);
    expect(first.code).toBe(0);
    expect(existsSync(join(out, "mean.layer0.npy"))).toBe(true);
    const r = await embed(["run", EXAMPLE, "-o", out, "--model", "test-tiny", "--format", "npy,hdf5,parquet", "--overwrite"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).formats.map((f: { format: string }) => f.format)).toEqual(["npy", "hdf5", "parquet"]);
    expect(existsSync(join(out, "mean.layer0.npy"))).toBe(false);
    const check = Bun.spawnSync([
      pythonBin(),
      "-c",
      `import h5py, numpy as np, pyarrow.parquet as pq
f = h5py.File("${out}/embeddings.h5"); X = np.load("${out}/mean.layer2.npy")
t = pq.read_table("${out}/mean.layer2.parquet")
assert np.array_equal(f["mean/layer2"][:], X) and t.num_rows == 6
print("ok")`,
    ]);
    expect(check.stdout.toString().trim()).toBe("ok");
  });

  test("an unknown format is a bad option", async () => {
    const r = await embed(["run", EXAMPLE, "--dry", "--format", "xlsx"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown format "xlsx"');
  });
});

describe("downloading a released model", () => {
  test("fetched from the mirror into the torch hub cache (loopback), then embedded; --no-download fetches nothing", async () => {
    const served = join(tmp, "served");
    const gen = Bun.spawnSync([pythonBin(), "-m", "embed_worker.tools.testmodel", "--out", served, "--name", "esm2_t6_8M_UR50D", "--layers", "6", "--dim", "320", "--heads", "20", "--format", "fair-esm"], {
      env: { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, "py") },
    });
    expect(gen.exitCode).toBe(0);
    let requests = 0;
    using server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (req) => {
        requests++;
        return new Response(Bun.file(join(served, new URL(req.url).pathname)));
      },
    });
    const env = { ...process.env, NO_COLOR: "1", EMBED_MODEL_URL: `http://127.0.0.1:${server.port}`, TORCH_HOME: join(tmp, "torch-home") };
    const run = (extra: string[]) =>
      Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", EXAMPLE, "-o", join(tmp, `dl-${extra.length}`), "--model", "esm2_t6_8M_UR50D", ...extra], { stdout: "pipe", stderr: "pipe", env });
    const without = run(["--no-download"]);
    expect(await without.exited).toBe(5);
    expect(requests).toBe(0);
    const p = run([]);
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(err).toContain("downloaded");
    expect(code).toBe(0);
    expect(JSON.parse(out).layers).toEqual([6]);
    const hub = join(tmp, "torch-home", "hub", "checkpoints");
    expect(existsSync(join(hub, "esm2_t6_8M_UR50D.pt"))).toBe(true);
    expect(readdirSync(hub).filter((f) => f.includes("partial"))).toEqual([]);
    expect(requests).toBe(1);
  });
});

describe("DNABERT-S input and the alphabet checks", () => {
  // A DNABERT-S folder as far as the orchestrator reads it: the real config.json and tokenizer.json.
  const dnaModel = join(tmp, "dnabert-s-folder");
  mkdirSync(dnaModel);
  copyFileSync("/work/shared/data/dnabert-s/config.json", join(dnaModel, "config.json"));
  copyFileSync(join(PACKAGE_ROOT, "test", "fixtures", "dnabert-s", "tokenizer.json"), join(dnaModel, "tokenizer.json"));
  const reads = fasta("reads.fna", ">r1 first\nACGTTGCAAGGCTAGCTAGGATCCGATCG\nATCGTAGCTAGCTGACTGA\n>r2\nttgacgatcgatcgatNNgctagc\n>r3\nACGTACGTAGCTAGCTAGCTGATCGATCGTAGC\n");
  const bpe = loadBpe(join(dnaModel, "tokenizer.json"));
  const tokens = (s: string) => bpe.encode(s.toUpperCase()).ids.length - 2;
  /** A "python" that leaves a mark if a worker is ever started. */
  const marker = join(tmp, "worker-started");
  const fakePython = fasta("fake-python.sh", `#!/bin/sh\ntouch ${marker}\nexit 1\n`);
  chmodSync(fakePython, 0o755);

  test("--dry for a DNABERT-S folder: the family, BPE token counts, [UNK] counted, no worker", async () => {
    const r = await embed(["run", reads, "--dry", "--devices", "cpu", "--model", dnaModel, "--max-tokens", "4096"], undefined, { EMBED_PYTHON: fakePython });
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.family).toBe("dnabert-s");
    expect(plan.tokenizer).toBe(join(dnaModel, "tokenizer.json"));
    expect(plan.truncate).toBe(510);
    expect(plan.modelShape).toMatchObject({ numLayers: 12, dim: 768, heads: 12 });
    const want = [tokens("ACGTTGCAAGGCTAGCTAGGATCCGATCGATCGTAGCTAGCTGACTGA"), tokens("ttgacgatcgatcgatNNgctagc"), tokens("ACGTACGTAGCTAGCTAGCTGATCGATCGTAGC")];
    expect(plan.records).toMatchObject({ records: 3, residues: want[0]! + want[1]! + want[2]!, longest: Math.max(...want), unknown: 2 });
    expect(plan.plan.tokens).toBe(want[0]! + want[1]! + want[2]! + 3 * 2); // [CLS] and [SEP] per record
    expect(r.stderr).toContain("2 [UNK] token(s)");
    expect(existsSync(marker)).toBe(false);
  });

  test("protein FASTA for DNABERT-S exits 3 at the letter, before any worker; --alphabet-check off embeds it with [UNK]", async () => {
    const prot = fasta("prot-for-dna.fa", ">dna1\nACGTACGT\n>p1 kinase\nMKVLAAGIEF\n");
    const r = await embed(["run", prot, "-o", join(tmp, "prot-dna-out"), "--devices", "cpu", "--model", dnaModel], undefined, { EMBED_PYTHON: fakePython });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`${prot}:4 (record "p1"): 'L' at column 4 is a protein letter`);
    expect(r.stderr).toContain("--alphabet-check off");
    expect(existsSync(marker)).toBe(false);
    const off = await embed(["run", prot, "--dry", "--devices", "cpu", "--model", dnaModel, "--alphabet-check", "off"]);
    expect(off.code).toBe(0);
    expect(JSON.parse(off.stdout).records.unknown).toBe(7); // M K V L I E F: all but the A/A/G
  });

  test("--unknown error: a read with N exits 3 naming it", async () => {
    const r = await embed(["run", reads, "--dry", "--devices", "cpu", "--model", dnaModel, "--unknown", "error"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`${reads}:5 (record "r2"): 'N' at column 17 is not A/C/G/T`);
  });

  test("nucleotide FASTA for ESM-2 exits 3 naming the first record, and no worker starts; --alphabet-check off overrides", async () => {
    const r = await embed(["run", reads, "-o", join(tmp, "dna-esm-out"), "--devices", "cpu", "--model", "test-tiny"], undefined, { EMBED_PYTHON: fakePython });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`${reads}:1 (record "r1"): this looks like nucleotide FASTA, not protein`);
    expect(r.stderr).toContain("--alphabet-check off");
    expect(existsSync(marker)).toBe(false);
    const off = await embed(["run", reads, "--dry", "--devices", "cpu", "--model", "test-tiny", "--alphabet-check", "off"]);
    expect(off.code).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ family: "esm2", records: { records: 3 } });
  });

  test("--help documents the checks", async () => {
    const r = await embed(["run", "--help"]);
    expect(r.stdout).toContain("--alphabet-check");
    expect(r.stdout).toContain("--unknown");
  });
});
