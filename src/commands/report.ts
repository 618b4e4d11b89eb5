/** How a command ends: print a typed error with its hint on stderr, and exit with its code. */
import { EmbedError, ExitCode } from "../errors.ts";
import { log } from "../log.ts";
import type { ResultMode } from "./progress.ts";

export function fail(e: unknown, verbose = false): never {
  if (e instanceof EmbedError) {
    log.error(e.message);
    // The hint is part of the error: `--quiet` (log level 0) silences progress and info, not this.
    if (e.hint) {
      if (log.level >= 3) log.info(`hint: ${e.hint}`);
      else process.stderr.write(`hint: ${e.hint}\n`);
    }
    if (verbose && e.stack) log.debug(e.stack);
    process.exit(e.exitCode);
  }
  log.error(e instanceof Error ? (verbose ? (e.stack ?? e.message) : e.message) : String(e));
  process.exit(ExitCode.internal);
}

/** Write a machine-readable result on stdout (the only thing stdout ever carries). */
export function emit(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/**
 * A command's result on stdout in the form `mode` asks (progress.ts `terminalModes`): `text(value)`
 * for a person at a terminal, pretty JSON, or one NDJSON line `{"type": "summary", ...}` after the
 * `--json` events.
 */
export function result<T extends object>(value: T, mode: ResultMode, text: (v: T) => string): void {
  if (mode === "human") process.stdout.write(text(value) + "\n");
  else if (mode === "ndjson") process.stdout.write(JSON.stringify({ type: "summary", ...value }) + "\n");
  else emit(value);
}
