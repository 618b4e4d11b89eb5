/** `embed virnucpro READS... -o OUT`: VirNucPro's features in one resumable command (src/virnucpro.ts). */
import { defineCommand } from "citty";
import { OptionsError } from "../errors.ts";
import { log } from "../log.ts";
import { embedVirnucpro, VIRNUCPRO_DNABERT_MODEL, VIRNUCPRO_ESM_MODEL, VIRNUCPRO_PER_FILE, type VirnucproSummary } from "../virnucpro.ts";
import { logArgs, setLogLevel, sharedArgs } from "./args.ts";
import { interruptOnSignals } from "./interrupt.ts";
import { progress, terminalModes } from "./progress.ts";
import { fail, result } from "./report.ts";

/** The summary for a person at a terminal: each step, done now or found done. */
export function virnucproText(s: VirnucproSummary): string {
  const how = (skipped: boolean) => (skipped ? "found done" : "done");
  return [
    `VirNucPro features in ${s.seconds.toFixed(1)} s → ${s.output}`,
    `  translate: ${s.translate.frames.toLocaleString("en-US")} frames of ${s.translate.records.toLocaleString("en-US")} records (${how(s.translate.skipped)})`,
    `  DNABERT-S: ${s.dnabert.store} (${s.dnabert.model}, ${how(s.dnabert.skipped)})`,
    `  ESM-2:     ${s.esm.store} (${s.esm.model}, ${how(s.esm.skipped)})`,
    `  files:     ${s.files.files} × output_{k}_{DNABERT_S,ESM,merged}.pt in ${s.files.dir} (${how(s.files.skipped)})`,
    `  (JSON summary: pipe the output, or pass --json)`,
  ].join("\n");
}

/** A whole number ≥ 1 from an option string, or undefined when not given. */
function count(name: string, value: string | undefined, hint: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new OptionsError(`--${name} "${value}" is not a whole number ≥ 1`, hint);
  return Number(value);
}

export default defineCommand({
  meta: {
    name: "virnucpro",
    description: `VirNucPro's features from nucleotide reads in one resumable command: translate six frames (as \`embed translate\`), embed the nucleotide frames with DNABERT-S and the peptides with ESM-2 (3B by default), each model on every GPU in turn, then write VirNucPro's output_{k}_DNABERT_S.pt, output_{k}_ESM.pt and output_{k}_merged.pt (DNABERT-S's 768 values, then ESM-2's 2560) per 10,000 frames. OUT holds frames.faa, frames.fna, the stores dnabert-s/ and esm2/, and virnucpro/. Rerun the same command after an interruption: finished steps are skipped, the stores resume.

Examples:
  embed virnucpro reads.fa.gz -o vnp/ --chunk 300                  VirNucPro's 300-bp model, every GPU
  embed virnucpro reads.fa -o vnp/ --chunk 500 --devices 0,1
  embed virnucpro reads.fa -o vnp/ --esm-model esm2_t33_650M_UR50D --dnabert-model ~/models/DNABERT-S
  embed virnucpro reads.fa -o vnp/ --chunk 300 --dedup             repeated frames embedded once`,
  },
  args: {
    inputs: { ...sharedArgs.inputs, description: "nucleotide FASTA files (.gz ok; not stdin: a rerun reads them again)" },
    output: { type: "string", alias: "o", description: "output directory: frames, both stores, virnucpro/ .pt files", valueHint: "DIR" },
    "esm-model": { type: "string", description: `ESM-2 model for the peptides (name or path; mean of the last layer)`, default: VIRNUCPRO_ESM_MODEL },
    "dnabert-model": { type: "string", description: "DNABERT-S model for the nucleotide frames (name of a local copy, or a folder)", default: VIRNUCPRO_DNABERT_MODEL },
    chunk: { type: "string", description: "cut reads into chunks of N bases first (VirNucPro's models: 300 or 500)", valueHint: "N" },
    "per-file": { type: "string", description: "records per .pt file", default: String(VIRNUCPRO_PER_FILE) },
    precision: sharedArgs.precision,
    devices: sharedArgs.devices,
    "max-tokens": sharedArgs["max-tokens"],
    unknown: sharedArgs.unknown,
    "duplicate-ids": sharedArgs["duplicate-ids"],
    download: sharedArgs.download,
    kernels: sharedArgs.kernels,
    threads: sharedArgs.threads,
    dedup: { type: "boolean", description: "embed identical frames once per model and write their rows under every id", default: false },
    "shard-records": { type: "string", description: "commit a resumable shard of each store at least every N records", default: "10000" },
    "max-restarts": { type: "string", description: "replacements of dead workers allowed per model before the run fails", default: "3" },
    overwrite: { type: "boolean", description: "redo every step, replacing what the output directory holds", default: false },
    quiet: logArgs.quiet,
    json: { type: "boolean", description: "NDJSON run events on stdout, then the summary", default: false },
    verbose: logArgs.verbose,
  },
  async run({ args }) {
    try {
      setLogLevel(args);
      const options = {
        inputs: args._,
        output: args.output!,
        esmModel: args["esm-model"],
        dnabertModel: args["dnabert-model"],
        chunk: count("chunk", args.chunk, "VirNucPro's models use --chunk 300 or 500"),
        perFile: count("per-file", args["per-file"], "VirNucPro writes 10,000 records per file (the default)"),
        precision: args.precision as "auto",
        devices: args.devices,
        maxTokens: args["max-tokens"],
        unknown: args.unknown as "count",
        duplicateIds: args["duplicate-ids"] as "error",
        download: args.download,
        kernels: args.kernels as "auto",
        threads: args.threads,
        dedup: args.dedup,
        shardRecords: args["shard-records"],
        maxRestarts: args["max-restarts"],
        overwrite: args.overwrite,
      };
      const signal = interruptOnSignals();
      const modes = terminalModes(args, { stdout: process.stdout.isTTY, stderr: process.stderr.isTTY });
      const view = progress(modes.progress);
      let summary;
      try {
        summary = await embedVirnucpro(options, { signal, onEvent: view.onEvent });
      } finally {
        view.close();
      }
      if (modes.result !== "human") log.success(`VirNucPro features in ${summary.seconds.toFixed(1)} s → ${summary.files.dir}`);
      result(summary, modes.result, virnucproText);
      process.exit(0);
    } catch (e) {
      fail(e, args.verbose);
    }
  },
});
