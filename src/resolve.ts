/**
 * Options resolved once, for `embed run`, `embed run --dry`, the API and `embed validate`: the
 * frozen config, the devices, the compute precision, the token budget and what is known of the
 * model, each `auto` decided here (or, for a GPU's budget, said to be the worker's) and every
 * option checked before a worker starts, `--layers` against the model's depth included.
 *
 * The model family decides how input is read: ESM-2's protein alphabet, or DNABERT-S's BPE with
 * the tokenizer.json of the folder the worker will load. A named DNABERT-S model must be in a
 * local cache already (the worker's registry places, model-dirs.ts): its tokenizer is needed to
 * read the input, which happens while the worker starts, so a missing one is reported here with
 * the command that fetches it, rather than after a download by the worker.
 *
 * A fair-esm .pt file is a pickle: `resolveRunProbed` asks a one-shot Python probe for its shape
 * (about 2 s, torch's import) so that it too is checked here; the entry points that start workers
 * (run, the API, validate, --dry) use it. `resolveRun` alone is the same without that probe.
 */
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { DNABERT_S_TRUNCATE, modelSearch, resolveConfig, visibleDevicesEnv, type RunConfig, type RunOptionsInput } from "./config.ts";
import { z } from "zod";
import { BadModelError, ModelNotFoundError, OptionsError } from "./errors.ts";
import { searchedPlaces } from "./model-dirs.ts";
import { HF_ORGS, isModelFile, modelShape, resolveLayers, tableFamily, type ModelShape } from "./models.ts";
import type { Family } from "./protocol.ts";
import { listGpus, resolveDevices, type DeviceSlot } from "./workers/devices.ts";
import { pythonJson } from "./workers/python.ts";
import { budgetFor, resolvePrecision, type Budget, type Precision } from "./workers/session.ts";

export interface ResolvedRun {
  cfg: RunConfig;
  devices: DeviceSlot[];
  /** Compute precision the workers are asked for (`auto`: fp16 on GPU, fp32 on CPU). */
  precision: Precision;
  /** Tokens per batch: a number, or (GPU `auto`) null with the rule each worker applies. */
  budget: Budget;
  /** The model's depth and width when known without loading it (models.ts); else READY says. */
  model: ModelShape | undefined;
  /** `--layers` as absolute layer numbers, when the model is known. */
  layers: number[] | undefined;
  /** The model family (ESM-2 for a .pt file or an unlisted name: only ESM-2 ships as .pt). */
  family: Family;
  /** DNABERT-S: the tokenizer.json the input is read with (the loaded folder's). */
  tokenizer: string | undefined;
}

/**
 * Everything `options` ask for, checked; throws OptionsError (exit 2) naming the option.
 * `probed`: the shape of a .pt file, from `probeModelFile` (resolveRunProbed passes it).
 */
export function resolveRun(options: RunOptionsInput, gpus = listGpus(), probed?: ModelShape): ResolvedRun {
  let cfg = resolveConfig(options);
  const devices = resolveDevices(cfg.devices, gpus, visibleDevicesEnv());
  const search = modelSearch();
  const model = probed ?? modelShape(cfg.model, search);
  const family: Family = model?.family ?? tableFamily(cfg.model) ?? "esm2";
  // The family travels with the config (each worker is told it); DNABERT-S has its own --truncate default.
  cfg = Object.freeze({ ...cfg, family, ...(family === "dnabert-s" && !cfg.truncateGiven ? { truncate: DNABERT_S_TRUNCATE } : {}) });
  const tokenizer = family === "dnabert-s" ? tokenizerOf(cfg.model, model, search) : undefined;
  let layers: number[] | undefined;
  if (model) {
    const r = resolveLayers(cfg.layers, model.numLayers);
    if ("bad" in r) throw new OptionsError(`--layers: ${r.message} (${model.name})`, r.hint);
    layers = r.layers;
  }
  return { cfg, devices, precision: resolvePrecision(cfg, devices), budget: budgetFor(cfg.maxTokens, devices[0]!.kind), model, layers, family, tokenizer };
}

/** `resolveRun`, with a .pt file's shape read by the Python probe first, so that `--layers` is
 * checked against its depth before any worker starts; a damaged or non-ESM pickle is refused
 * here (BadModelError, exit 5) with the loader's one line naming the file. */
export async function resolveRunProbed(options: RunOptionsInput, gpus = listGpus()): Promise<ResolvedRun> {
  const cfg = resolveConfig(options); // option errors first, as without a probe
  const probed = isModelFile(cfg.model) ? await probeModelFile(cfg.model.trim(), cfg.python) : undefined;
  return resolveRun(options, gpus, probed);
}

const ProbeShape = z.object({ numLayers: z.number().int().positive(), dim: z.number().int().positive(), heads: z.number().int().positive(), family: z.literal("esm2") });
const ProbeError = z.object({ name: z.string(), message: z.string(), hint: z.string() });

/** A fair-esm .pt file's depth, width and heads from `python -m embed_worker.esm2.probe PATH`. */
export async function probeModelFile(path: string, python: string): Promise<ModelShape> {
  const r = await pythonJson<unknown>("embed_worker.esm2.probe", [path], python);
  if (!r.ok) {
    const last = (r.error ?? "").trim().split("\n").at(-1) ?? "";
    let wire: z.infer<typeof ProbeError> | undefined;
    try {
      wire = ProbeError.parse(JSON.parse(last));
    } catch {
      wire = undefined;
    }
    if (wire) throw new BadModelError(wire.message, wire.hint || undefined);
    throw new BadModelError(`${path}: cannot read the model's shape (${r.error ?? "the probe failed"})`, "check the Python environment with `embed doctor`");
  }
  const shape = ProbeShape.safeParse(r.value);
  if (!shape.success) throw new BadModelError(`${path}: the shape probe printed ${JSON.stringify(r.value)}, not {numLayers, dim, heads}`, "check the Python environment with `embed doctor`");
  return { name: basename(path), ...shape.data, source: "checkpoint" };
}

/** The tokenizer.json of a DNABERT-S model's folder; ModelNotFoundError (exit 5) if none is local. */
function tokenizerOf(asked: string, model: ModelShape | undefined, search: ReturnType<typeof modelSearch>): string {
  if (!model?.dir) {
    const name = model?.name ?? asked;
    const places = searchedPlaces(name, "dnabert-s", search);
    throw new ModelNotFoundError(
      `model ${JSON.stringify(asked)}: no local copy of its folder, whose tokenizer.json reads the input. Searched:\n  ${places.join("\n  ")}`,
      `download it with \`hf download ${HF_ORGS["dnabert-s"]}/${name}\` (Hugging Face CLI; it lands in ${search.hfHub}), or pass --model DIR, a folder holding config.json, tokenizer.json and the weights`,
    );
  }
  const path = join(model.dir, "tokenizer.json");
  if (!existsSync(path)) {
    throw new ModelNotFoundError(`${model.dir} has no tokenizer.json: a DNABERT-S folder needs it to read the input`, "copy the model's tokenizer.json into the folder (zhihan1996/DNABERT-S ships one), or download the whole model again");
  }
  return path;
}
