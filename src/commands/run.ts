/** `embed run INPUT... -o OUT`: embed FASTA into a store, print the run summary as JSON. */
import { defineCommand } from "citty";
import { InterruptedError, OptionsError } from "../errors.ts";
import { log } from "../log.ts";
import { dryRun, embedToStore } from "../run.ts";
import { loadHint } from "../store/identity.ts";
import { sharedArgs, sharedOptions } from "./args.ts";
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
  embed run peptides.faa -o out/ --dedup                 repeated sequences embedded once
  embed run big.fa.gz -o part-2/ --slice 2/8             one job of eight; then: embed merge all/ part-*/
  embed run proteins.fasta --dry                         print the batch plan as JSON`,
  },
  args: {
    ...sharedArgs,
    output: { type: "string", alias: "o", description: "output store directory", valueHint: "DIR" },
    layers: { type: "string", description: "layers, fair-esm style: -1 = last, 0 = embeddings, e.g. 0,6,-1", default: "-1" },
    include: { type: "string", description: "outputs: mean, bos, per-residue (comma list)", default: "mean" },
    "out-dtype": { type: "enum", options: ["float32", "float16"], description: "dtype of stored embeddings", default: "float32" },
    overwrite: { type: "boolean", description: "replace a complete store in the output directory", default: false },
    format: { type: "string", description: "formats to write: npy (the store itself), hdf5, parquet, virnucpro (comma list)", default: "npy" },
    "shard-records": { type: "string", description: "commit a resumable shard at least every N records", default: "10000" },
    slice: { type: "string", description: "embed only slice I of N of the input (records I, I+N, I+2N, ...; 1-based), one job of an array; join the stores with `embed merge`", valueHint: "I/N" },
    shard: { type: "string", description: "deprecated name of --slice (a shard is the commit unit inside a store)", valueHint: "I/N" },
    dedup: { type: "boolean", description: "embed identical sequences once and write their rows under every id (reads and six-frame peptides repeat)", default: false },
    "max-restarts": { type: "string", description: "replacements of dead workers allowed before the run fails", default: "3" },
    dry: { type: "boolean", description: "print the plan as JSON and start no worker", default: false },
    quiet: { type: "boolean", description: "no logs or progress on stderr, only errors and their hints (stdout unchanged)", default: false },
    json: { type: "boolean", description: "NDJSON events on stdout (start, batch, shard, worker, finish) instead of one summary", default: false },
    verbose: { type: "boolean", description: "debug logs and stack traces", default: false },
  },
  async run({ args }) {
    if (args.quiet && args.verbose) fail(new OptionsError("--quiet and --verbose contradict each other", "pass one of them: --quiet shows only errors, --verbose adds debug logs and stack traces"));
    if (args.verbose) log.level = 4;
    if (args.quiet) log.level = 0;
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
      // A closed terminal or ssh session (SIGHUP) is an interrupt like any other: drain and commit,
      // rather than die at once with the batches in flight lost (the default action, exit 129).
      process.on("SIGHUP", onSignal);
      const view = progress(args.json ? "json" : args.quiet ? "none" : process.stderr.isTTY ? "tty" : "log");
      let summary;
      try {
        summary = await embedToStore(options, { signal: controller.signal, onEvent: view.onEvent });
      } finally {
        view.close();
      }
      log.success(`${summary.records} records embedded in ${summary.seconds.toFixed(1)} s → ${summary.output}`);
      const busy = Object.entries(summary.busy).map(([w, f]) => `${w} ${Math.round(f * 100)}%`);
      if (busy.length) log.info(`${Math.round(summary.tokensPerSecond).toLocaleString("en-US")} tokens/s while embedding; time each worker spent computing: ${busy.join(", ")}`);
      log.info(`load in Python: ${loadHint(summary.output, summary.include, summary.layers)}`);
      if (args.json) process.stdout.write(JSON.stringify({ type: "summary", ...summary }) + "\n");
      else emit(summary);
      process.exit(0);
    } catch (e) {
      fail(e, args.verbose);
    }
  },
});
