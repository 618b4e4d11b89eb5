/**
 * Dispatch batches to workers from one shared queue. Each worker runs as many lanes as it has
 * ring slots: while one batch computes, the next is already in the other slot, so a worker never
 * waits for the orchestrator; whichever lane frees first takes the next batch, so a slower GPU
 * simply takes fewer batches.
 *
 * Faults: a worker that dies has its in-flight batches put back on the queue and is replaced
 * (at most `maxRestarts` times in a run); a batch that runs out of GPU memory is split in two and
 * requeued, and that worker's budget is lowered; an exception in a batch replaces the worker and
 * retries the batch once elsewhere (twice failed, it fails the run). With `health`, a worker that
 * stops answering or holds a batch too long is killed (watchdog.ts) and so handled as dead. On
 * abort (SIGINT/SIGTERM) no new batch is taken, in-flight batches finish and are consumed, then
 * the abort reason is thrown.
 */
import { EmbedError, ExitCode, WorkerError } from "../errors.ts";
import { log } from "../log.ts";
import { Watchdog, type HealthOptions } from "./watchdog.ts";
import type { BatchInput, BatchResult } from "../protocol.ts";
import type { WorkerHandle } from "./handle.ts";

export interface PoolJob {
  /** Number of batches (may grow when batches are split). */
  count(): number;
  /** Build batch `i` (tokens are copied into the ring by the worker handle). */
  batch(i: number): BatchInput;
  /** Real tokens of batch `i` (BOS/EOS included). */
  tokens(i: number): number;
  /** Consume batch `i`'s result; runs before the ring slot is reused. */
  consume(i: number, result: BatchResult, worker: WorkerHandle): void;
  /** Split batch `i` in two; returns the new batch indices, or null for a single sequence. */
  split?(i: number): [number, number] | null;
  /** Describe batch `i` for an error message (e.g. its record ids). */
  describe?(i: number): string;
}

export interface PoolOptions {
  signal?: AbortSignal;
  /** Start a replacement for a dead worker. Without it, a death fails the run. */
  respawn?: (dead: WorkerHandle) => Promise<WorkerHandle>;
  /** Replacements allowed in one run. */
  maxRestarts?: number;
  /** Health checks (watchdog.ts): a hung or unresponsive worker is killed, then handled as dead. */
  health?: HealthOptions;
  /** A worker's budget was lowered after it ran out of memory (tokens per batch from now on). */
  onBudget?: (w: WorkerHandle, tokens: number) => void;
  /** Awaited by a lane before it takes its next batch: backpressure from a slow consumer (the
   * API's iterator). It may reject once `signal` aborts; the lane then stops. */
  admit?: () => Promise<void>;
}

export interface PoolStats {
  batches: number;
  /** Batches done per worker name. */
  perWorker: Record<string, number>;
  /** Milliseconds each worker spent on its batches, as the worker measured them (message in to result out). */
  busyMs: Record<string, number>;
  restarts: number;
  splits: number;
}

/** How long a local worker failure may take to show up as a process exit. */
const DEATH_GRACE_MS = 1_000;

/** Default number of worker replacements before a run gives up. */
export const MAX_RESTARTS = 3;

const isOom = (e: unknown) => e instanceof WorkerError && /OutOfMemory/i.test(e.remoteName ?? "");

export async function runPool(initial: readonly WorkerHandle[], job: PoolJob, opts: PoolOptions = {}): Promise<PoolStats> {
  const stats: PoolStats = { batches: 0, perWorker: {}, busyMs: {}, restarts: 0, splits: 0 };
  const queue: number[] = [];
  let next = 0;
  let inFlight = 0;
  let failure: Error | undefined;
  const budget = new Map<WorkerHandle, number>();
  /** Batches already retried after a worker's exception. */
  const retried = new Set<number>();
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  let closed = false;
  const stopping = () => closed || failure !== undefined || opts.signal?.aborted === true;
  // Batches made by splitting are reached through the queue only.
  const planned = job.count();
  const take = (): number | undefined => queue.shift() ?? (next < planned ? next++ : undefined);
  const fail = (e: Error) => {
    failure ??= e;
    notify();
  };
  opts.signal?.addEventListener("abort", notify, { once: true });
  const watchdog = opts.health ? new Watchdog(opts.health) : undefined;

  const running: Promise<void>[] = [];
  const startWorker = (w: WorkerHandle) => {
    for (let s = 0; s < w.slots; s++) running.push(lane(w));
  };

  async function lane(w: WorkerHandle): Promise<void> {
    for (;;) {
      if (stopping()) return;
      if (opts.admit) {
        await opts.admit().catch(() => {}); // rejects only on abort, which stopping() sees
        if (stopping()) return;
      }
      if (!w.alive) return replace(w, new WorkerError(w.name, "the worker process exited"));
      const i = take();
      if (i === undefined) {
        if (inFlight === 0 && queue.length === 0) return notify();
        // Work may come back (a requeue after a death or a split): wait for news.
        await new Promise<void>((r) => (wake = chain(wake, r)));
        continue;
      }
      const limit = budget.get(w);
      if (limit !== undefined && job.tokens(i) > limit && job.split) {
        const halves = job.split(i);
        if (halves) {
          stats.splits++;
          queue.unshift(...halves);
          continue;
        }
      }
      inFlight++;
      watchdog?.sent(w);
      let ms = 0;
      try {
        await w.embed(job.batch(i), (r) => {
          ms = r.ms;
          stats.busyMs[w.name] = (stats.busyMs[w.name] ?? 0) + r.ms;
          job.consume(i, r, w);
        });
        stats.batches++;
        stats.perWorker[w.name] = (stats.perWorker[w.name] ?? 0) + 1;
      } catch (e) {
        // A local failure (closed channel or socket) usually means the process is dying: give
        // the exit a moment to arrive so that the batch is requeued rather than the run failed.
        if (e instanceof WorkerError && e.remoteName === undefined) await w.exitsWithin(DEATH_GRACE_MS);
        if (!w.alive) {
          queue.unshift(i); // the worker died: someone else does this batch
          await replace(w, e as Error);
          return;
        }
        if (isOom(e) && job.split) {
          const halves = job.split(i);
          if (!halves) {
            fail(new EmbedError(`out of GPU memory on a single sequence (${job.describe?.(i) ?? `batch ${i}`}) on ${w.name}`, {
              hint: "lower --truncate, or run this record on a larger GPU or with --devices cpu",
              exitCode: ExitCode.workerFailed,
            }));
            return;
          }
          // Never raised again: with two batches in flight, a larger one may fail after a smaller one.
          budget.set(w, Math.min(budget.get(w) ?? Infinity, Math.floor(job.tokens(i) / 2)));
          stats.splits++;
          log.warn(`${w.name}: out of memory on a batch of ${job.tokens(i)} tokens; split in two, budget lowered to ${budget.get(w)}`);
          opts.onBudget?.(w, budget.get(w)!);
          queue.unshift(...halves);
        } else if (e instanceof WorkerError && e.remoteName !== undefined && opts.respawn && !retried.has(i)) {
          // An exception in the worker (a CUDA error, a bug): its state is suspect, so it is
          // replaced and the batch tried once more elsewhere; a second failure of the same batch
          // is the batch's own and fails the run.
          retried.add(i);
          queue.unshift(i);
          log.warn(`${w.name}: ${e.message} on batch ${i} (${job.describe?.(i) ?? "no description"}); replacing the worker and retrying the batch once`);
          w.kill(`replaced after an error in batch ${i}`);
          await replace(w, e);
          return;
        } else {
          fail(retried.has(i) && e instanceof WorkerError
            ? new WorkerError(w.name, `batch ${i} failed twice, on two workers (${e.message})`, {
              hint: `the failing records: ${job.describe?.(i) ?? `batch ${i}`}; see the worker log above`,
              remoteName: e.remoteName,
            })
            : (e as Error));
          return;
        }
      } finally {
        inFlight--;
        watchdog?.settled(w, ms);
        notify();
      }
    }
  }

  const replacing = new Map<WorkerHandle, Promise<void>>();
  function replace(dead: WorkerHandle, why: Error): Promise<void> {
    const existing = replacing.get(dead);
    if (existing) return existing;
    const p = (async () => {
      if (!opts.respawn || stats.restarts >= (opts.maxRestarts ?? MAX_RESTARTS) || stopping()) {
        if (!stopping()) {
          fail(
            opts.respawn
              ? new WorkerError(dead.name, `died ${stats.restarts + 1} times; giving up (${why.message})`, { hint: "see the worker log above; rerun the same command to resume" })
              : why,
          );
        }
        return;
      }
      stats.restarts++;
      log.warn(`${dead.name} died (${why.message}); starting a replacement (${stats.restarts}/${opts.maxRestarts ?? MAX_RESTARTS})`);
      try {
        const fresh = await opts.respawn(dead);
        startWorker(fresh);
      } catch (e) {
        fail(e as Error);
      }
    })();
    replacing.set(dead, p);
    return p;
  }

  initial.forEach(startWorker);
  // Lanes are added while running (replacements): wait until no lane is left.
  try {
    for (let settled = 0; settled < running.length; ) {
      const wave = running.slice(settled);
      settled += wave.length;
      await Promise.all(wave);
    }
  } finally {
    closed = true;
    watchdog?.stop();
  }
  if (failure) throw failure;
  if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new EmbedError("aborted");
  // Each split replaced one batch by two.
  if (stats.batches + stats.splits < job.count()) throw new EmbedError(`only ${stats.batches} of ${job.count()} batches were embedded`, { hint: "this is a bug; please report it" });
  return stats;
}

/** Resolve several waiters with one call. */
function chain(prev: (() => void) | undefined, r: () => void): () => void {
  return prev ? () => (prev(), r()) : r;
}
