/**
 * The orchestrator's model table (src/models.ts) agrees with the worker's registry, and a model's
 * shape is known without Python for names and Hugging Face folders, and left to the worker for a
 * .pt file or a config.json that does not parse cleanly.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { familyOfConfig, MODEL_TABLE, modelShape, resolveLayers, tableFamily } from "../src/models.ts";
import { findModelFolder, type ModelSearch } from "../src/model-dirs.ts";
import { workerResolves } from "./helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "embed-models-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("model table", () => {
  test("names, layers, widths and heads equal py/embed_worker's registry (KNOWN and TEST_TINY)", () => {
    const script = [
      "import json",
      "from embed_worker.esm2.registry import KNOWN, TEST_TINY",
      "rows = {k.cfg.name: [k.cfg.num_layers, k.cfg.embed_dim, k.cfg.attention_heads] for k in [*KNOWN.values(), TEST_TINY]}",
      "print(json.dumps(rows))",
    ].join("\n");
    const p = Bun.spawnSync([pythonBin(), "-c", script], { env: { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, "py") } });
    expect(p.stderr.toString()).toBe("");
    expect(p.exitCode).toBe(0);
    const registry = JSON.parse(p.stdout.toString());
    const esm = Object.entries(MODEL_TABLE).filter(([k]) => tableFamily(k) === "esm2");
    expect(Object.fromEntries(esm.map(([k, v]) => [k, [...v]]))).toEqual(registry);
  });

  test("a released name, with or without its organisation, and test-tiny", () => {
    expect(modelShape("esm2_t33_650M_UR50D")).toEqual({ name: "esm2_t33_650M_UR50D", numLayers: 33, dim: 1280, heads: 20, family: "esm2", source: "table" });
    expect(modelShape("facebook/esm2_t6_8M_UR50D")).toMatchObject({ name: "esm2_t6_8M_UR50D", numLayers: 6, dim: 320 });
    expect(modelShape("test-tiny")).toMatchObject({ numLayers: 2, dim: 64, heads: 4 });
    expect(modelShape("esm3_open")).toBeUndefined(); // unknown: the worker searches and reports
  });

  test("a Hugging Face folder from its config.json; a clean config only", () => {
    const good = join(tmp, "hf");
    mkdirSync(good);
    writeFileSync(join(good, "config.json"), JSON.stringify({ num_hidden_layers: 5, hidden_size: 96, num_attention_heads: 6 }));
    expect(modelShape(good)).toEqual({ name: "hf", numLayers: 5, dim: 96, heads: 6, family: "esm2", source: "config.json", dir: good });
    for (const [name, text] of [["list", "[1, 2]"], ["words", JSON.stringify({ num_hidden_layers: "six", hidden_size: 96, num_attention_heads: 6 })], ["cut", '{"num_hidden_'], ["zero", JSON.stringify({ num_hidden_layers: 0, hidden_size: 96, num_attention_heads: 6 })]]) {
      const d = join(tmp, name!);
      mkdirSync(d);
      writeFileSync(join(d, "config.json"), text!);
      expect({ name, shape: modelShape(d) }).toEqual({ name, shape: undefined }); // the worker's loader names the fault
    }
    mkdirSync(join(tmp, "empty"));
    expect(modelShape(join(tmp, "empty"))).toBeUndefined();
  });

  test("a .pt file is not read here (resolve.ts probes it), even one named like a table entry", () => {
    const pt = join(tmp, "esm2_t6_8M_UR50D.pt");
    writeFileSync(pt, "not read here");
    expect(modelShape(pt)).toBeUndefined();
  });
});

describe("model families", () => {
  const dnabertConfig = "/work/shared/data/dnabert-s/config.json";

  test("DNABERT-S and DNABERT-2-117M by name, with or without their organisation: 12 layers, 768 wide, 12 heads", () => {
    for (const name of ["DNABERT-S", "zhihan1996/DNABERT-S", "DNABERT-2-117M", "zhihan1996/DNABERT-2-117M"]) {
      expect(modelShape(name)).toMatchObject({ numLayers: 12, dim: 768, heads: 12, family: "dnabert-s", source: "table" });
    }
    expect(tableFamily("esm2_t6_8M_UR50D")).toBe("esm2");
    expect(tableFamily("zhihan1996/DNABERT-S")).toBe("dnabert-s");
    expect(tableFamily("zhihan1996/esm2_t6_8M_UR50D")).toBeUndefined(); // not that organisation's
  });

  test("a Hugging Face folder: ESM (model_type esm) vs DNABERT (model_type bert, the real DNABERT-S config.json)", () => {
    const dna = join(tmp, "DNABERT-S-copy");
    mkdirSync(dna);
    copyFileSync(dnabertConfig, join(dna, "config.json"));
    expect(modelShape(dna)).toEqual({ name: "DNABERT-S-copy", numLayers: 12, dim: 768, heads: 12, family: "dnabert-s", source: "config.json", dir: dna });
    const esm = join(tmp, "esm-hf");
    mkdirSync(esm);
    writeFileSync(join(esm, "config.json"), JSON.stringify({ model_type: "esm", num_hidden_layers: 6, hidden_size: 320, num_attention_heads: 20, vocab_size: 33 }));
    expect(modelShape(esm)).toMatchObject({ family: "esm2", numLayers: 6 });
  });

  test("which BERT is DNABERT: auto_map.AutoModel bert_layers.BertModel (MosaicBERT), as the worker decides; another BERT is left to the worker", () => {
    const shape = { num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4 };
    expect(familyOfConfig({ ...shape, model_type: "bert", vocab_size: 4096 })).toBeUndefined(); // the worker would not load it as DNABERT either
    expect(familyOfConfig({ ...shape, model_type: "bert", vocab_size: 50, auto_map: { AutoModel: "bert_layers.BertModel" } })).toBe("dnabert-s");
    expect(familyOfConfig({ ...shape, model_type: "bert", vocab_size: 4096, auto_map: { AutoModelForMaskedLM: "bert_layers.BertForMaskedLM" } })).toBeUndefined();
    expect(familyOfConfig({ ...shape, model_type: "bert", vocab_size: 30522 })).toBeUndefined();
    expect(familyOfConfig({ ...shape, model_type: "llama" })).toBeUndefined();
    const plainBert = join(tmp, "bert-base");
    mkdirSync(plainBert);
    writeFileSync(join(plainBert, "config.json"), JSON.stringify({ ...shape, model_type: "bert", vocab_size: 30522 }));
    expect(modelShape(plainBert)).toBeUndefined();
  });

  test("a name is looked up where the worker looks: EMBED_MODEL_DIR/<name>/, then the Hugging Face cache's snapshot", () => {
    const hub = join(tmp, "hub");
    const snap = join(hub, "models--zhihan1996--DNABERT-S", "snapshots", "abc123");
    mkdirSync(snap, { recursive: true });
    copyFileSync(dnabertConfig, join(snap, "config.json"));
    const search: ModelSearch = { repoModels: join(tmp, "no-repo-models"), torchHub: join(tmp, "no-torch"), hfHub: hub };
    // A snapshot counts once refs/main names it and its weights are there (an interrupted download is not a model).
    expect(modelShape("zhihan1996/DNABERT-S", search)?.dir).toBeUndefined();
    mkdirSync(join(hub, "models--zhihan1996--DNABERT-S", "refs"));
    writeFileSync(join(hub, "models--zhihan1996--DNABERT-S", "refs", "main"), "abc123");
    expect(modelShape("zhihan1996/DNABERT-S", search)?.dir).toBeUndefined();
    writeFileSync(join(snap, "pytorch_model.bin"), "x");
    expect(modelShape("zhihan1996/DNABERT-S", search)).toMatchObject({ name: "DNABERT-S", family: "dnabert-s", dir: snap });
    expect(modelShape("DNABERT-2-117M", search)?.dir).toBeUndefined(); // not cached: no folder
    const own = join(tmp, "own-models");
    mkdirSync(join(own, "DNABERT-S"), { recursive: true });
    copyFileSync(dnabertConfig, join(own, "DNABERT-S", "config.json"));
    expect(modelShape("DNABERT-S", { ...search, modelDir: own })?.dir).toBe(join(own, "DNABERT-S"));
    // An unlisted name found as a folder is described by its config.json.
    mkdirSync(join(own, "my-dna-model"));
    copyFileSync(dnabertConfig, join(own, "my-dna-model", "config.json"));
    expect(modelShape("my-dna-model", { ...search, modelDir: own })).toMatchObject({ name: "my-dna-model", family: "dnabert-s", source: "config.json" });
  });
});

describe("the lookup agrees with the worker's registry", () => {
  test("the same place for each cache layout: refs/main snapshot with weights, config.json alone, no refs/main, .pt before the cache", () => {
    const root = join(tmp, "agree");
    const search: ModelSearch = { repoModels: join(root, "repo-models"), torchHub: join(root, "torch", "hub", "checkpoints"), hfHub: join(root, "hf") };
    const name = "esm2_t6_8M_UR50D";
    const repo = join(search.hfHub, `models--facebook--${name}`);
    const snap = join(repo, "snapshots", "abc123");
    const python = () => workerResolves(name, { HF_HUB_CACHE: search.hfHub, TORCH_HOME: join(root, "torch") }, root);
    const both = () => {
      // neither .models folder (the repository's, for Python; search.repoModels here) holds this name
      const ts = findModelFolder(name, "esm2", search)?.path ?? null;
      expect(ts).toBe(python());
      return ts;
    };
    mkdirSync(snap, { recursive: true });
    writeFileSync(join(snap, "config.json"), "{}");
    expect(both()).toBeNull(); // no refs/main
    mkdirSync(join(repo, "refs"));
    writeFileSync(join(repo, "refs", "main"), "abc123");
    expect(both()).toBeNull(); // config.json alone
    writeFileSync(join(snap, "model.safetensors"), "x");
    expect(both()).toBe(snap);
    mkdirSync(search.torchHub, { recursive: true });
    writeFileSync(join(search.torchHub, `${name}.pt`), "x");
    expect(both()).toBe(join(search.torchHub, `${name}.pt`));
  });
});

describe("layers, fair-esm style", () => {
  test("negative from the end, 0 the embeddings, repeats dropped, out of range refused", () => {
    expect(resolveLayers([-1], 33)).toEqual({ layers: [33] });
    expect(resolveLayers([0, 6, -1, 33], 33)).toEqual({ layers: [0, 6, 33] });
    expect(resolveLayers([-34], 33)).toEqual({ layers: [0] });
    expect(resolveLayers([34], 33)).toMatchObject({ bad: 34, message: "layer 34 is out of range for a 33-layer model", hint: "use 0..33, or -1 for the last layer" });
    expect(resolveLayers([-35], 33)).toMatchObject({ bad: -35 });
  });
});
