/**
 * One writer per store: `OUT/.embed-lock`, created atomically (O_EXCL) before a run, a merge or
 * a conversion writes anything else into OUT, and removed on every way out (return, error,
 * SIGINT/SIGTERM drain, and `process.exit` through the exit hook below). It holds who wrote it
 * (pid, host, start time, command), so a second writer is refused with its holder named.
 *
 * A lock whose process is gone (same host, pid not alive: a kill -9, a power cut) is stale and
 * taken over with a log line, so the same command still resumes after a crash. A lock from
 * another host cannot be checked from here: it is reported with the hint to remove it if that
 * job is gone (a shared filesystem between cluster nodes).
 */
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { OutputError } from "../errors.ts";
import { log } from "../log.ts";

export const LOCK = ".embed-lock";

/** A lock file without readable content this old (ms) was left by a writer that died while
 * creating it (the content is written right after the O_EXCL create, in one write). */
const TORN_LOCK_MS = 5_000;

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the holder took the lock. */
  since: string;
  command: string;
  /** Tells this holder from a later one with the same pid. */
  token: string;
}

/** Locks held by this process: removed by the exit hook if `release` was not reached. */
const held = new Set<StoreLock>();
let hooked = false;

export class StoreLock {
  readonly path: string;
  readonly holder: LockHolder;
  private released = false;
  constructor(path: string, holder: LockHolder) {
    this.path = path;
    this.holder = holder;
  }
  /** Remove the lock if it is still this process's own (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    held.delete(this);
    if (readHolder(this.path)?.token === this.holder.token) rmSync(this.path, { force: true });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // alive, another user's
  }
}

function readRaw(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function parseHolder(raw: string | undefined): LockHolder | undefined {
  if (!raw) return undefined;
  try {
    const h = JSON.parse(raw) as LockHolder;
    return typeof h.pid === "number" && typeof h.host === "string" ? h : undefined;
  } catch {
    return undefined;
  }
}

export const readHolder = (path: string): LockHolder | undefined => parseHolder(readRaw(path));

function describe(h: LockHolder): string {
  return `pid ${h.pid} on ${h.host}, since ${h.since}${h.command ? ` (${h.command})` : ""}`;
}

/** Create the lock file with O_EXCL; false if it exists. */
function tryCreate(path: string, holder: LockHolder): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new OutputError(`cannot create the lock ${path}: ${(e as Error).message}`, "check that the output directory is writable", e);
  }
  try {
    const bytes = new TextEncoder().encode(JSON.stringify(holder) + "\n");
    writeSync(fd, bytes, 0, bytes.length, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** Remove a stale lock only if it still holds what was judged stale (another process taking it
 * over at the same moment may already have replaced it with its own). */
function removeIfUnchanged(path: string, raw: string | undefined): void {
  if (readRaw(path) === raw) rmSync(path, { force: true });
}

/**
 * Take the lock of store directory `dir` (which exists) for `command`, or throw OutputError (exit
 * 6) naming who holds it.
 */
export function lockStore(dir: string, command: string): StoreLock {
  const path = join(dir, LOCK);
  const me: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), command, token: `${process.pid}-${crypto.randomUUID()}` };
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryCreate(path, me)) {
      // A takeover racing with another one: whoever's content is in the file holds the lock.
      if (readHolder(path)?.token !== me.token) continue;
      const lock = new StoreLock(path, me);
      held.add(lock);
      if (!hooked) {
        hooked = true;
        process.on("exit", () => {
          for (const l of [...held]) l.release();
        });
      }
      return lock;
    }
    const raw = readRaw(path);
    const other = parseHolder(raw);
    if (!other) {
      let age = 0;
      try {
        age = Date.now() - statSync(path).mtimeMs;
      } catch {
        continue; // released meanwhile: try again
      }
      if (age < TORN_LOCK_MS) throw busy(dir, path, `another embed process (its lock ${path} is being written)`);
      log.warn(`${path} is unreadable and ${Math.round(age / 1000)} s old, left by a writer that died while taking it: taking it over`);
      removeIfUnchanged(path, raw);
      continue;
    }
    if (other.host === me.host && !pidAlive(other.pid)) {
      log.warn(`${path} was left by ${describe(other)}, which is no longer running: taking it over`);
      removeIfUnchanged(path, raw);
      continue;
    }
    throw busy(dir, path, describe(other), other.host !== me.host);
  }
  throw busy(dir, path, "another embed process (the lock changed hands while this one tried to take it)");
}

function busy(dir: string, path: string, who: string, otherHost = false): OutputError {
  return new OutputError(
    `${dir} is in use by another embed process: ${who}`,
    otherHost
      ? `wait for that job to finish, or choose another output directory; if that job is gone (its host cannot be checked from here), remove ${path}`
      : `wait for it to finish (rerun the same command then: it resumes or finds the store complete), or choose another output directory`,
  );
}
