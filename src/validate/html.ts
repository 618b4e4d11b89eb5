/**
 * `embed validate --html FILE`: the report as one self-contained HTML page, pure. Inline SVG
 * charts (charts.ts), inline CSS, no script and no external resource; the Content-Security-Policy
 * forbids loading anything, so the page reads the same offline, attached to an issue or archived.
 */
import { FAMILY_BINS, fmt, type Summary } from "./metrics.ts";
import { badCosine, boxChart, histogramChart, PER_DECADE, scatterChart, type LengthAxis } from "./charts.ts";
import { CHART_CSS, esc } from "./svg.ts";
import type { RecordResult, ValidationReport } from "./validate.ts";

/** Rows in the table of worst records. */
export const WORST_ROWS = 20;

const PAGE_CSS = `
body { font: 14px/1.45 sans-serif; color: #222; max-width: 980px; margin: 24px auto; padding: 0 16px }
h1 { font-size: 20px; margin: 0 0 4px } h2 { font-size: 16px; margin: 28px 0 6px; border-bottom: 1px solid #ddd }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: bold }
.pass { background: #2e7d32 } .fail { background: #c0392b }
td.pass, td.fail { color: #fff; text-align: center }
table { border-collapse: collapse; font-size: 13px } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right }
th { background: #f4f4f4 } td:first-child, th:first-child { text-align: left }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0 } dt { color: #666 } dd { margin: 0 }
.note { color: #666; font-size: 12px } figure { margin: 8px 0 } svg { display: block; max-width: 100% }
`;

const num = (x: number | null | undefined, digits = 7): string => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "NaN");
const sci = (x: number | null | undefined): string => (typeof x === "number" && Number.isFinite(x) ? x.toExponential(2) : "NaN");
const verdict = (ok: boolean, why = ""): string => `<span class="verdict ${ok ? "pass" : "fail"}"${why ? ` title="${esc(why)}"` : ""}>${ok ? "PASS" : "FAIL"}</span>`;
const row = (cells: string[], tag = "td"): string => `<tr>${cells.map((c) => `<${tag}>${c}</${tag}>`).join("")}</tr>`;

function facts(r: ValidationReport): string {
  const t = r.thresholds;
  const items: [string, string][] = [
    ["model", `${r.model}, layer ${r.layer}`],
    ["family", `${r.family} (lengths and bins in ${r.lengthUnit})`],
    ...Object.entries(r.pooling).map(([k, v]): [string, string] => [`pooling: ${k}`, v]),
    ["precision", r.precision],
    ["device", r.device],
    ["reference", r.reference],
    ["records", `${r.records.validated} of ${r.records.input} validated`],
    ["date", r.date],
    ["took", `${r.seconds.toFixed(1)} s`],
    ["thresholds", `every pooled cosine ≥ ${t.minCosine}, median ≥ ${t.medianCosine}, alone vs packed ≥ ${t.contaminationCosine}${t.maxRelL2 === undefined ? "" : `, relative L2 ≤ ${t.maxRelL2}`}, no NaN/Inf`],
  ];
  return `<dl>${items.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>`;
}

function binTable(r: ValidationReport): string {
  const head = row([`bin (${r.lengthUnit})`, "n", "cos min", "cos p1", "cos median", "relL2 median", "relL2 max", "max |Δ|", "NaN/Inf", "verdict"], "th");
  const line = (name: string, s: Summary | null, fails: string[] | null | undefined): string => {
    if (!s) return row([esc(name), "0", "–", "–", "–", "–", "–", "–", "–", "–"]);
    const v = fails ? `<td class="${fails.length ? "fail" : "pass"}" title="${esc(fails.join("; "))}">${fails.length ? "FAIL" : "PASS"}</td>` : "<td></td>";
    const cells = [esc(name), String(s.n), num(s.cosine.min), num(s.cosine.p1), num(s.cosine.median), sci(s.relL2.median), sci(s.relL2.max), sci(s.maxAbs), String(s.nonFinite)];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join("")}${v}</tr>`;
  };
  const bins = Object.entries(r.bins).map(([name, s]) => line(name, s, r.binFailures?.[name]));
  const overall = line("all", r.overall, r.failures);
  return `<table id="bins">${head}${bins.join("")}${overall}</table>
<p class="note">A bin's verdict applies the thresholds to its records alone; the run's verdict (and exit code) is the overall one, which also includes the contamination check.</p>`;
}

/** The lowest cosines first, NaN (non-finite output) before any number. */
export function worstRecords(rs: readonly RecordResult[], n = WORST_ROWS): RecordResult[] {
  const key = (r: RecordResult) => (badCosine(r.cosine) ? -Infinity : r.cosine);
  return [...rs].sort((a, b) => key(a) - key(b)).slice(0, n);
}

function worstTable(r: ValidationReport): string {
  const withRes = r.perRecord.some((x) => x.residueCosMin !== undefined);
  const head = row(["id", "length", "bin", "cosine", "relL2", "max |Δ|", "NaN/Inf", ...(withRes ? ["residue cos min"] : [])], "th");
  const rows = worstRecords(r.perRecord).map((x) =>
    row([esc(x.id), String(x.residues), esc(x.bin), num(x.cosine), sci(x.relL2), sci(x.maxAbs), String(x.nonFinite), ...(withRes ? [num(x.residueCosMin)] : [])]),
  );
  return `<table id="worst">${head}${rows.join("")}</table>`;
}

function contamination(r: ValidationReport): string {
  const c = r.contamination;
  if (!c.n) return `<p id="contamination">Not run (no records checked alone).</p>`;
  const ok = c.minCosine !== null && c.minCosine >= r.thresholds.contaminationCosine;
  const rows = c.worst.map((w) => row([esc(w.id), String(w.residues), num(w.cosine, 8)]));
  return `<div id="contamination"><p>${verdict(ok)} ${c.n} records embedded alone with the production path and compared with their packed rows: min cosine ${num(c.minCosine, 8)} (threshold ${r.thresholds.contaminationCosine}), max |Δ| ${sci(c.maxAbs)}. A packed batch that leaks between sequences (a wrong attention mask or offsets) shows here.</p>
<table>${row(["id", "length", "cosine alone vs packed"], "th")}${rows.join("")}</table></div>`;
}

export function renderHtml(r: ValidationReport): string {
  const rs = r.perRecord;
  const axis: LengthAxis = { bins: FAMILY_BINS[r.family], unit: r.lengthUnit };
  const title = `embed validate: ${r.model}, ${r.precision} — ${r.ok ? "PASS" : "FAIL"}`;
  const failures = r.failures.length ? `<ul id="failures">${r.failures.map((f) => `<li>${esc(f)}</li>`).join("")}</ul>` : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${PAGE_CSS}${CHART_CSS}</style>
</head>
<body>
<h1>embed validate ${verdict(r.ok, r.failures.join("; "))}</h1>
${failures}
${facts(r)}
<h2>Per length bin</h2>
${binTable(r)}
<h2>Cosine against length</h2>
<p class="note">One point per record (${rs.length}); red: below the min-cosine threshold (dashed); × at the bottom: NaN/Inf output. Dotted: length-bin edges. Hover a point for its id.</p>
<figure>${scatterChart(rs, r.thresholds.minCosine, axis)}</figure>
<h2>Cosine per length bin</h2>
<p class="note">Box: quartiles; line: median; whiskers: min and max.</p>
<figure>${boxChart(rs, r.thresholds.minCosine, axis)}</figure>
<h2>Relative error</h2>
<p class="note">Records per bin of relative L2 error (${PER_DECADE} bins per decade)${r.thresholds.maxRelL2 === undefined ? "" : "; dashed: the --max-rel-l2 threshold"}.</p>
<figure>${histogramChart(rs, r.thresholds.maxRelL2)}</figure>
<h2>Worst records</h2>
${worstTable(r)}
<h2>Contamination check</h2>
${contamination(r)}
</body>
</html>
`;
}
