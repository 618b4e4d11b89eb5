/** `embed inspect STORE`: what a store holds, whether it is complete, and what else sits next to it. */
import { defineCommand } from "citty";
import { ExitCode, OutputError } from "../errors.ts";
import { inspectStore, type StoreInfo } from "../store/formats.ts";
import { log } from "../log.ts";
import { emit, fail } from "./report.ts";

const mib = (b: number) => (b >= 1 << 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

function render(s: StoreInfo): string {
  const lines = [`${s.dir}: ${s.state === "complete" ? "complete" : s.state.toUpperCase()}`];
  if (s.model) lines.push(`  model     ${s.model.name}${s.model.numLayers ? ` (${s.model.numLayers} layers, dim ${s.model.dim})` : ""}`);
  if (s.layers.length) lines.push(`  layers    ${s.layers.join(", ")}`);
  if (s.outputs.length) lines.push(`  outputs   ${s.outputs.join(", ")}  (${s.dtype ?? "?"}${s.precision ? `, computed in ${s.precision}` : ""})`);
  if (s.state === "complete" || s.state === "damaged") lines.push(`  records   ${s.records}${s.residues != null ? `  (${s.residues} residues)` : ""}${s.slice ? `, slice ${s.slice.index}/${s.slice.count} of ${s.slice.of}` : ""}`);
  if (s.state === "unfinished") lines.push(`  records   ${s.committed} of ${s.records ?? "?"} committed in ${s.shards} shard(s)`);
  for (const a of s.arrays) lines.push(`  ${a.file.padEnd(28)} ${a.shape ? `[${a.shape.join(", ")}]` : "?"} ${a.dtype ?? ""}  ${mib(a.bytes)}`);
  if (s.ids) lines.push(`  ${s.ids.file.padEnd(28)} ${s.ids.present ? "present" : "MISSING"}`);
  for (const d of s.damaged) lines.push(`  ${d.file.padEnd(28)} DAMAGED: ${d.problem}`);
  if (s.checksums) lines.push(`  checksums ${{ none: "no checksums recorded (an older store): sizes and headers checked", recorded: "recorded; sizes and headers checked (--verify reads every file)", verified: "every file read and compared with its SHA-256" }[s.checksums]}`);
  for (const f of s.formats) lines.push(`  ${f.format.padEnd(9)} ${f.files.length} file(s), ${mib(f.bytes)}${f.stale ? "  (older than the store: convert again)" : ""}: ${f.files.slice(0, 3).join(", ")}${f.files.length > 3 ? ", …" : ""}`);
  if (s.hint) lines.push(`  ${s.hint}`);
  return lines.join("\n");
}

export default defineCommand({
  meta: {
    name: "inspect",
    description: `Summarise a store: model, layers, outputs, counts, shapes, files and other formats next to it; for an unfinished store, how many records are committed. A complete store's files are checked against its manifest (sizes, .npy headers, ids count; --verify also reads every file for its SHA-256): a damaged store is listed file by file and exits 6.

Examples:
  embed inspect out/
  embed inspect out/ --json | jq .records
  embed inspect out/ --verify`,
  },
  args: {
    store: { type: "positional", description: "the store directory (-o of `embed run`)", required: true, valueHint: "STORE" },
    json: { type: "boolean", description: "print JSON (default when stdout is not a terminal)", default: false },
    verify: { type: "boolean", description: "also read every file and compare its SHA-256 with the manifest's", default: false },
  },
  run({ args }) {
    try {
      const info = inspectStore(args.store, { verify: args.verify });
      if (info.state === "missing" || info.state === "not-a-store") throw new OutputError(`${info.dir} is not an embed store`, info.hint);
      if (args.json || !process.stdout.isTTY) emit(info);
      else process.stdout.write(render(info) + "\n");
      if (info.state === "damaged") {
        // The summary above is the report; stderr names the files for whoever reads only it.
        log.error(`damaged store ${info.dir}: ${info.damaged.map((d) => `${d.file} ${d.problem}`).join("; ")}`);
        log.info(`hint: ${info.hint}`);
        process.exitCode = ExitCode.outputFailed;
      }
    } catch (e) {
      fail(e);
    }
  },
});
