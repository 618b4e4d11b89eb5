/**
 * Where the record ids live: their bytes in a few large chunks plus, per entry, an address, a
 * length and the line it was read on, so millions of ids cost their bytes plus a few words
 * each instead of millions of JS strings. Strings are made only on demand
 * ({@link IdStore.idString}); ids.txt is written from the bytes piece by piece
 * ({@link IdStore.text}). Entry `e` is record `e` of the record table. Pure: no I/O.
 *
 * Ids arrive {@link IdStore.stage}d (copied, hashed in the same pass, sequential writes only);
 * id-index.ts adds the duplicate lookup over them.
 *
 * Ids are stored as the UTF-8 of their string form: valid UTF-8 as is; invalid bytes are
 * replaced by U+FFFD at staging, exactly as decoding to a string would, so bytes and strings
 * agree (equality, ids.txt, digests). The last such id is named in {@link IdStore.invalid}, so
 * the FASTA reader can refuse it instead (two Latin-1 ids would otherwise collide as U+FFFD).
 *
 * Memory: id bytes + 12 bytes per id.
 */
import { firstInvalidUtf8, grow, hashId, isSpace, widen, type Words } from "./id-bytes.ts";

/** Bytes per arena chunk (an id never spans chunks; a longer id gets a chunk of its own). */
const CHUNK_BITS = 22;
const CHUNK = 1 << CHUNK_BITS;
/**
 * Initial entry capacity. Large typed arrays are mapped lazily, so untouched capacity (and the
 * untouched part of an arena chunk) costs address space, not memory.
 */
const INITIAL_ENTRIES = 1 << 20;
const NL = 0x0a;

/** The id bytes and per-entry records; id-index.ts `IdIndex` builds the lookup on it. */
export class IdStore {
  /** Id bytes in chunks; an entry's address is `chunk * CHUNK + offset`. */
  protected readonly chunks: Uint8Array[] = [new Uint8Array(CHUNK)];
  /** The chunk being filled (the last of `chunks`) and its fill. */
  protected arena: Uint8Array = this.chunks[0]!;
  protected arenaLen = 0;
  /**
   * Usable bytes of `arena`: its length, at most CHUNK (so every id starts below CHUNK, which
   * the address arithmetic needs; only an id longer than CHUNK goes past it, in its own chunk).
   */
  protected arenaCap = this.arena.length;
  protected arenaView = new DataView(this.arena.buffer);
  /** Address of `arena[0]`. */
  protected arenaBase = 0;
  /**
   * Per entry: address of the bytes, byte length, first line (1-based). `starts` and `lines`
   * widen to Float64Array past 2^32 (rare), so the common case costs 4 bytes each.
   */
  protected starts: Words = new Uint32Array(INITIAL_ENTRIES);
  protected lengths = new Uint32Array(INITIAL_ENTRIES);
  protected lines: Words = new Uint32Array(INITIAL_ENTRIES);
  /** Hashes of staged entries, by entry - committed. */
  protected hashes = new Uint32Array(1 << 10);
  protected spareHashes = new Uint32Array(1 << 10);
  /** Entries appended (staged or committed, duplicates included). */
  protected count = 0;
  /** Entries below this index have been committed. */
  protected committed = 0;
  protected readonly encoder = new TextEncoder();
  /**
   * The last entry staged whose bytes were not valid UTF-8 (-1: none yet), and the offset of its
   * first invalid byte within the id and that byte's value: see {@link normalize}.
   */
  readonly invalid = { entry: -1, offset: 0, byte: 0 };

  /** Number of entries (ids staged or committed, repeats included): the next entry's index. */
  get entries(): number {
    return this.count;
  }

  /** Number of staged ids not yet committed. */
  get pending(): number {
    return this.count - this.committed;
  }

  /**
   * Queue the id `bytes[start, end)`, first seen on `line`, for the next {@link commit}. Copies
   * the bytes, so `bytes` may be reused at once. Returns the new entry's index.
   */
  stage(bytes: Uint8Array, start: number, end: number, line: number): number {
    const len = end - start;
    if (this.arenaLen + len > this.arenaCap) this.room(len);
    // Ids are short: a loop beats allocating a subarray for `set`.
    const arena = this.arena;
    const at = this.arenaLen;
    let high = 0;
    for (let k = 0; k < len; k++) {
      const b = bytes[start + k]!;
      arena[at + k] = b;
      high |= b;
    }
    const h = hashId(arena, this.arenaView, at, len);
    if (this.count === this.lengths.length) this.growEntries();
    const entry = this.count++;
    const pending = entry - this.committed;
    if (pending === this.hashes.length) this.growHashes();
    this.arenaLen += len;
    this.setStart(entry, this.arenaBase + at);
    this.lengths[entry] = len;
    if (line > 0xffffffff && this.lines instanceof Uint32Array) this.lines = widen(this.lines);
    this.lines[entry] = line;
    this.hashes[pending] = h;
    if (high >= 0x80) this.normalize(entry, at, len);
    return entry;
  }

  /**
   * {@link stage} the id that starts at `bytes[start]` (not whitespace) and runs to the first
   * whitespace byte (space, tab, CR, VT, FF) or `end`: the first word of a header, found and
   * copied in one pass. `bytes[start, end)` must hold no `\n`. `view`, a DataView over exactly
   * `bytes`, lets it move four bytes at a time.
   */
  stageWord(bytes: Uint8Array, start: number, end: number, line: number, view?: DataView): number {
    const arena = this.arena;
    const at = this.arenaLen;
    // Copy at most what fits; an id running past that goes through stage (a new chunk).
    const avail = this.arenaCap > at ? this.arenaCap - at : 0;
    const limit = end - start > avail ? start + avail : end;
    let high = 0;
    let k = at;
    let i = start;
    if (view !== undefined) {
      const out = this.arenaView;
      for (; i + 4 <= limit; i += 4) {
        const w = view.getUint32(i, true);
        // Any byte below 0x21 (whitespace or a control byte) ends the fast path.
        if (((w - 0x21212121) & ~w & 0x80808080) !== 0) break;
        out.setUint32(k, w, true);
        high |= w;
        k += 4;
      }
      high = (high >>> 24) | (high >>> 16) | (high >>> 8) | high;
    }
    for (; i < limit; i++) {
      const b = bytes[i]!;
      // Whitespace: 0x20, or 0x09-0x0d (0x0a never occurs within a line).
      if (b <= 0x20 && (b === 0x20 || (b >= 0x09 && b <= 0x0d))) break;
      arena[k++] = b;
      high |= b;
    }
    if (i === limit && limit < end) {
      while (i < end && !isSpace(bytes[i]!)) i++;
      return this.stage(bytes, start, i, line);
    }
    const len = k - at;
    const h = hashId(arena, this.arenaView, at, len);
    if (this.count === this.lengths.length) this.growEntries();
    const entry = this.count++;
    const pending = entry - this.committed;
    if (pending === this.hashes.length) this.growHashes();
    this.arenaLen = k;
    this.setStart(entry, this.arenaBase + at);
    this.lengths[entry] = len;
    if (line > 0xffffffff && this.lines instanceof Uint32Array) this.lines = widen(this.lines);
    this.lines[entry] = line;
    this.hashes[pending] = h;
    if ((high & 0x80) !== 0) this.normalize(entry, at, len);
    return entry;
  }

  /** The id of `entry` as bytes (a view; do not write to it). */
  idBytes(entry: number): Uint8Array {
    const a = this.starts[entry]!;
    const c = Math.floor(a / CHUNK);
    const o = a - c * CHUNK;
    return this.chunks[c]!.subarray(o, o + this.lengths[entry]!);
  }

  /** The id of `entry` as a string. */
  idString(entry: number): string {
    const b = this.idBytes(entry);
    return Buffer.from(b.buffer, b.byteOffset, b.length).toString("utf8");
  }

  /** Line `entry` was read from (1-based; 0 when not from a file). Lost at {@link dropLookup}. */
  line(entry: number): number {
    return this.lines[entry]!;
  }

  /**
   * Entries `[from, to)` as UTF-8 text, each id followed by `\n`, in pieces of about `piece`
   * bytes (more when one id is longer). One buffer is reused: a piece is valid until the next
   * is asked for (copy it to keep it), so writing or hashing the text costs one piece of
   * memory. Fresh pieces would pile up until a GC, as large as the whole text (measured:
   * +247 MiB while hashing 10M ids).
   */
  *text(from = 0, to = this.count, piece = 1 << 20): Generator<Uint8Array> {
    let buf = new Uint8Array(piece);
    let pos = 0;
    const starts = this.starts;
    const lengths = this.lengths;
    const chunks = this.chunks;
    for (let e = from; e < to; e++) {
      const a = starts[e]!;
      const c = Math.floor(a / CHUNK);
      const o = a - c * CHUNK;
      const len = lengths[e]!;
      if (pos + len + 1 > buf.length) {
        if (pos > 0) yield buf.subarray(0, pos);
        if (len + 1 > buf.length) buf = new Uint8Array(len + 1);
        pos = 0;
      }
      const src = chunks[c]!;
      if (len <= 32) {
        for (let k = 0; k < len; k++) buf[pos + k] = src[o + k]!;
      } else {
        buf.set(src.subarray(o, o + len), pos);
      }
      pos += len;
      buf[pos++] = NL;
    }
    if (pos > 0) yield buf.subarray(0, pos);
  }

  protected equals(a: number, b: number): boolean {
    const len = this.lengths[a]!;
    if (this.lengths[b] !== len) return false;
    return this.equalsBytes(a, this.idBytes(b));
  }

  protected equalsBytes(a: number, bytes: Uint8Array): boolean {
    const len = bytes.length;
    if (this.lengths[a] !== len) return false;
    const sa = this.starts[a]!;
    const c = Math.floor(sa / CHUNK);
    const o = sa - c * CHUNK;
    const arena = this.chunks[c]!;
    for (let k = 0; k < len; k++) if (arena[o + k] !== bytes[k]) return false;
    return true;
  }

  protected setStart(entry: number, address: number): void {
    if (address > 0xffffffff && this.starts instanceof Uint32Array) this.starts = widen(this.starts);
    this.starts[entry] = address;
  }

  /** Make room for `len` more bytes: start a new chunk. */
  protected room(len: number): void {
    // A new chunk; an id longer than CHUNK gets one of its own (it starts at offset 0).
    this.arena = new Uint8Array(Math.max(CHUNK, len));
    this.arenaView = new DataView(this.arena.buffer);
    this.arenaCap = CHUNK;
    this.chunks.push(this.arena);
    this.arenaLen = 0;
    this.arenaBase = (this.chunks.length - 1) * CHUNK;
  }

  /**
   * Entry `entry` (bytes at `arena[at, at+len)`, the last bytes written) holds non-ASCII bytes:
   * store the UTF-8 of their string form (invalid sequences become U+FFFD) and rehash.
   */
  protected normalize(entry: number, at: number, len: number): void {
    const raw = this.arena.subarray(at, at + len);
    const bad = firstInvalidUtf8(raw);
    if (bad < 0) return;
    this.invalid.entry = entry;
    this.invalid.offset = bad;
    this.invalid.byte = raw[bad]!;
    const bytes = this.encoder.encode(Buffer.from(raw.buffer, raw.byteOffset, len).toString("utf8"));
    this.arenaLen -= len;
    this.storeBytes(entry, bytes);
    this.hashes[entry - this.committed] = hashId(bytes, undefined, 0, bytes.length);
  }

  /** Make `bytes` entry `entry`'s id, appended to the arena. */
  protected storeBytes(entry: number, bytes: Uint8Array): void {
    if (this.arenaLen + bytes.length > this.arenaCap) this.room(bytes.length);
    this.arena.set(bytes, this.arenaLen);
    this.setStart(entry, this.arenaBase + this.arenaLen);
    this.lengths[entry] = bytes.length;
    this.arenaLen += bytes.length;
  }

  protected growEntries(): void {
    const n = this.lengths.length * 2;
    this.starts = grow(this.starts, n);
    this.lengths = grow(this.lengths, n);
    this.lines = grow(this.lines, n);
  }

  protected growHashes(): void {
    this.hashes = grow(this.hashes, Math.max(16, this.hashes.length * 2));
  }
}
