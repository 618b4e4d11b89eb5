/**
 * Benchmark records as a chart: tokens/s, one bar per speed record, grouped by model × workload,
 * coloured by implementation (embed's arms and Hugging Face's). Drawn with the SVG renderer of
 * `embed validate --html` (src/validate/svg.ts), so docs/perf/*.svg are text that diffs and
 * renders on GitHub without a plotting stack.
 *
 *   bun bench/chart.ts bench/results/X-bench.jsonl --out docs/perf/X.svg [--title "…"]
 *
 * The record: bench/README.md. Lines with a `measurement` key (ceiling, gates) are not speeds.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { axes, esc, frame, linearScale, px, shortNumber, svgRoot, xRange, yRange } from "../src/validate/svg.ts";

export interface SpeedRecord {
  model: string;
  workload: string;
  implementation: string;
  tokens_per_s: number;
  gpu?: string;
  date?: string;
}

/** The speed records of a bench.jsonl text; `file` names it in errors (file:line). */
export function speedRecords(text: string, file: string): SpeedRecord[] {
  const out: SpeedRecord[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: not JSON (${(e as Error).message}); each line of a bench record is one JSON object (bench/README.md)`);
    }
    if ("measurement" in r) return;
    for (const k of ["model", "workload", "implementation"]) if (typeof r[k] !== "string") throw new Error(`${file}:${i + 1}: speed record without a string "${k}"`);
    if (typeof r.tokens_per_s !== "number" || !(r.tokens_per_s >= 0)) throw new Error(`${file}:${i + 1}: speed record without a number "tokens_per_s"`);
    out.push(r as unknown as SpeedRecord);
  });
  return out;
}

/** "esm2_t33_650M_UR50D" → "esm2_t33_650M": the weights' suffix says nothing about speed. */
const shortModel = (m: string) => m.replace(/_UR50D$/, "");

/**
 * The chart: groups in the order they first appear, one bar per record, a legend per
 * implementation. `sources` (the results files) are named in the SVG's <desc>, so that the test
 * can redraw a committed chart from them and find it unchanged.
 */
export function renderBenchChart(records: readonly SpeedRecord[], title: string, sources: readonly string[]): string {
  const groups = [...new Set(records.map((r) => `${r.model}\u0000${r.workload}`))];
  const impls = [...new Set(records.map((r) => r.implementation))];
  const perGroup = groups.map((g) => records.filter((r) => `${r.model}\u0000${r.workload}` === g));
  const widest = Math.max(1, ...perGroup.map((g) => g.length));
  // px: a group is at least as wide as its two-line label, the chart as wide as a title line.
  const f = frame(Math.max(760, 90 + groups.length * Math.max(120, widest * 26 + 28)), 380, { left: 72, top: 56, bottom: 58 });
  const [x0, x1] = xRange(f);
  const y = linearScale([0, Math.max(...records.map((r) => r.tokens_per_s), 1) * 1.08], yRange(f), 5);
  const base = yRange(f)[0];
  const slot = (x1 - x0) / Math.max(1, groups.length);
  const body = [`<desc>${esc(`Source: ${sources.join(" ")}; drawn by bench/chart.ts`)}</desc>`, axes(f, null, y, "model · workload", "tokens/s"), `<text class="caption" x="${f.left}" y="18">${esc(title)}</text>`];
  impls.forEach((impl, i) => {
    const lx = f.left + i * 130;
    body.push(`<rect class="bar s${i % 5}" x="${lx}" y="28" width="12" height="12"/><text class="tick" x="${lx + 16}" y="38">${esc(impl)}</text>`);
  });
  body.push(`<g class="bars">`);
  perGroup.forEach((rs, g) => {
    const bw = Math.min(26, (slot - 16) / rs.length);
    const start = x0 + slot * g + (slot - bw * rs.length) / 2;
    rs.forEach((r, k) => {
      const top = y(r.tokens_per_s);
      const x = start + k * bw;
      const tip = `${shortModel(r.model)} ${r.workload} ${r.implementation}: ${Math.round(r.tokens_per_s).toLocaleString("en")} tokens/s`;
      body.push(`<rect class="bar s${impls.indexOf(r.implementation) % 5}" x="${px(x + 1)}" y="${px(top)}" width="${px(bw - 2)}" height="${px(base - top)}"><title>${esc(tip)}</title></rect>`);
      body.push(`<text class="value" x="${px(x + bw / 2)}" y="${px(top - 3)}" text-anchor="middle">${esc(shortNumber(r.tokens_per_s))}</text>`);
    });
    const cx = px(x0 + slot * (g + 0.5));
    body.push(`<text class="tick" x="${cx}" y="${px(base + 15)}" text-anchor="middle">${esc(shortModel(rs[0]!.model))}</text><text class="tick" x="${cx}" y="${px(base + 28)}" text-anchor="middle">${esc(rs[0]!.workload)}</text>`);
  });
  body.push(`</g>`);
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svgRoot("bench", f, title, body.join("\n"), true)}\n`;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: "string" }, title: { type: "string" }, help: { type: "boolean", short: "h" } } });
  if (values.help || !positionals.length || !values.out) {
    console.error("usage: bun bench/chart.ts RESULTS.jsonl... --out docs/perf/NAME.svg [--title TEXT]");
    process.exit(values.help ? 0 : 2);
  }
  try {
    const records = positionals.flatMap((file) => speedRecords(readFileSync(file, "utf8"), file));
    if (!records.length) throw new Error(`${positionals.join(", ")}: no speed records (lines without a "measurement" key)`);
    const first = records[0]!;
    const title = values.title ?? `tokens/s, ${first.gpu ?? "GPU"}, ${first.date ?? ""}`.replace(/, $/, "");
    const tmp = `${values.out}.tmp`;
    writeFileSync(tmp, renderBenchChart(records, title, positionals));
    renameSync(tmp, values.out);
    console.error(`${values.out}: ${records.length} bars`);
  } catch (e) {
    console.error(`bench/chart.ts: ${(e as Error).message}`);
    process.exit(1);
  }
}
