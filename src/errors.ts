/**
 * Named errors with a code, a hint and an exit code. Every error a user can cause or meet
 * is one of these; the CLI prints `message` and `hint` and exits with `exitCode`.
 * Errors that cross the process boundary travel as `{name, message, hint}` (protocol.ts
 * `WireError`) and are rebuilt on this side as `WorkerError` (worker-state.ts) or, from the
 * convert helper, as `OptionsError` / `OutputError` (formats.ts).
 */

/** Exit codes, documented in the README. */
export const ExitCode = {
  ok: 0,
  internal: 1,
  badOptions: 2,
  badInput: 3,
  workerFailed: 4,
  modelNotFound: 5,
  outputFailed: 6,
  validationFailed: 7,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class EmbedError extends Error {
  override readonly name: string = "EmbedError";
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;
  constructor(message: string, opts: { hint?: string; exitCode?: ExitCode; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? ExitCode.internal;
  }
}

/** Where in an input file a problem is: `file:line`, and the record id when there is one. */
export interface InputLocation {
  file: string;
  line: number;
  recordId?: string;
}

export function formatLocation(loc: InputLocation): string {
  return `${loc.file}:${loc.line}${loc.recordId === undefined ? "" : ` (record "${loc.recordId}")`}`;
}

/** The input FASTA is malformed: invalid characters, empty sequence, missing header, ... */
export class InputError extends EmbedError {
  override readonly name = "InputError";
  readonly location: InputLocation | undefined;
  constructor(message: string, location: InputLocation | undefined, hint: string) {
    super(location ? `${formatLocation(location)}: ${message}` : message, {
      hint,
      exitCode: ExitCode.badInput,
    });
    this.location = location;
  }
}

/** Command-line or API options are invalid. */
export class OptionsError extends EmbedError {
  override readonly name = "OptionsError";
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: ExitCode.badOptions });
  }
}

/** The model name or path did not resolve to a checkpoint. */
export class ModelNotFoundError extends EmbedError {
  override readonly name = "ModelNotFoundError";
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: ExitCode.modelNotFound });
  }
}

/** The checkpoint was found but cannot be used: malformed config, truncated or misshaped tensors
 * (the worker's BadCheckpoint). Exit 5, like a model not found: the fix is a different model file. */
export class BadModelError extends EmbedError {
  override readonly name = "BadModelError";
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: ExitCode.modelNotFound });
  }
}

/** A worker died, failed to start, or reported an error. */
export class WorkerError extends EmbedError {
  override readonly name = "WorkerError";
  readonly worker: string;
  readonly remoteName: string | undefined;
  constructor(worker: string, message: string, opts: { hint?: string; remoteName?: string } = {}) {
    super(`worker ${worker}: ${message}`, { hint: opts.hint, exitCode: ExitCode.workerFailed });
    this.worker = worker;
    this.remoteName = opts.remoteName;
  }
}

/** Writing the output store failed. */
export class OutputError extends EmbedError {
  override readonly name = "OutputError";
  constructor(message: string, hint?: string, cause?: unknown) {
    super(message, { hint, exitCode: ExitCode.outputFailed, cause });
  }
}

/** The run was interrupted by SIGINT/SIGTERM. */
export class InterruptedError extends EmbedError {
  override readonly name = "InterruptedError";
  constructor(signal: string) {
    super(`interrupted by ${signal}`, {
      hint: "What finished is committed in the output directory; rerun the same command to resume.",
      exitCode: ExitCode.interrupted,
    });
  }
}
