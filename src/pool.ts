/**
 * Dispatch planned batches to workers from one shared queue. Each worker runs as many lanes as
 * it has ring slots: while one batch computes, the next is already written into the other slot
 * and queued in the worker, so a worker never waits for the orchestrator. Whichever lane frees
 * first takes the next batch, so a slower GPU simply takes fewer batches.
 */
import { EmbedError } from "./errors.ts";
import type { BatchInput, BatchResult, WorkerHandle } from "./worker.ts";

export interface PoolJob {
  /** Number of batches. */
  count: number;
  /** Build batch `i` (tokens are copied into the ring by the worker handle). */
  batch(i: number): BatchInput;
  /** Consume batch `i`'s result; runs before the ring slot is reused. */
  consume(i: number, result: BatchResult, worker: WorkerHandle): void;
}

export interface PoolStats {
  batches: number;
  /** Batches done per worker name. */
  perWorker: Record<string, number>;
}

export async function runPool(workers: readonly WorkerHandle[], job: PoolJob, signal?: AbortSignal): Promise<PoolStats> {
  let next = 0;
  let failure: Error | undefined;
  const perWorker: Record<string, number> = {};
  const lane = async (w: WorkerHandle) => {
    while (failure === undefined && next < job.count) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new EmbedError("aborted");
      const i = next++;
      await w.embed(job.batch(i), (r) => job.consume(i, r, w));
      perWorker[w.name] = (perWorker[w.name] ?? 0) + 1;
    }
  };
  const lanes = workers.flatMap((w) => Array.from({ length: w.slots }, () => lane(w)));
  // The first failure stops every lane from taking more work; it is what the caller sees.
  const abort = new Promise<never>((_, reject) => {
    signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  try {
    await Promise.race([
      Promise.all(
        lanes.map((l) =>
          l.catch((e) => {
            failure ??= e as Error;
            throw e;
          }),
        ),
      ),
      abort,
    ]);
  } catch (e) {
    throw failure ?? e;
  }
  return { batches: next, perWorker };
}
