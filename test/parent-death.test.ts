/** A real worker does not outlive its orchestrator: `kill -9` of bun alone takes the worker with it
 * (py/embed_worker/lifeline.py: PR_SET_PDEATHSIG, the parent pid check, the parent watch). */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { isAlive, randomFasta } from "./helpers.ts";

const hasTiny = existsSync(join(PACKAGE_ROOT, ".models", "test-tiny.pt"));

/** Alive and not a zombie waiting for a reaper (a reaped or zombie process runs nothing). */
function running(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

/** The embed_worker child of `parent` once it runs its own threads (past the lifeline set-up), else null. */
function startedWorker(parent: number): number | null {
  const ps = Bun.spawnSync(["ps", "-o", "pid=,nlwp=,args=", "--ppid", String(parent)]).stdout.toString();
  for (const line of ps.split("\n")) {
    const [pid, threads] = line.trim().split(/\s+/);
    if (line.includes("embed_worker") && Number(threads) >= 2) return Number(pid);
  }
  return null;
}

async function waitFor<T>(what: string, deadlineMs: number, probe: () => T | null): Promise<T> {
  const end = performance.now() + deadlineMs;
  for (;;) {
    const v = probe();
    if (v !== null) return v;
    if (performance.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe.skipIf(process.platform !== "linux" || !hasTiny)("orchestrator killed with SIGKILL", () => {
  test("its worker exits within 2 s", async () => {
    const dir = mkdtempSync(join(tmpdir(), "embed-orphan-"));
    try {
      writeFileSync(join(dir, "in.fa"), randomFasta(20_000));
      const cli = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(dir, "in.fa"), "-o", join(dir, "out"),
        "--model", "test-tiny", "--devices", "cpu"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
      const worker = await waitFor("the worker to start", 60_000, () => startedWorker(cli.pid));
      expect(running(worker)).toBe(true);
      cli.kill("SIGKILL");
      await cli.exited;
      await waitFor(`worker ${worker} to exit`, 2_000, () => (running(worker) ? null : true));
      expect(running(worker)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
