/**
 * A set of started workers and the one operation on it: embed a plan of records. `run.ts`
 * (store output) and `validate.ts` (precision report) are both built on this.
 */
import { childEnv, type RunConfig } from "../config.ts";
import type { DeviceSlot } from "./devices.ts";
import { planBatches, splitBatch, type Plan, type PlannedBatch } from "../plan.ts";
import { EmbedError, ExitCode } from "../errors.ts";
import { runPool, type PoolStats } from "./pool.ts";
import { sweepStaleRings } from "./rings.ts";
import type { Kernels } from "../protocol.ts";
import type { RecordTable } from "../input/records.ts";
import type { HealthOptions } from "./watchdog.ts";
import type { BatchResult, WorkerWireConfig } from "../protocol.ts";
import { WorkerHandle } from "./handle.ts";

/** Token budget of a CPU worker under `--max-tokens auto`: one 1022-residue sequence fits, and a
 * batch of the 650M model takes about a second on a laptop. */
export const CPU_AUTO_TOKENS = 4096;

/** The most a GPU worker chooses under `--max-tokens auto` (py worker.py GPU_MAX_TOKENS). */
export const GPU_AUTO_MAX_TOKENS = 65536;

/** How a GPU worker sizes its budget under `--max-tokens auto` (py worker.py auto_budget), said
 * where a number cannot be: it needs the free memory of the device with the weights loaded. */
export const GPU_AUTO_RULE =
  "each GPU worker decides at start-up: half the GPU memory free after loading the weights, divided by the activation bytes per token (width, FFN width, precision), rounded down to a multiple of 64, between 1026 and 65536 tokens (READY reports it)";

/** The token budget per batch, decided here and nowhere else in the orchestrator: the number sent
 * to a worker (null: the worker sizes it, GPU `auto` only), where it came from, and in words. */
export interface Budget {
  tokens: number | null;
  source: "option" | "cpu-default" | "gpu-worker";
  rule: string;
}

export function budgetFor(maxTokens: RunConfig["maxTokens"], device: DeviceSlot["kind"]): Budget {
  if (maxTokens !== "auto") return { tokens: maxTokens, source: "option", rule: `--max-tokens ${maxTokens}` };
  if (device === "cpu") return { tokens: CPU_AUTO_TOKENS, source: "cpu-default", rule: `--max-tokens auto on CPU: ${CPU_AUTO_TOKENS} tokens` };
  return { tokens: null, source: "gpu-worker", rule: GPU_AUTO_RULE };
}

export type Precision = WorkerWireConfig["precision"];

/** `auto` means fp16 on GPU, fp32 on CPU. */
export function resolvePrecision(cfg: Pick<RunConfig, "precision">, devices: DeviceSlot[]): Precision {
  if (cfg.precision !== "auto") return cfg.precision;
  return devices[0]!.kind === "cpu" ? "fp32" : "fp16";
}

export interface StartOptions {
  precision?: Precision;
  /** Test hook passed to workers (EMBED_FAULT). */
  fault?: string;
  /** Override the configured kernels (the fp32 reference runs eager). */
  kernels?: Kernels;
  /** Tokens each worker is expected to embed (input/size-estimate.ts); absent: unknown, and
   * "auto" kernels choose as for a long run (what `embed validate` must check). */
  expectedTokens?: number;
}

/** Start the worker for one device. */
export function startWorker(cfg: RunConfig, d: DeviceSlot, opts: StartOptions = {}, devices: DeviceSlot[] = [d]): Promise<WorkerHandle> {
  const env = childEnv();
  const precision = opts.precision ?? resolvePrecision(cfg, devices);
  const fault = opts.fault ?? cfg.fault;
  return WorkerHandle.start({
    python: cfg.python,
    pythonPath: cfg.pythonPath,
    module: cfg.workerModule,
    readyTimeoutMs: cfg.readyTimeoutMs,
    env: d.kind === "cuda" ? { ...env, CUDA_VISIBLE_DEVICES: d.visible! } : { ...env, CUDA_VISIBLE_DEVICES: "" },
    config: {
      name: d.name,
      model: cfg.model,
      family: cfg.family ?? "esm2",
      device: d.kind,
      precision,
      layers: [...cfg.layers],
      include: [...cfg.include],
      outDtype: cfg.outDtype,
      maxTokens: budgetFor(cfg.maxTokens, d.kind).tokens,
      slots: 2,
      ringDir: cfg.ringDir,
      transport: cfg.transport,
      threads: d.kind === "cpu" ? cfg.threads : undefined, // unset: the worker sizes it from the CPUs granted (py threads.py)
      download: cfg.download,
      kernels: opts.kernels ?? cfg.kernels, // "auto": the worker picks for its device (CPU: eager)
      maxLen: cfg.truncate + 2,
      ...(opts.expectedTokens !== undefined ? { expectedTokens: opts.expectedTokens } : {}),
      ...(fault ? { fault } : {}),
    },
  });
}

/** Start one worker per device, in parallel; if any fails, the others are stopped. */
export async function startWorkers(cfg: RunConfig, devices: DeviceSlot[], opts: StartOptions = {}): Promise<WorkerHandle[]> {
  sweepStaleRings(cfg.ringDir ?? "/dev/shm");
  const settled = await Promise.allSettled(devices.map((d) => startWorker(cfg, d, opts, devices)));
  const ok = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    await Promise.all(ok.map((w) => w.stop()));
    throw failed.reason;
  }
  return ok;
}

/** The smallest budget and sequence cap over the workers: every batch must fit any of them. */
export function workerLimits(workers: readonly WorkerHandle[]): { budget: number; maxSeqs: number } {
  return {
    budget: Math.min(...workers.map((w) => w.ready.maxTokens)),
    maxSeqs: Math.min(...workers.map((w) => w.ready.maxSeqs)),
  };
}

/**
 * Pack the table's records (or only `subset`, input indices); batches hold input indices.
 * Names the offending record if one cannot fit the budget.
 */
export function planRecords(table: RecordTable, budget: number, maxSeqs?: number, subset?: Uint32Array): Plan {
  if (!subset || subset.length === table.size) return planBatches(table.lengths(), { budget, maxSeqs, describe: (i) => `record "${table.id(i)}"` });
  const all = table.lengths();
  const lengths = new Uint32Array(subset.length);
  for (let k = 0; k < subset.length; k++) lengths[k] = all[subset[k]!]!;
  const plan = planBatches(lengths, { budget, maxSeqs, describe: (k) => `record "${table.id(subset[k]!)}"` });
  // Plan positions -> input indices, in place (loops: `Uint32Array.from` with a map function
  // is ~7x slower over millions of records).
  for (const b of plan.batches) for (let j = 0; j < b.records.length; j++) b.records[j] = subset[b.records[j]!]!;
  return plan;
}

export interface EmbedPlanOptions {
  signal?: AbortSignal;
  /**
   * Replace a dead worker with a fresh one on the same device (at most `cfg.maxRestarts` times);
   * the `workers` array is updated in place. Without it, a death fails the run.
   */
  restart?: { cfg: RunConfig; devices: DeviceSlot[]; onReplace?: (dead: WorkerHandle) => void };
  /** Count NaN/Inf instead of failing the batch (validate reports them). */
  allowNonFinite?: boolean;
  /** Kill a hung or unresponsive worker (watchdog.ts; RunConfig.health). */
  health?: HealthOptions;
  /** A worker's token budget was lowered after it ran out of memory. */
  onBudget?: (w: WorkerHandle, tokens: number) => void;
  /** Backpressure: awaited before each batch is taken (pool.ts PoolOptions.admit). */
  admit?: () => Promise<void>;
}

/**
 * Embed every batch of `plan` (records of `table`); `consume` runs with ring views per batch.
 * Batches may be split (out of memory), which appends to `plan.batches`.
 */
export function embedPlan(
  workers: WorkerHandle[],
  table: RecordTable,
  plan: Plan,
  consume: (batch: PlannedBatch, result: BatchResult, worker: WorkerHandle, index: number) => void,
  opts: EmbedPlanOptions = {},
): Promise<PoolStats> {
  const lengths = table.lengths();
  return runPool(
    workers,
    {
      count: () => plan.batches.length,
      batch: (i) => ({ id: i, seqs: Array.from(plan.batches[i]!.records, (r) => table.tokens(r)) }),
      tokens: (i) => plan.batches[i]!.tokens,
      consume: (i, result, w) => {
        const b = plan.batches[i]!;
        if (result.nonFinite > 0 && !opts.allowNonFinite) {
          const ids = Array.from(b.records.subarray(0, 3), (r) => table.id(r)).join(", ");
          throw new EmbedError(`batch ${i} on ${w.name}: ${result.nonFinite} NaN/Inf values (records ${ids}, ...)`, {
            hint: "fp16 overflowed or the weights are corrupt; try --precision bf16 or fp32",
            exitCode: ExitCode.workerFailed,
          });
        }
        consume(b, result, w, i);
      },
      split: (i) => {
        const halves = splitBatch(plan.batches[i]!, lengths);
        if (!halves) return null;
        plan.batches.push(...halves);
        return [plan.batches.length - 2, plan.batches.length - 1];
      },
      describe: (i) => {
        const rs = plan.batches[i]!.records;
        return `record${rs.length > 1 ? "s" : ""} ${Array.from(rs.subarray(0, 3), (r) => `"${table.id(r)}" (${lengths[r]} aa)`).join(", ")}`;
      },
    },
    { signal: opts.signal, health: opts.health, onBudget: opts.onBudget, admit: opts.admit, ...(opts.restart ? restarter(workers, opts.restart) : {}) },
  );
}

function restarter(workers: WorkerHandle[], r: NonNullable<EmbedPlanOptions["restart"]>) {
  const deviceOf = new Map(r.devices.map((d) => [d.name, d]));
  return {
    maxRestarts: r.cfg.maxRestarts,
    respawn: async (dead: WorkerHandle) => {
      r.onReplace?.(dead);
      const fresh = await startWorker(r.cfg, deviceOf.get(dead.name)!, {}, r.devices);
      workers[workers.indexOf(dead)] = fresh;
      return fresh;
    },
  };
}
