/**
 * The files `embed validate` writes (--report JSON and its .txt, --html): checked before the run
 * starts, so a bad path fails in a second rather than after the reference run, and written
 * atomically (a temporary file beside the target, then one rename): a reader never sees half a
 * report, and a failed write leaves the previous file as it was.
 */
import { renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { OptionsError, OutputError } from "../errors.ts";

/** (device, inode) of an existing path, to tell whether two names are one file; undefined if none. */
function identity(path: string): string | undefined {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * Refuse a report path that is an input (by name or by inode: a link or another spelling of it),
 * a directory, or in a directory that does not exist. An existing report is replaced. `flag`
 * names the option in messages, e.g. `--html`.
 */
export function checkReportPath(flag: string, path: string, inputs: readonly string[]): void {
  const id = identity(path);
  for (const input of inputs) {
    if (input === "-") continue;
    if (resolve(input) === resolve(path) || (id !== undefined && identity(input) === id)) {
      throw new OptionsError(`${flag} ${path} is the input ${input}`, "write the report to another file; an input is never overwritten");
    }
  }
  let isDir = false;
  try {
    isDir = statSync(path).isDirectory();
  } catch {}
  if (isDir) throw new OutputError(`${flag} ${path} is a directory`, `give a file path, e.g. ${path.replace(/\/+$/, "")}/validate${flag === "--html" ? ".html" : ".json"}`);
  const parent = dirname(resolve(path));
  if (identity(parent) === undefined) throw new OutputError(`${flag} ${path}: directory ${parent} does not exist`, `create it first (mkdir -p ${parent})`);
}

/** Write `text` to `path` through `.NAME.PID.tmp` beside it and one rename. */
export function writeAtomic(flag: string, path: string, text: string): void {
  const tmp = resolve(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new OutputError(`${flag} ${path}: cannot write: ${(e as Error).message}`, "check the path and the free space, then rerun", e);
  }
}
