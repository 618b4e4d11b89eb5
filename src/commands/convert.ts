/** `embed convert SOURCE --to FORMAT`: a finished store, or an HDF5 file or Parquet directory embed wrote, as HDF5, Parquet, npy or VirNucPro .pt files. */
import { defineCommand } from "citty";
import { OptionsError } from "../errors.ts";
import { convertStore, FORMATS, isFormat } from "../store/formats.ts";
import { log } from "../log.ts";
import { emit, fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "convert",
    description: `Convert a finished store, or an .h5 file or Parquet directory embed wrote, to another format (layouts: README "Output formats").

Examples:
  embed convert out/ --to hdf5                  out/embeddings.h5
  embed convert out/ --to parquet -o pq/        pq/mean.layer33.parquet, ...
  embed convert out/ --to virnucpro             out/virnucpro/output_1_ESM.pt, ... (10,000 proteins each)
  embed convert out/ --to npy -o small/ --layer -1 --kind mean
  embed convert emb.h5 --to parquet -o pq/      the HDF5 file's outputs as pq/*.parquet
  embed convert pq/ --to npy -o store2/         a Parquet directory back into a store`,
  },
  args: {
    source: { type: "positional", description: "a store directory (-o of `embed run`), or an .h5 file or Parquet directory embed wrote (VirNucPro .pt files are written, never read)", required: true, valueHint: "SOURCE" },
    to: { type: "string", description: `format: ${FORMATS.join(", ")}`, required: true, valueHint: "FORMAT" },
    output: { type: "string", alias: "o", description: "hdf5: a file (default SOURCE/embeddings.h5); others: a directory (default SOURCE, or SOURCE/virnucpro; for an .h5 source, its directory); npy from .h5 or Parquet: required", valueHint: "PATH" },
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
      const summary = await convertStore(args.source, args.to, { out: args.output, layer, kind });
      if (args.json || !process.stdout.isTTY) return emit(summary);
      log.success(`${summary.records} records → ${summary.format}: ${summary.files.join(", ")}`);
    } catch (e) {
      fail(e);
    }
  },
});
