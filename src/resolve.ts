/**
 * Options resolved once, for `embed run`, `embed run --dry`, the API and `embed validate`: the
 * frozen config, the devices, the compute precision, the token budget and what is known of the
 * model, each `auto` decided here (or, for a GPU's budget, said to be the worker's) and every
 * option checked before a worker starts, `--layers` against the model's depth included.
 *
 * The model family decides how input is read: ESM-2's protein alphabet, or DNABERT-S's BPE with
 * the tokenizer.json of the folder the worker will load. Its tokenizer is needed to read the input,
 * which happens while the worker starts, so a named DNABERT-S model that no local cache holds (the
 * worker's registry places, model-dirs.ts) is downloaded here, before any worker, by
 * `resolveRunProbed` (a one-shot `python -m embed_worker.registry --download NAME --json`: only
 * config.json, the weights and tokenizer.json, into the Hugging Face cache where the worker finds
 * it); with --no-download, or from `resolveRun` alone, a missing one is reported with the command.
 *
 * A fair-esm .pt file is a pickle: `resolveRunProbed` asks a one-shot Python probe for its shape
 * (about 0.1 s: a zip-format file is read without torch; others cost torch's import, 1-3 s),
 * once per file and process, so that it too is checked here; the entry points that start workers
 * (run, the API, validate, --dry) use it. `resolveRun` alone is the same without that probe.
 */
import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { DNABERT_S_TRUNCATE, hfEndpoint, modelSearch, resolveConfig, visibleDevicesEnv, type RunConfig, type RunOptionsInput } from "./config.ts";
import { z } from "zod";
import { BadModelError, ModelNotFoundError, OptionsError, WorkerError } from "./errors.ts";
import { log } from "./log.ts";
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
  return resolveFrom(resolveConfig(options), gpus, probed);
}

/** `resolveRun` from options already resolved once (config.ts), so they are parsed only once. */
function resolveFrom(resolved: RunConfig, gpus: ReturnType<typeof listGpus>, probed: ModelShape | undefined): ResolvedRun {
  let cfg = resolved;
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
 * here (BadModelError, exit 5) with the loader's one line naming the file. A named DNABERT-S
 * model no local cache holds is downloaded first (unless --no-download), see `downloadDnabert`. */
export async function resolveRunProbed(options: RunOptionsInput, gpus = listGpus()): Promise<ResolvedRun> {
  const cfg = resolveConfig(options); // option errors first, as without a probe
  const probed = isModelFile(cfg.model) ? await probeModelFile(cfg.model.trim(), cfg.python) : await downloadDnabert(cfg);
  return resolveFrom(cfg, gpus, probed);
}

const Downloaded = z.object({ path: z.string().min(1) });

/**
 * A named DNABERT-S model (DNABERT-S, DNABERT-2-117M, with or without zhihan1996/) that no local
 * cache holds, fetched into the Hugging Face cache by the worker's registry (the same download,
 * lock and sha256 check as a worker's, py/embed_worker/hub.py) -> its table shape with that folder;
 * undefined when there is nothing to fetch or --no-download (then `tokenizerOf` says what to run).
 * A failed download is ModelNotFoundError (exit 5) naming the URL tried.
 */
async function downloadDnabert(cfg: RunConfig): Promise<ModelShape | undefined> {
  if (!cfg.download || tableFamily(cfg.model) !== "dnabert-s") return undefined;
  const search = modelSearch();
  const shape = modelShape(cfg.model, search);
  if (!shape || shape.dir) return undefined;
  const repo = `${HF_ORGS["dnabert-s"]}/${shape.name}`;
  const url = `${hfEndpoint()}/${repo}`;
  log.info(`downloading ${url} (config.json, the weights, tokenizer.json) into ${search.hfHub}`);
  const r = await pythonJson<unknown>("embed_worker.registry", ["--download", shape.name, "--json"], cfg.python);
  const hint = `set HF_ENDPOINT to a mirror, or download it yourself with \`python -m embed_worker.registry --download ${shape.name}\` (from py/) or \`hf download ${repo}\`, or pass --model DIR, a folder holding config.json, tokenizer.json and the weights`;
  if (!r.ok) {
    const wire = wireError(r.error);
    if (wire) throw new ModelNotFoundError(wire.message, wire.hint || hint);
    throw new ModelNotFoundError(`model ${JSON.stringify(cfg.model)}: downloading ${url} failed (${r.error ?? "the download helper failed"})`, hint);
  }
  const got = Downloaded.safeParse(r.value);
  if (!got.success) throw new ModelNotFoundError(`model ${JSON.stringify(cfg.model)}: the download of ${url} printed ${JSON.stringify(r.value)}, not {path}`, "check the Python environment with `embed doctor`");
  log.info(`downloaded ${repo} into ${got.data.path}`);
  return { ...shape, dir: got.data.path };
}

const ProbeShape = z.object({ numLayers: z.number().int().positive(), dim: z.number().int().positive(), heads: z.number().int().positive(), family: z.literal("esm2") });
const ProbeError = z.object({ name: z.string(), message: z.string(), hint: z.string() });

/** A one-shot helper's `{name, message, hint}`, the last line of its stderr, when it wrote one. */
function wireError(stderr: string | undefined): z.infer<typeof ProbeError> | undefined {
  const last = (stderr ?? "").trim().split("\n").at(-1) ?? "";
  try {
    return ProbeError.parse(JSON.parse(last));
  } catch {
    return undefined;
  }
}

/**
 * Shapes this process has probed, by the path as given and the file's identity (device, inode,
 * size, mtime in ns): `embed virnucpro` resolves each model twice (its option check, then
 * embedToStore), and a file replaced or rewritten in between is probed again. Only shapes are
 * kept; a refusal is probed again, so its message always describes the file as it is now.
 */
const probed = new Map<string, ModelShape>();

function fileIdentity(path: string): string | undefined {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}\0${path}`;
  } catch {
    return undefined; // the probe says what is wrong with it
  }
}

/** A fair-esm .pt file's depth, width and heads from `python -m embed_worker.esm2.probe PATH`
 * (once per file and process: `probed`). */
export async function probeModelFile(path: string, python: string): Promise<ModelShape> {
  const key = fileIdentity(path);
  const known = key === undefined ? undefined : probed.get(key);
  if (known) return { ...known };
  const shape = await runProbe(path, python);
  if (key !== undefined) probed.set(key, { ...shape });
  return shape;
}

async function runProbe(path: string, python: string): Promise<ModelShape> {
  const r = await pythonJson<unknown>("embed_worker.esm2.probe", [path], python);
  if (!r.ok) {
    const wire = wireError(r.error);
    // No torch in the workers' Python: the same first-use error (exit 4) a worker would give.
    if (wire?.name === "ModuleNotFoundError") throw new WorkerError("probe", wire.message, { hint: wire.hint, remoteName: wire.name });
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
      `rerun without --no-download, or download it with \`python -m embed_worker.registry --download ${name}\` (from py/, with the worker's Python) or \`hf download ${HF_ORGS["dnabert-s"]}/${name}\` (Hugging Face CLI; either lands in ${search.hfHub}), or pass --model DIR, a folder holding config.json, tokenizer.json and the weights`,
    );
  }
  const path = join(model.dir, "tokenizer.json");
  if (!existsSync(path)) {
    throw new ModelNotFoundError(`${model.dir} has no tokenizer.json: a DNABERT-S folder needs it to read the input`, "copy the model's tokenizer.json into the folder (zhihan1996/DNABERT-S ships one), or download the whole model again");
  }
  return path;
}
