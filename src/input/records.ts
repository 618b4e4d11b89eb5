/**
 * All input records, compactly: ids in input order, residue tokens in large shared chunks, and
 * per-record lengths after truncation. Tokens are one byte each (ESM-2's 33-token alphabet) or,
 * for a table made with `width` 2, two (DNABERT-S's 4,096 BPE ids); lengths count tokens. Planning needs every length before the first batch
 * (length-sorted packing is global), so records are indexed once; tokens live in a few big
 * buffers instead of millions of small arrays, and ids live as bytes in an {@link IdIndex}
 * (the same index that catches repeated ids while reading), not as millions of JS strings.
 *
 * The reader fills the table through {@link RecordTable.parserOptions} (the parser hands over
 * token ranges, no record objects); {@link RecordTable.add} takes one record object at a time.
 */
import { InputError } from "../errors.ts";
import type { FastaParserOptions, RecordSink } from "./fasta-parser.ts";
import type { InputDigest } from "./fasta.ts";
import { IdIndex } from "./id-index.ts";
import { type OnRename, PendingRenames, type Rename } from "./renames.ts";

/**
 * Bytes per token chunk; a record never spans chunks. Large typed arrays are mapped lazily, so
 * a small table costs only the pages it writes, not the whole chunk.
 */
const CHUNK_BYTES = 16 << 20;
/** Initial record capacity (untouched capacity costs address space only, not memory). */
const INITIAL_RECORDS = 1 << 20;
const NO_TOKENS = new Uint8Array(0);

/** One record's tokens, no framing: bytes for ESM-2, 16-bit BPE ids for DNABERT-S. */
export type Tokens = Uint8Array | Uint16Array;
/** Renames listed by name in the summary and manifest (the rest are counted). */
export const RENAMES_LISTED = 10;

export interface IngestRecord {
  id: string;
  tokens: Tokens;
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
  /** Tokens that are the tokenizer's [UNK] (DNABERT-S tables only: ESM-2 refuses unknown letters). */
  unknown?: number;
  /** The first {@link RENAMES_LISTED} renames (`--duplicate-ids rename`); absent when none. */
  renames?: Rename[];
}

export class RecordTable implements RecordSink {
  /** Record `i`'s id is entry `i`. */
  private readonly idx = new IdIndex();
  /** Inputs in reading order: first entry and name (for "first seen at FILE:LINE"). */
  private readonly inputStarts: number[] = [];
  private readonly inputNames: string[] = [];
  private readonly chunks: Tokens[] = [];
  /** Per chunk: first record in it, and bytes used (the last chunk's is `chunkUsed`). */
  private readonly chunkFirst: number[] = [];
  private readonly chunkEnd: number[] = [];
  private chunk: Tokens = NO_TOKENS;
  private chunkUsed = 0;
  private n = 0;
  private lens = new Uint32Array(INITIAL_RECORDS);
  /** Offset of each record's tokens in its chunk. */
  private offsetOf = new Uint32Array(INITIAL_RECORDS);
  residues = 0;
  truncated = 0;
  longest = 0;
  renamed = 0;
  /** [UNK] tokens in all records (as tokenized, before truncation). */
  unknown = 0;
  /** Records with [UNK] tokens, ascending, and how many each has (to count them in a subset). */
  private readonly unknownAt: number[] = [];
  private readonly unknownOf: number[] = [];
  /** Records truncated and records renamed, ascending (to count them in a subset). */
  private readonly truncatedAt: number[] = [];
  private readonly renamedAt: number[] = [];
  /** Repeats waiting for their new id until every input is read (`renames.ts` says why). */
  private readonly pending = new PendingRenames();
  /** The first renames, by record. */
  private readonly renameList = new Map<number, Rename>();
  /** Each input as read (size and CRC-32), filled by ingest for the manifest. */
  readonly inputs: InputDigest[] = [];

  /**
   * @param crossFileIds whether {@link add} checks ids for repeats (the reader, through
   * {@link parserOptions}, always checks, within and across inputs)
   * @param width bytes per token: 1 (ESM-2) or 2 (DNABERT-S's BPE ids)
   */
  constructor(
    readonly truncate: number,
    readonly duplicateIds: "error" | "rename",
    readonly crossFileIds = true,
    readonly width: 1 | 2 = 1,
  ) {}

  get size(): number {
    return this.n;
  }

  /** Id of record `i`. */
  id(i: number): string {
    return this.idx.idString(i);
  }

  /**
   * Ids as UTF-8 text, each followed by `\n`, in pieces of about 1 MiB (ids.txt, digest). Each
   * piece is valid until the next is asked for ({@link IdIndex.text}): consume it, don't keep it.
   */
  idLines(): Generator<Uint8Array> {
    return this.idx.text(0, this.n);
  }

  /**
   * Parser options that read an input into this table: records go straight in (no record
   * objects), and ids are checked within and across inputs in the table's own id index.
   */
  parserOptions(): FastaParserOptions {
    return {
      duplicateIds: this.duplicateIds,
      ids: this.idx,
      inputOf: (entry) => this.inputOf(entry),
      renames: this.pending,
      sink: this,
    };
  }

  /** A parser for input `file` starts (records from the next one on are that input's). */
  begin(file: string): void {
    this.inputStarts.push(this.n);
    this.inputNames.push(file);
  }

  /** {@link RecordSink}: where the parser may tokenize the next record in place (byte tokens only). */
  get space(): Uint8Array | undefined {
    return this.chunk instanceof Uint8Array && this.width === 1 ? this.chunk : undefined;
  }

  get spaceAt(): number {
    return this.chunkUsed;
  }

  /** {@link RecordSink}: the parser's record `entry` (= this table's next record). */
  record(entry: number, src: Tokens, start: number, end: number, unknown = 0): void {
    const i = this.n;
    if (entry !== i) throw new Error(`RecordTable: record ${entry} out of step (expected ${i})`);
    let len = end - start;
    if (len > this.truncate) {
      len = this.truncate;
      this.truncated++;
      this.truncatedAt.push(i);
    }
    if (i === this.lens.length) this.grow();
    let o = this.chunkUsed;
    // The parser tokenized straight into our chunk (see `space`): nothing to copy.
    if (src !== this.chunk || start !== o) {
      if (o + len > this.chunk.length) {
        this.room(len);
        o = this.chunkUsed;
      }
      const chunk = this.chunk;
      if (len <= 64) {
        for (let k = 0; k < len; k++) chunk[o + k] = src[start + k]!;
      } else {
        chunk.set(src.subarray(start, start + len), o);
      }
    }
    this.offsetOf[i] = o;
    this.lens[i] = len;
    this.chunkUsed = o + len;
    this.n = i + 1;
    this.residues += len;
    if (len > this.longest) this.longest = len;
    if (unknown > 0) {
      this.unknown += unknown;
      this.unknownAt.push(i);
      this.unknownOf.push(unknown);
    }
  }

  /** Add one record; throws InputError on a duplicate id (unless renaming). */
  add(r: IngestRecord): void {
    if (this.inputNames.length === 0 || this.inputNames[this.inputNames.length - 1] !== r.file) this.begin(r.file);
    const bytes = encoder.encode(r.id);
    let entry: number;
    if (this.crossFileIds) {
      entry = this.idx.stage(bytes, 0, bytes.length, r.line);
      this.idx.commit((_k, firstLine, e, firstEntry) => {
        if (this.duplicateIds === "error") {
          throw new InputError(
            `duplicate id "${r.id}" (first seen at ${this.inputOf(firstEntry)}:${firstLine})`,
            { file: r.file, line: r.line, recordId: r.id },
            "make ids unique, or pass --duplicate-ids rename to keep both as ID, ID_2, ...",
          );
        }
        this.pending.add(e);
      });
    } else {
      entry = this.idx.append(bytes, 0, bytes.length, r.line);
    }
    this.record(entry, r.tokens, 0, r.tokens.length);
  }

  /**
   * Give repeated ids their new ids (`--duplicate-ids rename`), now that every input is read:
   * `ID_k`, the smallest k ≥ 2 free of every id of the input. {@link sealed} calls it; call it
   * first to see the renames' header lines (`onRename`), which sealing forgets.
   */
  renameDuplicates(onRename?: OnRename): void {
    if (this.pending.size === 0) return;
    this.pending.apply(this.idx, (from, to, line, entry) => {
      this.renamed++;
      this.renamedAt.push(entry);
      if (this.renameList.size < RENAMES_LISTED) this.renameList.set(entry, { from, to, at: `${this.inputOf(entry)}:${line}` });
      onRename?.(from, to, line, entry);
    });
  }

  /** Residue tokens kept for record `i` (a view; no BOS/EOS). */
  tokens(i: number): Tokens {
    const o = this.offsetOf[i]!;
    return this.tokenChunk(i).subarray(o, o + this.lens[i]!);
  }

  /**
   * The shared token chunk holding record `i`: its tokens are `lengths()[i]` bytes from
   * {@link tokenOffset}. For passes over millions of records, where a view per record would
   * be garbage.
   */
  tokenChunk(i: number): Tokens {
    const first = this.chunkFirst;
    let lo = 0;
    let hi = first.length - 1;
    if (hi < 0) return NO_TOKENS;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (first[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    return this.chunks[lo]!;
  }

  tokenOffset(i: number): number {
    return this.offsetOf[i]!;
  }

  /**
   * A new table with records `indices` of this one, in that order (ids and kept tokens); its
   * truncated and renamed counts are those of the records taken.
   */
  subset(indices: ArrayLike<number>): RecordTable {
    const t = new RecordTable(this.truncate, this.duplicateIds, false, this.width);
    const truncated = new Set(this.truncatedAt);
    const renamed = new Set(this.renamedAt);
    const unknown = new Map(this.unknownAt.map((r, k) => [r, this.unknownOf[k]!]));
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      const id = this.idx.idBytes(i);
      const tokens = this.tokens(i);
      t.record(t.idx.append(id, 0, id.length, 0), tokens, 0, tokens.length, unknown.get(i) ?? 0);
      if (truncated.has(i)) {
        t.truncated++;
        t.truncatedAt.push(k);
      }
      if (renamed.has(i)) {
        t.renamed++;
        t.renamedAt.push(k);
        const r = this.renameList.get(i);
        if (r) t.renameList.set(k, r);
      }
    }
    return t;
  }

  /**
   * Slice `index` (1-based) of `count` of the records, for `--shard index/count`: every
   * count-th record from the index-th (round robin, so each slice gets a fair share of long
   * and short records even in a sorted input). The inputs' checksums go along.
   */
  slice(index: number, count: number): RecordTable {
    const t = this.subset(this.indices((i) => i % count === index - 1));
    t.inputs.push(...this.inputs);
    return t;
  }

  /**
   * Input indices of the records, ascending, or of those `keep` accepts. (Built by a loop:
   * `Uint32Array.from(keys())` goes through a boxed array, +440 MiB at 10M records.)
   */
  indices(keep?: (i: number) => boolean): Uint32Array {
    const out = new Uint32Array(this.n);
    let m = 0;
    for (let i = 0; i < this.n; i++) if (!keep || keep(i)) out[m++] = i;
    return m === this.n ? out : out.slice(0, m);
  }

  /** Residues kept per record, in input order. */
  lengths(): Uint32Array {
    return this.lens.subarray(0, this.n);
  }

  /**
   * sha256 over the kept content, in order: every id (newline-separated), every length, every
   * token. Identifies the input content, not its bytes (compression and line wrapping do not
   * matter). Computed in bulk at the end: per-record hasher calls cost more than the reading.
   */
  digest(): string {
    const h = new Bun.CryptoHasher("sha256");
    for (const piece of this.idLines()) h.update(piece);
    const lens = this.lengths();
    h.update(new Uint8Array(lens.buffer, lens.byteOffset, lens.byteLength));
    // The tokens' bytes (little-endian for 2-byte ids), so a 1-byte table hashes as it always has.
    this.chunks.forEach((c, k) => {
      const used = k === this.chunks.length - 1 ? this.chunkUsed : this.chunkEnd[k]!;
      h.update(new Uint8Array(c.buffer, c.byteOffset, used * c.BYTES_PER_ELEMENT));
    });
    return h.digest("hex");
  }

  /** The id lookup is only needed while reading; free it before the long GPU phase. */
  sealed(): this {
    this.renameDuplicates();
    this.idx.dropLookup();
    return this;
  }

  summary(): RecordsSummary {
    const s: RecordsSummary = { records: this.size, residues: this.residues, truncated: this.truncated, longest: this.longest, renamed: this.renamed };
    if (this.width === 2) s.unknown = this.unknown;
    if (this.renameList.size > 0) s.renames = [...this.renameList.values()];
    return s;
  }

  /** Name of the input record `entry` was read from. */
  private inputOf(entry: number): string {
    let k = this.inputStarts.length - 1;
    while (k > 0 && this.inputStarts[k]! > entry) k--;
    return this.inputNames[k] ?? "";
  }

  /** Make room for `len` more token bytes: start a new chunk. */
  private room(len: number): void {
    if (this.chunks.length > 0) this.chunkEnd.push(this.chunkUsed);
    const n = Math.max(CHUNK_BYTES / this.width, len);
    this.chunk = this.width === 2 ? new Uint16Array(n) : new Uint8Array(n);
    this.chunks.push(this.chunk);
    this.chunkFirst.push(this.n);
    this.chunkUsed = 0;
  }

  private grow(): void {
    const cap = this.lens.length * 2;
    for (const key of ["lens", "offsetOf"] as const) {
      const next = new Uint32Array(cap);
      next.set(this[key]);
      this[key] = next;
    }
  }
}

const encoder = new TextEncoder();
