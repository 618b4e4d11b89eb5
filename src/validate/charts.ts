/**
 * The charts of a validation report, pure: each returns one `<svg>` (see svg.ts).
 *
 * Cosines of a good run sit within 1e-4 of 1, where a linear axis shows one flat line; the cosine
 * axes therefore plot the distance 1 − cos on a log scale, labelled as cosines (0.999, 0.9999,
 * …), better upwards. Relative errors span decades too, so the histogram's bins are log-spaced.
 */
import { LENGTH_BINS, type LengthBin } from "./metrics.ts";
import { axes, esc, frame, linearScale, logScale, px, svgRoot, xRange, yRange, type Scale } from "./svg.ts";
import type { RecordResult } from "./validate.ts";

/** A cosine that is no number: NaN in memory, null once through JSON. */
export const badCosine = (c: number | null | undefined): boolean => typeof c !== "number" || Number.isNaN(c);

/** The length axis of a report: the family's bins and the unit lengths are counted in. */
export interface LengthAxis {
  bins: readonly LengthBin[];
  unit: string;
}

/** ESM-2's: residue-length bins. */
export const RESIDUE_AXIS: LengthAxis = { bins: LENGTH_BINS, unit: "residues" };

/** Smallest distance 1 − cos drawn; closer (fp32 vs fp32 gives 0 or −1e-8) is drawn on this line. */
const FLOOR = 1e-9;

/** "0.9999" for 1 − 1e-4; past six nines, "1−1e-7". */
export function cosineLabel(distance: number): string {
  const k = -Math.log10(distance);
  if (Math.abs(k - Math.round(k)) > 1e-6) return (1 - distance).toPrecision(4);
  return k <= 6 ? (1 - distance).toFixed(Math.round(k)) : `1−1e-${Math.round(k)}`;
}

/** The y scale shared by the scatter and the box plots: 1 − cos, log, small distances on top. */
function cosineScale(rs: readonly RecordResult[], minCosine: number, range: [number, number]): Scale {
  const ds = rs.filter((r) => !badCosine(r.cosine)).map((r) => 1 - r.cosine);
  const lo = Math.max(FLOOR, Math.min(...ds.filter((d) => d > 0), 1 - minCosine, 1e-6));
  const hi = Math.max(...ds, 1 - minCosine, lo * 10);
  const decades: [number, number] = [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
  // Ranges run top to bottom: the small distance (the good end) at the top.
  const y = logScale(decades, [range[1], range[0]], cosineLabel);
  // Closer records are drawn on the top line (see `distance`).
  if (y.ticks[0]) y.ticks[0].label = `≥ ${y.ticks[0].label}`;
  return y;
}

const distance = (c: number, y: Scale): number => {
  const d = Math.max(1 - c, y.ticks[0]?.v ?? FLOOR);
  return y(d);
};

/** Cosine vs length in `axis.unit` (log x), a point per record; bin edges and the threshold dashed. */
export function scatterChart(rs: readonly RecordResult[], minCosine: number, axis: LengthAxis = RESIDUE_AXIS): string {
  const f = frame(720, 360, { left: 76, top: 18 });
  const lens = rs.map((r) => Math.max(1, r.residues));
  const x = logScale([10 ** Math.floor(Math.log10(Math.min(...lens, 10))), 10 ** Math.ceil(Math.log10(Math.max(...lens, 100)))], xRange(f));
  const y = cosineScale(rs, minCosine, yRange(f));
  const [y0, y1] = yRange(f);
  const [x0, x1] = xRange(f);
  const body = [axes(f, x, y, `length (${axis.unit}, log scale)`, "pooled cosine vs fp32")];
  for (const b of axis.bins.slice(1)) {
    if (b.lo > x.ticks[0]!.v && b.lo < x.ticks.at(-1)!.v) body.push(`<line class="binedge" x1="${px(x(b.lo))}" x2="${px(x(b.lo))}" y1="${px(y0)}" y2="${px(y1)}"><title>bin edge: ${b.lo} ${axis.unit}</title></line>`);
  }
  const ty = px(y(1 - minCosine));
  body.push(`<line class="threshold" x1="${px(x0)}" x2="${px(x1)}" y1="${ty}" y2="${ty}"><title>min cosine threshold ${minCosine}</title></line>`);
  body.push(`<g class="points">`);
  for (const r of rs) {
    const cx = px(x(Math.max(1, r.residues)));
    const tip = `<title>${esc(r.id)}: ${r.residues} ${axis.unit}, cosine ${badCosine(r.cosine) ? "NaN" : r.cosine}</title>`;
    if (badCosine(r.cosine)) body.push(`<path class="pt nan" d="M${cx} ${px(y0 - 8)}m-4 -4l8 8m0 -8l-8 8">${tip}</path>`);
    else body.push(`<circle class="pt${r.cosine < minCosine ? " fail" : ""}" cx="${cx}" cy="${px(distance(r.cosine, y))}" r="3">${tip}</circle>`);
  }
  body.push(`</g>`);
  return svgRoot("scatter", f, `pooled cosine against length, ${rs.length} records`, body.join("\n"));
}

/** Quantile q of ascending `xs` by linear interpolation (box plots: quartiles). */
const quartile = (xs: readonly number[], q: number): number => {
  const p = q * (xs.length - 1);
  const i = Math.floor(p);
  return xs[i]! + (p - i) * ((xs[Math.min(i + 1, xs.length - 1)] ?? xs[i]!) - xs[i]!);
};

/** One box per non-empty length bin: quartiles of the cosine, whiskers at min and max. */
export function boxChart(rs: readonly RecordResult[], minCosine: number, axis: LengthAxis = RESIDUE_AXIS): string {
  const f = frame(720, 320, { left: 76, top: 18 });
  const y = cosineScale(rs, minCosine, yRange(f));
  const bins = axis.bins.map((b) => ({ name: b.name, rs: rs.filter((r) => r.bin === b.name) })).filter((b) => b.rs.length);
  const [x0, x1] = xRange(f);
  const slot = (x1 - x0) / Math.max(1, bins.length);
  const body = [axes(f, null, y, `length bin (${axis.unit})`, "pooled cosine vs fp32")];
  const ty = px(y(1 - minCosine));
  body.push(`<line class="threshold" x1="${px(x0)}" x2="${px(x1)}" y1="${ty}" y2="${ty}"><title>min cosine threshold ${minCosine}</title></line>`);
  bins.forEach((b, i) => {
    const cosines = b.rs.filter((r) => !badCosine(r.cosine)).map((r) => r.cosine).sort((p, q) => p - q);
    const nan = b.rs.length - cosines.length;
    const cx = x0 + slot * (i + 0.5);
    const w = Math.min(80, slot * 0.5);
    const label = `<text class="tick" x="${px(cx)}" y="${px(f.height - f.bottom + 16)}" text-anchor="middle">${esc(b.name)} (n=${b.rs.length}${nan ? `, ${nan} NaN` : ""})</text>`;
    if (!cosines.length) {
      body.push(`<g class="box" data-bin="${esc(b.name)}">${label}</g>`);
      return;
    }
    const [lo, q1, med, q3, hi] = [0, 0.25, 0.5, 0.75, 1].map((q) => distance(quartile(cosines, q), y)) as [number, number, number, number, number];
    const tip = `<title>${esc(b.name)}: n=${b.rs.length}, min ${cosines[0]}, median ${quartile(cosines, 0.5)}, max ${cosines.at(-1)}</title>`;
    body.push(
      `<g class="box" data-bin="${esc(b.name)}">${tip}`,
      `<line x1="${px(cx)}" x2="${px(cx)}" y1="${px(lo)}" y2="${px(hi)}"/>`,
      `<line x1="${px(cx - w / 4)}" x2="${px(cx + w / 4)}" y1="${px(lo)}" y2="${px(lo)}"/><line x1="${px(cx - w / 4)}" x2="${px(cx + w / 4)}" y1="${px(hi)}" y2="${px(hi)}"/>`,
      // q3 has the smaller distance (higher cosine), so it is the box's top edge.
      `<rect x="${px(cx - w / 2)}" y="${px(Math.min(q1, q3))}" width="${px(w)}" height="${px(Math.max(1, Math.abs(q1 - q3)))}"/>`,
      `<line class="median" x1="${px(cx - w / 2)}" x2="${px(cx + w / 2)}" y1="${px(med)}" y2="${px(med)}"/>`,
      label,
      `</g>`,
    );
  });
  return svgRoot("boxes", f, `pooled cosine per length bin, ${bins.length} bins`, body.join("\n"));
}

export interface HistogramBin {
  /** Lower and upper edge (relative error); both 0 for exact records, NaN for non-finite ones. */
  lo: number;
  hi: number;
  count: number;
}

/** Bins per decade of the relative-error histogram. */
export const PER_DECADE = 4;

/** Log-spaced bins of relative L2 error, non-empty only; exact (0) and non-finite get their own. */
export function relErrorBins(rs: readonly RecordResult[]): HistogramBin[] {
  const vals = rs.map((r) => r.relL2);
  const pos = vals.filter((v) => Number.isFinite(v) && v > 0);
  const out: HistogramBin[] = [];
  const zero = vals.filter((v) => v === 0).length;
  if (zero) out.push({ lo: 0, hi: 0, count: zero });
  if (pos.length) {
    const counts = new Map<number, number>();
    for (const v of pos) {
      const k = Math.floor(Math.log10(v) * PER_DECADE + 1e-9);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    for (const k of [...counts.keys()].sort((a, b) => a - b)) out.push({ lo: 10 ** (k / PER_DECADE), hi: 10 ** ((k + 1) / PER_DECADE), count: counts.get(k)! });
  }
  const bad = vals.filter((v) => !Number.isFinite(v) || v < 0).length;
  if (bad) out.push({ lo: Number.NaN, hi: Number.NaN, count: bad });
  return out;
}

/** Histogram of the relative L2 error ‖test − ref‖ / ‖ref‖ (log x), with the threshold if set. */
export function histogramChart(rs: readonly RecordResult[], maxRelL2: number | undefined): string {
  const f = frame(720, 300, { top: 18 });
  const bins = relErrorBins(rs);
  const pos = bins.filter((b) => b.lo > 0);
  const lo = Math.min(...pos.map((b) => b.lo), maxRelL2 ?? Infinity, 1e-3);
  const hi = Math.max(...pos.map((b) => b.hi), maxRelL2 ?? 0, lo * 10);
  // Exact and non-finite records get a slot each at the left and right of the log axis.
  const [xa, xb] = xRange(f);
  const slot = 44; // px
  const x = logScale([10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))], [xa + (bins.some((b) => b.lo === 0) ? slot : 0), xb - (bins.some((b) => Number.isNaN(b.lo)) ? slot : 0)]);
  const y = linearScale([0, Math.max(...bins.map((b) => b.count), 1)], yRange(f), 4, (v) => (Number.isInteger(v) ? String(v) : ""));
  const base = yRange(f)[0];
  const body = [axes(f, x, y, "relative L2 error ‖test − ref‖ / ‖ref‖ (log scale)", "records")];
  if (maxRelL2 !== undefined && maxRelL2 > 0) body.push(`<line class="threshold" x1="${px(x(maxRelL2))}" x2="${px(x(maxRelL2))}" y1="${px(base)}" y2="${px(f.top)}"><title>max relative L2 threshold ${maxRelL2}</title></line>`);
  body.push(`<g class="bars">`);
  for (const b of bins) {
    const [left, right, name] = b.lo === 0 ? [xa + 4, xa + slot - 4, "0 (exact)"] : Number.isNaN(b.lo) ? [xb - slot + 4, xb - 4, "NaN/Inf"] : [x(b.lo) + 0.5, x(b.hi) - 0.5, `${b.lo.toExponential(1)}–${b.hi.toExponential(1)}`];
    const top = y(b.count);
    body.push(`<rect class="bar${b.lo > 0 ? "" : " special"}" data-count="${b.count}" x="${px(left)}" y="${px(top)}" width="${px(Math.max(1, right - left))}" height="${px(base - top)}"><title>${name}: ${b.count} records</title></rect>`);
    if (!(b.lo > 0)) body.push(`<text class="note" x="${px((left + right) / 2)}" y="${px(base + 16)}" text-anchor="middle">${b.lo === 0 ? "0" : "NaN"}</text>`);
  }
  body.push(`</g>`);
  return svgRoot("histogram", f, `relative L2 error, ${bins.length} non-empty bins`, body.join("\n"));
}
