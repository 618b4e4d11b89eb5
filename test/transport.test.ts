/**
 * The data transport: the choice (made once, in config.ts through transport.ts), and the real
 * worker end to end over the unix-socket fallback, whose store must equal the shm run's.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, resolveConfig } from "../src/config.ts";
import { OptionsError } from "../src/errors.ts";
import { chooseTransport, defaultTransport } from "../src/config.ts";

setDefaultTimeout(120_000);

const tmp = mkdtempSync(join(tmpdir(), "embed-transport-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const EXAMPLE = join(PACKAGE_ROOT, "examples", "example.fasta");

describe("transport choice", () => {
  test("shm when the directory is writable, else socket", () => {
    expect(defaultTransport(tmp)).toBe("shm");
    expect(defaultTransport(join(tmp, "missing"))).toBe("socket");
    expect(defaultTransport(EXAMPLE)).toBe("socket"); // a file, not a directory
    expect(chooseTransport(undefined, join(tmp, "missing"))).toBe("socket");
    expect(chooseTransport("auto", tmp)).toBe("shm");
    expect(chooseTransport("socket", tmp)).toBe("socket");
    expect(chooseTransport("shm", join(tmp, "missing"))).toBe("shm");
    expect(() => chooseTransport("pigeon")).toThrow('unknown transport "pigeon"');
  });
  test("config: the option wins, then EMBED_TRANSPORT, then the default; a bad value is an option error", () => {
    const base = { inputs: ["x.fa"], dry: true };
    expect(resolveConfig(base, { EMBED_TRANSPORT: "socket" }).transport).toBe("socket");
    expect(resolveConfig({ ...base, transport: "shm" }, { EMBED_TRANSPORT: "socket" }).transport).toBe("shm");
    expect(resolveConfig({ ...base, transport: "auto" }, { EMBED_TRANSPORT: "socket" }).transport).toBe("socket");
    expect(resolveConfig(base, {}).transport).toBe(defaultTransport());
    expect(() => resolveConfig(base, { EMBED_TRANSPORT: "udp" })).toThrow(OptionsError);
  });
});

/** Parse a little-endian .npy written by the store: descr, shape, raw bytes, float32 view. */
function readNpy(path: string): { descr: string; shape: number[]; bytes: Uint8Array; data: Float32Array } {
  const buf = readFileSync(path);
  const major = buf[6]!;
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + hlen;
  const header = buf.subarray(major === 1 ? 10 : 12, start).toString("latin1");
  const descr = header.match(/'descr': '([^']+)'/)![1]!;
  const shape = [...header.match(/'shape': \(([^)]*)\)/)![1]!.matchAll(/\d+/g)].map((m) => Number(m[0]));
  const bytes = buf.subarray(start);
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return { descr, shape, bytes: new Uint8Array(copy), data: new Float32Array(descr === "<f4" ? copy : new ArrayBuffer(0)) };
}

async function run(transport: string, out: string): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", EXAMPLE, "-o", out, "--model", "test-tiny", "--include", "mean,per-residue"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", EMBED_TRANSPORT: transport },
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited, new Response(proc.stdout).text()]);
  return { code, stderr };
}

describe("embed run over the socket transport (real worker, test model)", () => {
  test("the store equals the shm run's (mean vectors within 1e-6), and no socket file is left", async () => {
    const t0 = Date.now() - 1000;
    const shmOut = join(tmp, "shm");
    const sockOut = join(tmp, "socket");
    const [a, b] = await Promise.all([run("shm", shmOut), run("socket", sockOut)]);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(a.stderr).toContain('"transport":"shm"');
    expect(b.stderr).toContain('"transport":"socket"');
    const files = readdirSync(shmOut).filter((f) => f.endsWith(".npy")).sort();
    expect(files).toContain("mean.layer2.npy");
    expect(readdirSync(sockOut).filter((f) => f.endsWith(".npy")).sort()).toEqual(files);
    expect(readFileSync(join(sockOut, "ids.txt"), "utf8")).toBe(readFileSync(join(shmOut, "ids.txt"), "utf8"));
    for (const f of files) {
      const x = readNpy(join(shmOut, f));
      const y = readNpy(join(sockOut, f));
      expect([y.descr, y.shape]).toEqual([x.descr, x.shape]);
      if (x.descr !== "<f4") {
        expect(Buffer.from(y.bytes).equals(Buffer.from(x.bytes))).toBe(true); // offsets: exact
        continue;
      }
      let maxDiff = 0;
      for (let i = 0; i < x.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x.data[i]! - y.data[i]!));
      expect({ f, maxDiff: maxDiff <= 1e-6 }).toEqual({ f, maxDiff: true });
    }
    const mean = readNpy(join(sockOut, "mean.layer2.npy"));
    expect(mean.shape[0]).toBe(6);
    expect(mean.data.some((v) => v !== 0)).toBe(true);
    // The worker unlinks its socket once the orchestrator connects.
    const left = readdirSync(tmpdir()).filter((f) => f.startsWith("embed-data-") && statSync(join(tmpdir(), f)).mtimeMs >= t0);
    expect(left).toEqual([]);
    expect(existsSync(join(sockOut, "manifest.json"))).toBe(true);
  });
});

describe("stale ring files", () => {
  test("rings of dead workers are removed, live ones and other files kept", async () => {
    const { mkdtempSync, writeFileSync, readdirSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { sweepStaleRings } = await import("../src/workers/rings.ts");
    const dir = mkdtempSync(join(tmpdir(), "embed-rings-"));
    const dead = Bun.spawnSync(["true"]).pid; // exited, reaped
    for (const n of [`embed-ring-${dead}-cuda_0`, `embed-ring-fake-${dead}`, `embed-ring-${process.pid}-cpu`, "other-file"]) writeFileSync(join(dir, n), "x");
    expect(sweepStaleRings(dir).sort()).toEqual([`embed-ring-${dead}-cuda_0`, `embed-ring-fake-${dead}`].sort());
    expect(readdirSync(dir).sort()).toEqual([`embed-ring-${process.pid}-cpu`, "other-file"].sort());
  });
});
