/** `embed validate INPUT...`: prove the fast path against an fp32 reference on the same weights. */
import { writeFileSync } from "node:fs";
import { defineCommand } from "citty";
import { DEFAULT_MODEL } from "../config.ts";
import { EmbedError, ExitCode } from "../errors.ts";
import { log } from "../log.ts";
import { DEFAULT_THRESHOLDS } from "../metrics.ts";
import { validate } from "../validate.ts";
import { renderReport } from "../validate-report.ts";
import { emit, fail } from "./report.ts";

const num = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new EmbedError(`--${name} "${v}" is not a number`, { exitCode: ExitCode.badOptions });
  return n;
};

export default defineCommand({
  meta: {
    name: "validate",
    description: `Embed records with the production path and with an fp32 one-at-a-time reference on the same weights; report the differences per length bin and fail below thresholds.

Examples:
  embed validate proteins.fasta --model esm2_t33_650M_UR50D --sample 500
  embed validate reads.faa.gz --precision bf16 --report validate.json
  embed validate x.fasta --per-residue --min-cosine 0.9995`,
  },
  args: {
    inputs: { type: "positional", description: "FASTA files (.gz ok), or - for stdin", required: true, valueHint: "INPUT..." },
    model: { type: "string", alias: "m", description: "model name or path", default: DEFAULT_MODEL },
    sample: { type: "string", description: "validate at most N records, stratified by length (default: all)" },
    precision: { type: "enum", options: ["auto", "fp16", "bf16", "fp32"], description: "production precision (auto: fp16 on GPU, fp32 on CPU)", default: "auto" },
    layers: { type: "string", description: "the layer to check (fair-esm style)", default: "-1" },
    "per-residue": { type: "boolean", description: "also compare per-residue vectors", default: false },
    devices: { type: "string", description: "auto, cpu, or GPU indices", default: "auto" },
    "max-tokens": { type: "string", description: "token budget per packed batch", default: "auto" },
    truncate: { type: "string", description: "keep at most this many residues per record", default: "1022" },
    "duplicate-ids": { type: "enum", options: ["error", "rename"], default: "error", description: "what to do with repeated ids" },
    contamination: { type: "string", description: "records checked alone vs packed", default: "8" },
    "min-cosine": { type: "string", description: `every record's pooled cosine (default ${DEFAULT_THRESHOLDS.minCosine})` },
    "median-cosine": { type: "string", description: `median pooled cosine (default ${DEFAULT_THRESHOLDS.medianCosine})` },
    "contamination-cosine": { type: "string", description: `alone vs packed cosine (default ${DEFAULT_THRESHOLDS.contaminationCosine})` },
    "max-rel-l2": { type: "string", description: "every record's relative L2 error at most this (off by default; 1e-5 suits fp32)" },
    report: { type: "string", description: "write the report as JSON to this file (and the table to FILE.txt)" },
    download: { type: "boolean", description: "download a released ESM-2 checkpoint that no local cache holds (into the torch hub cache)", default: false },
    kernels: { type: "enum", options: ["auto", "triton", "compile", "eager"], description: "what runs the blocks on GPUs: Triton kernels, torch.compile, or eager PyTorch (auto: triton)", default: "auto" },
    threads: { type: "string", description: "CPU threads for a CPU worker" },
    verbose: { type: "boolean", default: false, description: "debug logs" },
  },
  async run({ args }) {
    if (args.verbose) log.level = 4;
    try {
      const report = await validate({
        inputs: args._,
        model: args.model,
        sample: num(args.sample, "sample"),
        precision: args.precision as "auto",
        layers: args.layers,
        perResidue: args["per-residue"],
        devices: args.devices,
        maxTokens: args["max-tokens"],
        truncate: args.truncate,
        duplicateIds: args["duplicate-ids"] as "error",
        contamination: num(args.contamination, "contamination"),
        threads: args.threads,
        kernels: args.kernels as "auto",
        download: args.download,
        thresholds: {
          ...(args["min-cosine"] ? { minCosine: num(args["min-cosine"], "min-cosine") } : {}),
          ...(args["median-cosine"] ? { medianCosine: num(args["median-cosine"], "median-cosine") } : {}),
          ...(args["max-rel-l2"] ? { maxRelL2: num(args["max-rel-l2"], "max-rel-l2") } : {}),
          ...(args["contamination-cosine"] ? { contaminationCosine: num(args["contamination-cosine"], "contamination-cosine") } : {}),
        },
      });
      const text = renderReport(report);
      if (args.report) {
        writeFileSync(args.report, JSON.stringify(report, null, 2) + "\n");
        writeFileSync(`${args.report}.txt`, text + "\n");
        log.info(`report written to ${args.report} (+ .txt)`);
      }
      if (process.stdout.isTTY) process.stdout.write(text + "\n");
      else {
        process.stderr.write(text + "\n");
        emit(report);
      }
      process.exit(report.ok ? ExitCode.ok : ExitCode.validationFailed);
    } catch (e) {
      fail(e, args.verbose);
    }
  },
});
