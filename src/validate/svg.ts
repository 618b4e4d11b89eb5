/**
 * A small SVG renderer, pure: scales, axes and a frame, as strings. It draws the charts of
 * `embed validate --html` and the benchmark chart in docs/perf/.
 *
 * Why not a charting library: the report must be one self-contained file that opens offline, and
 * its charts (a scatter, box plots, a histogram, grouped bars) are a few hundred lines of SVG. A
 * library would mean inlining 100–300 kB of script into every report and running it in the
 * reader's browser; static SVG needs no script at all, diffs as text and renders the same in a
 * browser, an image viewer or a Markdown page.
 */

/** Text for SVG/HTML content and attribute values. */
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A coordinate with at most 1 decimal (0.1 px is below what a screen shows). */
export const px = (v: number): string => String(Math.round(v * 10) / 10);

export interface Tick {
  v: number;
  label: string;
}

/** A map from data values to pixels, with the ticks its axis shows. */
export interface Scale {
  (v: number): number;
  ticks: Tick[];
}

/** Round step (1, 2 or 5 × 10^k) giving about `count` intervals over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/** Shortest readable form of a tick value: 1,500 / 0.25 / 1e-6. */
export function shortNumber(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 1e-3) return String(+v.toPrecision(3));
  return v.toExponential(0);
}

/** Linear scale over `domain` onto `range` (pixels; range may run downwards for a y axis). */
export function linearScale(domain: [number, number], range: [number, number], ticks = 5, label = shortNumber): Scale {
  const [d0, d1] = domain[0] === domain[1] ? [domain[0] - 1, domain[1] + 1] : domain;
  const [r0, r1] = range;
  const f = ((v: number) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0)) as Scale;
  const step = niceStep(d1 - d0, ticks);
  f.ticks = [];
  for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) f.ticks.push({ v, label: label(Math.abs(v) < step * 1e-9 ? 0 : v) });
  return f;
}

/** Base-10 log scale over `domain` (both > 0), a tick per decade, or per 1-2-5 when few decades. */
export function logScale(domain: [number, number], range: [number, number], label = shortNumber): Scale {
  const l0 = Math.log10(domain[0]);
  const l1 = domain[1] > domain[0] ? Math.log10(domain[1]) : l0 + 1;
  const [r0, r1] = range;
  const f = ((v: number) => r0 + ((Math.log10(v) - l0) / (l1 - l0)) * (r1 - r0)) as Scale;
  const mults = l1 - l0 <= 2.5 ? [1, 2, 5] : [1];
  f.ticks = [];
  for (let k = Math.floor(l0); k <= Math.ceil(l1); k++) {
    for (const m of mults) {
      const v = m * 10 ** k;
      if (Math.log10(v) >= l0 - 1e-9 && Math.log10(v) <= l1 + 1e-9) f.ticks.push({ v, label: label(v) });
    }
  }
  return f;
}

/** The plotting area inside an SVG of `width` × `height` px: margins hold the axes and labels. */
export interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export const frame = (width: number, height: number, m: Partial<Omit<Frame, "width" | "height">> = {}): Frame => ({
  width,
  height,
  left: m.left ?? 64,
  right: m.right ?? 16,
  top: m.top ?? 28,
  bottom: m.bottom ?? 44,
});

/** Pixel ranges of a frame's plotting area: x left to right, y bottom to top. */
export const xRange = (f: Frame): [number, number] => [f.left, f.width - f.right];
export const yRange = (f: Frame): [number, number] => [f.height - f.bottom, f.top];

/** Grid lines, tick labels and axis titles; either scale may be omitted (e.g. a category axis). */
export function axes(f: Frame, x: Scale | null, y: Scale | null, xTitle: string, yTitle: string): string {
  const out: string[] = [];
  const [x0, x1] = xRange(f);
  const [y0, y1] = yRange(f);
  for (const t of y?.ticks ?? []) {
    const yy = px(y!(t.v));
    out.push(`<line class="grid" x1="${px(x0)}" x2="${px(x1)}" y1="${yy}" y2="${yy}"/>`, `<text class="tick" x="${px(x0 - 6)}" y="${yy}" text-anchor="end" dominant-baseline="middle">${esc(t.label)}</text>`);
  }
  for (const t of x?.ticks ?? []) {
    const xx = px(x!(t.v));
    out.push(`<line class="grid" x1="${xx}" x2="${xx}" y1="${px(y0)}" y2="${px(y1)}"/>`, `<text class="tick" x="${xx}" y="${px(y0 + 16)}" text-anchor="middle">${esc(t.label)}</text>`);
  }
  out.push(`<line class="axis" x1="${px(x0)}" x2="${px(x1)}" y1="${px(y0)}" y2="${px(y0)}"/>`, `<line class="axis" x1="${px(x0)}" x2="${px(x0)}" y1="${px(y0)}" y2="${px(y1)}"/>`);
  out.push(`<text class="title" x="${px((x0 + x1) / 2)}" y="${px(f.height - 8)}" text-anchor="middle">${esc(xTitle)}</text>`);
  out.push(`<text class="title" transform="translate(14 ${px((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle">${esc(yTitle)}</text>`);
  return out.join("\n");
}

/** Styles the charts use, for a page's <style> or an SVG's own. */
export const CHART_CSS = `
.grid { stroke: #e3e3e3; stroke-width: 1 }
.axis { stroke: #555; stroke-width: 1 }
.tick { font: 11px sans-serif; fill: #444 }
.title { font: 12px sans-serif; fill: #222 }
.caption { font: bold 13px sans-serif; fill: #111 }
.note { font: 11px sans-serif; fill: #666 }
.threshold { stroke: #c0392b; stroke-width: 1.2; stroke-dasharray: 5 3 }
.binedge { stroke: #999; stroke-width: 1; stroke-dasharray: 2 3 }
.pt { fill: #2c6fbb; fill-opacity: 0.55 }
.pt.fail { fill: #c0392b; fill-opacity: 0.9 }
.pt.nan { stroke: #c0392b; stroke-width: 1.5; fill: none }
.box rect { fill: #cfe0f3; stroke: #2c6fbb }
.box line { stroke: #2c6fbb; stroke-width: 1.2 }
.box .median { stroke: #111; stroke-width: 2 }
.bar { fill: #2c6fbb }
.bar.special { fill: #888 }
.bar.s0 { fill: #2c6fbb } .bar.s1 { fill: #e08a2c } .bar.s2 { fill: #7aa65a } .bar.s3 { fill: #9467bd } .bar.s4 { fill: #8c564b }
.value { font: 10px sans-serif; fill: #333 }
`;

/**
 * A complete `<svg>` element: `role="img"` with an accessible name, `id` for tests and links.
 * `standalone` adds the XML namespace and the chart styles (a file of its own, not inline HTML).
 */
export function svgRoot(id: string, f: Frame, label: string, body: string, standalone = false): string {
  const ns = standalone ? ` xmlns="http://www.w3.org/2000/svg"` : "";
  const style = standalone ? `<style>${CHART_CSS}</style>\n` : "";
  return `<svg${ns} id="${esc(id)}" role="img" aria-label="${esc(label)}" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}">\n${style}<title>${esc(label)}</title>\n${body}\n</svg>`;
}
