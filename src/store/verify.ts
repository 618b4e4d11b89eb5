/**
 * Damage is always noticed: a complete store's manifest records the size and SHA-256 of every
 * file it consists of (`files.checksums`), and whatever reads a store checks what it reads.
 *
 * - `checkStore`: sizes, .npy headers (dtype and shape agree with the manifest and the record
 *   count) and the ids line count, always (cheap: headers, and one pass over ids.txt); with
 *   `verify`, the SHA-256 of every file too (a full read: about 1.3 GB/s on one core here).
 * - `VerifiedReader`: reads a file at increasing offsets (as `embed merge` streams a slice),
 *   hashing the bytes it hands out, and `finish` compares size and checksum before the reader's
 *   output is committed.
 *
 * Stores written before checksums were recorded stay readable: their sizes and headers are
 * checked, and `checksums` says "none".
 */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { OutputError } from "../errors.ts";
import { parseNpyHeader } from "./npy.ts";

/** One file of a complete store, as its manifest records it. */
export interface FileChecksum {
  bytes: number;
  sha256: string;
}

/** A file of a store that is not what its manifest says. */
export interface Damage {
  file: string;
  problem: string;
}

/** The parts of a manifest the checks need. */
export interface CheckedManifest {
  dtype?: string;
  model?: { dim?: number };
  counts?: { records?: number; residues?: number };
  files?: { ids?: string; arrays?: string[]; checksums?: Record<string, FileChecksum> };
}

export const DAMAGED_HINT = "the store is damaged; rerun the `embed run` (or `embed merge`) that wrote it, with --overwrite";
export const OFFSETS_FILE = "residues.offsets.npy";
const DESCR: Record<string, string> = { float32: "<f4", float16: "<f2" };
const ITEM: Record<string, number> = { "<f4": 4, "<f2": 2, "<i8": 8 };
const PIECE = 1 << 20;

/** SHA-256 and size of a file, optionally counting its lines (`\n`); one pass, 1 MiB at a time. */
export function hashFile(path: string, opts: { from?: number; hasher?: Bun.CryptoHasher } = {}): FileChecksum & { lines: number; lastByte: number } {
  const h = opts.hasher ?? new Bun.CryptoHasher("sha256");
  const { bytes, lines, lastByte } = scan(path, opts.from ?? 0, h);
  return { bytes, sha256: h.digest("hex"), lines, lastByte };
}

/** Lines of a file (counting `\n`) and whether it ends with one, without hashing. */
function countLines(path: string): { lines: number; lastByte: number } {
  return scan(path, 0, undefined);
}

/** One pass over a file from byte `from`, 1 MiB at a time: its size, `\n` count and last byte (-1 if none read); each piece also goes to `hasher`. */
function scan(path: string, from: number, hasher: Bun.CryptoHasher | undefined): { bytes: number; lines: number; lastByte: number } {
  const fd = openSync(path, "r");
  const buf = new Uint8Array(PIECE);
  let at = from;
  let lines = 0;
  let lastByte = -1;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, at);
      if (n === 0) break;
      const piece = buf.subarray(0, n);
      hasher?.update(piece);
      for (let i = piece.indexOf(10); i >= 0; i = piece.indexOf(10, i + 1)) lines++;
      lastByte = piece[n - 1]!;
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return { bytes: at, lines, lastByte };
}

/** What an array of the store must be: its dtype and shape from the manifest. */
function expectedArray(m: CheckedManifest, file: string): { descr: string; shape: number[] } | undefined {
  const records = m.counts?.records;
  const dim = m.model?.dim;
  if (records === undefined) return undefined;
  if (file === OFFSETS_FILE) return { descr: "<i8", shape: [records + 1] };
  const kind = /^(mean|bos|residues)\.layer-?\d+\.npy$/.exec(file)?.[1];
  const descr = DESCR[m.dtype ?? ""];
  if (!kind || dim === undefined || !descr) return undefined;
  const residues = m.counts?.residues;
  if (kind === "residues" && residues === undefined) return undefined;
  return { descr, shape: [kind === "residues" ? residues! : records, dim] };
}

/** The header of a .npy against what the manifest implies; "" when it agrees. */
function checkNpy(path: string, size: number, want: { descr: string; shape: number[] } | undefined): string {
  const head = new Uint8Array(Math.min(size, 4096));
  const fd = openSync(path, "r");
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const h = parseNpyHeader(head);
  if (!h) return size === 0 ? "is empty (0 bytes)" : "has no valid .npy header";
  if (want && (h.descr !== want.descr || h.shape.join() !== want.shape.join())) {
    return `has header [${h.shape.join(", ")}] ${h.descr}; the manifest implies [${want.shape.join(", ")}] ${want.descr}`;
  }
  const dataBytes = h.shape.reduce((a, x) => a * x, 1) * (ITEM[h.descr] ?? 0);
  if (ITEM[h.descr] && size !== h.dataStart + dataBytes) {
    return `is ${size} bytes; its header [${h.shape.join(", ")}] ${h.descr} needs ${h.dataStart + dataBytes}${size < h.dataStart + dataBytes ? " (truncated)" : ""}`;
  }
  return "";
}

export interface StoreCheck {
  damaged: Damage[];
  /** none: the manifest records no checksums (an older store); recorded: not read; verified: all matched. */
  checksums: "none" | "recorded" | "verified";
}

/**
 * Check every file of the complete store in `dir` against its manifest: present, the recorded
 * size, a .npy header agreeing with the manifest (dtype, shape from the record and residue counts)
 * and with the file's size, one id per record; with `verify`, the SHA-256 of each file too.
 */
export function checkStore(dir: string, m: CheckedManifest, opts: { verify?: boolean } = {}): StoreCheck {
  const damaged: Damage[] = [];
  const sums = m.files?.checksums;
  const ids = m.files?.ids ?? "ids.txt";
  const files = [ids, ...(m.files?.arrays ?? [])];
  for (const file of files) {
    const path = join(dir, file);
    const bad = (problem: string) => damaged.push({ file, problem });
    if (!existsSync(path)) {
      bad("is missing (listed in the manifest)");
      continue;
    }
    try {
      const size = statSync(path).size;
      const want = sums?.[file];
      if (want && size !== want.bytes) bad(`is ${size} bytes; the manifest recorded ${want.bytes}${size < want.bytes ? " (truncated)" : ""}`);
      else if (file === ids) {
        const records = m.counts?.records;
        const scan = opts.verify && want ? hashFile(path) : countLines(path);
        if (records !== undefined && scan.lines !== records) bad(`holds ${scan.lines} ids; the manifest says ${records} records`);
        else if (scan.lastByte !== -1 && scan.lastByte !== 10) bad("does not end with a newline (truncated?)");
        else if ("sha256" in scan && scan.sha256 !== want!.sha256) bad("has a SHA-256 other than the one the manifest recorded (its bytes changed)");
      } else {
        const problem = checkNpy(path, size, expectedArray(m, file));
        if (problem) bad(problem);
        else if (opts.verify && want && hashFile(path).sha256 !== want.sha256) bad("has a SHA-256 other than the one the manifest recorded (its bytes changed)");
      }
    } catch (e) {
      bad(`is unreadable: ${(e as Error).message}`);
    }
  }
  if (sums) for (const file of files) if (!sums[file] && !damaged.some((d) => d.file === file)) damaged.push({ file, problem: "has no checksum in the manifest (the manifest was edited?)" });
  return { damaged, checksums: !sums ? "none" : opts.verify ? "verified" : "recorded" };
}

/** The error for a damaged store: every damaged file named, with what is wrong. */
export function damagedError(dir: string, damaged: Damage[], hint = DAMAGED_HINT): OutputError {
  const list = damaged.map((d) => `${join(dir, d.file)} ${d.problem}`).join("; ");
  return new OutputError(`damaged store ${dir}: ${list}`, hint);
}

/**
 * Reads a store file at increasing offsets, hashing every byte from the start (bytes it skips
 * over are read and hashed too), so a consumer that streams a file once checks it as it goes;
 * `finish` hashes the rest and throws an OutputError naming the file when its size or
 * SHA-256 differs from `want` (no check when the manifest recorded none).
 */
export class VerifiedReader {
  readonly fd: number;
  private readonly hasher = new Bun.CryptoHasher("sha256");
  private hashedTo = 0;
  constructor(
    readonly path: string,
    private readonly want: FileChecksum | undefined,
    private readonly hint = DAMAGED_HINT,
  ) {
    try {
      this.fd = openSync(path, "r");
    } catch (e) {
      throw new OutputError(`cannot read ${path}: ${(e as Error).message}`, hint, e);
    }
  }

  /** Exactly `bytes` bytes at `at`; a file that ends early is damage, named. */
  readAt(bytes: number, at: number): Uint8Array {
    if (at > this.hashedTo) this.readAt(at - this.hashedTo, this.hashedTo); // hash the gap
    const buf = new Uint8Array(bytes);
    let done = 0;
    while (done < bytes) {
      const n = readSync(this.fd, buf, done, bytes - done, at + done);
      if (n === 0) throw new OutputError(`${this.path} is shorter than its header says (truncated at ${at + done} bytes)`, this.hint);
      done += n;
    }
    const end = at + bytes;
    if (end > this.hashedTo) {
      this.hasher.update(buf.subarray(this.hashedTo - at));
      this.hashedTo = end;
    }
    return buf;
  }

  /** Hash the rest of the file and compare with the manifest's record of it. */
  finish(): void {
    if (!this.want) return;
    const rest = hashFile(this.path, { from: this.hashedTo, hasher: this.hasher });
    if (rest.bytes !== this.want.bytes) throw new OutputError(`${this.path} is ${rest.bytes} bytes; the manifest recorded ${this.want.bytes}`, this.hint);
    if (rest.sha256 !== this.want.sha256) throw new OutputError(`${this.path} has a SHA-256 other than the one the manifest recorded (its bytes changed)`, this.hint);
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {}
  }
}

/** Yields `pieces` unchanged while hashing them: a file's checksum as it is written. */
export function* hashing(pieces: Iterable<Uint8Array>, out: { sum?: FileChecksum }): Generator<Uint8Array> {
  const h = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  for (const p of pieces) {
    h.update(p);
    bytes += p.length;
    yield p;
  }
  out.sum = { bytes, sha256: h.digest("hex") };
}
