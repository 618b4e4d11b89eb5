/**
 * bench/chart.ts: every committed chart in docs/perf/ is well-formed SVG, redraws unchanged from
 * the results files it names, and has one bar per speed record, its height proportional to
 * tokens/s. A browser (when installed) opens each as an SVG document without errors.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { renderBenchChart, speedRecords } from "../bench/chart.ts";
import { PACKAGE_ROOT } from "../src/config.ts";
import { browserPath, openPage } from "./browser.ts";

const PERF = join(PACKAGE_ROOT, "docs", "perf");
const charts = readdirSync(PERF).filter((f) => f.endsWith(".svg"));
const tmp = mkdtempSync(join(tmpdir(), "embed-bench-chart-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const unescape = (s: string) => s.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)));

/** Problems that make `xml` not well-formed: unbalanced or misnested tags, unquoted attributes, a bare & or <. */
function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, "").replace(/<!--[\s\S]*?-->/g, "");
  let last = 0;
  for (const m of body.matchAll(/<([^<>]*)>/g)) {
    const text = body.slice(last, m.index);
    if (/<|&(?!#\d+;|amp;|lt;|gt;|quot;|apos;)/.test(text)) problems.push(`bad text before offset ${m.index}: ${text.slice(0, 40)}`);
    last = m.index! + m[0].length;
    const tag = m[1]!;
    if (tag.startsWith("/")) {
      const open = stack.pop();
      if (open !== tag.slice(1)) problems.push(`</${tag.slice(1)}> closes <${open}>`);
      continue;
    }
    const t = /^([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)$/.exec(tag);
    if (!t) problems.push(`malformed tag <${tag.slice(0, 60)}>`);
    else if (!t[3]) stack.push(t[1]!);
  }
  if (stack.length) problems.push(`unclosed: ${stack.join(", ")}`);
  if (body.slice(last).trim()) problems.push("text after the root element");
  return problems;
}

describe("benchmark charts in docs/perf", () => {
  test("there are charts, and docs/PERFORMANCE.md shows each", () => {
    expect(charts.length).toBeGreaterThan(0);
    const doc = readFileSync(join(PACKAGE_ROOT, "docs", "PERFORMANCE.md"), "utf8");
    for (const c of charts) expect(doc).toContain(`](perf/${c})`);
  });

  for (const chart of charts) {
    test(`${chart}: well-formed, redrawn unchanged from its records, one bar per record`, () => {
      const svg = readFileSync(join(PERF, chart), "utf8");
      expect(xmlProblems(svg)).toEqual([]);
      const sources = /<desc>Source: (.*?); drawn by bench\/chart\.ts<\/desc>/.exec(svg)![1]!.split(" ").map(unescape);
      const title = unescape(/<title>(.*?)<\/title>/.exec(svg)![1]!);
      const records = sources.flatMap((f) => speedRecords(readFileSync(join(PACKAGE_ROOT, f), "utf8"), f));
      expect(records.length).toBeGreaterThan(0);
      expect(renderBenchChart(records, title, sources)).toBe(svg); // rerun bench/chart.ts (see docs/PERFORMANCE.md) if this fails

      const bars = [.../<g class="bars">([\s\S]*?)<\/g>/.exec(svg)![1]!.matchAll(/<rect class="bar[^"]*" x="[^"]*" y="[^"]*" width="[^"]*" height="([^"]*)"><title>([^<]*)<\/title>/g)];
      expect(bars).toHaveLength(records.length);
      // Bars come group by group (model × workload, in order of first appearance).
      const group = (r: (typeof records)[number]) => `${r.model} ${r.workload}`;
      const groups = [...new Set(records.map(group))];
      const drawnOrder = groups.flatMap((g) => records.filter((r) => group(r) === g));
      const pxPerToken = Number(bars[0]![1]) / drawnOrder[0]!.tokens_per_s;
      bars.forEach(([, height, tip], i) => {
        const r = drawnOrder[i]!;
        expect(unescape(tip!)).toContain(`${r.workload} ${r.implementation}: ${Math.round(r.tokens_per_s).toLocaleString("en")} tokens/s`);
        expect(Math.abs(Number(height) - r.tokens_per_s * pxPerToken)).toBeLessThan(0.2); // coordinates are rounded to 0.1 px
      });
    });
  }

  test("a results line that is not JSON is named by file:line", () => {
    expect(() => speedRecords('{"measurement": "matmul_ceiling"}\n{"model": "m", oops}\n', "r.jsonl")).toThrow("r.jsonl:2: not JSON");
    expect(() => speedRecords('{"model": "m", "workload": "w", "implementation": "embed"}\n', "r.jsonl")).toThrow('r.jsonl:1: speed record without a number "tokens_per_s"');
  });

  test("the script writes the chart and says how many bars; without speed records it fails", async () => {
    const results = join(tmp, "r.jsonl");
    writeFileSync(results, ['{"measurement": "matmul_ceiling", "tflops": 1}', '{"model": "m", "workload": "w", "implementation": "embed", "tokens_per_s": 10}', '{"model": "m", "workload": "w", "implementation": "hf-sorted", "tokens_per_s": 5}'].join("\n"));
    const run = async (file: string) => {
      const p = Bun.spawn(["bun", join(PACKAGE_ROOT, "bench", "chart.ts"), file, "--out", join(tmp, "c.svg")], { stdout: "pipe", stderr: "pipe" });
      return { code: await p.exited, stderr: await new Response(p.stderr).text() };
    };
    expect(await run(results)).toEqual({ code: 0, stderr: `${join(tmp, "c.svg")}: 2 bars\n` });
    expect(xmlProblems(readFileSync(join(tmp, "c.svg"), "utf8"))).toEqual([]);
    const empty = join(tmp, "empty.jsonl");
    writeFileSync(empty, '{"measurement": "matmul_ceiling", "tflops": 1}\n');
    const r = await run(empty);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no speed records");
  });

  test("the checker itself rejects what is not well-formed", () => {
    expect(xmlProblems(`<svg><g></svg>`)).not.toEqual([]);
    expect(xmlProblems(`<svg><text>a & b</text></svg>`)).not.toEqual([]);
    expect(xmlProblems(`<svg><rect x=1/></svg>`)).not.toEqual([]);
    expect(xmlProblems(`<svg><rect x="1"/><text>a &#38; b</text></svg>`)).toEqual([]);
  });
});

describe.skipIf(!browserPath())(`benchmark charts in headless Chromium (${browserPath() ?? "no chromium installed: skipped"})`, () => {
  for (const chart of charts) {
    test(`${chart} opens as an SVG document without errors`, async () => {
      const url = pathToFileURL(join(PERF, chart)).href;
      await using page = await openPage(url);
      expect(page.errors).toEqual([]);
      const drawn = await page.evaluate<{ root: string; bars: number; width: number }>(`({ root: document.documentElement.localName, bars: document.querySelectorAll(".bars rect").length, width: document.documentElement.getBoundingClientRect().width })`);
      const svg = readFileSync(join(PERF, chart), "utf8");
      expect(drawn.root).toBe("svg"); // an XML error would give a parsererror document
      expect(drawn.bars).toBe([...svg.matchAll(/<title>[^<]*tokens\/s<\/title>/g)].length);
      expect(drawn.width).toBeGreaterThan(0);
    }, 60_000);
  }
});
