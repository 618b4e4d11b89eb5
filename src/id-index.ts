/**
 * A set of record ids keyed by their raw header bytes, remembering the line each id was first
 * seen on. Pure: no I/O.
 *
 * Why not a `Map<string, number>`: on Bun/JSC a million-entry Map costs ~0.5 µs per insert
 * (measured), which alone would halve the reader's throughput on 50-residue records. This
 * open-addressing table hashes bytes the reader already has in hand (FNV-1a), keeps the ids in
 * one byte arena and uses typed arrays only, so inserts cost tens of ns and the GC sees a
 * handful of objects. Memory: ~ id bytes + 28 bytes per id (e.g. ~40 MB for 1M UniProt ids).
 */

const EMPTY = 0;

export class IdIndex {
  /** Concatenated id bytes. */
  private arena = new Uint8Array(1 << 16);
  private arenaLen = 0;
  /** Per entry: start in arena, byte length, hash, first line (1-based). */
  private starts = new Uint32Array(1 << 12);
  private lengths = new Uint32Array(1 << 12);
  private hashes = new Uint32Array(1 << 12);
  private lines = new Float64Array(1 << 12);
  private count = 0;
  /**
   * Open-addressing slots, two words each: [hash, entry index + 1 (EMPTY when free)]. The hash
   * sits next to the entry so a probe for a new id touches one cache line and never the arena.
   * The slot count is a power of two.
   */
  private slots = new Uint32Array(2 << 13);
  private mask = (1 << 13) - 1;
  private readonly encoder = new TextEncoder();

  /** Number of distinct ids stored. */
  get size(): number {
    return this.count;
  }

  /**
   * Add the id `bytes[start, end)` first seen on `line`. Returns -1 when it was new, else the
   * line where the same id was first seen (and stores nothing).
   */
  insert(bytes: Uint8Array, start: number, end: number, line: number): number {
    let h = 0x811c9dc5;
    for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
    h >>>= 0;
    const len = end - start;
    const slots = this.slots;
    const mask = this.mask;
    let slot = h & mask;
    for (;;) {
      const e = slots[2 * slot + 1]!;
      if (e === EMPTY) break;
      if (slots[2 * slot] === h) {
        const entry = e - 1;
        if (this.lengths[entry] === len && this.equals(entry, bytes, start, len)) return this.lines[entry]!;
      }
      slot = (slot + 1) & mask;
    }
    this.add(bytes, start, len, h, line, slot);
    return -1;
  }

  /** {@link insert} for an id given as a string (UTF-8 encoded). */
  insertString(id: string, line: number): number {
    const bytes = this.encoder.encode(id);
    return this.insert(bytes, 0, bytes.length, line);
  }

  private equals(entry: number, bytes: Uint8Array, start: number, len: number): boolean {
    const arena = this.arena;
    const s = this.starts[entry]!;
    for (let k = 0; k < len; k++) if (arena[s + k] !== bytes[start + k]) return false;
    return true;
  }

  private add(bytes: Uint8Array, start: number, len: number, h: number, line: number, slot: number): void {
    if (this.arenaLen + len > this.arena.length) {
      const next = new Uint8Array(Math.max(this.arena.length * 2, this.arenaLen + len));
      next.set(this.arena.subarray(0, this.arenaLen));
      this.arena = next;
    }
    // Ids are short: a loop beats allocating a subarray for `set`.
    const arena = this.arena;
    const at = this.arenaLen;
    for (let k = 0; k < len; k++) arena[at + k] = bytes[start + k]!;
    if (this.count === this.starts.length) this.growEntries();
    const entry = this.count++;
    this.starts[entry] = this.arenaLen;
    this.lengths[entry] = len;
    this.hashes[entry] = h;
    this.lines[entry] = line;
    this.arenaLen += len;
    this.slots[2 * slot] = h;
    this.slots[2 * slot + 1] = entry + 1;
    // Keep the load factor at or below 1/2 so probe runs stay short.
    if (this.count * 2 > this.mask + 1) this.rehash();
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

  private rehash(): void {
    const slots = new Uint32Array(this.slots.length * 2);
    const mask = slots.length / 2 - 1;
    for (let entry = 0; entry < this.count; entry++) {
      const h = this.hashes[entry]!;
      let slot = h & mask;
      while (slots[2 * slot + 1] !== EMPTY) slot = (slot + 1) & mask;
      slots[2 * slot] = h;
      slots[2 * slot + 1] = entry + 1;
    }
    this.slots = slots;
    this.mask = mask;
  }
}
