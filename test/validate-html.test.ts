/**
 * `embed validate --html`: the page for a known report (10 records in three length bins, one with
 * NaN output, one below the cosine threshold), checked as text and drawn in a real headless
 * Chromium: no console or page errors, no request but the file itself, and the charts hold one
 * point per record, one box per non-empty bin and one bar per non-empty error bin. Also the
 * report files' checks (an input, a directory, a missing directory) and their atomic write.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ExitCode, OptionsError, OutputError } from "../src/errors.ts";
import { relErrorBins } from "../src/validate/charts.ts";
import { renderHtml, worstRecords } from "../src/validate/html.ts";
import { binOf, DEFAULT_THRESHOLDS, judge, LENGTH_BINS, summarize, type RecordMetrics } from "../src/validate/metrics.ts";
import { checkReportPath, writeAtomic } from "../src/validate/output.ts";
import type { ValidationReport } from "../src/validate/validate.ts";
import { browserPath, openPage } from "./browser.ts";

const tmp = mkdtempSync(join(tmpdir(), "embed-validate-html-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** [id, residues, cosine, relative L2 error] */
const RECORDS: [string, number, number, number][] = [
  ["short-a", 10, 0.9999999, 0],
  ["short-b", 20, 0.999999, 0],
  ["short-c", 30, 0.99999, 1.1e-6],
  ["short-nan", 40, Number.NaN, 1.2e-6],
  ["mid-a", 60, 0.9999, 1.3e-6],
  ["mid-b", 100, 0.99995, 3e-5],
  ["mid-c", 150, 0.999999, 3.1e-5],
  ["mid-d", 199, 1, 2e-3],
  ["long-a", 250, 0.9995, 2.5e-3],
  ["long-<b>&", 400, 0.998, 0.05], // below min cosine 0.999; an id that needs escaping
];
/** Non-empty relative-error bins of RECORDS (4 per decade): 0 ×2, [1e-6, 1.78e-6) ×3, [1.78e-5, 3.16e-5) ×2, [1.78e-3, 3.16e-3) ×2, [3.16e-2, 5.62e-2) ×1. */
const ERROR_BARS = [2, 3, 2, 2, 1];

function knownReport(): ValidationReport {
  const metrics: RecordMetrics[] = RECORDS.map(([id, residues, cosine, relL2]) => ({ id, residues, bin: binOf(residues), cosine, relL2, maxAbs: relL2 / 10, normRef: 1, normTest: 1, nonFinite: Number.isNaN(cosine) ? 3 : 0 }));
  const overall = summarize(metrics)!;
  const bins = Object.fromEntries(LENGTH_BINS.map((b) => [b.name, summarize(metrics.filter((m) => m.bin === b.name))]));
  const thresholds = { ...DEFAULT_THRESHOLDS };
  const failures = judge(overall, 0.9999995, thresholds);
  return {
    model: "test-tiny",
    family: "esm2",
    pooling: { mean: "mean over residues 1..L (BOS and EOS excluded; fair-esm)" },
    lengthUnit: "residues",
    date: "2026-12-07T12:00:00.000Z",
    layer: 2,
    device: "cpu (torch, eager kernels)",
    precision: "bf16",
    reference: "fp32, one sequence per batch, exact attention, same weights",
    records: { input: 12, validated: metrics.length },
    thresholds,
    overall,
    bins,
    binFailures: Object.fromEntries(Object.entries(bins).map(([k, s]) => [k, s && judge(s, null, thresholds)])),
    worst: [],
    contamination: { n: 2, minCosine: 0.9999995, maxAbs: 1e-7, worst: [{ id: "mid-a", residues: 60, cosine: 0.9999995 }, { id: "short-b", residues: 20, cosine: 0.9999999 }] },
    ok: failures.length === 0,
    failures,
    seconds: 3.2,
    perRecord: metrics.map(({ id, residues, bin, cosine, relL2, maxAbs, nonFinite }) => ({ id, residues, bin, cosine, relL2, maxAbs, nonFinite })),
  };
}

const count = (html: string, re: RegExp) => [...html.matchAll(re)].length;

describe("validate HTML report (text)", () => {
  const report = knownReport();
  const html = renderHtml(report);

  test("the known report fails, and says why", () => {
    expect(report.ok).toBe(false);
    expect(html).toContain(`<span class="verdict fail"`);
    expect(html).toContain("3 NaN/Inf values in the output");
    expect(html).toContain("min pooled cosine");
  });

  test("self-contained: no script, no URL, nothing to load; a CSP that forbids loading", () => {
    expect(html).not.toMatch(/<script|https?:\/\/|src=|<link/i);
    expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'"`);
  });

  test("one point per record (a NaN cosine drawn as a cross), one box per non-empty bin, one bar per non-empty error bin", () => {
    expect(count(html, /<circle class="pt/g)).toBe(RECORDS.length - 1);
    expect(count(html, /<path class="pt nan"/g)).toBe(1);
    expect(count(html, /<circle class="pt fail"/g)).toBe(1); // 0.998 < 0.999
    expect(count(html, /<g class="box"/g)).toBe(3); // no record over 500 residues
    expect(relErrorBins(report.perRecord).map((b) => b.count)).toEqual(ERROR_BARS);
    expect(count(html, /<rect class="bar/g)).toBe(ERROR_BARS.length);
  });

  test("bin verdicts, run facts and the contamination check are on the page; ids are escaped", () => {
    expect(count(html, /<td class="fail"/g)).toBe(3); // <50 (NaN), 200-500 (0.998), and all
    expect(count(html, /<td class="pass"/g)).toBe(1); // 50-200
    for (const fact of ["test-tiny, layer 2", "bf16", "cpu (torch, eager kernels)", "2026-12-07T12:00:00.000Z", "10 of 12 validated"]) expect(html).toContain(fact);
    expect(html).toContain("2 records embedded alone");
    expect(html).toContain("long-&#60;b&#62;&#38;");
    expect(html).not.toContain("long-<b>&");
  });

  test("worst records: NaN first, then the lowest cosines", () => {
    expect(worstRecords(report.perRecord, 3).map((r) => r.id)).toEqual(["short-nan", "long-<b>&", "long-a"]);
  });

  test("the report read back from JSON (NaN became null) draws the same charts", () => {
    const again = renderHtml(JSON.parse(JSON.stringify(report)));
    expect(again).toBe(html);
  });
});

describe.skipIf(!browserPath())(`validate HTML report in headless Chromium (${browserPath() ?? "no chromium installed: skipped"})`, () => {
  test("draws without errors, loads nothing but itself, and has the expected marks", async () => {
    const file = join(tmp, "report.html");
    writeFileSync(file, renderHtml(knownReport()));
    const url = pathToFileURL(file).href;
    await using page = await openPage(url);
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([url]);
    const drawn = await page.evaluate<Record<string, number>>(`(() => {
      const n = (s) => document.querySelectorAll(s).length;
      const sum = [...document.querySelectorAll("#histogram .bar")].reduce((a, b) => a + Number(b.dataset.count), 0);
      const box = (id) => document.getElementById(id).getBoundingClientRect();
      const svg = box("scatter");
      const inside = [...document.querySelectorAll("#scatter .pt")].filter((p) => {
        const r = p.getBoundingClientRect();
        return r.width > 0 && r.left >= svg.left && r.right <= svg.right && r.top >= svg.top && r.bottom <= svg.bottom;
      }).length;
      return { points: n("#scatter .pt"), inside, boxes: n("#boxes .box"), boxRects: n("#boxes .box rect"), bars: n("#histogram .bar"), barRecords: sum,
        worstRows: n("#worst tr") - 1, svgs: n("svg"), scatterWidth: svg.width, histogramHeight: box("histogram").height };
    })()`);
    expect(drawn).toEqual({
      points: RECORDS.length,
      inside: RECORDS.length,
      boxes: 3,
      boxRects: 3,
      bars: ERROR_BARS.length,
      barRecords: RECORDS.length,
      worstRows: RECORDS.length,
      svgs: 3,
      scatterWidth: 720,
      histogramHeight: 300,
    });
    // For a person to look at; not committed.
    const png = join(tmpdir(), "embed-validate-report.png");
    writeFileSync(png, await page.screenshot());
    expect(readFileSync(png).subarray(1, 4).toString()).toBe("PNG");
  }, 60_000);
});

describe("report files", () => {
  const input = join(tmp, "in.fasta");
  writeFileSync(input, ">a\nMKV\n");

  test("an input (by name, or through a link) is refused: exit 2", () => {
    const link = join(tmp, "link.html");
    symlinkSync(input, link);
    for (const path of [input, link]) {
      const e = (() => {
        try {
          checkReportPath("--html", path, [input]);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(OptionsError);
      expect((e as OptionsError).message).toBe(`--html ${path} is the input ${input}`);
      expect((e as OptionsError).exitCode).toBe(ExitCode.badOptions);
    }
  });

  test("a directory, or a missing directory, is an output error (exit 6) that names the path", () => {
    const dir = join(tmp, "reports");
    mkdirSync(dir);
    expect(() => checkReportPath("--html", dir, [input])).toThrow(new OutputError(`--html ${dir} is a directory`));
    expect(() => checkReportPath("--report", join(tmp, "nope", "r.json"), [input])).toThrow(`--report ${join(tmp, "nope", "r.json")}: directory ${join(tmp, "nope")} does not exist`);
    expect(() => checkReportPath("--html", join(tmp, "new.html"), [input])).not.toThrow();
  });

  test("written atomically: an existing report is replaced whole, no temporary file is left", () => {
    const dir = join(tmp, "atomic");
    mkdirSync(dir);
    const path = join(dir, "r.html");
    writeFileSync(path, "old");
    writeAtomic("--html", path, "new report");
    expect(readFileSync(path, "utf8")).toBe("new report");
    expect(readdirSync(dir)).toEqual(["r.html"]);
    expect(() => writeAtomic("--html", join(dir, "missing", "r.html"), "x")).toThrow(OutputError);
    expect(existsSync(join(dir, "missing"))).toBe(false);
  });
});
