/** `embed inspect STORE`: what a store holds, whether it is complete, and what else sits next to it. */
import { defineCommand } from "citty";
import { OutputError } from "../errors.ts";
import { inspectStore, type StoreInfo } from "../formats.ts";
import { emit, fail } from "./report.ts";

const mib = (b: number) => (b >= 1 << 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

function render(s: StoreInfo): string {
  const lines = [`${s.dir}: ${s.state === "complete" ? "complete" : s.state === "unfinished" ? "UNFINISHED" : s.state}`];
  if (s.model) lines.push(`  model     ${s.model.name}${s.model.numLayers ? ` (${s.model.numLayers} layers, dim ${s.model.dim})` : ""}`);
  if (s.layers.length) lines.push(`  layers    ${s.layers.join(", ")}`);
  if (s.outputs.length) lines.push(`  outputs   ${s.outputs.join(", ")}  (${s.dtype ?? "?"}${s.precision ? `, computed in ${s.precision}` : ""})`);
  if (s.state === "complete") lines.push(`  records   ${s.records}${s.residues != null ? `  (${s.residues} residues)` : ""}${s.slice ? `, slice ${s.slice.index}/${s.slice.count} of ${s.slice.of}` : ""}`);
  if (s.state === "unfinished") lines.push(`  records   ${s.committed} of ${s.records ?? "?"} committed in ${s.shards} shard(s)`);
  for (const a of s.arrays) lines.push(`  ${a.file.padEnd(28)} ${a.shape ? `[${a.shape.join(", ")}]` : "?"} ${a.dtype ?? ""}  ${mib(a.bytes)}`);
  if (s.ids) lines.push(`  ${s.ids.file.padEnd(28)} ${s.ids.present ? "present" : "MISSING"}`);
  for (const m of s.missing) lines.push(`  ${m.padEnd(28)} MISSING (listed in the manifest)`);
  for (const f of s.formats) lines.push(`  ${f.format.padEnd(9)} ${f.files.length} file(s), ${mib(f.bytes)}${f.stale ? "  (older than the store: convert again)" : ""}: ${f.files.slice(0, 3).join(", ")}${f.files.length > 3 ? ", …" : ""}`);
  if (s.hint) lines.push(`  ${s.hint}`);
  return lines.join("\n");
}

export default defineCommand({
  meta: {
    name: "inspect",
    description: `Summarise a store: model, layers, outputs, counts, shapes, files and other formats next to it; for an unfinished store, how many records are committed.

Examples:
  embed inspect out/
  embed inspect out/ --json | jq .records`,
  },
  args: {
    store: { type: "positional", description: "the store directory (-o of `embed run`)", required: true, valueHint: "STORE" },
    json: { type: "boolean", description: "print JSON (default when stdout is not a terminal)", default: false },
  },
  run({ args }) {
    try {
      const info = inspectStore(args.store);
      if (info.state === "missing" || info.state === "not-a-store") throw new OutputError(`${info.dir} is not an embed store`, info.hint);
      if (args.json || !process.stdout.isTTY) return emit(info);
      process.stdout.write(render(info) + "\n");
    } catch (e) {
      fail(e);
    }
  },
});
