/**
 * A set of record ids keyed by their raw header bytes, remembering the line each id was first
 * seen on. Pure: no I/O.
 *
 * Why not a `Map<string, number>`: on Bun/JSC a million-entry Map costs ~0.5 µs per insert
 * (measured), which alone would halve the reader's throughput on 50-residue records. This
 * open-addressing table hashes bytes the reader already has in hand (FNV-1a), keeps the ids in
 * one byte arena and uses typed arrays only, so the GC sees a handful of objects.
 *
 * Once the table outgrows the CPU caches, each probe is a cache miss (~100 ns). So the reader
 * {@link IdIndex.stage}s a chunk's ids (sequential writes only) and {@link IdIndex.commit}s
 * them in one tight loop, where the CPU overlaps the misses of consecutive probes.
 *
 * Memory: id bytes + ~36 bytes per id (e.g. ~50 MB for 1M UniProt ids).
 */

const EMPTY = 0;
/** Ids whose slots are touched together in {@link IdIndex.commit}. */
const PREFETCH = 16;

export class IdIndex {
  /** Concatenated id bytes. */
  private arena = new Uint8Array(1 << 16);
  private arenaLen = 0;
  /** Per entry: start in arena, byte length, hash, first line (1-based). */
  private starts = new Uint32Array(1 << 12);
  private lengths = new Uint32Array(1 << 12);
  private hashes = new Uint32Array(1 << 12);
  private lines = new Float64Array(1 << 12);
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
  private slots = new Uint32Array(2 << 13);
  private mask = (1 << 13) - 1;
  private readonly encoder = new TextEncoder();
  /** Sink for the prefetch loads, so the JIT cannot drop them. */
  private touched = 0;

  /** Number of distinct ids stored. */
  get size(): number {
    return this.distinct;
  }

  /** Number of staged ids not yet committed. */
  get pending(): number {
    return this.count - this.committed;
  }

  /**
   * Queue the id `bytes[start, end)`, first seen on `line`, for the next {@link commit}. Copies
   * the bytes, so `bytes` may be reused at once.
   */
  stage(bytes: Uint8Array, start: number, end: number, line: number): void {
    const len = end - start;
    if (this.arenaLen + len > this.arena.length) {
      const next = new Uint8Array(Math.max(this.arena.length * 2, this.arenaLen + len));
      next.set(this.arena.subarray(0, this.arenaLen));
      this.arena = next;
    }
    // Ids are short: a loop beats allocating a subarray for `set`.
    const arena = this.arena;
    const at = this.arenaLen;
    let h = 0x811c9dc5;
    for (let k = 0; k < len; k++) {
      const b = bytes[start + k]!;
      arena[at + k] = b;
      h = Math.imul(h ^ b, 0x01000193);
    }
    if (this.count === this.starts.length) this.growEntries();
    const entry = this.count++;
    this.starts[entry] = at;
    this.lengths[entry] = len;
    this.hashes[entry] = h >>> 0;
    this.lines[entry] = line;
    this.arenaLen += len;
  }

  /**
   * Add every staged id to the table, in staging order. For each id already present (earlier
   * or earlier in this batch) calls `onDuplicate(k, firstLine)`, `k` counting staged ids from 0,
   * and leaves the table unchanged for it. `onDuplicate` may call {@link insertString}.
   */
  commit(onDuplicate: (k: number, firstLine: number) => void): void {
    const first = this.committed;
    const end = this.count;
    this.committed = end;
    const hashes = this.hashes;
    for (let group = first; group < end; group += PREFETCH) {
      const groupEnd = Math.min(group + PREFETCH, end);
      // Touch the home slots of a group of ids first: independent loads, so their cache
      // misses overlap; the probes below then mostly hit the cache.
      const slots = this.slots;
      const mask = this.mask;
      let touched = 0;
      for (let entry = group; entry < groupEnd; entry++) touched |= slots[2 * (hashes[entry]! & mask) + 1]!;
      this.touched = touched;
      for (let entry = group; entry < groupEnd; entry++) {
        const firstLine = this.probeInsert(entry);
        if (firstLine >= 0) onDuplicate(entry - first, firstLine);
      }
    }
  }

  /**
   * Add the id `bytes[start, end)` first seen on `line` now. Returns -1 when it was new, else
   * the line where the same id was first seen (and stores nothing). Commit staged ids first.
   */
  insert(bytes: Uint8Array, start: number, end: number, line: number): number {
    if (this.committed !== this.count) throw new Error("IdIndex.insert with staged ids pending");
    this.stage(bytes, start, end, line);
    this.committed = this.count;
    return this.probeInsert(this.count - 1);
  }

  /** {@link insert} for an id given as a string (UTF-8 encoded). */
  insertString(id: string, line: number): number {
    const bytes = this.encoder.encode(id);
    return this.insert(bytes, 0, bytes.length, line);
  }

  /** Put appended `entry` in the table; returns -1, or the first line of an equal id. */
  private probeInsert(entry: number): number {
    const h = this.hashes[entry]!;
    const slots = this.slots;
    const mask = this.mask;
    let slot = h & mask;
    for (;;) {
      const e = slots[2 * slot + 1]!;
      if (e === EMPTY) break;
      if (slots[2 * slot] === h && this.equals(e - 1, entry)) return this.lines[e - 1]!;
      slot = (slot + 1) & mask;
    }
    slots[2 * slot] = h;
    slots[2 * slot + 1] = entry + 1;
    // Keep the load factor at or below 1/2 so probe runs stay short.
    if (++this.distinct * 2 > mask + 1) this.rehash();
    return -1;
  }

  private equals(a: number, b: number): boolean {
    const len = this.lengths[a]!;
    if (this.lengths[b] !== len) return false;
    const arena = this.arena;
    const sa = this.starts[a]!;
    const sb = this.starts[b]!;
    for (let k = 0; k < len; k++) if (arena[sa + k] !== arena[sb + k]) return false;
    return true;
  }

  private growEntries(): void {
    const n = this.starts.length * 2;
    const grow = <T extends Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.starts = grow(this.starts, (k) => new Uint32Array(k));
    this.lengths = grow(this.lengths, (k) => new Uint32Array(k));
    this.hashes = grow(this.hashes, (k) => new Uint32Array(k));
    this.lines = grow(this.lines, (k) => new Float64Array(k));
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
