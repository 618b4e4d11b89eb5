/**
 * `bunx embed` and `import { embed } from "embed"` from a project that depends on this package
 * (installed from its folder), and `bun run embed` inside the repo.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/** The repo's bundled test model (the installed package does not ship .models). */
const TEST_MODEL = join(PACKAGE_ROOT, ".models", "test-tiny.pt");

beforeAll(async () => {
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, dependencies: { embed: `file:${PACKAGE_ROOT}` } }));
  const install = await sh(["bun", "install"], project);
  expect(install.code).toBe(0);
});

describe("bunx embed", () => {
  test("installed from its folder into another project, the bin runs", async () => {
    const help = await sh(["bunx", "--no-install", "embed", "--help"], project);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("run");
    expect(help.stdout).toContain("validate");
    expect(help.stdout).toMatch(/^Examples:\n {2}embed run /m);
    const models = await sh(["bunx", "--no-install", "embed", "models", "--json"], project);
    expect(models.code).toBe(0);
    expect(JSON.parse(models.stdout).map((m: { name: string }) => m.name)).toContain("esm2_t36_3B_UR50D");
    // A real run from the consumer project, with the repo's Python and test model.
    const out = join(project, "out");
    const run = await sh(
      ["bunx", "--no-install", "embed", "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", out, "--model", TEST_MODEL],
      project,
      { EMBED_PYTHON: pythonBin() },
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).records).toBe(6);
  });

  test("import { embed } from the package in the consumer project embeds the bundled example on the CPU", async () => {
    // A consumer's script: the package's own API, its bundled example FASTA, the test model.
    writeFileSync(
      join(project, "use.ts"),
      `import { embed } from "embed";
import { join } from "node:path";
const fasta = join(import.meta.dir, "node_modules", "embed", "examples", "example.fasta");
const got = [];
for await (const x of embed(fasta, { model: process.argv[2], devices: "cpu", layers: "0,-1", include: "mean" })) {
  got.push({ id: x.id, index: x.index, layer: x.layer, kind: x.kind, type: x.vector.constructor.name, length: x.vector.length, finite: x.vector.every(Number.isFinite) });
}
console.log(JSON.stringify({ resolved: import.meta.resolve("embed"), got }));
`,
    );
    const r = await sh(["bun", "use.ts", TEST_MODEL], project, { EMBED_PYTHON: pythonBin() });
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    const { resolved, got } = JSON.parse(r.stdout) as {
      resolved: string;
      got: { id: string; index: number; layer: number; kind: string; type: string; length: number; finite: boolean }[];
    };
    // The import went through the consumer's node_modules, not the repo's sources.
    expect(resolved).toEndWith("/node_modules/embed/src/index.ts");
    const ids = readFileSync(join(PACKAGE_ROOT, "examples", "example.fasta"), "utf8").split("\n").filter((l) => l.startsWith(">")).map((l) => l.slice(1).split(/\s/)[0]!);
    expect(ids.length).toBe(6);
    // Every record once per layer (test-tiny: 2 layers, width 64), mean-pooled float32 vectors.
    expect(got.length).toBe(ids.length * 2);
    expect([...new Set(got.map((x) => x.layer))].sort()).toEqual([0, 2]);
    for (const layer of [0, 2]) {
      const rows = got.filter((x) => x.layer === layer).sort((a, b) => a.index - b.index);
      expect(rows.map((x) => x.id)).toEqual(ids);
    }
    expect(got.every((x) => x.kind === "mean" && x.type === "Float32Array" && x.length === 64 && x.finite)).toBe(true);
  });

  test("bun run embed inside the repo; each command's help shows examples", async () => {
    const r = await sh(["bun", "run", "--silent", "embed", "run", "--help"], PACKAGE_ROOT);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Examples:");
    const v = await sh(["bun", "run", "--silent", "embed", "validate", "--help"], PACKAGE_ROOT);
    expect(v.stdout).toContain("Examples:");
  });
});
