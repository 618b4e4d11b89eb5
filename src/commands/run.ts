/** `embed run INPUT... -o OUT`: embed FASTA into a store; print the run summary (a few lines on a terminal, JSON otherwise). */
import { defineCommand } from "citty";
import { log } from "../log.ts";
import { dryRun } from "../dry-run.ts";
import { embedToStore } from "../run.ts";
import { loadHint } from "../store/identity.ts";
import type { RunSummary } from "../run.ts";
import { logArgs, setLogLevel, sharedArgs, sharedOptions } from "./args.ts";
import { interruptOnSignals } from "./interrupt.ts";
import { progress, terminalModes } from "./progress.ts";
import { emit, fail, result } from "./report.ts";

/** The run summary for a person at a terminal: what was written, how fast, and how to load it. */
export function runText(s: RunSummary): string {
  if (s.unchanged) {
    return [
      `${s.output} already holds this run's complete store (${s.records.toLocaleString("en-US")} records): nothing to do`,
      `  load in Python:  ${loadHint(s.output, s.include, s.layers)}`,
    ].join("\n");
  }
  const busy = Object.entries(s.busy).map(([w, f]) => `${w} ${Math.round(f * 100)}%`);
  return [
    `${s.records.toLocaleString("en-US")} records embedded in ${s.seconds.toFixed(1)} s → ${s.output}`,
    `  ${Math.round(s.tokensPerSecond).toLocaleString("en-US")} tokens/s while embedding${busy.length ? ` (time computing: ${busy.join(", ")})` : ""}`,
    `  ${s.model}, layers ${s.layers.join(",")}: ${s.include.join(", ")}${s.resumed ? `; ${s.resumed.toLocaleString("en-US")} records kept from an interrupted run` : ""}`,
    ...s.formats.filter((f) => f.format !== "npy").map((f) => `  ${f.format}: ${f.files.join(", ")}`),
    `  load in Python:  ${loadHint(s.output, s.include, s.layers)}`,
    `  (JSON summary: pipe the output, or pass --json)`,
  ].join("\n");
}

export default defineCommand({
  meta: {
    name: "run",
    description: `Embed FASTA records with ESM-2 (protein) or DNABERT-S (DNA, --model DNABERT-S).

Examples:
  embed run proteins.fasta -o out/                       mean of the last layer
  embed run reads.faa.gz -o out/ --model esm2_t36_3B_UR50D --layers 36
  zcat x.fa.gz | embed run - -o out/ --include mean,bos,per-residue --layers 0,-1
  embed run peptides.faa -o out/ --dedup                 repeated sequences embedded once
  embed run big.fa.gz -o part-2/ --slice 2/8             one job of eight; then: embed merge all/ part-*/
  embed run proteins.fasta --dry                         print the batch plan as JSON
  embed run reads.fna -o dna/ --model DNABERT-S          nucleotide FASTA, BPE tokens ([UNK] for N counted)
  embed run reads.fna -o dna/ --model DNABERT-S --unknown error   refuse reads with N or other IUPAC codes`,
  },
  args: {
    ...sharedArgs,
    output: { type: "string", alias: "o", description: "output store directory", valueHint: "DIR" },
    layers: { type: "string", description: "layers, fair-esm style: -1 = last, 0 = embeddings, e.g. 0,6,-1", default: "-1" },
    include: { type: "string", description: "outputs: mean, bos, per-residue (comma list; per_tok, fair-esm's name, is per-residue)", default: "mean" },
    "out-dtype": { type: "enum", options: ["float32", "float16"], description: "dtype of stored embeddings", default: "float32" },
    overwrite: { type: "boolean", description: "replace a complete store in the output directory", default: false },
    format: { type: "string", description: "formats to write: npy (the store itself), hdf5, parquet, virnucpro (comma list)", default: "npy" },
    "shard-records": { type: "string", description: "commit a resumable shard at least every N records", default: "10000" },
    slice: { type: "string", description: "embed only slice I of N of the input (records I, I+N, I+2N, ...; 1-based), one job of an array; join the stores with `embed merge`", valueHint: "I/N" },
    shard: { type: "string", description: "deprecated name of --slice (a shard is the commit unit inside a store)", valueHint: "I/N" },
    dedup: { type: "boolean", description: "embed identical sequences once and write their rows under every id (reads and six-frame peptides repeat)", default: false },
    "max-restarts": { type: "string", description: "replacements of dead workers allowed before the run fails", default: "3" },
    dry: { type: "boolean", description: "print the plan as JSON and start no worker", default: false },
    quiet: logArgs.quiet,
    json: { type: "boolean", description: "NDJSON events on stdout (start, batch, shard, worker, finish), then the summary; without it the summary is JSON off a terminal, a few lines on one", default: false },
    verbose: logArgs.verbose,
  },
  async run({ args }) {
    const options = {
      ...sharedOptions(args),
      output: args.output,
      layers: args.layers,
      include: args.include,
      outDtype: args["out-dtype"] as "float32",
      overwrite: args.overwrite,
      shardRecords: args["shard-records"],
      formats: args.format,
      maxRestarts: args["max-restarts"],
      dedup: args.dedup,
      slice: args.slice,
      shard: args.shard,
    };
    try {
      setLogLevel(args);
      if (args.dry) return emit(await dryRun(options));
      const signal = interruptOnSignals();
      const modes = terminalModes(args, { stdout: process.stdout.isTTY, stderr: process.stderr.isTTY });
      const view = progress(modes.progress);
      let summary;
      try {
        summary = await embedToStore(options, { signal, onEvent: view.onEvent });
      } finally {
        view.close();
      }
      if (modes.result !== "human" && !summary.unchanged) {
        // At a terminal these are the summary's own lines on stdout; said once.
        log.success(`${summary.records} records embedded in ${summary.seconds.toFixed(1)} s → ${summary.output}`);
        const busy = Object.entries(summary.busy).map(([w, f]) => `${w} ${Math.round(f * 100)}%`);
        if (busy.length) log.info(`${Math.round(summary.tokensPerSecond).toLocaleString("en-US")} tokens/s while embedding; time each worker spent computing: ${busy.join(", ")}`);
        log.info(`load in Python: ${loadHint(summary.output, summary.include, summary.layers)}`);
      }
      result(summary, modes.result, runText);
      process.exit(0);
    } catch (e) {
      fail(e, args.verbose);
    }
  },
});
