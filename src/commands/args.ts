/**
 * Arguments that `embed run` and `embed validate` share (what is embedded and how), and their
 * mapping onto the library's options; each command adds its own.
 */
import type { ArgsDef } from "citty";
import { DEFAULT_MODEL, DEFAULT_TRUNCATE, DNABERT_S_TRUNCATE } from "../config.ts";
import { OptionsError } from "../errors.ts";
import { log } from "../log.ts";
import { KERNELS } from "../protocol.ts";

export const sharedArgs = {
  inputs: { type: "positional", description: "FASTA files (.gz ok), or - for stdin", required: true, valueHint: "INPUT..." },
  model: { type: "string", alias: "m", description: "model name or path (see `embed models`)", default: DEFAULT_MODEL },
  precision: { type: "enum", options: ["auto", "fp16", "bf16", "fp32"], description: "compute precision (auto: fp16 on GPU, fp32 on CPU)", default: "auto" },
  devices: { type: "string", description: "auto, cpu, or GPU indices like 0,1", default: "auto" },
  "max-tokens": { type: "string", description: "token budget per batch (auto: from free GPU memory; 4096 on CPU)", default: "auto" },
  truncate: { type: "string", description: `keep at most this many tokens per record (default: ${DEFAULT_TRUNCATE} residues for ESM-2, ${DNABERT_S_TRUNCATE} BPE tokens for DNABERT-S)` },
  "alphabet-check": { type: "enum", options: ["on", "off"], description: "refuse protein letters given to a DNA model (DNABERT-S), and input whose first records are ≥90% A/C/G/T/U/N given to ESM-2 (off: embed it anyway)", default: "on" },
  unknown: { type: "enum", options: ["count", "error"], description: "input letters DNABERT-S's tokenizer makes [UNK] (N, other IUPAC codes): count them in the summary and manifest, or refuse the record", default: "count" },
  "duplicate-ids": { type: "enum", options: ["error", "rename"], description: "what to do with repeated ids", default: "error" },
  download: { type: "boolean", description: "download a released model that no local cache holds: ESM-2 by the worker, DNABERT-S (config.json, weights, tokenizer.json) before the run starts, into the Hugging Face cache (--no-download: fail instead, listing the paths searched)", default: true },
  kernels: { type: "enum", options: ["auto", ...KERNELS], description: "what runs the blocks on GPUs: quack (FC1+GELU and QKV+rotary as quack GEMMs, Hopper) or triton (cuBLAS) with embed's Triton kernels, torch.compile, or eager PyTorch (auto: the fastest that runs there)", default: "auto" },
  threads: { type: "string", description: "CPU threads for a CPU worker (default: the CPUs granted: affinity mask, cgroup quota, SLURM_CPUS_PER_TASK)" },
} satisfies ArgsDef;

interface SharedValues {
  _: string[];
  model: string;
  precision: string;
  devices: string;
  "max-tokens": string;
  truncate?: string;
  "alphabet-check": string;
  unknown: string;
  "duplicate-ids": string;
  download: boolean;
  kernels: string;
  threads?: string;
}

/** The shared arguments as library options (validated by the zod schemas in config.ts). */
export function sharedOptions(args: SharedValues) {
  return {
    inputs: args._,
    model: args.model,
    precision: args.precision as "auto",
    devices: args.devices,
    maxTokens: args["max-tokens"],
    truncate: args.truncate,
    alphabetCheck: args["alphabet-check"] as "on",
    unknown: args.unknown as "count",
    duplicateIds: args["duplicate-ids"] as "error",
    download: args.download,
    kernels: args.kernels as "auto",
    threads: args.threads,
  };
}

/** `--quiet` and `--verbose`: how much the long-running commands (run, extract, virnucpro) log on stderr. */
export const logArgs = {
  quiet: { type: "boolean", description: "no logs or progress on stderr, only errors and their hints (stdout unchanged)", default: false },
  verbose: { type: "boolean", description: "debug logs and stack traces", default: false },
} satisfies ArgsDef;

/** Set the log level from `--quiet` / `--verbose`; both at once is an {@link OptionsError}. */
export function setLogLevel(flags: { quiet?: boolean; verbose?: boolean }): void {
  if (flags.quiet && flags.verbose) throw new OptionsError("--quiet and --verbose contradict each other", "pass one of them: --quiet shows only errors, --verbose adds debug logs and stack traces");
  if (flags.verbose) log.level = 4;
  if (flags.quiet) log.level = 0;
}
