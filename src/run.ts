/**
 * The library entry: FASTA -> records -> plan -> workers -> store, and a summary back.
 * The CLI's `run` command and the TypeScript API both call `embedToStore`.
 */
import { resolveConfig, visibleDevicesEnv, type RunConfig, type RunOptionsInput } from "./config.ts";
import { listGpus, resolveDevices, type DeviceSlot } from "./workers/devices.ts";
import { EmbedError, InterruptedError, OptionsError } from "./errors.ts";
import { groupIdentical, withCopies, type Identical } from "./input/dedup.ts";
import { convertStore } from "./store/formats.ts";
import { ingest } from "./input/ingest.ts";
import type { RunEvent } from "./events.ts";
import { log } from "./log.ts";
import { planSummary } from "./plan.ts";
import type { RecordTable, RecordsSummary } from "./input/records.ts";
import { commandLine, claimOutput } from "./store/ownership.ts";
import { Store, type ShardInfo } from "./store/store.ts";
import { CPU_AUTO_TOKENS, embedPlan, planRecords, startWorkers, workerLimits } from "./workers/session.ts";

/** Budget assumed by `--dry` for GPUs under `auto` (each worker sizes its own at start). */
export const GPU_DRY_TOKENS = 16384;

/** The slice `shard` of `table`, and what its store records of the whole. */
function takeShard(table: RecordTable, shard: { index: number; count: number }): { table: RecordTable; shard: ShardInfo } {
  const info = { ...shard, records: table.size, recordsSha256: table.digest(), counts: table.summary() };
  const slice = table.slice(shard.index, shard.count);
  log.info(`shard ${shard.index}/${shard.count}: ${slice.size} of ${table.size} records`);
  return { table: slice, shard: info };
}

export interface RunHooks {
  signal?: AbortSignal;
  /** Progress as data: start, each batch, each committed shard, worker changes, finish. */
  onEvent?: (e: RunEvent) => void;
}

export interface RunSummary {
  output: string;
  records: number;
  residues: number;
  truncated: number;
  renamed: number;
  /** The first renamed ids (`--duplicate-ids rename`): from, to, file:line; absent when none. */
  renames?: RecordsSummary["renames"];
  /** Records written as copies of an identical earlier one (`--dedup`), not embedded themselves. */
  identical: number;
  /** `I/N` for a `--shard` job (its counts are the slice's). */
  shard?: string;
  batches: number;
  budget: number;
  density: number;
  devices: string[];
  model: string;
  layers: number[];
  include: string[];
  /** Wall time of the whole call. */
  seconds: number;
  /** From the call until every worker was READY and the plan was made (model load, input read). */
  startupSeconds: number;
  /** Where each worker's start-up went, in seconds (WorkerHandle.startup): python, torch,
   * device, load, kernels, ring, warm-up. */
  workerStartup: Record<string, Record<string, number>>;
  /** From the first batch sent to the store committed. */
  embedSeconds: number;
  /** Real tokens (BOS/EOS included) per second of `embedSeconds`. */
  tokensPerSecond: number;
  perWorker: Record<string, number>;
  /** Fraction of the embedding phase each worker spent computing batches (1 = never waited for the orchestrator). */
  busy: Record<string, number>;
  /** Records found committed by an earlier, interrupted run of the same command. */
  resumed: number;
  /** Workers replaced after dying. */
  restarts: number;
  /** Batches split after running out of memory. */
  splits: number;
  /** Formats written (npy is the store itself; others converted after the run). */
  formats: { format: string; files: string[] }[];
}

export interface DryRunResult {
  dry: true;
  devices: string[];
  model: string;
  budget: number;
  budgetSource: "option" | "cpu-default" | "gpu-estimate";
  records: ReturnType<RecordTable["summary"]>;
  /** Records that `--dedup` would write as copies of an identical earlier one (0 without it). */
  identical: number;
  plan: ReturnType<typeof planSummary>;
}

function budgetFor(cfg: RunConfig, devices: DeviceSlot[]): { budget: number; source: DryRunResult["budgetSource"] } {
  if (cfg.maxTokens !== "auto") return { budget: cfg.maxTokens, source: "option" };
  return devices[0]!.kind === "cpu" ? { budget: CPU_AUTO_TOKENS, source: "cpu-default" } : { budget: GPU_DRY_TOKENS, source: "gpu-estimate" };
}


/** Plan only: read inputs, pack, and describe the batches. Starts no worker. */
export async function dryRun(options: RunOptionsInput): Promise<DryRunResult> {
  const cfg = resolveConfig({ ...options, dry: true });
  const devices = resolveDevices(cfg.devices, listGpus(), visibleDevicesEnv());
  let table = await ingest(cfg);
  if (cfg.shard) table = takeShard(table, cfg.shard).table;
  const { budget, source } = budgetFor(cfg, devices);
  const all = table.indices();
  const identical = cfg.dedup ? groupIdentical(table, all) : undefined;
  const plan = planRecords(table, budget, undefined, identical?.firsts ?? all);
  return {
    dry: true,
    devices: devices.map((d) => d.name),
    model: cfg.model,
    budget,
    budgetSource: source,
    records: table.summary(),
    identical: identical?.copies ?? 0,
    plan: planSummary(plan),
  };
}

/** Embed FASTA inputs into a store directory; resumes an interrupted run of the same command. */
export async function embedToStore(options: RunOptionsInput, hooks: RunHooks = {}): Promise<RunSummary> {
  const t0 = performance.now();
  const cfg = resolveConfig({ ...options, dry: false });
  if (!cfg.output) throw new OptionsError("--output is required", "pass -o OUT_DIR (or --dry to print the plan only)");
  const devices = resolveDevices(cfg.devices, listGpus(), visibleDevicesEnv());
  // Before anything is written: inputs outside the output, not someone else's directory, one writer.
  const lock = claimOutput(cfg.output, { formats: cfg.formats, inputs: cfg.inputs, command: commandLine() });
  try {
    Store.checkTarget(cfg.output, cfg.overwrite, cfg.formats);
    return await embedLocked(cfg, cfg.output, devices, hooks, t0);
  } finally {
    lock.release();
  }
}

/** The run, with the store locked (embedToStore). */
async function embedLocked(cfg: RunConfig, out: string, devices: DeviceSlot[], hooks: RunHooks, t0: number): Promise<RunSummary> {
  log.info(`embedding with ${cfg.model} on ${devices.map((d) => `${d.name} (${d.label})`).join(", ")}`);
  // Workers load the model while the inputs are read.
  const workersP = startWorkers(cfg, devices);
  workersP.catch(() => {});
  let table: RecordTable;
  let slice: ShardInfo | undefined; // --shard I/N: this job's slice of the input
  try {
    table = await ingest(cfg);
    if (cfg.shard) ({ table, shard: slice } = takeShard(table, cfg.shard));
  } catch (e) {
    await workersP.then((ws) => Promise.all(ws.map((w) => w.stop())), () => {});
    throw e;
  }
  // Grouping identical sequences (--dedup: ~0.6 s per million records) runs while the workers
  // load; a resumed run regroups only what is left once the store says what that is.
  const all = table.indices();
  const grouped = cfg.dedup ? groupIdentical(table, all) : undefined;
  // Interrupted while the models load: stop now (the workers ignore SIGINT and would finish
  // loading first), with the usual exit 130 and resume hint; nothing was written yet.
  const reason = () => (hooks.signal!.reason instanceof EmbedError ? hooks.signal!.reason : new InterruptedError("signal"));
  const interrupted = new Promise<never>((_, reject) => {
    if (hooks.signal?.aborted) reject(reason());
    else hooks.signal?.addEventListener("abort", () => reject(reason()), { once: true });
  });
  interrupted.catch(() => {});
  try {
    await Promise.race([workersP, interrupted]);
  } catch (e) {
    void workersP.then((ws) => ws.forEach((w) => w.kill()), () => {});
    throw hooks.signal?.aborted ? reason() : e; // a worker killed by the same Ctrl-C is the interrupt
  }
  const workers = [...(await workersP)];
  let store: Store | undefined;
  try {
    const first = workers[0]!.ready;
    const digest = table.digest();
    store = Store.open(
      out,
      {
        recordsSha256: digest,
        records: table.size,
        model: { name: first.model.name, path: first.model.path, numLayers: first.model.numLayers, dim: first.model.dim },
        layers: first.layers,
        include: first.include,
        dtype: first.outDtype,
        precision: first.dtype,
        truncate: cfg.truncate,
        duplicateIds: cfg.duplicateIds,
        ...(slice ? { shard: `${slice.index}/${slice.count}` } : {}),
      },
      { dim: first.model.dim, layers: first.layers, include: first.include, dtype: first.outDtype, lengths: table.lengths() },
      { overwrite: cfg.overwrite, shardRecords: cfg.shardRecords },
    );
    const s = store;
    if (s.resumed) log.info(`resuming: ${s.resumed} of ${table.size} records already committed`);
    const { budget, maxSeqs } = workerLimits(workers);
    const todo = s.resumed ? table.indices((i) => !s.isDone(i)) : all;
    const identical: Identical | undefined = grouped && s.resumed ? groupIdentical(table, todo) : grouped;
    const plan = planRecords(table, budget, maxSeqs, identical?.firsts ?? todo);
    const copies = identical ? `, ${identical.copies} of them copies of an identical sequence (embedded once)` : "";
    log.info(`${todo.length} records to write${copies}, ${plan.batches.length} batches of ≤${budget} tokens, packing density ${(plan.density * 100).toFixed(1)}%`);
    const lengths = table.lengths();
    const emit = hooks.onEvent ?? (() => {});
    emit({ type: "start", records: table.size, todo: todo.length, ...(identical ? { identical: identical.copies } : {}), resumed: s.resumed, batches: plan.batches.length, tokens: plan.tokens, budget, density: plan.density, devices: workers.map((w) => w.name) });
    const tEmbed = performance.now();
    // A split batch stays in plan.batches beside its two halves: batches to embed = entries - splits.
    const planned = plan.batches.length;
    const totalBatches = () => plan.batches.length - (plan.batches.length - planned) / 2;
    let records = 0;
    let tokens = 0;
    let done = 0;
    let stats: Awaited<ReturnType<typeof embedPlan>> | undefined;
    try {
      stats = await embedPlan(
        workers,
        table,
        plan,
        (b, result, w) => {
          // Copies go into the same append as their first: all or nothing.
          const out = identical ? withCopies(b.records, result, identical, lengths) : { records: b.records, result };
          const shard = s.write(out.records, out.result);
          records += out.records.length;
          tokens += b.tokens;
          done++;
          const elapsed = (performance.now() - tEmbed) / 1000;
          emit({ type: "batch", batches: done, totalBatches: totalBatches(), records, tokens, elapsed, tokensPerSecond: tokens / elapsed, worker: w.name, density: b.tokens / budget });
          if (shard) emit({ type: "shard", shard: shard.shard, records: shard.records, committed: s.recordsDone });
        },
        {
          signal: hooks.signal,
          health: cfg.health,
          onBudget: (w, tokens) => emit({ type: "worker", worker: w.name, state: "budget-lowered", detail: `out of memory: batches of at most ${tokens} tokens from now on`, budget: tokens }),
          restart: {
            cfg,
            devices,
            onReplace: (dead) => emit({ type: "worker", worker: dead.name, state: "replaced", detail: "the worker died; a replacement is starting" }),
          },
        },
      );
    } finally {
      // Whatever happened, what finished is committed, so the same command resumes from it.
      const last = s.commitShard();
      if (last) emit({ type: "shard", shard: last.shard, records: last.records, committed: s.recordsDone });
    }
    const tEnd = performance.now();
    const embedSeconds = (tEnd - tEmbed) / 1000;
    const seconds = (tEnd - t0) / 1000;
    const summary: RunSummary = {
      output: out,
      ...table.summary(),
      identical: identical?.copies ?? 0,
      ...(slice ? { shard: `${slice.index}/${slice.count}` } : {}),
      resumed: s.resumed,
      batches: totalBatches(),
      budget,
      density: plan.density,
      devices: workers.filter((w) => w.alive).map((w) => `${w.name} (${w.ready.device}, ${w.ready.backend}, ${w.ready.kernels}, ${w.ready.dtype})`),
      model: first.model.name,
      layers: first.layers,
      include: first.include,
      seconds,
      startupSeconds: (tEmbed - t0) / 1000,
      workerStartup: Object.fromEntries(workers.map((w) => [w.name, w.startup()])),
      embedSeconds,
      tokensPerSecond: plan.tokens / embedSeconds,
      perWorker: stats.perWorker,
      busy: Object.fromEntries(Object.entries(stats.busyMs).map(([w, ms]) => [w, Math.round(ms / 10 / embedSeconds) / 100])),
      restarts: stats.restarts,
      splits: stats.splits,
      formats: [{ format: "npy", files: [] }],
    };
    s.finalize(table, {
      complete: true,
      createdAt: new Date().toISOString(),
      model: first.model,
      layers: first.layers,
      include: first.include,
      dtype: first.outDtype,
      precision: first.dtype,
      truncate: cfg.truncate,
      counts: table.summary(),
      inputs: cfg.inputs,
      inputChecksums: table.inputs,
      recordsSha256: digest,
      ...(slice ? { shard: slice } : {}),
      run: { devices: summary.devices, batches: summary.batches, budget, density: plan.density, seconds, resumed: s.resumed, identical: summary.identical },
      load: `import numpy as np; X = np.load("${out}/${first.include[0]}.layer${first.layers.at(-1)}.npy", mmap_mode="r"); ids = open("${out}/ids.txt").read().split()`,
    });
    for (const f of cfg.formats.filter((f) => f !== "npy")) {
      const c = await convertStore(out, f, { python: cfg.python });
      log.info(`${f}: ${c.files.join(", ")}`);
      summary.formats.push({ format: f, files: c.files });
    }
    emit({ type: "finish", records: table.size, seconds: summary.seconds, tokensPerSecond: summary.tokensPerSecond, output: out });
    return summary;
  } catch (e) {
    for (const w of workers) w.kill();
    store?.abort();
    if (hooks.signal?.aborted) throw reason();
    throw e;
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}
