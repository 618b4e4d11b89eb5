/**
 * Byte-level helpers of the id store (id-store.ts) and index (id-index.ts): the id hash, the
 * UTF-8 check, header whitespace, and growing the per-entry typed arrays. Pure: no I/O.
 */

export type Words = Uint32Array | Float64Array;

/**
 * 32-bit hash of the id `bytes[start, start+len)`: MurmurHash3 (x86_32, seed 0) over its
 * little-endian 4-byte words, then the 1-3 byte tail. With `view` (a DataView over exactly
 * `bytes`) words are read in one load each; the result is the same either way.
 */
export function hashId(bytes: Uint8Array, view: DataView | undefined, start: number, len: number): number {
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

export function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d && b !== 0x0a);
}

export function grow<T extends Words>(a: T, n: number): T {
  const b = (a instanceof Float64Array ? new Float64Array(n) : new Uint32Array(n)) as T;
  b.set(a);
  return b;
}

export function widen(a: Words): Float64Array {
  const b = new Float64Array(a.length);
  b.set(a);
  return b;
}
