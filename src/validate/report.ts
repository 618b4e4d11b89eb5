/** The readable form of a validation report: a fixed-width table plus the verdict. Pure. */
import { fmt, type Summary } from "./metrics.ts";
import type { ValidationReport } from "./validate.ts";

const COLS = ["bin", "n", "cos min", "cos p1", "cos median", "relL2 med", "relL2 max", "max |Δ|", "NaN/Inf", "|ref| mean", "|test|/|ref|"];

function row(name: string, s: Summary | null): string[] {
  if (!s) return [name, "0", ...COLS.slice(2).map(() => "–")];
  return [
    name,
    String(s.n),
    fmt(s.cosine.min),
    fmt(s.cosine.p1),
    fmt(s.cosine.median),
    s.relL2.median.toExponential(2),
    s.relL2.max.toExponential(2),
    s.maxAbs.toExponential(2),
    String(s.nonFinite),
    s.norm.refMean.toFixed(3),
    `${s.norm.ratioMin.toFixed(4)}–${s.norm.ratioMax.toFixed(4)}`,
  ];
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((x, c) => (c === 0 ? x.padEnd(w[c]!) : x.padStart(w[c]!))).join("  ")).join("\n");
}

export function renderReport(r: ValidationReport): string {
  const lines = [
    `embed validate: ${r.model} (${r.family}), layer ${r.layer}, ${r.precision} packed on ${r.device} vs ${r.reference}`,
    `pooling: mean = ${r.pooling.mean}${r.pooling.residues ? `; per-residue = ${r.pooling.residues}` : ""}`,
    `${r.records.validated} of ${r.records.input} records; pooled (mean) cosine per length bin (${r.lengthUnit}):`,
    "",
    table([COLS, ...Object.entries(r.bins).map(([name, s]) => row(name, s)), row("all", r.overall)]),
  ];
  if (r.overall.residueCosine) lines.push("", `per-residue cosine: min ${fmt(r.overall.residueCosine.min)}, median of record medians ${fmt(r.overall.residueCosine.median)}`);
  lines.push("", "worst records:", ...r.worst.slice(0, 5).map((w) => `  ${w.id} (${w.residues} ${r.family === "esm2" ? "aa" : r.lengthUnit}): cosine ${fmt(w.cosine)}, relL2 ${w.relL2.toExponential(2)}`));
  if (r.contamination.n) lines.push("", `contamination: ${r.contamination.n} records alone vs packed, min cosine ${fmt(r.contamination.minCosine ?? Number.NaN, 7)}, max |Δ| ${(r.contamination.maxAbs ?? 0).toExponential(2)}`);
  const t = r.thresholds;
  lines.push("", `thresholds: min cosine ≥ ${t.minCosine}, median ≥ ${t.medianCosine}, contamination ≥ ${t.contaminationCosine}${t.maxRelL2 === undefined ? "" : `, relL2 ≤ ${t.maxRelL2}`}, no NaN/Inf`);
  lines.push(r.ok ? "PASS" : `FAIL: ${r.failures.join("; ")}`);
  return lines.join("\n");
}
