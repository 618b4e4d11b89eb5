/**
 * The library entry: FASTA -> records -> plan -> workers -> store, and a summary back.
 * The CLI's `run` command and the TypeScript API both call `embedToStore`; options are resolved
 * by `resolveRunProbed` (resolve.ts), as for the API and `embed validate`.
 */
import type { RunConfig, RunOptionsInput } from "./config.ts";
import type { DeviceSlot } from "./workers/devices.ts";
import { EmbedError, InterruptedError, OptionsError } from "./errors.ts";
import { groupIdentical, withCopies, type Identical } from "./input/dedup.ts";
import { convertStore } from "./store/formats.ts";
import { ingest } from "./input/ingest.ts";
import type { ReadingOptions } from "./input/alphabet-guard.ts";
import { readingFor } from "./input/reading.ts";
import { BYTES_PER_TOKEN, estimateTokens } from "./input/size-estimate.ts";
import { POOLING } from "./protocol.ts";
import type { RunEvent } from "./events.ts";
import { log } from "./log.ts";
import type { RecordTable } from "./input/records.ts";
import type { RunSummary } from "./run-summary.ts";
import { commandLine, claimOutput } from "./store/ownership.ts";
import { resolveRunProbed } from "./resolve.ts";
import { runIdentity, runManifest, type RunFacts, type SliceInfo } from "./store/identity.ts";
import { unchangedRerun } from "./rerun.ts";
import { runRequest } from "./store/request.ts";
import { Store } from "./store/store.ts";
import { embedPlan, planRecords, startWorkers, workerLimits } from "./workers/session.ts";
import type { WorkerHandle } from "./workers/handle.ts";

export type { RunSummary };

/** Slice `slice` (`--slice I/N`) of `table`, and what its store records of the whole. */
export function takeSlice(table: RecordTable, slice: { index: number; count: number }): { table: RecordTable; slice: SliceInfo } {
  const info = { ...slice, records: table.size, recordsSha256: table.digest(), counts: table.summary() };
  const part = table.slice(slice.index, slice.count);
  log.info(`slice ${slice.index}/${slice.count}: ${part.size} of ${table.size} records`);
  return { table: part, slice: info };
}

export interface RunHooks {
  signal?: AbortSignal;
  /** Progress as data: start, each batch, each committed shard, worker changes, finish. */
  onEvent?: (e: RunEvent) => void;
  /** Workers already starting for these very options (`prestartWorkers`): the run takes them
   * instead of starting its own. The caller stops them if the run never starts. */
  workers?: Promise<WorkerHandle[]>;
}

/**
 * Start a run's workers ahead of it, for `hooks.workers` of `embedToStore` with the same options
 * (`embed virnucpro` starts the ESM-2 step's while the DNABERT-S step embeds, so that one model's
 * start-up overlaps the other's work). Its inputs must exist: the task size is estimated from them.
 */
export async function prestartWorkers(options: RunOptionsInput): Promise<WorkerHandle[]> {
  const { cfg, devices } = await resolveRunProbed({ ...options, dry: false });
  return startRunWorkers(cfg, devices);
}

/** A run's workers, each told its share of the input's estimated tokens (for its kernel choice). */
function startRunWorkers(cfg: RunConfig, devices: DeviceSlot[]): Promise<WorkerHandle[]> {
  const perToken = BYTES_PER_TOKEN[cfg.family ?? "esm2"];
  return startWorkers(cfg, devices, { expectedTokens: estimateTokens(cfg.inputs, devices.length, cfg.slice?.count, perToken) });
}

/** Embed FASTA inputs into a store directory; resumes an interrupted run of the same command. */
export async function embedToStore(options: RunOptionsInput, hooks: RunHooks = {}): Promise<RunSummary> {
  const t0 = performance.now();
  // Every option is checked here, --layers against a known model's depth included, before the
  // output is claimed or a worker starts.
  const { cfg, devices, family, tokenizer } = await resolveRunProbed({ ...options, dry: false });
  const reading = readingFor(family, tokenizer, cfg); // a bad tokenizer.json stops here, before the lock
  if (!cfg.output) throw new OptionsError("--output is required", "pass -o OUT_DIR (or --dry to print the plan only)");
  // Before anything is written: inputs outside the output, not someone else's directory, one writer.
  const lock = claimOutput(cfg.output, { formats: cfg.formats, inputs: cfg.inputs, command: commandLine() });
  try {
    const unchanged = cfg.overwrite ? undefined : await unchangedRerun(cfg, cfg.output, reading, t0);
    if (unchanged) return unchanged;
    Store.checkTarget(cfg.output, cfg.overwrite, cfg.formats);
    return await embedLocked(cfg, cfg.output, devices, reading, hooks, t0);
  } finally {
    lock.release();
  }
}

/** What a Ctrl-C (or another abort) means: its reason when that is an EmbedError, else exit 130. */
function interruptReason(signal: AbortSignal): EmbedError {
  return signal.reason instanceof EmbedError ? signal.reason : new InterruptedError("signal");
}

/**
 * Start the workers and read the inputs at once (the model loads while the input is read and
 * grouped); bad input or an interrupt ends the wait at once.
 */
async function startWhileReading(
  cfg: RunConfig,
  devices: DeviceSlot[],
  reading: ReadingOptions,
  signal: AbortSignal | undefined,
  prestarted?: Promise<WorkerHandle[]>,
): Promise<{ workers: WorkerHandle[]; table: RecordTable; slice: SliceInfo | undefined; grouped: Identical | undefined }> {
  // Workers load the model while the inputs are read, from the moment the first records passed
  // the alphabet check (a nucleotide file given to ESM-2, or protein to DNABERT-S, starts none).
  // Bad input found later is reported at once, not after the model has loaded: the workers are
  // killed as soon as they can be (a start-up cannot be cancelled half-way), and a CLI run exits,
  // which ends them with it (py lifeline.py).
  let sampled: () => void = () => {};
  const workersP = prestarted ?? new Promise<void>((r) => (sampled = r)).then(() => startRunWorkers(cfg, devices));
  workersP.catch(() => {});
  let table: RecordTable;
  let slice: SliceInfo | undefined; // --slice I/N: this job's slice of the input
  try {
    table = await ingest(cfg, { ...reading, onSampled: () => sampled() });
    sampled();
    if (cfg.slice) ({ table, slice } = takeSlice(table, cfg.slice));
  } catch (e) {
    void workersP.then((ws) => ws.forEach((w) => w.kill()), () => {});
    throw e;
  }
  // Grouping identical sequences (--dedup: ~0.6 s per million records) runs while the workers
  // load; a resumed run regroups only what is left once the store says what that is.
  const all = table.indices();
  const grouped = cfg.dedup ? groupIdentical(table, all) : undefined;
  // Interrupted while the models load: stop now (the workers ignore SIGINT and would finish
  // loading first), with the usual exit 130 and resume hint; nothing was written yet.
  const reason = () => interruptReason(signal!);
  const interrupted = new Promise<never>((_, reject) => {
    if (signal?.aborted) reject(reason());
    else signal?.addEventListener("abort", () => reject(reason()), { once: true });
  });
  interrupted.catch(() => {});
  try {
    await Promise.race([workersP, interrupted]);
  } catch (e) {
    void workersP.then((ws) => ws.forEach((w) => w.kill()), () => {});
    throw signal?.aborted ? reason() : e; // a worker killed by the same Ctrl-C is the interrupt
  }
  return { workers: [...(await workersP)], table, slice, grouped };
}

/** The run, with the store locked (embedToStore): open the store, plan what is left, embed the
 * plan with events, then finish (manifest, formats, summary). */
async function embedLocked(cfg: RunConfig, out: string, devices: DeviceSlot[], reading: ReadingOptions, hooks: RunHooks, t0: number): Promise<RunSummary> {
  log.info(`embedding with ${cfg.model} on ${devices.map((d) => `${d.name} (${d.label})`).join(", ")}`);
  const { workers, table, slice, grouped } = await startWhileReading(cfg, devices, reading, hooks.signal, hooks.workers);
  let store: Store | undefined;
  try {
    const facts = runFacts(cfg, workers[0]!, table, slice);
    store = openStore(cfg, out, workers[0]!, table, facts);
    const left = planLeft(table, store, workers, grouped);
    const run: LockedRun = { cfg, out, devices, workers, table, slice, facts, store, left, emit: hooks.onEvent ?? (() => {}), t0 };
    return await finishRun(run, await embedWithEvents(run, hooks.signal));
  } catch (e) {
    for (const w of workers) w.kill();
    store?.abort();
    if (hooks.signal?.aborted) throw interruptReason(hooks.signal);
    throw e;
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** What the steps of a locked run share. */
interface LockedRun {
  cfg: RunConfig; out: string; devices: DeviceSlot[]; workers: WorkerHandle[];
  table: RecordTable; slice: SliceInfo | undefined; facts: RunFacts; store: Store;
  left: ReturnType<typeof planLeft>; emit: (e: RunEvent) => void;
  /** When the call began (performance.now(), ms). */
  t0: number;
}

/** Open (or resume) the store, shaped as the first worker's READY says. */
function openStore(cfg: RunConfig, out: string, w: WorkerHandle, table: RecordTable, facts: RunFacts): Store {
  const r = w.ready;
  const shape = { dim: r.model.dim, layers: r.layers, include: r.include, dtype: r.outDtype, lengths: table.lengths() };
  const s = Store.open(out, runIdentity(facts), shape, { overwrite: cfg.overwrite, shardRecords: cfg.shardRecords });
  if (s.resumed) log.info(`resuming: ${s.resumed} of ${table.size} records already committed`);
  return s;
}

/** The records not yet committed, their identical groups (--dedup) and the batches they pack into. */
function planLeft(table: RecordTable, s: Store, workers: WorkerHandle[], grouped: Identical | undefined) {
  const { budget, maxSeqs } = workerLimits(workers);
  const todo = s.resumed ? table.indices((i) => !s.isDone(i)) : table.indices();
  const identical: Identical | undefined = grouped && s.resumed ? groupIdentical(table, todo) : grouped;
  const plan = planRecords(table, budget, maxSeqs, identical?.firsts ?? todo);
  const copies = identical ? `, ${identical.copies} of them copies of an identical sequence (embedded once)` : "";
  log.info(`${todo.length} records to write${copies}, ${plan.batches.length} batches of ≤${budget} tokens, packing density ${(plan.density * 100).toFixed(1)}%`);
  return { budget, todo, identical, plan };
}

/**
 * Embed the plan into the store: a start event, a batch event per batch and a shard event per
 * committed shard; what finished is committed whatever happened. Returns the pool's stats, the
 * batches embedded and when embedding began and ended (performance.now(), ms).
 */
async function embedWithEvents(run: LockedRun, signal: AbortSignal | undefined) {
  const { cfg, workers, table, store: s, emit } = run;
  const { budget, todo, identical, plan } = run.left;
  const lengths = table.lengths();
  emit({ type: "start", records: table.size, todo: todo.length, ...(identical ? { identical: identical.copies } : {}), resumed: s.resumed, batches: plan.batches.length, tokens: plan.tokens, budget, density: plan.density, devices: workers.map((w) => w.name) });
  const tEmbed = performance.now();
  // A split batch stays in plan.batches beside its two halves: batches to embed = entries - splits.
  const planned = plan.batches.length;
  const totalBatches = () => plan.batches.length - (plan.batches.length - planned) / 2;
  let records = 0;
  let tokens = 0;
  let done = 0;
  try {
    const stats = await embedPlan(
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
        signal,
        health: cfg.health,
        onBudget: (w, tokens) => emit({ type: "worker", worker: w.name, state: "budget-lowered", detail: `out of memory: batches of at most ${tokens} tokens from now on`, budget: tokens }),
        restart: { cfg, devices: run.devices, onReplace: (dead) => emit({ type: "worker", worker: dead.name, state: "replaced", detail: "the worker died; a replacement is starting" }) },
      },
    );
    return { stats, batches: totalBatches(), tEmbed };
  } finally {
    // Whatever happened, what finished is committed, so the same command resumes from it.
    const last = s.commitShard();
    if (last) emit({ type: "shard", shard: last.shard, records: last.records, committed: s.recordsDone });
  }
}

/** Write the manifest, convert to the other formats (under this run's lock), emit finish and
 * return the summary. */
async function finishRun(run: LockedRun, embedded: Awaited<ReturnType<typeof embedWithEvents>>): Promise<RunSummary> {
  const tEnd = performance.now();
  const { cfg, out, workers, table, slice, facts, store: s, emit, t0 } = run;
  const { budget, identical, plan } = run.left;
  const { stats, tEmbed } = embedded;
  const embedSeconds = (tEnd - tEmbed) / 1000;
  const seconds = (tEnd - t0) / 1000;
  const summary: RunSummary = {
    output: out,
    family: facts.family,
    pooling: facts.pooling,
    ...table.summary(),
    identical: identical?.copies ?? 0,
    ...(slice ? { slice: `${slice.index}/${slice.count}` } : {}),
    resumed: s.resumed,
    batches: embedded.batches,
    budget,
    density: plan.density,
    devices: workers.filter((w) => w.alive).map((w) => `${w.name} (${w.ready.device}, ${w.ready.backend}, ${w.ready.kernels}, ${w.ready.precision})`),
    model: facts.model.name,
    layers: facts.layers,
    include: facts.include,
    seconds,
    startupSeconds: (tEmbed - t0) / 1000,
    workerStartup: Object.fromEntries(workers.map((w) => [w.name, w.startup()])),
    embedSeconds,
    tokensPerSecond: plan.tokens / embedSeconds,
    finishSeconds: 0,
    perWorker: stats.perWorker,
    busy: Object.fromEntries(Object.entries(stats.busyMs).map(([w, ms]) => [w, Math.round(ms / 10 / embedSeconds) / 100])),
    restarts: stats.restarts,
    splits: stats.splits,
    formats: [{ format: "npy", files: [] }],
  };
  const runInfo = { devices: summary.devices, batches: summary.batches, budget, density: plan.density, seconds, resumed: s.resumed, identical: summary.identical, request: runRequest(cfg) };
  s.finalize(table, runManifest(out, facts, { counts: table.summary(), inputs: cfg.inputs, inputChecksums: table.inputs, run: runInfo }));
  for (const f of cfg.formats.filter((f) => f !== "npy")) {
    const c = await convertStore(out, f, { python: cfg.python, locked: out }); // under this run's lock
    log.info(`${f}: ${c.files.join(", ")}`);
    summary.formats.push({ format: f, files: c.files });
  }
  summary.finishSeconds = (performance.now() - tEnd) / 1000;
  summary.seconds = (performance.now() - t0) / 1000;
  emit({ type: "finish", records: table.size, seconds: summary.seconds, tokensPerSecond: summary.tokensPerSecond, output: out });
  return summary;
}

/** What the store records of this run: the model and outputs as the first worker's READY says
 * (the resolved layers, the model's path), the rest as the options and the input say. */
function runFacts(cfg: RunConfig, w: WorkerHandle, table: RecordTable, slice: SliceInfo | undefined): RunFacts {
  const r = w.ready;
  return {
    model: r.model,
    layers: r.layers,
    include: r.include,
    dtype: r.outDtype,
    precision: r.precision,
    family: cfg.family ?? "esm2",
    pooling: Object.fromEntries(r.include.map((k) => [k, POOLING[cfg.family ?? "esm2"][k]])),
    truncate: cfg.truncate,
    duplicateIds: cfg.duplicateIds,
    recordsSha256: table.digest(),
    records: table.size,
    ...(slice ? { slice } : {}),
  };
}
