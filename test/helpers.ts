/** Test helpers: start fake or real workers, check processes are gone, list a table's ids. */
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import type { RecordTable } from "../src/records.ts";
import { defaultTransport } from "../src/transport.ts";
import { WorkerHandle, type WorkerWireConfig } from "../src/worker.ts";

export const FAKE_DIR = join(PACKAGE_ROOT, "test", "workers");

export function fakeConfig(name: string, over: Partial<WorkerWireConfig> = {}): WorkerWireConfig {
  return { name, model: "fake", device: "cpu", precision: "fp32", layers: [-1], include: ["mean"], outDtype: "float32", maxTokens: 4096, slots: 2, transport: defaultTransport(), ...over };
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
