/**
 * Ring files left by workers that were killed between creating their ring and the orchestrator
 * mapping (and unlinking) it. Rings are sized for a whole batch of outputs (GBs on a GPU), so a
 * run removes the ones whose worker process no longer exists before starting its own.
 */
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { log } from "../log.ts";

/** Worker ring files are named `embed-ring-<pid>-<worker>` (test fakes: `embed-ring-fake-<pid>`). */
const RING = /^embed-ring-(?:fake-)?(\d+)(?:-|$)/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove ring files in `dir` whose worker is gone; returns the names removed. */
export function sweepStaleRings(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = RING.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      rmSync(join(dir, name), { force: true });
      removed.push(name);
    } catch {}
  }
  if (removed.length) log.info(`removed ${removed.length} ring file(s) of workers that no longer exist from ${dir}`);
  return removed;
}
