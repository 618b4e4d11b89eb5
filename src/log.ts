/**
 * One consola instance, on stderr. stdout carries only machine-readable results
 * (plan JSON, run summary JSON), so logs must never go there.
 */
import { createConsola, type ConsolaInstance } from "consola";

export const log: ConsolaInstance = createConsola({
  stdout: process.stderr,
  stderr: process.stderr,
  formatOptions: { date: false },
  // Explicit: consola would drop to warnings-only under NODE_ENV=test or CI.
  level: 3,
});

/** A child logger tagged with a worker name, e.g. `[cpu:0]`. */
export function workerLog(tag: string): ConsolaInstance {
  return log.withTag(tag);
}
