/**
 * Shards: the unit of commit of a run. A shard holds the outputs of some records, in the order
 * their batches finished: `NNNNNN.index.u32` (input indices of its records) and one raw
 * little-endian file per output (`NNNNNN.mean.layer33.f32`, `.residues.…` rows in record order).
 * Files are written as `*.partial`, fsynced and renamed; `NNNNNN.meta.json` (sizes and CRC-32 of
 * every file) is written atomically last and is the commit point. Anything without a meta file
 * is not committed and is removed on resume.
 *
 * Checksums guard against torn and damaged files, not against tampering: CRC-32 (chained over the
 * appends) costs 0.9 ms per 6.3 MiB batch where sha256 cost 4.9 ms of the orchestrator's one
 * thread (measured on a 2-core VM, docs/PERFORMANCE.md). Shards committed with sha256 (stores from earlier versions) are
 * still verified with sha256.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmdirSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { OutputError } from "../errors.ts";
import { DTYPE_BYTES, type OutDtype, type OutputKind } from "../protocol.ts";
import type { BatchResult } from "../protocol.ts";
import { hashFile } from "./verify.ts";

export interface ShardSpec {
  dim: number;
  layers: readonly number[];
  include: readonly OutputKind[];
  dtype: OutDtype;
  /** Residues kept per record (input order). */
  lengths: Uint32Array;
}

export interface FileMeta {
  bytes: number;
  /** CRC-32 of the file, 8 hex digits. */
  crc32?: string;
  /** sha256 of the file (shards written by earlier versions). */
  sha256?: string;
}

export interface ShardMeta {
  shard: number;
  records: number;
  residues: number;
  files: Record<string, FileMeta>;
}

export const INDEX_FILE = "index.u32";
export const outputFile = (kind: OutputKind, layer: number, dtype: OutDtype) => `${kind}.layer${layer}.${dtype === "float32" ? "f32" : "f16"}`;
export const shardName = (k: number) => String(k).padStart(6, "0");
/** A file a ShardWriter writes (committed or `.partial`): the only names in shards/ embed removes. */
const SHARD_FILE = /^\d{6}\./;

/**
 * Remove the shard files of `dir`, then `dir` itself if that left it empty. Returns what is left
 * (files embed did not write, which it never deletes).
 */
export function removeShards(dir: string): string[] {
  if (!existsSync(dir)) return [];
  for (const n of readdirSync(dir)) if (SHARD_FILE.test(n)) rmSync(join(dir, n), { force: true });
  const left = readdirSync(dir);
  if (left.length === 0) rmdirSync(dir);
  return left;
}

/** Write all of `bytes` at `position` (explicit positions: a batch rolled back by truncation leaves
 * no gap before the next one). */
function writeAll(fd: number, bytes: Uint8Array, what: string, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done, bytes.length - done, position + done);
    } catch (e) {
      throw new OutputError(`writing ${what} failed: ${(e as Error).message}`, "check free space and permissions of the output directory; rerun the same command to resume", e);
    }
  }
}

interface OpenFile {
  fd: number;
  bytes: number;
  crc: number;
}

/** Appends finished batches to one shard until `commit`. */
export class ShardWriter {
  readonly shard: number;
  private readonly dir: string;
  private readonly spec: ShardSpec;
  private readonly files = new Map<string, OpenFile>();
  private recordCount = 0;
  private residueCount = 0;
  private closed = false;
  /** A failed batch could not be rolled back: the shard must be dropped, never committed. */
  broken = false;

  constructor(dir: string, shard: number, spec: ShardSpec) {
    this.dir = dir;
    this.shard = shard;
    this.spec = spec;
    mkdirSync(dir, { recursive: true });
    const names = [INDEX_FILE, ...spec.layers.flatMap((l) => spec.include.map((k) => outputFile(k, l, spec.dtype)))];
    for (const name of names) {
      const path = this.path(name, true);
      try {
        this.files.set(name, { fd: openSync(path, "w"), bytes: 0, crc: 0 });
      } catch (e) {
        throw new OutputError(`cannot create ${path}: ${(e as Error).message}`, "check that the output directory is writable", e);
      }
    }
  }

  get records(): number {
    return this.recordCount;
  }

  private path(name: string, partial: boolean): string {
    return join(this.dir, `${shardName(this.shard)}.${name}${partial ? ".partial" : ""}`);
  }

  private append(name: string, bytes: Uint8Array): void {
    const f = this.files.get(name)!;
    writeAll(f.fd, bytes, this.path(name, true), f.bytes);
    f.crc = Bun.hash.crc32(bytes, f.crc);
    f.bytes += bytes.length;
  }

  /**
   * Append one batch: `records[i]` is the input index of the batch's i-th sequence. All or
   * nothing: every output is checked before anything is written, and a write that fails (a full
   * disk) truncates every file back to where the batch began, so the shard stays committable
   * without it. Only if that rollback fails too is the shard dropped (`broken`; its batches are
   * redone on resume).
   */
  appendBatch(records: Uint32Array, result: BatchResult): void {
    const rowBytes = this.spec.dim * DTYPE_BYTES[this.spec.dtype];
    let residues = 0;
    for (const r of records) residues += this.spec.lengths[r]!;
    const writes: [string, Uint8Array][] = [];
    for (const out of result.outputs) {
      const rows = out.kind === "residues" ? residues : records.length;
      if (out.rows !== rows) throw new OutputError(`batch ${result.batch}: ${out.rows} ${out.kind} rows, expected ${rows}`, "the worker returned a wrong count; this is a bug, please report it");
      const name = outputFile(out.kind, out.layer, out.dtype);
      if (!this.files.has(name)) throw new OutputError(`worker sent ${name}, which this store does not hold`, "this is a bug, please report it");
      writes.push([name, new Uint8Array(out.data.buffer, out.data.byteOffset, rows * rowBytes)]);
    }
    writes.push([INDEX_FILE, new Uint8Array(records.buffer, records.byteOffset, records.byteLength)]);
    const before = new Map([...this.files].map(([name, f]) => [name, { bytes: f.bytes, crc: f.crc }]));
    try {
      for (const [name, bytes] of writes) this.append(name, bytes);
    } catch (e) {
      try {
        for (const [name, f] of this.files) {
          const b = before.get(name)!;
          ftruncateSync(f.fd, b.bytes);
          f.bytes = b.bytes;
          f.crc = b.crc;
        }
      } catch {
        this.broken = true;
      }
      throw e;
    }
    this.recordCount += records.length;
    this.residueCount += residues;
  }

  /** fsync, rename into place, then write the meta file: from here on the shard is committed. */
  commit(): ShardMeta {
    const meta: ShardMeta = { shard: this.shard, records: this.recordCount, residues: this.residueCount, files: {} };
    for (const [name, f] of this.files) {
      fsyncSync(f.fd);
      closeSync(f.fd);
      renameSync(this.path(name, true), this.path(name, false));
      meta.files[name] = { bytes: f.bytes, crc32: crcHex(f.crc) };
    }
    fsyncDir(this.dir); // the renamed files before the meta file that commits them
    this.closed = true;
    writeAtomicFile(join(this.dir, `${shardName(this.shard)}.meta.json`), JSON.stringify(meta) + "\n");
    return meta;
  }

  /** Drop an uncommitted shard. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [name, f] of this.files) {
      try {
        closeSync(f.fd);
      } catch {}
      rmSync(this.path(name, true), { force: true });
    }
  }
}

/** Committed shards found in `dir`, each verified: every file present, sizes and checksums equal. */
export function scanShards(dir: string, spec: ShardSpec, records: number): { metas: ShardMeta[]; done: Uint8Array; removed: string[] } {
  const done = new Uint8Array(records);
  const metas: ShardMeta[] = [];
  const removed: string[] = [];
  if (!existsSync(dir)) return { metas, done, removed };
  const names = readdirSync(dir);
  const committed = new Set<string>();
  for (const name of names.filter((n) => n.endsWith(".meta.json")).sort()) {
    let meta: ShardMeta;
    try {
      meta = JSON.parse(readFileSync(join(dir, name), "utf8")) as ShardMeta;
    } catch {
      throw new OutputError(`shard record ${join(dir, name)} is unreadable`, "the store is damaged; remove that file (its shard is redone) or use another -o");
    }
    const prefix = name.slice(0, -".meta.json".length);
    verifyShard(dir, prefix, meta, spec);
    const idx = readIndex(join(dir, `${prefix}.${INDEX_FILE}`));
    for (const r of idx) {
      if (r >= records) throw new OutputError(`shard ${prefix} holds record ${r}, but the input has ${records}`, "the store does not belong to this input; use another -o");
      if (done[r]) throw new OutputError(`record ${r} is in two committed shards (${prefix} and an earlier one)`, "the store is corrupt; remove it or use another -o");
      done[r] = 1;
    }
    metas.push(meta);
    committed.add(name);
    for (const f of Object.keys(meta.files)) committed.add(`${prefix}.${f}`);
  }
  for (const n of names) {
    // Only shard files (NNNNNN.*) are embed's to remove; anything else in shards/ is left alone.
    if (!committed.has(n) && SHARD_FILE.test(n)) {
      rmSync(join(dir, n), { force: true });
      removed.push(n);
    }
  }
  return { metas, done, removed };
}

function verifyShard(dir: string, prefix: string, meta: ShardMeta, spec: ShardSpec): void {
  const rowBytes = spec.dim * DTYPE_BYTES[spec.dtype];
  const expect: Record<string, number> = { [INDEX_FILE]: meta.records * 4 };
  for (const l of spec.layers) for (const k of spec.include) expect[outputFile(k, l, spec.dtype)] = (k === "residues" ? meta.residues : meta.records) * rowBytes;
  for (const [name, bytes] of Object.entries(expect)) {
    const f = meta.files[name];
    const path = join(dir, `${prefix}.${name}`);
    const hint = "the store is damaged or from other options; remove that shard's files to redo them, or use another -o";
    if (!f || f.bytes !== bytes) throw new OutputError(`shard ${prefix}: ${name} should hold ${bytes} bytes, its record says ${f?.bytes}`, hint);
    if (!existsSync(path) || Bun.file(path).size !== bytes) throw new OutputError(`shard ${prefix}: ${path} is missing or has the wrong size`, hint);
    const ok = f.crc32 !== undefined ? crc32File(path) === f.crc32 : f.sha256 !== undefined && sha256File(path) === f.sha256;
    if (!ok) throw new OutputError(`shard ${prefix}: ${path} does not match its checksum`, hint);
  }
}

const crcHex = (crc: number) => (crc >>> 0).toString(16).padStart(8, "0");

/** Feed a file to `eat` in 8 MiB pieces with one reused buffer. */
function streamFile(path: string, eat: (piece: Uint8Array) => void): void {
  const buf = new Uint8Array(8 << 20);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      eat(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/** CRC-32 of a file, 8 hex digits (as ShardWriter records it). */
export function crc32File(path: string): string {
  let crc = 0;
  streamFile(path, (piece) => {
    crc = Bun.hash.crc32(piece, crc);
  });
  return crcHex(crc);
}

/** sha256 of a file, hex (shards of earlier versions). */
export function sha256File(path: string): string {
  return hashFile(path).sha256;
}

export function readIndex(path: string): Uint32Array {
  const bytes = readFileSync(path);
  return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Make a directory's entries (files renamed into it) durable: a rename is only as safe as the
 * directory that holds it. Where directories cannot be fsynced, nothing more can be done. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Write a file atomically: temp file, fsync, rename, fsync of the directory. `content` may be
 * pieces, written as they come (so a large file, such as ids.txt, is never joined in memory).
 */
export function writeAtomicFile(path: string, content: string | Uint8Array | Iterable<Uint8Array>): void {
  const tmp = `${path}.partial`;
  const pieces = typeof content === "string" ? [new TextEncoder().encode(content)] : content instanceof Uint8Array ? [content] : content;
  try {
    const fd = openSync(tmp, "w");
    try {
      let at = 0;
      for (const piece of pieces) {
        writeAll(fd, piece, tmp, at);
        at += piece.length;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncDir(dirname(path));
  } catch (e) {
    if (e instanceof OutputError) throw e;
    throw new OutputError(`cannot write ${path}: ${(e as Error).message}`, "check free space and permissions of the output directory", e);
  }
}
