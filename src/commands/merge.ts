/** `embed merge OUT STORE...`: the stores of `embed run --slice I/N` jobs joined into one. */
import { defineCommand } from "citty";
import { log } from "../log.ts";
import { mergeStores } from "../store/merge.ts";
import { emit, fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "merge",
    description: `Join the stores of a job array (embed run --slice I/N, one job per slice of one input) into one store, equal to a single run's: rows and ids in input order. Checks first that the stores are the N slices of one input, embedded alike.

Examples:
  embed merge all/ part-1/ part-2/ part-3/ part-4/
  embed merge all/ parts/*/ --overwrite
  # SLURM: sbatch --array=1-4 --wrap 'embed run in.fa.gz -o part-$SLURM_ARRAY_TASK_ID/ --slice $SLURM_ARRAY_TASK_ID/4'`,
  },
  args: {
    output: { type: "positional", description: "the merged store's directory (new, or --overwrite)", required: true, valueHint: "OUT" },
    stores: { type: "positional", description: "the jobs' store directories, in any order", required: true, valueHint: "STORE..." },
    overwrite: { type: "boolean", description: "replace a complete store in OUT", default: false },
  },
  run({ args }) {
    try {
      const summary = mergeStores(args.output, args._.slice(1), { overwrite: args.overwrite });
      log.success(`${summary.records} records from ${summary.slices} stores → ${summary.output} (${summary.seconds.toFixed(1)} s)`);
      emit(summary);
    } catch (e) {
      fail(e);
    }
  },
});
