/**
 * Options resolved once, for `embed run`, `embed run --dry`, the API and `embed validate`: the
 * frozen config, the devices, the compute precision, the token budget and what is known of the
 * model, each `auto` decided here (or, for a GPU's budget, said to be the worker's) and every
 * option checked before a worker starts, `--layers` against the model's depth included.
 */
import { resolveConfig, visibleDevicesEnv, type RunConfig, type RunOptionsInput } from "./config.ts";
import { OptionsError } from "./errors.ts";
import { modelShape, resolveLayers, type ModelShape } from "./models.ts";
import { listGpus, resolveDevices, type DeviceSlot } from "./workers/devices.ts";
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
}

/** Everything `options` ask for, checked; throws OptionsError (exit 2) naming the option. */
export function resolveRun(options: RunOptionsInput, gpus = listGpus()): ResolvedRun {
  const cfg = resolveConfig(options);
  const devices = resolveDevices(cfg.devices, gpus, visibleDevicesEnv());
  const model = modelShape(cfg.model);
  let layers: number[] | undefined;
  if (model) {
    const r = resolveLayers(cfg.layers, model.numLayers);
    if ("bad" in r) throw new OptionsError(`--layers: ${r.message} (${model.name})`, r.hint);
    layers = r.layers;
  }
  return { cfg, devices, precision: resolvePrecision(cfg, devices), budget: budgetFor(cfg.maxTokens, devices[0]!.kind), model, layers };
}
