/**
 * What a run reports while it goes, as data: the CLI renders these as a progress line (TTY), a
 * periodic log line (not a TTY) or NDJSON on stdout (`--json`), and API users get them through
 * `onEvent`.
 */

export type RunEvent =
  | {
      type: "start";
      /** Records in the input. */
      records: number;
      /** Records this run writes (the rest were committed by an earlier, interrupted run). */
      todo: number;
      /** Of those, copies of an identical sequence that are not embedded themselves (`--dedup`). */
      identical?: number;
      resumed: number;
      batches: number;
      /** Real tokens to embed (BOS/EOS included). */
      tokens: number;
      budget: number;
      density: number;
      devices: string[];
    }
  | {
      type: "batch";
      batches: number;
      totalBatches: number;
      records: number;
      tokens: number;
      /** Seconds since the first batch was sent. */
      elapsed: number;
      tokensPerSecond: number;
      worker: string;
      /** This batch's real tokens / the budget. */
      density: number;
    }
  | { type: "shard"; shard: number; records: number; committed: number }
  | { type: "worker"; worker: string; state: "replaced" | "budget-lowered"; detail: string; /** budget-lowered: tokens per batch from now on */ budget?: number }
  | { type: "finish"; records: number; seconds: number; tokensPerSecond: number; output: string };
