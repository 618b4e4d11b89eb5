/** The public TypeScript API of embed. */
export { embed, Embedder, type Embedding, type EmbedInput, type EmbedderOptions, type SequenceRecord } from "./api.ts";
export { embedToStore, type RunHooks, type RunSummary } from "./run.ts";
export { dryRun, type DryRunResult } from "./dry-run.ts";
export { validate, type ValidateOptions, type ValidationReport } from "./validate/validate.ts";
export { embedVirnucpro, type VirnucproOptions, type VirnucproSummary } from "./virnucpro.ts";
export type { RunEvent } from "./events.ts";
export type { RunOptionsInput } from "./config.ts";
export { EmbedError, ExitCode, InputError, ModelNotFoundError, OptionsError, OutputError, WorkerError } from "./errors.ts";
