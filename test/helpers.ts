/** Test helpers: start fake or real workers, check processes are gone, list a table's ids. */
import { afterAll, expect } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import type { RecordTable } from "../src/input/records.ts";
import { defaultTransport } from "../src/config.ts";
import type { WorkerWireConfig } from "../src/protocol.ts";
import { WorkerHandle } from "../src/workers/handle.ts";

export const FAKE_DIR = join(PACKAGE_ROOT, "test", "workers");

export function fakeConfig(name: string, over: Partial<WorkerWireConfig> = {}): WorkerWireConfig {
  return { name, model: "fake", family: "esm2", device: "cpu", precision: "fp32", layers: [-1], include: ["mean"], outDtype: "float32", maxTokens: 4096, slots: 2, transport: defaultTransport(), ...over };
}

/** A fake worker (stdlib Python, real protocol); `fake` sets its behaviour (see fake_worker.py). */
export function startFake(name: string, fake: Record<string, unknown> = {}, over: Partial<WorkerWireConfig> = {}): Promise<WorkerHandle> {
  return WorkerHandle.start({
    python: "python3",
    pythonPath: FAKE_DIR,
    module: "fake_worker",
    config: fakeConfig(name, over),
    env: { ...(process.env as Record<string, string>), EMBED_FAKE: JSON.stringify(fake) },
    readyTimeoutMs: 20_000,
  });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Residue tokens from a string over the ESM alphabet (standard residues only). */
export function toks(seq: string): Uint8Array {
  const order = "LAGVSERTIDPKQNFYMHWCXBUZO.-";
  return Uint8Array.from(seq, (c) => 4 + order.indexOf(c));
}

export const realPython = pythonBin;

/** Every id of `table`, in order, as strings (one string per record: tests only). */
export function idsOf(table: RecordTable): string[] {
  return Array.from({ length: table.size }, (_, i) => table.id(i));
}

/** Run `cmd` to its end: exit code, stdout and stderr as text. */
export async function runText(cmd: string[], env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/**
 * Where the worker's ESM-2 registry (py/embed_worker/esm2/registry.py) finds model `name`: its
 * path, or null where it raises ModelNotFound. `env` over this process's, EMBED_MODEL_DIR unset;
 * run in `cwd`. Nothing on stderr, exit 0.
 */
export function workerResolves(name: string, env: Record<string, string>, cwd: string): string | null {
  const script = [
    "import json",
    "from embed_worker.esm2 import registry",
    "from embed_worker.errors import ModelNotFound",
    "try:",
    `    print(json.dumps(registry.resolve(${JSON.stringify(name)}).path))`,
    "except ModelNotFound:",
    "    print('null')",
  ].join("\n");
  const e: Record<string, string | undefined> = { ...process.env, PYTHONPATH: join(PACKAGE_ROOT, "py"), ...env };
  delete e.EMBED_MODEL_DIR;
  const p = Bun.spawnSync([pythonBin(), "-c", script], { env: e, cwd });
  expect(p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
  return JSON.parse(p.stdout.toString());
}

/** `text` holds every one of `words` (a string, after `sub`, or a pattern) and none of `absent` (taken as written). */
export function expectWords(text: string, words: readonly (string | RegExp)[], absent: readonly (string | RegExp)[] = [], sub = (s: string) => s): void {
  for (const w of words) {
    if (typeof w === "string") expect(text).toContain(sub(w));
    else expect(text).toMatch(w);
  }
  for (const w of absent) {
    if (typeof w === "string") expect(text).not.toContain(w);
    else expect(text).not.toMatch(w);
  }
}

/** A FASTA of `n` random protein records (`rec0`, `rec1`, ...; 5-64 residues), the same for a seed. */
export function randomFasta(n: number, seed = 7): string {
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
  const aa = "ACDEFGHIKLMNPQRSTVWY";
  let text = "";
  for (let i = 0; i < n; i++) {
    const len = 5 + Math.floor(rnd() * 60);
    text += `>rec${i} some description\n${Array.from({ length: len }, () => aa[Math.floor(rnd() * 20)]).join("")}\n`;
  }
  return text;
}

/** A store's content: ids and every array, each as a hash of its bytes. */
export function storeContent(out: string): Record<string, string> {
  const files = readdirSync(out).filter((f) => f.endsWith(".npy") || f === "ids.txt").sort();
  return Object.fromEntries(files.map((f) => [f, Bun.hash(readFileSync(join(out, f))).toString()]));
}

/** The environment of a CLI run whose workers are fake ones with behaviour `fake` (fake_worker.py). */
export function fakeRunEnv(fake: Record<string, unknown> = {}, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...(process.env as Record<string, string>),
    NO_COLOR: "1",
    EMBED_PYTHON: "python3",
    EMBED_WORKER_MODULE: "fake_worker",
    EMBED_WORKER_PYTHONPATH: FAKE_DIR,
    EMBED_FAKE: JSON.stringify({ slowMs: 50, ...fake }),
    ...extra,
  };
}

/** A scratch directory removed after the file's tests, and `file(content, name?)` writing one
 * file into it (named f0.fa, f1.fa, ... unless named) and returning its path. */
export function scratchFiles(prefix: string): { dir: string; file: (content: string | Uint8Array, name?: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const file = (content: string | Uint8Array, name = `f${n++}.fa`) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  return { dir, file };
}
