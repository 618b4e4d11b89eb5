/**
 * resolveRun: every option checked and every `auto` decided in one place, before any worker
 * starts (Python is started only by the .pt probe's tests, one short `python -m` each).
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, PYTHON_PACKAGE_DIR, pythonBin } from "../src/config.ts";
import { BadModelError, ExitCode, ModelNotFoundError, OptionsError } from "../src/errors.ts";
import { resolveRun, resolveRunProbed } from "../src/resolve.ts";
import { CPU_AUTO_TOKENS } from "../src/workers/session.ts";

const GPU = [{ index: "0", name: "H100", memoryMiB: 81559 }];
const base = { inputs: ["x.fa"], devices: "cpu" };

function optionsError(f: () => unknown): OptionsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(OptionsError);
    return e as OptionsError;
  }
  throw new Error("no error thrown");
}

describe("resolveRun", () => {
  test("--layers is checked against a named model's depth", () => {
    const e = optionsError(() => resolveRun({ ...base, model: "test-tiny", layers: "0,7" }));
    expect(e.exitCode).toBe(ExitCode.badOptions);
    expect(e.message).toBe("--layers: layer 7 is out of range for a 2-layer model (test-tiny)");
    expect(e.hint).toBe("use 0..2, or -1 for the last layer");
    expect(optionsError(() => resolveRun({ ...base, layers: "-40" })).message).toContain("for a 33-layer model (esm2_t33_650M_UR50D)");
  });

  test("a known model gives absolute layers and its shape", () => {
    const r = resolveRun({ ...base, model: "test-tiny", layers: "0,-1" });
    expect(r.layers).toEqual([0, 2]);
    expect(r.model).toMatchObject({ numLayers: 2, dim: 64, heads: 4, source: "table" });
  });

  test("a Hugging Face folder is described by its config.json", () => {
    const r = resolveRun({ ...base, model: join(PACKAGE_ROOT, ".models", "test-tiny"), layers: "-1" });
    expect(r.model).toMatchObject({ numLayers: 2, dim: 64, source: "config.json" });
    expect(r.layers).toEqual([2]);
  });

  test("without the probe, a .pt file's depth is unknown (resolveRun alone starts no Python)", () => {
    const r = resolveRun({ ...base, model: join(PACKAGE_ROOT, ".models", "test-tiny.pt"), layers: "9" });
    expect(r.model).toBeUndefined();
    expect(r.layers).toBeUndefined();
  });

  test("the token budget: an option, the CPU default, or each GPU worker's rule", () => {
    expect(resolveRun({ ...base, maxTokens: "500" }).budget).toMatchObject({ tokens: 500, source: "option" });
    expect(resolveRun(base).budget).toMatchObject({ tokens: CPU_AUTO_TOKENS, source: "cpu-default" });
    const gpu = resolveRun({ ...base, devices: "0" }, GPU);
    expect(gpu.devices.map((d) => d.kind)).toEqual(["cuda"]);
    expect(gpu.budget.tokens).toBeNull();
    expect(gpu.budget.source).toBe("gpu-worker");
    expect(gpu.budget.rule).toContain("free");
    expect(resolveRun({ ...base, devices: "0", maxTokens: "8192" }, GPU).budget.tokens).toBe(8192);
  });

  test("precision auto: fp32 on CPU, fp16 on GPU; an explicit one is kept", () => {
    expect(resolveRun(base).precision).toBe("fp32");
    expect(resolveRun({ ...base, devices: "0" }, GPU).precision).toBe("fp16");
    expect(resolveRun({ ...base, precision: "bf16" }).precision).toBe("bf16");
  });

  test("--shard is read as --slice; the two must agree", () => {
    const r = resolveRun({ ...base, shard: "2/4" });
    expect(r.cfg.slice).toEqual({ index: 2, count: 4 });
    expect(r.cfg.shard).toBeUndefined();
    expect(resolveRun({ ...base, slice: "3/4" }).cfg.slice).toEqual({ index: 3, count: 4 });
    expect(optionsError(() => resolveRun({ ...base, slice: "1/4", shard: "2/4" })).message).toContain("disagree");
  });
});

describe("resolveRun: the model family", () => {
  test("ESM-2 by default: protein reading, fair-esm's --truncate", () => {
    const r = resolveRun({ ...base, model: "test-tiny" });
    expect(r.family).toBe("esm2");
    expect(r.cfg.family).toBe("esm2");
    expect(r.cfg.truncate).toBe(1022);
    expect(r.tokenizer).toBeUndefined();
  });

  test("a DNABERT-S folder: family, its tokenizer.json, 510 tokens unless --truncate says otherwise", () => {
    const dir = mkdtempSync(join(tmpdir(), "embed-resolve-"));
    try {
      copyFileSync("/work/shared/data/dnabert-s/config.json", join(dir, "config.json"));
      copyFileSync(join(PACKAGE_ROOT, "test", "fixtures", "dnabert-s", "tokenizer.json"), join(dir, "tokenizer.json"));
      const r = resolveRun({ ...base, model: dir });
      expect(r.model).toMatchObject({ family: "dnabert-s", numLayers: 12 });
      expect([r.family, r.cfg.family, r.tokenizer, r.cfg.truncate]).toEqual(["dnabert-s", "dnabert-s", join(dir, "tokenizer.json"), 510]);
      expect(resolveRun({ ...base, model: dir, truncate: 2000 }).cfg.truncate).toBe(2000);
      rmSync(join(dir, "tokenizer.json"));
      const e = (() => { try { resolveRun({ ...base, model: dir }); } catch (x) { return x as ModelNotFoundError; } })();
      expect(e).toBeInstanceOf(ModelNotFoundError);
      expect(e!.message).toContain("has no tokenizer.json");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a DNABERT-S name with no local copy exits 5 before any worker, with the download command", () => {
    const empty = mkdtempSync(join(tmpdir(), "embed-resolve-hub-"));
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { HF_HUB_CACHE: empty, EMBED_MODEL_DIR: empty });
      let err: unknown;
      try {
        resolveRun({ ...base, model: "zhihan1996/DNABERT-S" });
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(ModelNotFoundError);
      expect((err as ModelNotFoundError).exitCode).toBe(ExitCode.modelNotFound);
      expect((err as ModelNotFoundError).message).toContain(join(empty, "models--zhihan1996--DNABERT-S", "snapshots", "<rev>/"));
      expect((err as ModelNotFoundError).hint).toContain("hf download zhihan1996/DNABERT-S");
    } finally {
      for (const k of ["HF_HUB_CACHE", "EMBED_MODEL_DIR"]) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("resolveRunProbed: a fair-esm .pt file's shape, read by the Python probe", () => {
  const pt = join(PACKAGE_ROOT, ".models", "test-tiny.pt");

  test("the shape is known and --layers checked against it, as for a named model", async () => {
    const r = await resolveRunProbed({ ...base, model: pt, layers: "0,-1" });
    expect(r.model).toEqual({ name: "test-tiny.pt", numLayers: 2, dim: 64, heads: 4, family: "esm2", source: "checkpoint" });
    expect(r.layers).toEqual([0, 2]);
    const e = await resolveRunProbed({ ...base, model: pt, layers: "99" }).catch((x) => x);
    expect(e).toBeInstanceOf(OptionsError);
    expect(e.message).toContain("layer 99 is out of range for a 2-layer model (test-tiny.pt)");
  });

  test("a file that is not a fair-esm checkpoint is refused with the loader's one line naming it", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "embed-probe-"));
    try {
      const junk = join(tmp, "notes.pt");
      await Bun.write(junk, "not a pickle at all\n");
      const e = await resolveRunProbed({ ...base, model: junk }).catch((x) => x);
      expect(e).toBeInstanceOf(BadModelError);
      expect(e.exitCode).toBe(ExitCode.modelNotFound);
      expect(e.message).toStartWith(`${junk}: refusing to unpickle`); // torch's weights-only reader, as the loader words it
      expect(e.message).not.toContain("\n");
      expect(e.hint).toContain("weights_only=True");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("a file is probed once per process (embed virnucpro resolves each model twice); a rewritten one again", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "embed-probe-once-"));
    const calls = join(tmp, "calls.log");
    const python = join(tmp, "python"); // the real Python, each call logged
    writeFileSync(python, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${pythonBin()}' "$@"\n`, { mode: 0o755 });
    const probes = () => (existsSync(calls) ? readFileSync(calls, "utf8") : "").split("\n").filter((l) => l.includes("embed_worker.esm2.probe")).length;
    const saved = process.env.EMBED_PYTHON;
    process.env.EMBED_PYTHON = python;
    try {
      const model = join(tmp, "m.pt");
      copyFileSync(pt, model);
      const first = await resolveRunProbed({ ...base, model });
      const second = await resolveRunProbed({ ...base, model, layers: "-1" });
      expect(probes()).toBe(1);
      expect(second.model).toEqual(first.model);
      expect(second.layers).toEqual([2]);
      // Another geometry written over the same path: its own shape, from a second probe.
      const made = Bun.spawnSync([pythonBin(), "-m", "embed_worker.tools.testmodel", "--out", tmp, "--name", "other", "--layers", "3", "--dim", "48", "--heads", "6", "--format", "fair-esm"], { cwd: PYTHON_PACKAGE_DIR });
      expect(made.exitCode).toBe(0);
      copyFileSync(join(tmp, "other.pt"), model);
      const third = await resolveRunProbed({ ...base, model });
      expect(probes()).toBe(2);
      expect(third.model).toMatchObject({ name: "m.pt", numLayers: 3, dim: 48, heads: 6 });
    } finally {
      if (saved === undefined) delete process.env.EMBED_PYTHON;
      else process.env.EMBED_PYTHON = saved;
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("a named model or a folder needs no probe", async () => {
    const r = await resolveRunProbed({ ...base, model: "test-tiny", layers: "-1" }, []);
    expect(r.model?.source).toBe("table");
  });
});
