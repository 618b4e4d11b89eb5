/** How a command ends: print a typed error with its hint on stderr, and exit with its code. */
import { EmbedError, ExitCode } from "../errors.ts";
import { log } from "../log.ts";

export function fail(e: unknown, verbose = false): never {
  if (e instanceof EmbedError) {
    log.error(e.message);
    if (e.hint) log.info(`hint: ${e.hint}`);
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
