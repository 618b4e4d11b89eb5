/**
 * Rendering run events: a drawn bar on a terminal, redrawn in place (records and tokens done of
 * total, tokens/s, elapsed, ETA, batches per worker and what happened to each: replacements, a
 * lowered budget), a plain log line every LOG_EVERY_MS otherwise, or NDJSON on stdout with
 * `--json` (one event per line, for pipelines). The last batch's line is always shown, on close
 * at the latest, whatever the batch events' totals say. `terminalModes` picks the rendering and
 * the form of the final result from the flags and whether stdout / stderr are terminals.
 */
import type { RunEvent } from "../events.ts";
import { log } from "../log.ts";

/** Interval of the plain progress line when stderr is not a terminal. */
export const LOG_EVERY_MS = 15_000;
/** Minimum interval between redraws of the bar, ms (at most 10 redraws a second). */
export const DRAW_EVERY_MS = 100;
/** Cells of the drawn bar. */
const BAR_CELLS = 12;

export type ProgressMode = "json" | "tty" | "log" | "none";
/** The final result on stdout: a few lines for a person, pretty JSON, or one NDJSON line after the events. */
export type ResultMode = "human" | "json" | "ndjson";

/**
 * How a command talks: progress on stderr as a bar (stderr a terminal) or log lines, none with
 * `--quiet`, NDJSON events on stdout with `--json`; the result as a short human summary when
 * stdout is a terminal, JSON when it is not (a pipe, a file) or with `--json`. `tty` is injected
 * by tests; the CLI passes `process.stdout.isTTY` / `process.stderr.isTTY`.
 */
export function terminalModes(flags: { json: boolean; quiet: boolean }, tty: { stdout?: boolean; stderr?: boolean }): { progress: ProgressMode; result: ResultMode } {
  if (flags.json) return { progress: "json", result: "ndjson" };
  return { progress: flags.quiet ? "none" : tty.stderr ? "tty" : "log", result: tty.stdout ? "human" : "json" };
}

const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");
export function fmtTime(s: number): string {
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
  /** Terminal width in characters for the bar (default: stderr's columns, else 100 where unknown or 0); the line is cut to fit so that `\r` redraws one line. */
  columns?: number;
}

/** `[██████░░░░]`: `fraction` (0..1) of BAR_CELLS cells filled. */
export function bar(fraction: number, cells = BAR_CELLS): string {
  const full = Math.max(0, Math.min(cells, Math.round(fraction * cells)));
  return `[${"█".repeat(full)}${"░".repeat(cells - full)}]`;
}

type BatchEvent = Extract<RunEvent, { type: "batch" }>;

/** " (replaced 1x, budget 32,768)" for a worker something happened to; "" otherwise. */
function workerStatus(st: { replaced: number; budget?: number } | undefined): string {
  if (!st) return "";
  const parts = [st.replaced ? `replaced ${st.replaced}x` : "", st.budget !== undefined ? `budget ${fmtInt(st.budget)}` : ""].filter(Boolean);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

/**
 * The terminal's last line, drawn and redrawn in place (`tty`; otherwise it is never drawn). A log
 * line while it is drawn (a warning, a worker's line) clears it first and draws it again under
 * itself, instead of starting where the bar ends: consola's loggers made with withTag share this
 * reporters array, so workers' lines are covered too.
 */
function liveLine(tty: boolean): { draw: (text: string) => void; end: () => void; close: () => void } {
  let drawn = "";
  const reporters = log.options.reporters;
  const clear = { log: () => void (drawn && process.stderr.write("\r\x1b[2K")) };
  const redraw = { log: () => void (drawn && process.stderr.write(drawn)) };
  if (tty) {
    reporters.unshift(clear);
    reporters.push(redraw);
  }
  /** End the drawn line: it stays on the terminal as it is. */
  const end = () => {
    if (drawn) process.stderr.write("\n");
    drawn = "";
  };
  return {
    draw: (text) => {
      drawn = text;
      process.stderr.write(`\r\x1b[2K${text}`);
    },
    end,
    close: () => {
      end();
      for (const r of [clear, redraw]) if (reporters.includes(r)) reporters.splice(reporters.indexOf(r), 1);
    },
  };
}

export function progress(mode: ProgressMode, opts: ProgressOptions = {}): { onEvent: (e: RunEvent) => void; close: () => void } {
  const every = mode === "tty" ? DRAW_EVERY_MS : (opts.logEveryMs ?? LOG_EVERY_MS);
  const now = opts.now ?? (() => performance.now());
  let start: Extract<RunEvent, { type: "start" }> | undefined;
  const perWorker: Record<string, number> = {};
  /** What happened to each worker: replacements, a lowered budget (shown after its batch count). */
  const status: Record<string, { replaced: number; budget?: number }> = {};
  let last = 0;
  /** When the start event came (ms on `now`), for the elapsed time. */
  let startedAt = 0;
  /** The latest batch event when its line was not shown yet. */
  let unshown: BatchEvent | undefined;
  const live = liveLine(mode === "tty");
  const line = (e: BatchEvent) => {
    const total = start?.todo ?? 0;
    const pct = total ? (100 * e.records) / total : 100;
    const eta = start ? (start.tokens - e.tokens) / e.tokensPerSecond : Number.NaN;
    const workers = Object.entries(perWorker).map(([w, n]) => `${w} ${n}${workerStatus(status[w])}`).join(", ");
    if (mode === "tty") {
      const elapsed = (now() - startedAt) / 1000;
      const text = `${bar(total ? e.records / total : 1)} ${pct.toFixed(1)}%  ${fmtInt(e.records)}/${fmtInt(total)} records  ${fmtInt(e.tokens)}/${fmtInt(start?.tokens ?? 0)} tokens  ${fmtInt(e.tokensPerSecond)} tok/s  elapsed ${fmtTime(elapsed)}  ETA ${fmtTime(eta)}  [${workers}]`;
      const width = (opts.columns ?? (process.stderr.columns || 100)) - 1; // the last column would wrap on some terminals
      return text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
    }
    return `embedding ${pct.toFixed(1)}%  ${fmtInt(e.records)}/${fmtInt(total)} records  ${fmtInt(e.tokens)}/${fmtInt(start?.tokens ?? 0)} tokens  ${fmtInt(e.tokensPerSecond)} tok/s  ETA ${fmtTime(eta)}  [${workers}]`;
  };
  const show = (e: BatchEvent) => {
    if (mode === "tty") {
      live.draw(line(e));
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
    if (e.type === "start") {  // a new run (embed virnucpro runs two): its own bar and counts
      live.end();
      start = e;
      last = startedAt = now();
      for (const w of Object.keys(perWorker)) delete perWorker[w];
      for (const w of Object.keys(status)) delete status[w];
      return;
    }
    if (e.type === "finish") {
      if (unshown) show(unshown);
      return live.end();
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
      live.close();
    },
  };
}
