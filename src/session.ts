/**
 * A set of started workers and the one operation on it: embed a plan of records. `run.ts`
 * (store output) and `validate.ts` (precision report) are both built on this.
 */
import { childEnv, type RunConfig } from "./config.ts";
import type { DeviceSlot } from "./devices.ts";
import type { Plan, PlannedBatch } from "./plan.ts";
import { runPool, type PoolStats } from "./pool.ts";
import type { RecordTable } from "./records.ts";
import { WorkerHandle, type BatchResult, type WorkerWireConfig } from "./worker.ts";

/** Token budget of a CPU worker under `--max-tokens auto`. */
export const CPU_AUTO_TOKENS = 4096;

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
  /** Override the configured compile choice (the fp32 reference never compiles). */
  compile?: boolean;
}

/** Start one worker per device, in parallel; if any fails, the others are stopped. */
export async function startWorkers(cfg: RunConfig, devices: DeviceSlot[], opts: StartOptions = {}): Promise<WorkerHandle[]> {
  const env = childEnv();
  const precision = opts.precision ?? resolvePrecision(cfg, devices);
  const fault = opts.fault ?? cfg.fault;
  const starts = devices.map((d) =>
    WorkerHandle.start({
      python: cfg.python,
      pythonPath: cfg.pythonPath,
      module: cfg.workerModule,
      env: d.kind === "cuda" ? { ...env, CUDA_VISIBLE_DEVICES: d.visible! } : { ...env, CUDA_VISIBLE_DEVICES: "" },
      config: {
        name: d.name,
        model: cfg.model,
        device: d.kind,
        precision,
        layers: [...cfg.layers],
        include: [...cfg.include],
        outDtype: cfg.outDtype,
        maxTokens: cfg.maxTokens === "auto" ? (d.kind === "cpu" ? CPU_AUTO_TOKENS : null) : cfg.maxTokens,
        slots: 2,
        ringDir: cfg.ringDir,
        transport: cfg.transport,
        threads: d.kind === "cpu" ? (cfg.threads ?? navigator.hardwareConcurrency) : undefined,
        compile: opts.compile ?? (cfg.compile === "on" || (cfg.compile === "auto" && d.kind === "cuda")),
        ...(fault ? { fault } : {}),
      },
    }),
  );
  const settled = await Promise.allSettled(starts);
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

/** Embed every batch of `plan` (records of `table`); `consume` runs with ring views per batch. */
export function embedPlan(
  workers: readonly WorkerHandle[],
  table: RecordTable,
  plan: Plan,
  consume: (batch: PlannedBatch, result: BatchResult, worker: WorkerHandle, index: number) => void,
  signal?: AbortSignal,
): Promise<PoolStats> {
  return runPool(
    workers,
    {
      count: plan.batches.length,
      batch: (i) => ({ id: i, seqs: Array.from(plan.batches[i]!.records, (r) => table.tokens(r)) }),
      consume: (i, result, w) => consume(plan.batches[i]!, result, w, i),
    },
    signal,
  );
}
