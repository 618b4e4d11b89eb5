/**
 * Record ids, in order, keyed by their bytes, remembering the line each id was first seen on.
 * Pure: no I/O.
 *
 * Two jobs in one structure, because both need the id bytes:
 * - a set (duplicate check while reading), and
 * - the store of every record's id (entry `e` is record `e` of the record table), so millions
 *   of ids cost their bytes plus a few words each instead of millions of JS strings. Strings are
 *   made only on demand ({@link IdIndex.idString}); ids.txt is written from the bytes
 *   piece by piece ({@link IdIndex.text}).
 *
 * Why not a `Map<string, number>`: on Bun/JSC a million-entry Map costs ~0.5 µs per insert
 * (measured), which alone would halve the reader's throughput on 50-residue records. This
 * open-addressing table hashes ids as bytes (MurmurHash3's mixing, four bytes a step), keeps the ids in
 * a few byte chunks and uses typed arrays only, so the GC sees a handful of objects.
 *
 * Once the table outgrows the CPU caches, each probe is a cache miss (~100 ns). So the reader
 * {@link IdIndex.stage}s a chunk's ids (sequential writes only) and {@link IdIndex.commit}s
 * them in one tight loop, where the CPU overlaps the misses of consecutive probes.
 *
 * Ids are stored as the UTF-8 of their string form: valid UTF-8 as is; invalid bytes are
 * replaced by U+FFFD at staging, exactly as decoding to a string would, so bytes and strings
 * agree (equality, ids.txt, digests). The last such id is named in {@link IdIndex.invalid}, so
 * the FASTA reader can refuse it instead (two Latin-1 ids would otherwise collide as U+FFFD).
 *
 * Memory: id bytes + 12 bytes per id, + 8 bytes per slot (2-4 slots per distinct id) until
 * {@link IdIndex.dropLookup}.
 */

const EMPTY = 0;
/** Ids whose slots are touched together in {@link IdIndex.commit}. */
const PREFETCH = 16;
/** Bytes per arena chunk (an id never spans chunks; a longer id gets a chunk of its own). */
const CHUNK_BITS = 22;
const CHUNK = 1 << CHUNK_BITS;
/**
 * Initial entry capacity. Large typed arrays are mapped lazily, so untouched capacity (and the
 * untouched part of an arena chunk) costs address space, not memory.
 */
const INITIAL_ENTRIES = 1 << 20;
const NL = 0x0a;

type Words = Uint32Array | Float64Array;

export class IdIndex {
  /** Id bytes in chunks; an entry's address is `chunk * CHUNK + offset`. */
  private readonly chunks: Uint8Array[] = [new Uint8Array(CHUNK)];
  /** The chunk being filled (the last of `chunks`) and its fill. */
  private arena: Uint8Array = this.chunks[0]!;
  private arenaLen = 0;
  /**
   * Usable bytes of `arena`: its length, at most CHUNK (so every id starts below CHUNK, which
   * the address arithmetic needs; only an id longer than CHUNK goes past it, in its own chunk).
   */
  private arenaCap = this.arena.length;
  private arenaView = new DataView(this.arena.buffer);
  /** Address of `arena[0]`. */
  private arenaBase = 0;
  /**
   * Per entry: address of the bytes, byte length, first line (1-based). `starts` and `lines`
   * widen to Float64Array past 2^32 (rare), so the common case costs 4 bytes each.
   */
  private starts: Words = new Uint32Array(INITIAL_ENTRIES);
  private lengths = new Uint32Array(INITIAL_ENTRIES);
  private lines: Words = new Uint32Array(INITIAL_ENTRIES);
  /** Hashes of staged entries, by entry - committed. */
  private hashes = new Uint32Array(1 << 10);
  private spareHashes = new Uint32Array(1 << 10);
  /** Entries appended (staged or committed, duplicates included). */
  private count = 0;
  /** Entries below this index have been committed. */
  private committed = 0;
  /** Distinct ids in the table. */
  private distinct = 0;
  /**
   * Open-addressing slots, two words each: [hash, entry index + 1 (EMPTY when free)]. The hash
   * sits next to the entry so a probe for a new id touches one cache line and never the arena.
   * The slot count is a power of two.
   */
  private slots = new Uint32Array(2 << 10);
  private mask = (1 << 10) - 1;
  private lookup = true;
  private readonly encoder = new TextEncoder();
  /** Sink for the prefetch loads, so the JIT cannot drop them. */
  private touched = 0;
  /**
   * The last entry staged whose bytes were not valid UTF-8 (-1: none yet), and the offset of its
   * first invalid byte within the id and that byte's value: see {@link normalize}.
   */
  readonly invalid = { entry: -1, offset: 0, byte: 0 };

  /** Number of distinct ids stored. */
  get size(): number {
    return this.distinct;
  }

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

  /**
   * Add every staged id to the table, in staging order. For each id already present (earlier
   * or earlier in this batch) calls `onDuplicate(k, firstLine, entry, firstEntry)`, `k`
   * counting staged ids from 0, and leaves the table unchanged for it. `onDuplicate` may call
   * {@link insertString} or {@link rename}.
   */
  commit(onDuplicate: (k: number, firstLine: number, entry: number, firstEntry: number) => void): void {
    const first = this.committed;
    const end = this.count;
    if (first === end) return;
    if (!this.lookup) throw new Error("IdIndex: ids added after dropLookup()");
    // onDuplicate may stage (insertString): it gets the spare buffer, these hashes stay put.
    const hashes = this.hashes;
    this.hashes = this.spareHashes;
    this.spareHashes = hashes;
    this.committed = end;
    for (let group = first; group < end; group += PREFETCH) {
      const groupEnd = Math.min(group + PREFETCH, end);
      // Touch the home slots of a group of ids first: independent loads, so their cache
      // misses overlap; the probes below then mostly hit the cache.
      const slots = this.slots;
      const mask = this.mask;
      let touched = 0;
      for (let entry = group; entry < groupEnd; entry++) touched |= slots[2 * (hashes[entry - first]! & mask) + 1]!;
      this.touched = touched;
      for (let entry = group; entry < groupEnd; entry++) {
        const firstEntry = this.probeInsert(entry, hashes[entry - first]!);
        if (firstEntry >= 0) onDuplicate(entry - first, this.lines[firstEntry]!, entry, firstEntry);
      }
    }
  }

  /**
   * Add the id `bytes[start, end)` first seen on `line` now. Returns -1 when it was new, else
   * the line where the same id was first seen (and stores nothing). Commit staged ids first.
   */
  insert(bytes: Uint8Array, start: number, end: number, line: number): number {
    if (this.committed !== this.count) throw new Error("IdIndex.insert with staged ids pending");
    if (!this.lookup) throw new Error("IdIndex: ids added after dropLookup()");
    const entry = this.stage(bytes, start, end, line);
    this.committed = this.count;
    const first = this.probeInsert(entry, this.hashes[0]!);
    return first < 0 ? -1 : this.lines[first]!;
  }

  /**
   * Store the id `bytes[start, end)` of line `line` as the next entry without checking or
   * indexing it (a later repeat of it is not caught). Commit staged ids first.
   */
  append(bytes: Uint8Array, start: number, end: number, line: number): number {
    if (this.committed !== this.count) throw new Error("IdIndex.append with staged ids pending");
    const entry = this.stage(bytes, start, end, line);
    this.committed = this.count;
    return entry;
  }

  /** {@link insert} for an id given as a string (UTF-8 encoded). */
  insertString(id: string, line: number): number {
    const bytes = this.encoder.encode(id);
    return this.insert(bytes, 0, bytes.length, line);
  }

  /**
   * Give entry `entry` (a committed repeat, so not in the table) the id `id` instead, if no
   * entry has that id yet: returns true and adds it to the table; false (nothing changed) when
   * `id` is taken.
   */
  rename(entry: number, id: string): boolean {
    if (!this.lookup) throw new Error("IdIndex: ids added after dropLookup()");
    const bytes = this.encoder.encode(id);
    const h = hashId(bytes, undefined, 0, bytes.length);
    const slots = this.slots;
    const mask = this.mask;
    let slot = h & mask;
    for (;;) {
      const e = slots[2 * slot + 1]!;
      if (e === EMPTY) break;
      if (slots[2 * slot] === h && this.equalsBytes(e - 1, bytes)) return false;
      slot = (slot + 1) & mask;
    }
    const len = bytes.length;
    if (this.arenaLen + len > this.arenaCap) this.room(len);
    this.arena.set(bytes, this.arenaLen);
    this.setStart(entry, this.arenaBase + this.arenaLen);
    this.lengths[entry] = len;
    this.arenaLen += len;
    this.place(slot, h, entry);
    return true;
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

  /**
   * Free the lookup table and the line numbers (the reading is over): ids stay readable, but
   * no more can be committed.
   */
  dropLookup(): void {
    this.lookup = false;
    this.slots = new Uint32Array(2);
    this.mask = 0;
    this.lines = new Uint32Array(0);
    this.hashes = new Uint32Array(16);
  }

  /** Put appended `entry` in the table; returns -1, or the entry of an equal id. */
  private probeInsert(entry: number, h: number): number {
    const slots = this.slots;
    const mask = this.mask;
    let slot = h & mask;
    for (;;) {
      const e = slots[2 * slot + 1]!;
      if (e === EMPTY) break;
      if (slots[2 * slot] === h && this.equals(e - 1, entry)) return e - 1;
      slot = (slot + 1) & mask;
    }
    this.place(slot, h, entry);
    return -1;
  }

  private place(slot: number, h: number, entry: number): void {
    const slots = this.slots;
    slots[2 * slot] = h;
    slots[2 * slot + 1] = entry + 1;
    // Keep the load factor at or below 1/2 so probe runs stay short.
    if (++this.distinct * 2 > this.mask + 1) this.rehash();
  }

  private equals(a: number, b: number): boolean {
    const len = this.lengths[a]!;
    if (this.lengths[b] !== len) return false;
    return this.equalsBytes(a, this.idBytes(b));
  }

  private equalsBytes(a: number, bytes: Uint8Array): boolean {
    const len = bytes.length;
    if (this.lengths[a] !== len) return false;
    const sa = this.starts[a]!;
    const c = Math.floor(sa / CHUNK);
    const o = sa - c * CHUNK;
    const arena = this.chunks[c]!;
    for (let k = 0; k < len; k++) if (arena[o + k] !== bytes[k]) return false;
    return true;
  }

  private setStart(entry: number, address: number): void {
    if (address > 0xffffffff && this.starts instanceof Uint32Array) this.starts = widen(this.starts);
    this.starts[entry] = address;
  }

  /** Make room for `len` more bytes: start a new chunk. */
  private room(len: number): void {
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
  private normalize(entry: number, at: number, len: number): void {
    const raw = this.arena.subarray(at, at + len);
    const bad = firstInvalidUtf8(raw);
    if (bad < 0) return;
    this.invalid.entry = entry;
    this.invalid.offset = bad;
    this.invalid.byte = raw[bad]!;
    const bytes = this.encoder.encode(Buffer.from(raw.buffer, raw.byteOffset, len).toString("utf8"));
    this.arenaLen -= len;
    if (this.arenaLen + bytes.length > this.arenaCap) this.room(bytes.length);
    this.arena.set(bytes, this.arenaLen);
    this.setStart(entry, this.arenaBase + this.arenaLen);
    this.lengths[entry] = bytes.length;
    this.arenaLen += bytes.length;
    this.hashes[entry - this.committed] = hashId(bytes, undefined, 0, bytes.length);
  }

  private growEntries(): void {
    const n = this.lengths.length * 2;
    this.starts = grow(this.starts, n);
    this.lengths = grow(this.lengths, n);
    this.lines = grow(this.lines, n);
  }

  private growHashes(): void {
    this.hashes = grow(this.hashes, Math.max(16, this.hashes.length * 2));
  }

  /** Double the slot table, re-placing occupied slots (a sequential scan of the old table). */
  private rehash(): void {
    const old = this.slots;
    const slots = new Uint32Array(old.length * 2);
    const mask = slots.length / 2 - 1;
    for (let i = 0; i < old.length; i += 2) {
      const e = old[i + 1]!;
      if (e === EMPTY) continue;
      const h = old[i]!;
      let slot = h & mask;
      while (slots[2 * slot + 1] !== EMPTY) slot = (slot + 1) & mask;
      slots[2 * slot] = h;
      slots[2 * slot + 1] = e;
    }
    this.slots = slots;
    this.mask = mask;
  }
}

/**
 * 32-bit hash of the id `bytes[start, start+len)`: MurmurHash3 (x86_32, seed 0) over its
 * little-endian 4-byte words, then the 1-3 byte tail. With `view` (a DataView over exactly
 * `bytes`) words are read in one load each; the result is the same either way.
 */
function hashId(bytes: Uint8Array, view: DataView | undefined, start: number, len: number): number {
  let h = 0;
  const words = start + (len & ~3);
  let i = start;
  for (; i < words; i += 4) {
    let k = view !== undefined ? view.getUint32(i, true) : bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail > 0) {
    let k = bytes[i]!;
    if (tail > 1) k |= bytes[i + 1]! << 8;
    if (tail > 2) k |= bytes[i + 2]! << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Offset of the first byte of `b` that is not part of valid UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF), or -1 when all of `b` is valid.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + need >= n) return i; // cut short by the end of the id
    const second = b[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) {
      const cont = b[i + k]!;
      if (cont < 0x80 || cont > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d && b !== 0x0a);
}

function grow<T extends Words>(a: T, n: number): T {
  const b = (a instanceof Float64Array ? new Float64Array(n) : new Uint32Array(n)) as T;
  b.set(a);
  return b;
}

function widen(a: Words): Float64Array {
  const b = new Float64Array(a.length);
  b.set(a);
  return b;
}
