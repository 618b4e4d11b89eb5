/**
 * Rendering run events: a live line on a terminal (records and tokens done of total, tokens/s,
 * ETA, batches per worker), a plain log line every LOG_EVERY_MS otherwise, or NDJSON on stdout
 * with `--json` (one event per line, for pipelines).
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

export function progress(mode: ProgressMode): { onEvent: (e: RunEvent) => void; close: () => void } {
  let start: Extract<RunEvent, { type: "start" }> | undefined;
  const perWorker: Record<string, number> = {};
  let last = 0;
  let drawn = false;
  const line = (e: Extract<RunEvent, { type: "batch" }>) => {
    const total = start?.todo ?? 0;
    const pct = total ? (100 * e.records) / total : 100;
    const eta = start ? (start.tokens - e.tokens) / e.tokensPerSecond : Number.NaN;
    const workers = Object.entries(perWorker).map(([w, n]) => `${w} ${n}`).join(", ");
    return `embedding ${pct.toFixed(1)}%  ${fmtInt(e.records)}/${fmtInt(total)} records  ${fmtInt(e.tokens)}/${fmtInt(start?.tokens ?? 0)} tokens  ${fmtInt(e.tokensPerSecond)} tok/s  ETA ${fmtTime(eta)}  [${workers}]`;
  };
  const onEvent = (e: RunEvent) => {
    if (mode === "none") return;
    if (mode === "json") {
      process.stdout.write(JSON.stringify(e) + "\n");
      return;
    }
    if (e.type === "start") {
      start = e;
      last = performance.now();
      return;
    }
    if (e.type === "worker") return log.warn(`${e.worker}: ${e.detail}`);
    if (e.type !== "batch") return;
    perWorker[e.worker] = (perWorker[e.worker] ?? 0) + 1;
    const now = performance.now();
    const final = e.batches === e.totalBatches;
    if (mode === "tty") {
      if (final || now - last >= DRAW_EVERY_MS) {
        process.stderr.write(`\r\x1b[2K${line(e)}`);
        drawn = true;
        last = now;
      }
    } else if (final || now - last >= LOG_EVERY_MS) {
      log.info(line(e));
      last = now;
    }
  };
  return {
    onEvent,
    close: () => {
      if (drawn) process.stderr.write("\n");
    },
  };
}
