/**
 * Which Hugging Face cache snapshots count as a model (src/model-dirs.ts): the same weight files as
 * the worker's loader and download (py/embed_worker/hub.py HF_WEIGHTS, checkpoint.py
 * HF_WEIGHT_FILES), sharded pickles with pytorch_model.bin.index.json among them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { findModelFolder, HF_WEIGHTS, type ModelSearch } from "../src/model-dirs.ts";
import { workerResolves } from "./helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "embed-model-dirs-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function python(script: string, env: Record<string, string> = {}): string {
  const e: Record<string, string | undefined> = { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, "py"), ...env };
  delete e.EMBED_MODEL_DIR;
  const p = Bun.spawnSync([pythonBin(), "-c", script], { env: e, cwd: tmp });
  expect(p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
  return p.stdout.toString().trim();
}

describe("weight files of a Hugging Face folder", () => {
  test("the same list as the worker's download and loader", () => {
    const py = python("import json\nfrom embed_worker import hub, checkpoint\nprint(json.dumps([hub.HF_WEIGHTS, checkpoint.HF_WEIGHT_FILES]))");
    const [hub, loader] = JSON.parse(py) as [string[], string[]];
    expect<string[]>([...HF_WEIGHTS]).toEqual(hub);
    expect<string[]>([...HF_WEIGHTS]).toEqual(loader);
    expect(HF_WEIGHTS).toContain("pytorch_model.bin.index.json");
  });

  test("a snapshot of pickled shards counts once its index is there, for both lookups", () => {
    const name = "esm2_t6_8M_UR50D";
    const search: ModelSearch = { repoModels: join(tmp, "repo-models"), torchHub: join(tmp, "torch", "hub", "checkpoints"), hfHub: join(tmp, "hf") };
    const repo = join(search.hfHub, `models--facebook--${name}`);
    const snap = join(repo, "snapshots", "abc123");
    mkdirSync(snap, { recursive: true });
    mkdirSync(join(repo, "refs"));
    writeFileSync(join(repo, "refs", "main"), "abc123");
    writeFileSync(join(snap, "config.json"), "{}");
    const workerFinds = () => workerResolves(name, { HF_HUB_CACHE: search.hfHub, TORCH_HOME: join(tmp, "torch") }, tmp);
    // Shards without their index: an interrupted download, not a model.
    writeFileSync(join(snap, "pytorch_model-00001-of-00002.bin"), "x");
    writeFileSync(join(snap, "pytorch_model-00002-of-00002.bin"), "x");
    expect(findModelFolder(name, "esm2", search)).toBeUndefined();
    expect(workerFinds()).toBeNull();
    writeFileSync(join(snap, "pytorch_model.bin.index.json"), "{}");
    expect(findModelFolder(name, "esm2", search)).toEqual({ kind: "dir", path: snap });
    expect(workerFinds()).toBe(snap);
  });
});
