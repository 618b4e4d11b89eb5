/**
 * `embed validate` end to end on CPU with the test model: passing cases (fp32, bf16 with
 * per-residue), and cases built to fail — the bugs the VirNucPro refactor shipped, injected into
 * the production worker only (EMBED_FAULT) — which must exit 7 and say why.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";

// Each validate run starts two CPU workers; torch alone takes seconds to import on 2 cores.
setDefaultTimeout(180_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-validate-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const EXAMPLE = join(PACKAGE_ROOT, "examples", "example.fasta");

async function validate(args: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "validate", EXAMPLE, "--model", "test-tiny", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stderr, report: stdout ? JSON.parse(stdout) : null };
}

describe("embed validate", () => {
  test("fp32 packed vs the fp32 reference: equal to 1e-6, report written", async () => {
    const file = join(tmp, "fp32.json");
    const r = await validate(["--precision", "fp32", "--max-rel-l2", "1e-6", "--report", file]);
    expect(r.code).toBe(0);
    expect(r.report.ok).toBe(true);
    expect(r.report.records).toEqual({ input: 6, validated: 6 });
    expect(r.report.device).toContain("eager kernels"); // the report names the arrangement it checked
    expect(r.report.overall.relL2.max).toBeLessThan(1e-6);
    expect(r.report.contamination.n).toBe(6);
    expect(r.report.contamination.minCosine).toBeGreaterThan(0.999999);
    expect(r.stderr).toContain("PASS");
    expect(JSON.parse(readFileSync(file, "utf8")).ok).toBe(true);
    expect(existsSync(`${file}.txt`)).toBe(true);
  });

  test("bf16 with per-residue vectors passes its thresholds; the table has every bin", async () => {
    const r = await validate(["--precision", "bf16", "--per-residue", "--sample", "4"]);
    expect(r.code).toBe(0);
    expect(r.report.records.validated).toBe(4);
    expect(r.report.precision).toBe("bf16");
    expect(r.report.overall.cosine.min).toBeGreaterThan(0.999);
    expect(r.report.overall.relL2.max).toBeGreaterThan(1e-4); // bf16 is really lower precision
    expect(r.report.overall.residueCosine.min).toBeGreaterThan(0.99);
    for (const bin of ["<50", "50-200", "200-500", ">500"]) expect(r.stderr).toContain(bin);
  });

  const faults: [string, string[], string][] = [
    ["eos-in-mean", [], "min pooled cosine"],
    ["no-dropout-scale", [], "pooled cosine"],
    ["tanh-gelu", ["--max-rel-l2", "1e-5"], "relative L2"],
  ];
  for (const [fault, extra, why] of faults) {
    test(`a production path with ${fault} fails (exit 7)`, async () => {
      const r = await validate(["--precision", "fp32", ...extra], { EMBED_FAULT: fault });
      expect(r.code).toBe(7);
      expect(r.report.ok).toBe(false);
      expect(r.report.failures.join(" ")).toContain(why);
      expect(r.stderr).toContain("FAIL");
    });
  }

  test("two layers at once is a bad option", async () => {
    const r = await validate(["--layers", "0,-1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("one layer");
  });
});
