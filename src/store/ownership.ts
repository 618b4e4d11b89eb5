/**
 * embed never deletes or overwrites a file it did not create. A store directory is marked as
 * embed's (`OUT/.embed-store`) before embed writes anything else there; from then on the names a
 * store consists of (store.ts: ids.txt, manifest.json, run.json, shards/, the arrays its manifest
 * lists) are embed's, and `--overwrite` replaces only those. A directory without the mark that
 * holds a file of one of those names is someone else's: refused (exit 6) with the file named.
 * An input inside the output directory is refused before anything is written (exit 2), so that
 * no run can delete or overwrite its own input.
 *
 * Stores written before the mark existed (manifest.json of format embed-store, or run.json of
 * format embed-run) are recognised as embed's and marked.
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { OptionsError, OutputError } from "../errors.ts";
import { lockStore, type StoreLock } from "./lock.ts";

export const MARKER = ".embed-store";

/** Names an embed store may hold at its top level (besides the arrays, matched by ARRAY). */
const STORE_NAMES = ["ids.txt", "manifest.json", "run.json", "shards"];
/** The arrays a store holds: `mean.layer33.npy`, `residues.offsets.npy`, ... */
export const ARRAY = /^(?:(?:mean|bos|residues)\.layer\d+|residues\.offsets)\.npy$/;
/** What `--format` writes into the store directory by default (formats.ts, convert.py). */
const FORMAT_NAMES: Record<string, (name: string) => boolean> = {
  hdf5: (n) => n === "embeddings.h5",
  parquet: (n) => n.endsWith(".parquet"),
  virnucpro: (n) => n === "virnucpro",
};

function readJson(path: string): { format?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/** Whether `dir` is an embed store: marked, or written by a version from before the mark. */
export function isEmbedStore(dir: string): boolean {
  if (existsSync(join(dir, MARKER))) return true;
  return readJson(join(dir, "manifest.json"))?.format === "embed-store" || readJson(join(dir, "run.json"))?.format === "embed-run";
}

/** The first entry of `dir` (not an embed store) that embed would write over, if any. */
export function foreignEntry(dir: string, formats: readonly string[] = []): string | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return undefined; // absent: nothing to hit
  }
  const base = (n: string) => (n.endsWith(".partial") ? n.slice(0, -".partial".length) : n);
  const ours = (n: string) => STORE_NAMES.includes(n) || ARRAY.test(n) || formats.some((f) => FORMAT_NAMES[f]?.(n));
  return names.find((n) => ours(base(n)));
}

/** Throw if an input file is inside `out` (or is `out`); realpaths, so `-o .` and links count. */
export function checkInputsOutside(out: string, inputs: readonly string[], what = "input"): void {
  const real = (p: string) => {
    // The output may not exist yet: the realpath of its nearest existing ancestor, plus the rest.
    let head = resolve(p);
    const rest: string[] = [];
    while (!existsSync(head) && dirname(head) !== head) {
      rest.unshift(basename(head));
      head = dirname(head);
    }
    return join(realpathSync(head), ...rest);
  };
  const o = real(out);
  for (const input of inputs) {
    if (input === "-" || !existsSync(input)) continue;
    const i = real(input);
    const rel = relative(o, i);
    if (rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep))) {
      throw new OptionsError(
        `the ${what} ${input} is inside the output directory ${out}`,
        `choose an output directory that holds none of the ${what}s (a new or empty one), or move the ${what} out of it: embed writes and removes files there`,
      );
    }
  }
}

/** This process's command line as a user typed it, for the lock (at most 300 characters). */
export function commandLine(): string {
  const line = ["embed", ...process.argv.slice(2)].join(" ");
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

export interface ClaimOptions {
  /** What the command writes beside the npy store (`--format`), for the check of foreign files. */
  formats?: readonly string[];
  /** Files the command reads, which must not be inside the output directory. */
  inputs?: readonly string[];
  /** What the inputs are called in the message ("input", "store"). */
  inputWhat?: string;
  /** Recorded in the lock (who holds it): the command line. */
  command: string;
}

/**
 * Make `dir` this process's store to write: inputs outside it, not someone else's directory,
 * marked as embed's (first of all), locked against a second writer. Call `release()` on the lock when done.
 */
export function claimOutput(dir: string, opts: ClaimOptions): StoreLock {
  checkInputsOutside(dir, opts.inputs ?? [], opts.inputWhat);
  if (existsSync(dir) && !statSync(dir).isDirectory()) {
    throw new OutputError(`${dir} is a file, not a directory`, "choose a new or empty directory for the output");
  }
  if (!isEmbedStore(dir)) {
    const hit = foreignEntry(dir, opts.formats);
    if (hit) {
      throw new OutputError(
        `${join(dir, hit)} exists and was not written by embed (${dir} is not an embed store); embed never overwrites files it did not create`,
        "choose an empty or new output directory",
      );
    }
  }
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new OutputError(`cannot create output directory ${dir}: ${(e as Error).message}`, "check the path and its permissions", e);
  }
  markStore(dir);
  return lockStore(dir, opts.command);
}

/** Write the mark (O_EXCL: two writers starting together both find it written, neither tears it). */
function markStore(dir: string): void {
  const marker = join(dir, MARKER);
  let fd: number;
  try {
    fd = openSync(marker, "wx");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return;
    throw new OutputError(`cannot write ${marker}: ${(e as Error).message}`, "check that the output directory is writable", e);
  }
  try {
    const text = JSON.stringify({ format: "embed-store-marker", note: "an embed store: embed replaces only the files it wrote here", createdAt: new Date().toISOString() }) + "\n";
    const bytes = new TextEncoder().encode(text);
    writeSync(fd, bytes, 0, bytes.length, 0);
  } finally {
    closeSync(fd);
  }
}
