/**
 * `bunx embed` and `import { embed } from "embed-fasta"` from projects that depend on this package
 * (a link to this checkout, and the packed tarball), the tarball's contents, the first use of an
 * installed package without a Python with torch (the error, then `embed setup`), and `bun run
 * embed` inside the repo. No EMBED_PYTHON anywhere: the package finds its Python itself.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { consumerMachine, pack, sh } from "./consumer.ts";

setDefaultTimeout(180_000);
const project = mkdtempSync(join(tmpdir(), "embed-consumer-"));
afterAll(() => rmSync(project, { recursive: true, force: true }));


/** The repo's bundled test model (the installed package does not ship .models). */
const TEST_MODEL = join(PACKAGE_ROOT, ".models", "test-tiny.pt");

beforeAll(async () => {
  // `bun add link:PATH`, as the README says for a checkout: a link, so nothing of the checkout is copied.
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  const install = await sh(["bun", "add", `link:${PACKAGE_ROOT}`], project);
  expect(install.code).toBe(0);
  expect(lstatSync(join(project, "node_modules", "embed-fasta")).isSymbolicLink()).toBe(true);
});

describe("bunx embed", () => {
  test("linked from its checkout into another project, the bin runs with the checkout's Python", async () => {
    const help = await sh(["bunx", "--no-install", "embed", "--help"], project);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("run");
    expect(help.stdout).toContain("validate");
    expect(help.stdout).toMatch(/^Examples:\n {2}embed run /m);
    const models = await sh(["bunx", "--no-install", "embed", "models", "--json"], project);
    expect(models.code).toBe(0);
    expect(JSON.parse(models.stdout).map((m: { name: string }) => m.name)).toContain("esm2_t36_3B_UR50D");
    // A real run from the consumer project: the checkout's .venv found by the package itself.
    const out = join(project, "out");
    const run = await sh(["bunx", "--no-install", "embed", "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", out, "--model", TEST_MODEL], project);
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

/**
 * The tarball `bun pm pack` makes, installed into a project on a machine whose only Python is
 * `python3` on PATH (a shim, so the test decides whether it has torch) and whose HOME is empty.
 */
describe("the packed tarball in another project", () => {
  const root = mkdtempSync(join(tmpdir(), "embed-tarball-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  /** HOME and PATH of that machine (`userEnv()`): python3 from a shim dir, Bun, the system. Nothing else set. */
  const { home, app, env: userEnv, python3 } = consumerMachine(root);
  let tgz = "";

  test("the tarball holds only what runs; bun pm pack and npm pack agree", async () => {
    tgz = await pack(root);
    expect(tgz).toEndWith("embed-fasta-0.1.0.tgz");
    const list = await sh(["tar", "tzf", tgz], root);
    const files = list.stdout.trim().split("\n").map((f) => f.replace(/^package\//, ""));
    const npm = await sh(["npm", "pack", "--dry-run", "--json"], PACKAGE_ROOT);
    expect(npm.code).toBe(0);
    const npmFiles = (JSON.parse(npm.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const listed of [files, npmFiles]) {
      for (const need of ["package.json", "README.md", "src/cli.ts", "src/index.ts", "py/embed_worker/worker.py", "py/requirements.txt", "py/pyproject.toml", "scripts/setup-python", "examples/example.fasta"]) {
        expect(listed).toContain(need);
      }
      const extra = listed.filter((f) => !/^(src|py\/embed_worker)\//.test(f) && !["package.json", "README.md", "py/requirements.txt", "py/pyproject.toml", "scripts/setup-python", "examples/example.fasta"].includes(f));
      expect(extra).toEqual([]);
      expect(listed.filter((f) => /(^|\/)(\.venv|\.git|out|test|tests|bench|dev|docs|\.models|node_modules|__pycache__)\//.test(f))).toEqual([]);
    }
    expect(new Set(npmFiles)).toEqual(new Set(files));
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
    const add = await sh(["bun", "add", tgz], app, userEnv());
    expect(add.code).toBe(0);
    expect(JSON.parse(readFileSync(join(app, "package.json"), "utf8")).dependencies["embed-fasta"]).toContain(".tgz");
  });

  test("first use with a python3 that has no torch: one error naming that Python and `embed setup`", async () => {
    expect(tgz).not.toBe("");
    // -S: no site-packages, so this python3 has no torch on any machine.
    const base = (await sh(["python3", "-c", "import sys; print(sys.executable)"], root)).stdout.trim();
    python3(base, "-S");
    const r = await sh(["bunx", "--no-install", "embed", "run", "node_modules/embed-fasta/examples/example.fasta", "-o", "out0", "--model", TEST_MODEL], app, userEnv());
    expect(r.code).toBe(4);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`No module named 'torch' in ${base}`);
    expect(r.stderr).toMatch(/hint: run `?embed setup`? once/);
    expect(r.stderr).not.toContain("see the worker log above");
  });

  test("embed setup with a python3 that has torch and the requirements uses it; then embed run needs no variable", async () => {
    expect(tgz).not.toBe("");
    python3(pythonBin()); // the checkout's Python: torch and the worker's requirements
    const setup = await sh(["bunx", "--no-install", "embed", "setup"], app, userEnv());
    expect(setup.stderr).toContain("python ready: python3");
    expect(setup.code).toBe(0);
    const venv = join(home, ".cache", "embed", "venv");
    expect(JSON.parse(setup.stdout)).toEqual({ python: "python3", venv });
    expect(existsSync(venv)).toBe(false); // nothing to install, so no venv made
    // The test model went beside the installed package, where `--model test-tiny` looks.
    expect(existsSync(join(app, "node_modules", "embed-fasta", ".models", "test-tiny.pt"))).toBe(true);
    const run = await sh(["bunx", "--no-install", "embed", "run", "node_modules/embed-fasta/examples/example.fasta", "-o", "out", "--model", "test-tiny"], app, userEnv());
    expect(run.stderr).not.toContain("ERROR");
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).records).toBe(6);
  });

  test("import { embed } from the package in the consumer project embeds the bundled example on the CPU", async () => {
    expect(tgz).not.toBe(""); // the tarball test above made and installed it
    // A consumer's script: the package's own API, its bundled example FASTA, the test model.
    writeFileSync(
      join(app, "use.ts"),
      `import { embed } from "embed-fasta";
import { join } from "node:path";
const fasta = join(import.meta.dir, "node_modules", "embed-fasta", "examples", "example.fasta");
const got = [];
for await (const x of embed(fasta, { model: process.argv[2], devices: "cpu", layers: "0,-1", include: "mean" })) {
  got.push({ id: x.id, index: x.index, layer: x.layer, kind: x.kind, type: x.vector.constructor.name, length: x.vector.length, finite: x.vector.every(Number.isFinite) });
}
console.log(JSON.stringify({ resolved: import.meta.resolve("embed-fasta"), got }));
`,
    );
    const r = await sh(["bun", "use.ts", "test-tiny"], app, userEnv());
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    const { resolved, got } = JSON.parse(r.stdout) as {
      resolved: string;
      got: { id: string; index: number; layer: number; kind: string; type: string; length: number; finite: boolean }[];
    };
    // The import went through the consumer's node_modules, not the repo's sources.
    expect(resolved).toEndWith("/node_modules/embed-fasta/src/index.ts");
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

});
