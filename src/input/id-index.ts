/**
 * The duplicate check over the record ids of an {@link IdStore} (id-store.ts: the ids' bytes
 * and lines): an open-addressing table of the ids seen, so the reader can tell a repeated id
 * and the line it was first seen on. Pure: no I/O.
 *
 * Why not a `Map<string, number>`: on Bun/JSC a million-entry Map costs ~0.5 µs per insert
 * (measured), which alone would halve the reader's throughput on 50-residue records. This
 * table hashes ids as bytes (MurmurHash3's mixing, four bytes a step, id-bytes.ts), keeps the
 * ids in the store's few byte chunks and uses typed arrays only, so the GC sees a handful of
 * objects.
 *
 * Once the table outgrows the CPU caches, each probe is a cache miss (~100 ns). So the reader
 * {@link IdStore.stage}s a chunk's ids (sequential writes only) and {@link IdIndex.commit}s
 * them in one tight loop, where the CPU overlaps the misses of consecutive probes.
 *
 * Memory: the store's, + 8 bytes per slot (2-4 slots per distinct id) until
 * {@link IdIndex.dropLookup}.
 */
import { hashId } from "./id-bytes.ts";
import { IdStore } from "./id-store.ts";

export { firstInvalidUtf8 } from "./id-bytes.ts";

const EMPTY = 0;
/** Ids whose slots are touched together in {@link IdIndex.commit}. */
const PREFETCH = 16;

/** Record ids with a duplicate lookup: see the module comment. */
export class IdIndex extends IdStore {
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
  /** Sink for the prefetch loads, so the JIT cannot drop them. */
  private touched = 0;

  /** Number of distinct ids stored. */
  get size(): number {
    return this.distinct;
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
    this.storeBytes(entry, bytes);
    this.place(slot, h, entry);
    return true;
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
