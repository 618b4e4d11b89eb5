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

/** Embed every batch of `job` on the `initial` workers and their replacements (the faults handled: see above). */
export async function runPool(initial: readonly WorkerHandle[], job: PoolJob, opts: PoolOptions = {}): Promise<PoolStats> {
  return new Pool(job, opts).run(initial);
}

/**
 * The shared queue of batch indices: the planned batches in order, after any put back (a dead
 * worker's batch, a retried one, the halves of a split), which go first. Batches made by
 * splitting are reached through the put-back list only.
 */
class BatchQueue {
  private readonly back: number[] = [];
  private next = 0;
  private wake: (() => void) | undefined;
  constructor(private readonly planned: number) {}

  take(): number | undefined {
    return this.back.shift() ?? (this.next < this.planned ? this.next++ : undefined);
  }
  putBack(...batches: number[]): void {
    this.back.unshift(...batches);
  }
  get putBackCount(): number {
    return this.back.length;
  }
  /** Resolves at the next `notify` (work put back, a batch settled, a failure, an abort). */
  waitForNews(): Promise<void> {
    return new Promise<void>((r) => (this.wake = chain(this.wake, r)));
  }
  notify(): void {
    this.wake?.();
    this.wake = undefined;
  }
}

/** One run of the pool: its lanes, the faults they handle and the stats they keep. */
class Pool {
  readonly stats: PoolStats = { batches: 0, perWorker: {}, busyMs: {}, restarts: 0, splits: 0 };
  private readonly queue: BatchQueue;
  private inFlight = 0;
  private failure: Error | undefined;
  private closed = false;
  /** Tokens per batch for a worker that ran out of memory (never raised again). */
  private readonly budget = new Map<WorkerHandle, number>();
  /** Batches already retried after a worker's exception. */
  private readonly retried = new Set<number>();
  private readonly running: Promise<void>[] = [];
  private readonly replacing = new Map<WorkerHandle, Promise<void>>();
  private readonly watchdog: Watchdog | undefined;

  constructor(private readonly job: PoolJob, private readonly opts: PoolOptions) {
    this.queue = new BatchQueue(job.count());
    opts.signal?.addEventListener("abort", () => this.queue.notify(), { once: true });
    this.watchdog = opts.health ? new Watchdog(opts.health) : undefined;
  }

  private stopping(): boolean {
    return this.closed || this.failure !== undefined || this.opts.signal?.aborted === true;
  }
  private fail(e: Error): void {
    this.failure ??= e;
    this.queue.notify();
  }
  private startWorker(w: WorkerHandle): void {
    for (let s = 0; s < w.slots; s++) this.running.push(this.lane(w));
  }

  async run(initial: readonly WorkerHandle[]): Promise<PoolStats> {
    const { stats, job, opts } = this;
    initial.forEach((w) => this.startWorker(w));
    // Lanes are added while running (replacements): wait until no lane is left.
    try {
      for (let settled = 0; settled < this.running.length; ) {
        const wave = this.running.slice(settled);
        settled += wave.length;
        await Promise.all(wave);
      }
    } finally {
      this.closed = true;
      this.watchdog?.stop();
    }
    if (this.failure) throw this.failure;
    if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new EmbedError("aborted");
    // Each split replaced one batch by two.
    if (stats.batches + stats.splits < job.count()) throw new EmbedError(`only ${stats.batches} of ${job.count()} batches were embedded`, { hint: "this is a bug; please report it" });
    return stats;
  }

  /** One ring slot of worker `w`: take a batch, embed it, consume it; until no work is left. */
  private async lane(w: WorkerHandle): Promise<void> {
    const { job, stats, queue } = this;
    for (;;) {
      if (this.stopping()) return;
      if (this.opts.admit) {
        await this.opts.admit().catch(() => {}); // rejects only on abort, which stopping() sees
        if (this.stopping()) return;
      }
      if (!w.alive) return this.replace(w, new WorkerError(w.name, "the worker process exited"));
      const i = queue.take();
      if (i === undefined) {
        if (this.inFlight === 0 && queue.putBackCount === 0) return queue.notify();
        // Work may come back (a requeue after a death or a split): wait for news.
        await queue.waitForNews();
        continue;
      }
      if (this.splitOverBudget(w, i)) continue;
      this.inFlight++;
      this.watchdog?.sent(w);
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
        if (!(await this.recover(w, i, e))) return;
      } finally {
        this.inFlight--;
        this.watchdog?.settled(w, ms);
        queue.notify();
      }
    }
  }

  /** Batch `i` is over `w`'s lowered budget: put its halves back instead (false: not split). */
  private splitOverBudget(w: WorkerHandle, i: number): boolean {
    const limit = this.budget.get(w);
    if (limit === undefined || this.job.tokens(i) <= limit || !this.job.split) return false;
    const halves = this.job.split(i);
    if (!halves) return false;
    this.stats.splits++;
    this.queue.putBack(...halves);
    return true;
  }

  /**
   * Batch `i` failed on `w` with `e`: requeue it after a death, split it after running out of
   * memory, retry it once elsewhere after an exception in the worker, or fail the run. True when
   * the lane goes on; after a death or a retry, resolves once the replacement has started.
   */
  private async recover(w: WorkerHandle, i: number, e: unknown): Promise<boolean> {
    const { job, queue } = this;
    // A local failure (closed channel or socket) usually means the process is dying: give
    // the exit a moment to arrive so that the batch is requeued rather than the run failed.
    if (e instanceof WorkerError && e.remoteName === undefined) await w.exitsWithin(DEATH_GRACE_MS);
    if (!w.alive) {
      queue.putBack(i); // the worker died: someone else does this batch
      await this.replace(w, e as Error);
      return false;
    }
    if (isOom(e) && job.split) return this.splitAfterOom(w, i, job.split(i));
    if (e instanceof WorkerError && e.remoteName !== undefined && this.opts.respawn && !this.retried.has(i)) {
      // An exception in the worker (a CUDA error, a bug): its state is suspect, so it is
      // replaced and the batch tried once more elsewhere; a second failure of the same batch
      // is the batch's own and fails the run.
      this.retried.add(i);
      queue.putBack(i);
      log.warn(`${w.name}: ${e.message} on batch ${i} (${job.describe?.(i) ?? "no description"}); replacing the worker and retrying the batch once`);
      w.kill(`replaced after an error in batch ${i}`);
      await this.replace(w, e);
      return false;
    }
    this.fail(this.retried.has(i) && e instanceof WorkerError
      ? new WorkerError(w.name, `batch ${i} failed twice, on two workers (${e.message})`, {
        hint: `the failing records: ${job.describe?.(i) ?? `batch ${i}`}; see the worker log above`,
        remoteName: e.remoteName,
      })
      : (e as Error));
    return false;
  }

  /** Out of memory on batch `i`: put its `halves` back and lower `w`'s budget; a single sequence fails the run. */
  private splitAfterOom(w: WorkerHandle, i: number, halves: [number, number] | null): boolean {
    const { job, budget } = this;
    if (!halves) {
      this.fail(new EmbedError(`out of GPU memory on a single sequence (${job.describe?.(i) ?? `batch ${i}`}) on ${w.name}`, {
        hint: "lower --truncate, or run this record on a larger GPU or with --devices cpu",
        exitCode: ExitCode.workerFailed,
      }));
      return false;
    }
    // Never raised again: with two batches in flight, a larger one may fail after a smaller one.
    budget.set(w, Math.min(budget.get(w) ?? Infinity, Math.floor(job.tokens(i) / 2)));
    this.stats.splits++;
    log.warn(`${w.name}: out of memory on a batch of ${job.tokens(i)} tokens; split in two, budget lowered to ${budget.get(w)}`);
    this.opts.onBudget?.(w, budget.get(w)!);
    this.queue.putBack(...halves);
    return true;
  }

  /** Replace dead worker `dead` (once, however many of its lanes ask), or fail the run when no replacement is allowed. */
  private replace(dead: WorkerHandle, why: Error): Promise<void> {
    const existing = this.replacing.get(dead);
    if (existing) return existing;
    const { opts, stats } = this;
    const p = (async () => {
      if (!opts.respawn || stats.restarts >= (opts.maxRestarts ?? MAX_RESTARTS) || this.stopping()) {
        if (!this.stopping()) {
          this.fail(
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
        this.startWorker(await opts.respawn(dead));
      } catch (e) {
        this.fail(e as Error);
      }
    })();
    this.replacing.set(dead, p);
    return p;
  }
}

/** Resolve several waiters with one call. */
function chain(prev: (() => void) | undefined, r: () => void): () => void {
  return prev ? () => (prev(), r()) : r;
}
