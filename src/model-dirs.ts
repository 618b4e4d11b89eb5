/**
 * Where a model name is found on disk, searched in the order of the worker's registries
 * (py/embed_worker/esm2/registry.py `_candidates`; py/embed_worker/registry.py for DNABERT, which
 * has Hugging Face folders only), so that the orchestrator reads the same
 * folder the worker will load (a DNABERT-S model's tokenizer.json, a config.json's shape):
 *   1. `$EMBED_MODEL_DIR/<name>.pt`, `$EMBED_MODEL_DIR/<name>/`        (if the variable is set)
 *   2. `<repo>/.models/<name>.pt`, `<repo>/.models/<name>/`
 *   3. `$TORCH_HOME/hub/checkpoints/<name>.pt`                            (ESM-2 only: fair-esm)
 *   4. `$HF_HUB_CACHE/models--<org>--<name>/snapshots/<rev>/`             (the one refs/main names)
 * A folder counts only with a config.json in it; a cache snapshot only with a weights file beside
 * it too (py/embed_worker/hub.py `cached_snapshot`, huggingface_hub's lookup: an interrupted
 * download, config.json alone, is not a model). The directories come from config.ts
 * (`modelSearch()`, the one module that reads the environment).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ModelSearch } from "./config.ts";
import type { Family } from "./protocol.ts";

export type { ModelSearch };

/** The first hit: a .pt file (read only by the worker) or a Hugging Face folder. */
export interface FoundModel {
  kind: "file" | "dir";
  path: string;
}

const isHfDir = (p: string): boolean => {
  try {
    return statSync(p).isDirectory() && existsSync(join(p, "config.json"));
  } catch {
    return false;
  }
};

/** What an HF folder's loader reads its weights from (py/embed_worker/hub.py HF_WEIGHTS): one
 * file, or an index naming shards, of safetensors or (transformers 4.x's safe_serialization=False)
 * pickles. */
export const HF_WEIGHTS = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"] as const;

/** The snapshot refs/main names, if it holds config.json and a weights file (as the registry). */
function hfSnapshot(repoDir: string): string | undefined {
  let ref: string;
  try {
    ref = readFileSync(join(repoDir, "refs", "main"), "utf8").trim();
  } catch {
    return undefined; // huggingface_hub writes refs/main with every download of the main branch
  }
  const snap = join(repoDir, "snapshots", ref);
  return ref && !ref.includes("/") && isHfDir(snap) && HF_WEIGHTS.some((w) => existsSync(join(snap, w))) ? snap : undefined;
}

/** Organisations whose Hugging Face cache folders a name may sit under, the family's first. */
const ORGS: Readonly<Record<Family, readonly string[]>> = { esm2: ["facebook"], "dnabert-s": ["zhihan1996"] };

/**
 * The first place `name` (bare, no organisation) is found, in the registry's order; `family` (a
 * table name's) picks the Hugging Face organisation, else every family's is tried.
 */
export function findModelFolder(name: string, family: Family | undefined, s: ModelSearch): FoundModel | undefined {
  for (const base of [...(s.modelDir ? [s.modelDir] : []), s.repoModels]) {
    // DNABERT ships as Hugging Face folders only (py/embed_worker/registry.py): no .pt candidate.
    if (family !== "dnabert-s" && existsSync(join(base, `${name}.pt`))) return { kind: "file", path: join(base, `${name}.pt`) };
    if (isHfDir(join(base, name))) return { kind: "dir", path: join(base, name) };
  }
  if (family !== "dnabert-s" && existsSync(join(s.torchHub, `${name}.pt`))) return { kind: "file", path: join(s.torchHub, `${name}.pt`) };
  const orgs = family ? ORGS[family] : [...ORGS.esm2, ...ORGS["dnabert-s"]];
  for (const org of orgs) {
    const snap = hfSnapshot(join(s.hfHub, `models--${org}--${name}`));
    if (snap) return { kind: "dir", path: snap };
  }
  return undefined;
}

/** Every place {@link findModelFolder} looks for `name`, for a "not found" message. */
export function searchedPlaces(name: string, family: Family | undefined, s: ModelSearch): string[] {
  const out: string[] = [];
  for (const base of [...(s.modelDir ? [s.modelDir] : []), s.repoModels]) out.push(join(base, `${name}/`));
  const orgs = family ? ORGS[family] : [...ORGS.esm2, ...ORGS["dnabert-s"]];
  for (const org of orgs) out.push(join(s.hfHub, `models--${org}--${name}`, "snapshots", "<rev>/"));
  return out;
}
