/** `embed convert STORE --to FORMAT`: a finished store as HDF5, Parquet, npy or VirNucPro .pt files. */
import { defineCommand } from "citty";
import { OptionsError } from "../errors.ts";
import { convertStore, FORMATS, isFormat } from "../formats.ts";
import { log } from "../log.ts";
import { emit, fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "convert",
    description: `Convert a finished store to another format (layouts: README "Output formats").

Examples:
  embed convert out/ --to hdf5                  out/embeddings.h5
  embed convert out/ --to parquet -o pq/        pq/mean.layer33.parquet, ...
  embed convert out/ --to virnucpro             out/virnucpro/output_1_ESM.pt, ... (10,000 proteins each)
  embed convert out/ --to npy -o small/ --layer -1 --kind mean`,
  },
  args: {
    store: { type: "positional", description: "the store directory (-o of `embed run`)", required: true, valueHint: "STORE" },
    to: { type: "string", description: `format: ${FORMATS.join(", ")}`, required: true, valueHint: "FORMAT" },
    output: { type: "string", alias: "o", description: "hdf5: a file (default STORE/embeddings.h5); others: a directory (default STORE, or STORE/virnucpro)", valueHint: "PATH" },
    layer: { type: "string", description: "only this layer (negative: from the last); virnucpro: default the last layer" },
    kind: { type: "string", description: "only this output: mean, bos, per-residue; virnucpro: default mean" },
    json: { type: "boolean", description: "print the summary as JSON (default when stdout is not a terminal)", default: false },
  },
  async run({ args }) {
    try {
      if (!isFormat(args.to)) throw new OptionsError(`--to ${args.to}: unknown format`, `choose from ${FORMATS.join(", ")}`);
      let layer: number | undefined;
      if (args.layer !== undefined) {
        layer = Number(args.layer);
        if (!Number.isInteger(layer)) throw new OptionsError(`--layer "${args.layer}" is not an integer`, "e.g. --layer -1 or --layer 33");
      }
      const kind = args.kind === "per-residue" ? "residues" : args.kind;
      const summary = await convertStore(args.store, args.to, { out: args.output, layer, kind });
      if (args.json || !process.stdout.isTTY) return emit(summary);
      log.success(`${summary.records} records → ${summary.format}: ${summary.files.join(", ")}`);
    } catch (e) {
      fail(e);
    }
  },
});
