/** `embed run INPUT... -o OUT`: embed FASTA into a store, print the run summary as JSON. */
import { defineCommand } from "citty";
import { DEFAULT_MODEL, DEFAULT_TRUNCATE } from "../config.ts";
import { InterruptedError } from "../errors.ts";
import { log } from "../log.ts";
import { dryRun, embedToStore } from "../run.ts";
import { progress } from "./progress.ts";
import { emit, fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "run",
    description: `Embed FASTA records with ESM-2.

Examples:
  embed run proteins.fasta -o out/                       mean of the last layer
  embed run reads.faa.gz -o out/ --model esm2_t36_3B_UR50D --layers 36
  zcat x.fa.gz | embed run - -o out/ --include mean,bos,per-residue --layers 0,-1
  embed run proteins.fasta --dry                         print the batch plan as JSON`,
  },
  args: {
    inputs: { type: "positional", description: "FASTA files (.gz ok), or - for stdin", required: true, valueHint: "INPUT..." },
    output: { type: "string", alias: "o", description: "output store directory", valueHint: "DIR" },
    model: { type: "string", alias: "m", description: `model name or path (see \`embed models\`)`, default: DEFAULT_MODEL },
    layers: { type: "string", description: "layers, fair-esm style: -1 = last, 0 = embeddings, e.g. 0,6,-1", default: "-1" },
    include: { type: "string", description: "outputs: mean, bos, per-residue (comma list)", default: "mean" },
    precision: { type: "enum", options: ["auto", "fp16", "bf16", "fp32"], description: "compute precision (auto: fp16 on GPU, fp32 on CPU)", default: "auto" },
    devices: { type: "string", description: "auto, cpu, or GPU indices like 0,1", default: "auto" },
    "max-tokens": { type: "string", description: "token budget per batch (auto: from free GPU memory; 4096 on CPU)", default: "auto" },
    truncate: { type: "string", description: "keep at most this many residues per record", default: String(DEFAULT_TRUNCATE) },
    "duplicate-ids": { type: "enum", options: ["error", "rename"], description: "what to do with repeated ids", default: "error" },
    "out-dtype": { type: "enum", options: ["float32", "float16"], description: "dtype of stored embeddings", default: "float32" },
    overwrite: { type: "boolean", description: "replace a complete store in the output directory", default: false },
    format: { type: "string", description: "formats to write: npy (the store itself), hdf5, parquet, virnucpro (comma list)", default: "npy" },
    "shard-records": { type: "string", description: "commit a resumable shard at least every N records", default: "10000" },
    "max-restarts": { type: "string", description: "replacements of dead workers allowed before the run fails", default: "3" },
    dry: { type: "boolean", description: "print the plan as JSON and start no worker", default: false },
    download: { type: "boolean", description: "download a released ESM-2 checkpoint that no local cache holds (into the torch hub cache)", default: false },
    kernels: { type: "enum", options: ["auto", "triton", "compile", "eager"], description: "what runs the blocks on GPUs: Triton kernels, torch.compile, or eager PyTorch (auto: triton)", default: "auto" },
    threads: { type: "string", description: "CPU threads for a CPU worker (default: all cores)" },
    quiet: { type: "boolean", description: "no logs or progress on stderr, only errors (stdout unchanged)", default: false },
    json: { type: "boolean", description: "NDJSON events on stdout (start, batch, shard, worker, finish) instead of one summary", default: false },
    verbose: { type: "boolean", description: "debug logs and stack traces", default: false },
  },
  async run({ args }) {
    if (args.verbose) log.level = 4;
    if (args.quiet) log.level = 0;
    const options = {
      inputs: args._,
      output: args.output,
      model: args.model,
      layers: args.layers,
      include: args.include,
      precision: args.precision as "auto",
      devices: args.devices,
      maxTokens: args["max-tokens"],
      truncate: args.truncate,
      duplicateIds: args["duplicate-ids"] as "error",
      outDtype: args["out-dtype"] as "float32",
      overwrite: args.overwrite,
      threads: args.threads,
      shardRecords: args["shard-records"],
      formats: args.format,
      maxRestarts: args["max-restarts"],
      kernels: args.kernels as "auto",
      download: args.download,
    };
    try {
      if (args.dry) return emit(await dryRun(options));
      const controller = new AbortController();
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        if (++signals > 1) process.exit(130);
        log.warn(`${sig}: finishing the batches in flight and committing them (press again to exit at once)`);
        controller.abort(new InterruptedError(sig));
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      const view = progress(args.json ? "json" : args.quiet ? "none" : process.stderr.isTTY ? "tty" : "log");
      let summary;
      try {
        summary = await embedToStore(options, { signal: controller.signal, onEvent: view.onEvent });
      } finally {
        view.close();
      }
      log.success(`${summary.records} records embedded in ${summary.seconds.toFixed(1)} s → ${summary.output}`);
      log.info(`load in Python: import numpy as np; X = np.load("${summary.output}/${summary.include[0]}.layer${summary.layers.at(-1)}.npy"); ids = open("${summary.output}/ids.txt").read().split()`);
      if (args.json) process.stdout.write(JSON.stringify({ type: "summary", ...summary }) + "\n");
      else emit(summary);
      process.exit(0);
    } catch (e) {
      fail(e, args.verbose);
    }
  },
});
