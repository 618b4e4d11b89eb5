/**
 * Rendering run events: a live line on a terminal (records and tokens done of total, tokens/s,
 * ETA, batches per worker and what happened to each: replacements, a lowered budget), a plain log
 * line every LOG_EVERY_MS otherwise, or NDJSON on stdout with `--json` (one event per line, for
 * pipelines). The last batch's line is always shown, on close at the latest, whatever the batch
 * events' totals say.
 */
import type { RunEvent } from "../events.ts";
import { log } from "../log.ts";

/** Interval of the plain progress line when stderr is not a terminal. */
export const LOG_EVERY_MS = 15_000;
/** Minimum interval between redraws of the live line. */
const DRAW_EVERY_MS = 150;

export type ProgressMode = "json" | "tty" | "log" | "none";

const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");
function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

export interface ProgressOptions {
  /** Interval of the plain log line, ms (default LOG_EVERY_MS). */
  logEveryMs?: number;
  /** Clock, ms (default `performance.now`); tests drive it by hand. */
  now?: () => number;
}

type BatchEvent = Extract<RunEvent, { type: "batch" }>;

/** " (replaced 1x, budget 32,768)" for a worker something happened to; "" otherwise. */
function workerStatus(st: { replaced: number; budget?: number } | undefined): string {
  if (!st) return "";
  const parts = [st.replaced ? `replaced ${st.replaced}x` : "", st.budget !== undefined ? `budget ${fmtInt(st.budget)}` : ""].filter(Boolean);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

export function progress(mode: ProgressMode, opts: ProgressOptions = {}): { onEvent: (e: RunEvent) => void; close: () => void } {
  const every = mode === "tty" ? DRAW_EVERY_MS : (opts.logEveryMs ?? LOG_EVERY_MS);
  const now = opts.now ?? (() => performance.now());
  let start: Extract<RunEvent, { type: "start" }> | undefined;
  const perWorker: Record<string, number> = {};
  /** What happened to each worker: replacements, a lowered budget (shown after its batch count). */
  const status: Record<string, { replaced: number; budget?: number }> = {};
  let last = 0;
  let drawn = false;
  /** The latest batch event when its line was not shown yet. */
  let unshown: BatchEvent | undefined;
  const line = (e: BatchEvent) => {
    const total = start?.todo ?? 0;
    const pct = total ? (100 * e.records) / total : 100;
    const eta = start ? (start.tokens - e.tokens) / e.tokensPerSecond : Number.NaN;
    const workers = Object.entries(perWorker).map(([w, n]) => `${w} ${n}${workerStatus(status[w])}`).join(", ");
    return `embedding ${pct.toFixed(1)}%  ${fmtInt(e.records)}/${fmtInt(total)} records  ${fmtInt(e.tokens)}/${fmtInt(start?.tokens ?? 0)} tokens  ${fmtInt(e.tokensPerSecond)} tok/s  ETA ${fmtTime(eta)}  [${workers}]`;
  };
  const show = (e: BatchEvent) => {
    if (mode === "tty") {
      process.stderr.write(`\r\x1b[2K${line(e)}`);
      drawn = true;
    } else {
      log.info(line(e));
    }
    unshown = undefined;
  };
  const onEvent = (e: RunEvent) => {
    if (mode === "none") return;
    if (mode === "json") {
      process.stdout.write(JSON.stringify(e) + "\n");
      return;
    }
    if (e.type === "start") {
      start = e;
      last = now();
      return;
    }
    if (e.type === "worker") {
      const st = (status[e.worker] ??= { replaced: 0 });
      if (e.state === "replaced") st.replaced++;
      else if (e.budget !== undefined) st.budget = e.budget;
      return log.warn(`${e.worker}: ${e.detail}`);
    }
    if (e.type !== "batch") return;
    perWorker[e.worker] = (perWorker[e.worker] ?? 0) + 1;
    const t = now();
    if (e.batches === e.totalBatches || t - last >= every) {
      show(e);
      last = t;
    } else {
      unshown = e;
    }
  };
  return {
    onEvent,
    close: () => {
      if (unshown) show(unshown);
      if (drawn) process.stderr.write("\n");
    },
  };
}
