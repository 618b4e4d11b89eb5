/**
 * All input records, compactly: ids in input order, residue tokens in large shared chunks, and
 * per-record lengths after truncation. Planning needs every length before the first batch
 * (length-sorted packing is global), so records are indexed once; tokens live in a few big
 * buffers instead of millions of small arrays.
 */
import { InputError, type InputLocation } from "./errors.ts";

/** Bytes per token chunk; a record never spans chunks. */
const CHUNK_BYTES = 16 << 20;

export interface IngestRecord {
  id: string;
  tokens: Uint8Array;
  file: string;
  line: number;
}

export interface RecordsSummary {
  records: number;
  /** Residues kept, after truncation. */
  residues: number;
  truncated: number;
  longest: number;
  renamed: number;
}

export class RecordTable {
  readonly ids: string[] = [];
  private readonly chunks: Uint8Array[] = [];
  /** Bytes used in each closed chunk. */
  private readonly chunkEnd: number[] = [];
  private chunkUsed = 0;
  private lens = new Uint32Array(1024);
  private chunkOf = new Uint32Array(1024);
  private offsetOf = new Uint32Array(1024);
  private readonly seen = new Map<string, InputLocation>();
  residues = 0;
  truncated = 0;
  longest = 0;
  renamed = 0;

  /**
   * @param crossFileIds check ids across inputs (the reader already checks within one file, so a
   * single input skips this map and its cost)
   */
  constructor(
    readonly truncate: number,
    readonly duplicateIds: "error" | "rename",
    readonly crossFileIds = true,
  ) {}

  get size(): number {
    return this.ids.length;
  }

  /** Add one record; throws InputError on a duplicate id (unless renaming). */
  add(r: IngestRecord): void {
    let id = r.id;
    const prev = this.crossFileIds ? this.seen.get(id) : undefined;
    if (prev) {
      if (this.duplicateIds === "error") {
        throw new InputError(
          `duplicate id "${id}" (first seen at ${prev.file}:${prev.line})`,
          { file: r.file, line: r.line, recordId: id },
          "make ids unique, or pass --duplicate-ids rename to keep both as ID, ID_2, ...",
        );
      }
      for (let k = 2; ; k++) {
        const candidate = `${r.id}_${k}`;
        if (!this.seen.has(candidate)) {
          id = candidate;
          break;
        }
      }
      this.renamed++;
    }
    if (this.crossFileIds) this.seen.set(id, { file: r.file, line: r.line });
    let len = r.tokens.length;
    if (len > this.truncate) {
      len = this.truncate;
      this.truncated++;
    }
    const i = this.ids.length;
    this.grow(i + 1);
    let chunk = this.chunks[this.chunks.length - 1];
    if (!chunk || this.chunkUsed + len > chunk.length) {
      if (chunk) this.chunkEnd.push(this.chunkUsed);
      chunk = new Uint8Array(Math.max(CHUNK_BYTES, len));
      this.chunks.push(chunk);
      this.chunkUsed = 0;
    }
    chunk.set(len === r.tokens.length ? r.tokens : r.tokens.subarray(0, len), this.chunkUsed);
    this.chunkOf[i] = this.chunks.length - 1;
    this.offsetOf[i] = this.chunkUsed;
    this.lens[i] = len;
    this.chunkUsed += len;
    this.ids.push(id);
    this.residues += len;
    if (len > this.longest) this.longest = len;
  }

  /** Residue tokens kept for record `i` (a view; no BOS/EOS). */
  tokens(i: number): Uint8Array {
    const chunk = this.chunks[this.chunkOf[i]!]!;
    const o = this.offsetOf[i]!;
    return chunk.subarray(o, o + this.lens[i]!);
  }

  /** A new table with records `indices` of this one, in that order (ids and kept tokens). */
  subset(indices: ArrayLike<number>): RecordTable {
    const t = new RecordTable(this.truncate, this.duplicateIds, false);
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      t.add({ id: this.ids[i]!, tokens: this.tokens(i), file: "", line: 0 });
    }
    return t;
  }

  /** Residues kept per record, in input order. */
  lengths(): Uint32Array {
    return this.lens.subarray(0, this.ids.length);
  }

  /**
   * sha256 over the kept content, in order: every id (newline-separated), every length, every
   * token. Identifies the input content, not its bytes (compression and line wrapping do not
   * matter). Computed in bulk at the end: per-record hasher calls cost more than the reading.
   */
  digest(): string {
    const h = new Bun.CryptoHasher("sha256");
    for (let i = 0; i < this.ids.length; i += 65536) h.update(this.ids.slice(i, i + 65536).join("\n") + "\n");
    const lens = this.lengths();
    h.update(new Uint8Array(lens.buffer, lens.byteOffset, lens.byteLength));
    this.chunks.forEach((c, k) => h.update(k === this.chunks.length - 1 ? c.subarray(0, this.chunkUsed) : c.subarray(0, this.chunkEnd[k])));
    return h.digest("hex");
  }

  /** The id map is only needed while reading; free it before the long GPU phase. */
  sealed(): this {
    this.seen.clear();
    return this;
  }

  summary(): RecordsSummary {
    return { records: this.size, residues: this.residues, truncated: this.truncated, longest: this.longest, renamed: this.renamed };
  }

  private grow(n: number): void {
    if (n <= this.lens.length) return;
    const cap = Math.max(n, this.lens.length * 2);
    for (const key of ["lens", "chunkOf", "offsetOf"] as const) {
      const next = new Uint32Array(cap);
      next.set(this[key]);
      this[key] = next;
    }
  }
}
