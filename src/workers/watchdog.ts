/**
 * Worker health while a pool runs. A worker process can stay alive and still never answer: a GPU
 * kernel that hangs, a deadlock, a channel that stopped reading. Its process exit would never come,
 * so the run would wait for ever. Every `intervalMs` each worker is pinged (its reader thread
 * answers even while a batch computes), and a worker that holds batches is checked for progress:
 * one that misses a ping or goes longer than its batch limit without a result is killed, and its
 * death takes the usual path (in-flight batches requeued, a replacement started).
 *
 * The batch limit is the larger of a floor (10 min on a GPU, 1 h on a CPU, where a large model's
 * batch can take minutes) and 20 times the slowest batch the worker has finished.
 */
import { log } from "../log.ts";
import type { WorkerHandle } from "./handle.ts";

export interface HealthOptions {
  /** How often workers are pinged and checked (default 30 s). */
  intervalMs?: number;
  /** How long a health-check ping may go unanswered (default 60 s). */
  pingTimeoutMs?: number;
  /** Floor of the time a worker may hold batches without a result (default: by device). */
  batchTimeoutMs?: number;
}

const INTERVAL_MS = 30_000;
const PING_TIMEOUT_MS = 60_000;
const GPU_BATCH_FLOOR_MS = 10 * 60_000;
const CPU_BATCH_FLOOR_MS = 60 * 60_000;
/** A batch may take this many times the slowest one the worker has finished. */
const SLOWEST_FACTOR = 20;

interface Watched {
  inFlight: number;
  /** When the worker last made progress (a batch settled, or the first one was sent). */
  since: number;
  slowestMs: number;
  pinging: boolean;
}

export class Watchdog {
  private readonly watched = new Map<WorkerHandle, Watched>();
  private timer: Timer | undefined;
  private readonly intervalMs: number;
  private readonly pingTimeoutMs: number;

  constructor(private readonly opts: HealthOptions) {
    this.intervalMs = opts.intervalMs ?? INTERVAL_MS;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? PING_TIMEOUT_MS;
  }

  /** A batch went to `w`. */
  sent(w: WorkerHandle): void {
    const s = this.of(w);
    if (s.inFlight++ === 0) s.since = Date.now();
    this.timer ??= setInterval(() => this.check(), this.intervalMs);
  }

  /** A batch of `w` settled (a result or an error: either way the worker answered). */
  settled(w: WorkerHandle, ms = 0): void {
    const s = this.of(w);
    s.inFlight = Math.max(0, s.inFlight - 1);
    s.since = Date.now();
    s.slowestMs = Math.max(s.slowestMs, ms);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The time `w` may hold batches without a result. */
  limitMs(w: WorkerHandle): number {
    const floor = this.opts.batchTimeoutMs ?? (w.ready.device.startsWith("cpu") ? CPU_BATCH_FLOOR_MS : GPU_BATCH_FLOOR_MS);
    return Math.max(floor, SLOWEST_FACTOR * this.of(w).slowestMs);
  }

  private of(w: WorkerHandle): Watched {
    let s = this.watched.get(w);
    if (!s) this.watched.set(w, (s = { inFlight: 0, since: Date.now(), slowestMs: 0, pinging: false }));
    return s;
  }

  private check(): void {
    for (const [w, s] of this.watched) {
      if (!w.alive) {
        this.watched.delete(w);
        continue;
      }
      const waited = Date.now() - s.since;
      const limit = this.limitMs(w);
      if (s.inFlight > 0 && waited > limit) {
        kill(w, `no result for ${(waited / 1000).toFixed(1)} s with ${s.inFlight} batch(es) in flight (limit ${(limit / 1000).toFixed(1)} s)`);
        continue;
      }
      if (s.pinging) continue;
      s.pinging = true;
      w.ping(this.pingTimeoutMs).then(
        () => (s.pinging = false),
        () => {
          s.pinging = false;
          if (w.alive) kill(w, `no answer to a health-check ping within ${(this.pingTimeoutMs / 1000).toFixed(1)} s`);
        },
      );
    }
  }
}

function kill(w: WorkerHandle, why: string): void {
  log.error(`${w.name}: ${why}; killing it (its batches go back to the queue)`);
  w.kill(why);
}
