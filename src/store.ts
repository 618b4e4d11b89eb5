/**
 * The output store (layout version 1): a directory that NumPy users read with no embed code.
 *
 *   OUT/manifest.json            written last, atomically; its presence means "complete"
 *   OUT/ids.txt                  one id per line, in input order
 *   OUT/mean.layer{L}.npy        [records, dim]       (likewise bos.layer{L}.npy)
 *   OUT/residues.layer{L}.npy    [residues, dim]      per-residue rows, BOS/EOS excluded
 *   OUT/residues.offsets.npy     [records + 1] int64  rows of record i: offsets[i]..offsets[i+1]
 *
 * Rows are written in input order at their final place (pwrite), whatever order batches finish
 * in. Files are written as `*.partial`, fsynced and renamed; the manifest goes last. A crash
 * therefore never leaves a store that looks complete.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { OutputError } from "./errors.ts";
import { npyHeader, type NpyDescr } from "./npy.ts";
import { DTYPE_BYTES, type OutDtype, type OutputKind } from "./protocol.ts";
import type { BatchResult } from "./worker.ts";

export const STORE_FORMAT = "embed-store";
export const STORE_VERSION = 1;
export const MANIFEST = "manifest.json";

export interface StoreSpec {
  records: number;
  dim: number;
  layers: readonly number[];
  include: readonly OutputKind[];
  dtype: OutDtype;
  /** Residues kept per record (after truncation); needed for per-residue output. */
  lengths: Uint32Array;
}

interface ArrayFile {
  name: string;
  fd: number;
  dataStart: number;
}

const arrayName = (kind: OutputKind, layer: number) => `${kind}.layer${layer}.npy`;

export class StoreWriter {
  readonly dir: string;
  private readonly spec: StoreSpec;
  private readonly files = new Map<string, ArrayFile>();
  private readonly residueStart: Float64Array | undefined;
  private readonly written: Uint8Array;
  private writtenCount = 0;
  private closed = false;

  /** Fails early if `dir` holds a complete store and `overwrite` is not set. */
  static checkTarget(dir: string, overwrite: boolean): void {
    if (existsSync(join(dir, MANIFEST)) && !overwrite) {
      throw new OutputError(`${dir} already holds a complete store`, "choose another -o, or pass --overwrite to replace it");
    }
  }

  /** Refuses a directory that already holds a complete store, unless `overwrite`. */
  static create(dir: string, spec: StoreSpec, opts: { overwrite: boolean }): StoreWriter {
    StoreWriter.checkTarget(dir, opts.overwrite);
    try {
      mkdirSync(dir, { recursive: true });
      // Replacing a store: it stops looking complete before any of its files change.
      rmSync(join(dir, MANIFEST), { force: true });
    } catch (e) {
      throw new OutputError(`cannot create output directory ${dir}: ${(e as Error).message}`, "check the path and its permissions", e);
    }
    return new StoreWriter(dir, spec);
  }

  private constructor(dir: string, spec: StoreSpec) {
    this.dir = dir;
    this.spec = spec;
    this.written = new Uint8Array(spec.records);
    const descr: NpyDescr = spec.dtype === "float32" ? "<f4" : "<f2";
    let totalResidues = 0;
    if (spec.include.includes("residues")) {
      this.residueStart = new Float64Array(spec.records + 1);
      for (let i = 0; i < spec.records; i++) this.residueStart[i + 1] = this.residueStart[i]! + spec.lengths[i]!;
      totalResidues = this.residueStart[spec.records]!;
    }
    for (const layer of spec.layers) {
      for (const kind of spec.include) {
        const rows = kind === "residues" ? totalResidues : spec.records;
        this.openArray(arrayName(kind, layer), descr, [rows, spec.dim]);
      }
    }
  }

  private openArray(name: string, descr: NpyDescr, shape: number[]): ArrayFile {
    const path = join(this.dir, `${name}.partial`);
    try {
      const fd = openSync(path, "w");
      const header = npyHeader(descr, shape);
      writeSync(fd, header, 0, header.length, 0);
      const f = { name, fd, dataStart: header.length };
      this.files.set(name, f);
      return f;
    } catch (e) {
      throw new OutputError(`cannot write ${path}: ${(e as Error).message}`, "check free space and permissions of the output directory", e);
    }
  }

  /** Write one batch's outputs; `records[i]` is the input index of the batch's i-th sequence. */
  writeBatch(records: Uint32Array, result: BatchResult): void {
    const { dim } = this.spec;
    const esize = DTYPE_BYTES[this.spec.dtype];
    const rowBytes = dim * esize;
    for (const out of result.outputs) {
      const f = this.files.get(arrayName(out.kind, out.layer));
      if (!f) throw new OutputError(`worker sent ${out.kind} for layer ${out.layer}, which this store does not hold`);
      const bytes = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
      if (out.kind === "residues") {
        let row = 0;
        for (const rec of records) {
          const n = this.spec.lengths[rec]!;
          this.pwrite(f, bytes, row * rowBytes, n * rowBytes, f.dataStart + this.residueStart![rec]! * rowBytes);
          row += n;
        }
        if (row !== out.rows) throw new OutputError(`batch ${result.batch}: ${out.rows} residue rows for ${row} residues`);
      } else {
        if (out.rows !== records.length) throw new OutputError(`batch ${result.batch}: ${out.rows} rows for ${records.length} records`);
        for (let i = 0; i < records.length; i++) {
          this.pwrite(f, bytes, i * rowBytes, rowBytes, f.dataStart + records[i]! * rowBytes);
        }
      }
    }
    for (const rec of records) {
      if (this.written[rec]) throw new OutputError(`record ${rec} was written twice`, "this is a bug in embed's planner; please report it");
      this.written[rec] = 1;
      this.writtenCount++;
    }
  }

  private pwrite(f: ArrayFile, bytes: Uint8Array, offset: number, length: number, position: number): void {
    let done = 0;
    while (done < length) {
      try {
        done += writeSync(f.fd, bytes, offset + done, length - done, position + done);
      } catch (e) {
        throw new OutputError(`writing ${join(this.dir, f.name)} failed: ${(e as Error).message}`, "check free space on the output disk", e);
      }
    }
  }

  get recordsWritten(): number {
    return this.writtenCount;
  }

  /** Check counts, write ids and offsets, fsync, rename into place, then the manifest. */
  commit(ids: readonly string[], manifest: Record<string, unknown>): void {
    if (this.writtenCount !== this.spec.records) {
      const missing: number[] = [];
      for (let i = 0; i < this.spec.records && missing.length < 5; i++) if (!this.written[i]) missing.push(i);
      throw new OutputError(
        `count mismatch: ${this.spec.records} records in, ${this.writtenCount} embedded (first missing: ${missing.map((i) => ids[i]).join(", ")})`,
        "this is a bug; the store was not committed",
      );
    }
    if (this.residueStart) {
      const f = this.openArray("residues.offsets.npy", "<i8", [this.spec.records + 1]);
      const data = new BigInt64Array(this.spec.records + 1);
      for (let i = 0; i <= this.spec.records; i++) data[i] = BigInt(this.residueStart[i]!);
      this.pwrite(f, new Uint8Array(data.buffer), 0, data.byteLength, f.dataStart);
    }
    const idsFile = join(this.dir, "ids.txt");
    writeAtomic(idsFile, ids.length ? ids.join("\n") + "\n" : "");
    for (const f of this.files.values()) {
      fsyncSync(f.fd);
      closeSync(f.fd);
      renameSync(join(this.dir, `${f.name}.partial`), join(this.dir, f.name));
    }
    this.closed = true;
    const files = { ids: "ids.txt", arrays: [...this.files.keys()].sort() };
    writeAtomic(join(this.dir, MANIFEST), JSON.stringify({ format: STORE_FORMAT, version: STORE_VERSION, ...manifest, files }, null, 2) + "\n");
  }

  /** Remove partial files (after a failure); a previous complete store is left untouched. */
  abort(): void {
    if (this.closed) return;
    for (const f of this.files.values()) {
      try {
        closeSync(f.fd);
      } catch {}
      rmSync(join(this.dir, `${f.name}.partial`), { force: true });
    }
    this.closed = true;
    try {
      if (readdirSync(this.dir).length === 0) rmSync(this.dir, { recursive: true });
    } catch {}
  }
}

/** Write a small file atomically: temp file, fsync, rename. */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
