/**
 * Shard commit and verification: what a resumed run trusts. A committed shard's files must match
 * the sizes and checksums its meta file records; anything else is refused with the file named.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32File, outputFile, scanShards, sha256File, ShardWriter, type ShardMeta, type ShardSpec } from "../src/store/shards.ts";
import type { BatchResult } from "../src/protocol.ts";

const root = mkdtempSync(join(tmpdir(), "embed-shards-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const DIM = 4;
const spec: ShardSpec = { dim: DIM, layers: [2], include: ["mean"], dtype: "float32", lengths: new Uint32Array([3, 5, 7, 9]) };
const MEAN = outputFile("mean", 2, "float32");

function batch(n: number, seed: number): BatchResult {
  const data = new Float32Array(n * DIM).map((_, i) => seed + i / 8);
  return { batch: seed, ms: 1, nonFinite: 0, outputs: [{ kind: "mean", layer: 2, offset: 0, rows: n, dim: DIM, dtype: "float32", data }] };
}

/** A store dir with one committed shard of records 2, 0 (one batch) and 3 (another). */
function committed(name: string): { dir: string; meta: ShardMeta } {
  const dir = join(root, name);
  const w = new ShardWriter(dir, 0, spec);
  w.appendBatch(new Uint32Array([2, 0]), batch(2, 10));
  w.appendBatch(new Uint32Array([3]), batch(1, 20));
  return { dir, meta: w.commit() };
}

describe("shards", () => {
  test("Bun's crc32 is the standard CRC-32 (IEEE), and chaining it over appends equals the whole file's", () => {
    expect(Bun.hash.crc32(new TextEncoder().encode("123456789")).toString(16)).toBe("cbf43926");
    const { dir, meta } = committed("crc");
    const path = join(dir, `000000.${MEAN}`);
    expect(meta.files[MEAN]!.crc32).toBe((Bun.hash.crc32(readFileSync(path)) >>> 0).toString(16).padStart(8, "0"));
    expect(meta.files[MEAN]!.crc32).toBe(crc32File(path));
    expect(meta.files[MEAN]!.bytes).toBe(3 * DIM * 4);
    const { done } = scanShards(dir, spec, 4);
    expect([...done]).toEqual([1, 0, 1, 1]);
  });

  test("one flipped byte, a short file or a wrong recorded size is refused, naming the file", () => {
    const { dir } = committed("flip");
    const path = join(dir, `000000.${MEAN}`);
    const bytes = readFileSync(path);
    bytes[5]! ^= 0x01;
    writeFileSync(path, bytes);
    expect(() => scanShards(dir, spec, 4)).toThrow(`${path} does not match its checksum`);
    truncateSync(path, bytes.length - 4);
    expect(() => scanShards(dir, spec, 4)).toThrow("is missing or has the wrong size");
    const metaPath = join(dir, "000000.meta.json");
    const meta = JSON.parse(readFileSync(metaPath, "utf8")) as ShardMeta;
    meta.files[MEAN]!.bytes += 16;
    writeFileSync(metaPath, JSON.stringify(meta));
    expect(() => scanShards(dir, spec, 4)).toThrow("its record says");
  });

  test("shards committed with sha256 (earlier versions) still verify, and still catch damage", () => {
    const { dir } = committed("legacy");
    const metaPath = join(dir, "000000.meta.json");
    const meta = JSON.parse(readFileSync(metaPath, "utf8")) as ShardMeta;
    for (const [name, f] of Object.entries(meta.files)) {
      delete f.crc32;
      f.sha256 = sha256File(join(dir, `000000.${name}`));
    }
    writeFileSync(metaPath, JSON.stringify(meta));
    expect([...scanShards(dir, spec, 4).done]).toEqual([1, 0, 1, 1]);
    const path = join(dir, `000000.${MEAN}`);
    const bytes = readFileSync(path);
    bytes[0]! ^= 0x80;
    writeFileSync(path, bytes);
    expect(() => scanShards(dir, spec, 4)).toThrow("does not match its checksum");
  });

  test("a meta file with no checksum at all is refused", () => {
    const { dir } = committed("nosum");
    const metaPath = join(dir, "000000.meta.json");
    const meta = JSON.parse(readFileSync(metaPath, "utf8")) as ShardMeta;
    for (const f of Object.values(meta.files)) delete f.crc32;
    writeFileSync(metaPath, JSON.stringify(meta));
    expect(() => scanShards(dir, spec, 4)).toThrow("does not match its checksum");
  });
});
