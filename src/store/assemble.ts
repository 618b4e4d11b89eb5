/**
 * A store's arrays assembled from its shards in input order, front to back.
 *
 * Shards hold records in the order they were embedded (length-sorted batches); the final arrays
 * hold them in input order. Reading the shards memory-mapped and writing the output front to back
 * in large blocks lets the output be hashed as it is written (NpyFile), instead of being written
 * row by row at scattered offsets and read back whole for its SHA-256 (a 5.8 GB array of 3B means
 * was 4-5 s of reading at ~1.3 GB/s on one core).
 */
import { readFileSync, statSync } from "node:fs";

/** Bytes gathered before each write. */
const BLOCK_BYTES = 64 << 20;

/** Where each record's rows are: its shard, its first record row and first residue row there. */
export interface RecordPlaces {
  shard: Int32Array;
  recordRow: Float64Array;
  residueRow: Float64Array;
  /** Residue rows in all. */
  residues: number;
}

/** Places of every record from the shards' indices (record numbers in shard order). */
export function locateRecords(indices: Uint32Array[], lengths: ArrayLike<number>): RecordPlaces {
  const n = lengths.length;
  const shard = new Int32Array(n).fill(-1);
  const recordRow = new Float64Array(n);
  const residueRow = new Float64Array(n);
  let residues = 0;
  indices.forEach((idx, s) => {
    let res = 0;
    idx.forEach((r, row) => {
      shard[r] = s;
      recordRow[r] = row;
      residueRow[r] = res;
      res += lengths[r]!;
    });
    residues += res;
  });
  return { shard, recordRow, residueRow, residues };
}

/** A shard's output file as bytes: memory-mapped (read-only, private), or read when empty. */
function mapShard(path: string): Uint8Array {
  return statSync(path).size === 0 ? readFileSync(path) : Bun.mmap(path, { shared: false });
}

/** Append every record's rows (one each, or `residueLengths[r]` for per-residue output) to `out`
 * in record order. */
export function assembleInOrder(
  out: { append(bytes: Uint8Array): void },
  shardFiles: string[],
  places: RecordPlaces,
  residueLengths: ArrayLike<number> | undefined,
  rowBytes: number,
): void {
  const maps = shardFiles.map(mapShard);
  const block = new Uint8Array(BLOCK_BYTES);
  let fill = 0;
  const flush = () => {
    out.append(block.subarray(0, fill));
    fill = 0;
  };
  for (let r = 0; r < places.shard.length; r++) {
    const s = places.shard[r]!;
    const src = maps[s];
    const from = (residueLengths ? places.residueRow[r]! : places.recordRow[r]!) * rowBytes;
    const bytes = (residueLengths ? residueLengths[r]! : 1) * rowBytes;
    if (!src || from + bytes > src.length) throw new Error(`shard ${shardFiles[s] ?? s} is too short for record ${r + 1}`);
    if (fill + bytes > block.length && fill) flush();
    if (bytes > block.length) {
      out.append(src.subarray(from, from + bytes));
    } else {
      block.set(src.subarray(from, from + bytes), fill);
      fill += bytes;
    }
  }
  if (fill) flush();
}
