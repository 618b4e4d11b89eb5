/**
 * The orchestrator's model table (src/models.ts) agrees with the worker's registry, and a model's
 * shape is known without Python for names and Hugging Face folders, and left to the worker for a
 * .pt file or a config.json that does not parse cleanly.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { MODEL_TABLE, modelShape, resolveLayers } from "../src/models.ts";

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
    expect(Object.fromEntries(Object.entries(MODEL_TABLE).map(([k, v]) => [k, [...v]]))).toEqual(registry);
  });

  test("a released name, with or without its organisation, and test-tiny", () => {
    expect(modelShape("esm2_t33_650M_UR50D")).toEqual({ name: "esm2_t33_650M_UR50D", numLayers: 33, dim: 1280, heads: 20, source: "table" });
    expect(modelShape("facebook/esm2_t6_8M_UR50D")).toMatchObject({ name: "esm2_t6_8M_UR50D", numLayers: 6, dim: 320 });
    expect(modelShape("test-tiny")).toMatchObject({ numLayers: 2, dim: 64, heads: 4 });
    expect(modelShape("esm3_open")).toBeUndefined(); // unknown: the worker searches and reports
  });

  test("a Hugging Face folder from its config.json; a clean config only", () => {
    const good = join(tmp, "hf");
    mkdirSync(good);
    writeFileSync(join(good, "config.json"), JSON.stringify({ num_hidden_layers: 5, hidden_size: 96, num_attention_heads: 6 }));
    expect(modelShape(good)).toEqual({ name: "hf", numLayers: 5, dim: 96, heads: 6, source: "config.json" });
    for (const [name, text] of [["list", "[1, 2]"], ["words", JSON.stringify({ num_hidden_layers: "six", hidden_size: 96, num_attention_heads: 6 })], ["cut", '{"num_hidden_'], ["zero", JSON.stringify({ num_hidden_layers: 0, hidden_size: 96, num_attention_heads: 6 })]]) {
      const d = join(tmp, name!);
      mkdirSync(d);
      writeFileSync(join(d, "config.json"), text!);
      expect({ name, shape: modelShape(d) }).toEqual({ name, shape: undefined }); // the worker's loader names the fault
    }
    mkdirSync(join(tmp, "empty"));
    expect(modelShape(join(tmp, "empty"))).toBeUndefined();
  });

  test("a .pt file is described by the worker at start-up, even one named like a table entry", () => {
    const pt = join(tmp, "esm2_t6_8M_UR50D.pt");
    writeFileSync(pt, "not read here");
    expect(modelShape(pt)).toBeUndefined();
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
