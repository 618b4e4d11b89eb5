/**
 * What the orchestrator knows about a model before any worker starts: its depth, width and heads,
 * so that `--layers` is checked against the model and the plan is made without loading weights.
 *
 * - A released ESM-2 name (and test-tiny, the random-weight model scripts/setup writes) comes from
 *   the table below, a copy of py/embed_worker/esm2/registry.py's KNOWN and TEST_TINY
 *   (test/models.test.ts checks that the two agree).
 * - A Hugging Face folder is described by its config.json.
 * - A fair-esm .pt file, or a name the table does not hold (a checkpoint in EMBED_MODEL_DIR), is
 *   known only once a worker has opened it: its READY message says, as before. A config.json
 *   that does not parse cleanly is left to the worker too, whose loader names what is wrong.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";

export interface ModelShape {
  /** What the model is shown by (a folder's name for a path). */
  name: string;
  /** Transformer blocks; layer 0 is the embedding output, so 0..numLayers are valid. */
  numLayers: number;
  /** Hidden width (values per embedding). */
  dim: number;
  heads: number;
  /** Where the shape came from. */
  source: "table" | "config.json";
}

/** Released ESM-2 models and the test model: name -> [layers, width, heads]. */
export const MODEL_TABLE: Readonly<Record<string, readonly [number, number, number]>> = Object.freeze({
  esm2_t6_8M_UR50D: [6, 320, 20],
  esm2_t12_35M_UR50D: [12, 480, 20],
  esm2_t30_150M_UR50D: [30, 640, 20],
  esm2_t33_650M_UR50D: [33, 1280, 20],
  esm2_t36_3B_UR50D: [36, 2560, 40],
  esm2_t48_15B_UR50D: [48, 5120, 40],
  "test-tiny": [2, 64, 4],
});

/** The Hugging Face organisation of the released models (`facebook/esm2_t6_8M_UR50D`). */
const HF_ORG = "facebook/";

const positiveInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v > 0;

/** A Hugging Face folder's shape from its config.json; undefined if it is not clean. */
function fromConfigJson(dir: string): ModelShape | undefined {
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  } catch {
    return undefined;
  }
  if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) return undefined;
  const c = cfg as Record<string, unknown>;
  const [numLayers, dim, heads] = [c.num_hidden_layers, c.hidden_size, c.num_attention_heads];
  if (!positiveInt(numLayers) || !positiveInt(dim) || !positiveInt(heads)) return undefined;
  return { name: basename(dir), numLayers, dim, heads, source: "config.json" };
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The shape of `model` (a name or a path, as `--model` takes it) when it can be known without
 * Python; undefined when only a worker can tell (a .pt file, an unlisted name, a damaged
 * config.json). An existing path wins over a name, as in the worker's registry.
 */
export function modelShape(model: string): ModelShape | undefined {
  const s = model.trim();
  if (isDir(s)) return existsSync(join(s, "config.json")) ? fromConfigJson(s) : undefined;
  if (existsSync(s)) return undefined; // a file: a fair-esm pickle, read by the worker
  const name = s.startsWith(HF_ORG) && s.split("/").length === 2 ? s.slice(HF_ORG.length) : s;
  const row = MODEL_TABLE[name];
  return row ? { name, numLayers: row[0], dim: row[1], heads: row[2], source: "table" } : undefined;
}

/** fair-esm's layer numbering: i < 0 is numLayers + 1 + i (-1 = the last layer), 0 the embeddings. */
export function absoluteLayer(layer: number, numLayers: number): number {
  return layer < 0 ? layer + numLayers + 1 : layer;
}

/**
 * The absolute layers asked for, in order and without repeats (as the worker resolves them), or
 * the first out of range with the message and hint the worker would give.
 */
export function resolveLayers(layers: readonly number[], numLayers: number): { layers: number[] } | { bad: number; message: string; hint: string } {
  const out: number[] = [];
  for (const l of layers) {
    const j = absoluteLayer(l, numLayers);
    if (j < 0 || j > numLayers) return { bad: l, message: `layer ${l} is out of range for a ${numLayers}-layer model`, hint: `use 0..${numLayers}, or -1 for the last layer` };
    if (!out.includes(j)) out.push(j);
  }
  return { layers: out };
}
