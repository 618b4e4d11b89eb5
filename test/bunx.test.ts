/**
 * `bunx embed` from a project that depends on this package (installed from its folder), and
 * `bun run embed` inside the repo.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";

setDefaultTimeout(180_000);
const project = mkdtempSync(join(tmpdir(), "embed-consumer-"));
afterAll(() => rmSync(project, { recursive: true, force: true }));

async function sh(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1", ...env } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

describe("bunx embed", () => {
  test("installed from its folder into another project, the bin runs", async () => {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, dependencies: { embed: `file:${PACKAGE_ROOT}` } }));
    const install = await sh(["bun", "install"], project);
    expect(install.code).toBe(0);
    const help = await sh(["bunx", "--no-install", "embed", "--help"], project);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("run");
    expect(help.stdout).toContain("validate");
    const models = await sh(["bunx", "--no-install", "embed", "models", "--json"], project);
    expect(models.code).toBe(0);
    expect(JSON.parse(models.stdout).map((m: { name: string }) => m.name)).toContain("esm2_t36_3B_UR50D");
    // A real run from the consumer project, with the repo's Python and test model.
    const out = join(project, "out");
    const run = await sh(
      ["bunx", "--no-install", "embed", "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", out, "--model", join(PACKAGE_ROOT, ".models", "test-tiny.pt")],
      project,
      { EMBED_PYTHON: pythonBin() },
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).records).toBe(6);
  });

  test("bun run embed inside the repo; each command's help shows examples", async () => {
    const r = await sh(["bun", "run", "--silent", "embed", "run", "--help"], PACKAGE_ROOT);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Examples:");
    const v = await sh(["bun", "run", "--silent", "embed", "validate", "--help"], PACKAGE_ROOT);
    expect(v.stdout).toContain("Examples:");
  });
});
