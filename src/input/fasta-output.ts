/**
 * FASTA files that `embed translate` writes: buffered, streamed, and atomic. A file is written as
 * `PATH.partial` and renamed to PATH only once complete, so a failed or killed run never leaves a
 * file that looks complete (a `.partial` may stay behind after a kill; the next run replaces it).
 * `-` is standard output (written as it goes; nothing to rename).
 */
import type { FileSink } from "bun";
import { existsSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { OptionsError, OutputError } from "../errors.ts";

/** Suffix of a file being written. */
export const PARTIAL = ".partial";

/** Bytes buffered before a write (fewer, larger writes; memory stays at about this much per file). */
const BUFFER = 1 << 20;

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
 * Refuse outputs that would lose data or cannot be written, before anything is read: two outputs
 * on stdout or on one file, an output that is an input (even with `overwrite`), an existing file
 * without `overwrite`, a directory, a missing parent directory. `names` are the options' names for
 * messages, e.g. `--peptides`.
 */
export function checkOutputs(outputs: { name: string; path: string }[], inputs: string[], overwrite: boolean): void {
  const stdout = outputs.filter((o) => o.path === "-");
  if (stdout.length > 1) {
    throw new OptionsError(`${stdout.map((o) => o.name).join(" and ")} are both '-': only one output can go to standard output`, "write the other to a file");
  }
  const inputIds = new Map(inputs.filter((i) => i !== "-").flatMap((i) => [[resolve(i), i] as const, [identity(i) ?? `path:${resolve(i)}`, i] as const]));
  const seen = new Map<string, string>();
  for (const { name, path } of outputs) {
    if (path === "-") continue;
    const keys = [resolve(path), identity(path) ?? `path:${resolve(path)}`];
    const input = keys.map((k) => inputIds.get(k)).find((i) => i !== undefined);
    if (input !== undefined) throw new OptionsError(`${name} ${path} is the input ${input}`, "write the output to another file; an input is never overwritten");
    const other = keys.map((k) => seen.get(k)).find((o) => o !== undefined);
    if (other !== undefined) throw new OptionsError(`${name} and ${other} are the same file (${path})`, "give each output its own path");
    for (const k of keys) seen.set(k, name);
    let isDir = false;
    try {
      isDir = statSync(path).isDirectory();
    } catch {}
    if (isDir) throw new OutputError(`${name} ${path} is a directory`, "give a file path, e.g. DIR/out.faa");
    if (!overwrite && existsSync(path)) throw new OutputError(`${name} ${path} already exists`, "choose another path, or pass --overwrite to replace it");
    const parent = dirname(resolve(path));
    if (!existsSync(parent)) throw new OutputError(`${name} ${path}: directory ${parent} does not exist`, `create it first (mkdir -p ${parent})`);
  }
}

/** One output FASTA being written; {@link finish} then {@link publish} make it appear, {@link discard} removes it. */
export class FastaOutput {
  private readonly sink: FileSink;
  private readonly partial: string | undefined;
  private parts: string[] = [];
  private buffered = 0;
  /** Characters written (ASCII sequences and ids: bytes, but for non-ASCII ids). */
  written = 0;

  constructor(readonly path: string) {
    if (path === "-") {
      this.sink = Bun.stdout.writer();
      return;
    }
    this.partial = path + PARTIAL;
    try {
      rmSync(this.partial, { force: true });
      this.sink = Bun.file(this.partial).writer({ highWaterMark: BUFFER });
    } catch (e) {
      throw this.failed(e);
    }
  }

  /** Add one record (the text is joined and written once {@link BUFFER} characters are waiting). */
  record(id: string, sequence: string): void {
    const text = `>${id}\n${sequence}\n`;
    this.parts.push(text);
    this.buffered += text.length;
  }

  /** Write what is buffered once enough is; resolves when the sink has taken it (backpressure). */
  async drain(force = false): Promise<void> {
    if (this.buffered === 0 || (!force && this.buffered < BUFFER)) return;
    const text = this.parts.join("");
    this.parts = [];
    this.written += this.buffered;
    this.buffered = 0;
    try {
      this.sink.write(text);
      await this.sink.flush();
    } catch (e) {
      throw this.failed(e);
    }
  }

  /** Write the rest and close (`PATH.partial` is then complete; {@link publish} names it PATH). */
  async finish(): Promise<void> {
    await this.drain(true);
    try {
      if (this.partial === undefined) await this.sink.flush();
      else await this.sink.end();
    } catch (e) {
      throw this.failed(e);
    }
  }

  /** Rename the finished `PATH.partial` to PATH (one rename: the file appears whole or not at all). */
  publish(): void {
    if (this.partial === undefined) return;
    try {
      renameSync(this.partial, this.path);
    } catch (e) {
      throw this.failed(e);
    }
  }

  /** Close and remove `PATH.partial` (after an error); never throws. */
  async discard(): Promise<void> {
    this.parts = [];
    try {
      if (this.partial === undefined) await this.sink.flush();
      else await this.sink.end();
    } catch {}
    if (this.partial !== undefined) rmSync(this.partial, { force: true });
  }

  private failed(e: unknown): OutputError {
    const what = this.partial ?? "standard output";
    return new OutputError(`cannot write ${what}: ${(e as Error).message}`, "check free space and permissions of the output's directory", e);
  }
}
