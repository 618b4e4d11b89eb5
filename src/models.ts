/**
 * What the orchestrator knows about a model before any worker starts: its depth, width and heads,
 * so that `--layers` is checked against the model and the plan is made without loading weights.
 *
 * - A released ESM-2 name (and test-tiny, the random-weight model scripts/setup writes) comes from
 *   the table below, a copy of py/embed_worker/esm2/registry.py's KNOWN and TEST_TINY
 *   (test/models.test.ts checks that the two agree); so do the DNABERT-S rows.
 * - A Hugging Face folder is described by its config.json, which also says the family: ESM-2
 *   (`model_type` "esm", or none) or DNABERT-S (`model_type` "bert" whose `auto_map.AutoModel` is
 *   `bert_layers.BertModel`, the MosaicBERT code DNABERT-2/-S ship), as the worker's registry
 *   (py/embed_worker/registry.py) decides.
 * - A DNABERT-S model's input is tokenized here, with the `tokenizer.json` of the folder the worker
 *   will load: for a name, the first folder the worker's registry search finds (model-dirs.ts).
 * - A fair-esm .pt file is a pickle that only Python can open: resolve.ts runs a one-shot probe
 *   (py/embed_worker/esm2/probe.py, the loader's own rule) before any worker starts.
 * - A name the table does not hold (a checkpoint in EMBED_MODEL_DIR) is known only once a worker
 *   has opened it: its READY message says. A config.json that does not parse cleanly is left to
 *   the worker too, whose loader names what is wrong.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { Family } from "./protocol.ts";
import { findModelFolder, type ModelSearch } from "./model-dirs.ts";

export interface ModelShape {
  /** What the model is shown by (a folder's name for a path). */
  name: string;
  /** Transformer blocks; layer 0 is the embedding output, so 0..numLayers are valid. */
  numLayers: number;
  /** Hidden width (values per embedding). */
  dim: number;
  heads: number;
  /** Which model family: how input is tokenized and framed, what each output means (protocol.ts). */
  family: Family;
  /** Where the shape came from ("checkpoint": a .pt file's cfg, read by the Python probe). */
  source: "table" | "config.json" | "checkpoint";
  /** The Hugging Face folder the worker will load, when known here (a path, or a name found in a
   * local cache); a DNABERT-S model's tokenizer.json is read from it. */
  dir?: string;
}

/** Released models and the ESM-2 test model: name -> [layers, width, heads]. */
export const MODEL_TABLE: Readonly<Record<string, readonly [number, number, number]>> = Object.freeze({
  esm2_t6_8M_UR50D: [6, 320, 20],
  esm2_t12_35M_UR50D: [12, 480, 20],
  esm2_t30_150M_UR50D: [30, 640, 20],
  esm2_t33_650M_UR50D: [33, 1280, 20],
  esm2_t36_3B_UR50D: [36, 2560, 40],
  esm2_t48_15B_UR50D: [48, 5120, 40],
  "test-tiny": [2, 64, 4],
  "DNABERT-S": [12, 768, 12],
  "DNABERT-2-117M": [12, 768, 12],
});

/** The family of each table row (ESM-2 unless listed). */
const TABLE_FAMILY: Readonly<Record<string, Family>> = Object.freeze({ "DNABERT-S": "dnabert-s", "DNABERT-2-117M": "dnabert-s" });

/** The Hugging Face organisation of each family's released models (`facebook/esm2_t6_8M_UR50D`,
 * `zhihan1996/DNABERT-S`). */
export const HF_ORGS: Readonly<Record<Family, string>> = Object.freeze({ esm2: "facebook", "dnabert-s": "zhihan1996" });

/** A name less its organisation, when that is the organisation of a family's releases. */
function bareName(s: string): string {
  const parts = s.split("/");
  return parts.length === 2 && Object.values(HF_ORGS).includes(parts[0]!) ? parts[1]! : s;
}

/** The family a table name belongs to (written bare or under its own organisation), or undefined
 * for a name the table does not hold. */
export function tableFamily(name: string): Family | undefined {
  const s = name.trim();
  const n = bareName(s);
  if (!MODEL_TABLE[n]) return undefined;
  const family = TABLE_FAMILY[n] ?? "esm2";
  return n === s || s === `${HF_ORGS[family]}/${n}` ? family : undefined;
}

/**
 * The family a parsed config.json describes; undefined for one the worker would not load as
 * either. DNABERT-S/-2 is MosaicBERT: model_type "bert" with `auto_map.AutoModel`
 * "bert_layers.BertModel", the rule of py/embed_worker/registry.py `is_dnabert_folder` (a BERT
 * with DNABERT's 4,096-token vocabulary but no auto_map is left to the worker, which refuses it).
 */
export function familyOfConfig(c: Record<string, unknown>): Family | undefined {
  const type = c.model_type;
  if (type === undefined || type === "esm") return "esm2";
  if (type !== "bert") return undefined;
  const autoMap = c.auto_map;
  const autoModel = typeof autoMap === "object" && autoMap !== null ? (autoMap as Record<string, unknown>).AutoModel : undefined;
  return typeof autoModel === "string" && autoModel.endsWith("bert_layers.BertModel") ? "dnabert-s" : undefined;
}

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
  const family = familyOfConfig(c);
  if (!family) return undefined; // another architecture: the worker's loader says what it found
  return { name: basename(dir), numLayers, dim, heads, family, source: "config.json", dir };
}

/** Whether `p` names an existing file that is not a folder (a fair-esm .pt, whatever its name). */
export function isModelFile(p: string): boolean {
  try {
    return statSync(p.trim()).isFile();
  } catch {
    return false;
  }
}

/** Whether `p` names an existing folder. */
export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The shape of `model` (a name or a path, as `--model` takes it) when it can be known without
 * Python; undefined when only Python can tell (a .pt file: resolve.ts probes it; an unlisted
 * name or a damaged config.json: the worker). An existing path wins over a name, as in the worker's registry. With `search`
 * (config.ts modelSearch()), a name is also looked up where the worker looks, giving a table row
 * its folder (`dir`) and an unlisted name found as a Hugging Face folder its config.json's shape.
 */
export function modelShape(model: string, search?: ModelSearch): ModelShape | undefined {
  const s = model.trim();
  if (isDir(s)) return existsSync(join(s, "config.json")) ? fromConfigJson(s) : undefined;
  if (existsSync(s)) return undefined; // a file: a fair-esm pickle, which resolve.ts probes
  const name = bareName(s);
  const family = tableFamily(s);
  const row = family ? MODEL_TABLE[name] : undefined;
  const found = search ? findModelFolder(name, family, search) : undefined;
  if (!row) {
    const shape = found?.kind === "dir" ? fromConfigJson(found.path) : undefined;
    return shape && { ...shape, name };
  }
  return { name, numLayers: row[0], dim: row[1], heads: row[2], family: family!, source: "table", ...(found?.kind === "dir" ? { dir: found.path } : {}) };
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
