/** The wire layouts (ring v2, socket frame v1), pinned by the golden fixtures that py/tests/test_protocol.py also reads. */
import { describe, expect, test } from "bun:test";
import fixture from "./fixtures/ring-v2.json";
import frameFixture from "./fixtures/socket-frame-v1.json";
import {
  FAMILIES,
  FRAME_BYTES,
  FRAME_MAGIC,
  FRAME_VERSION,
  FRAMING,
  FromWorker,
  inputUsed,
  lensOffset,
  outputUsed,
  packFrame,
  packRingHeader,
  slotIn,
  slotOut,
  unpackFrame,
  unpackRingHeader,
  type Family,
  type FrameHeader,
  type OutputBlock,
  type RingHeader,
} from "../src/protocol.ts";
import { packBatch, planeFraming } from "../src/workers/data-plane.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const rings = Object.fromEntries(fixture.rings.map((r) => [r.family, r])) as Record<Family, (typeof fixture.rings)[number]>;
const headerOf = (f: Family): RingHeader => ({ version: 2, ...rings[f].layout, tokenBytes: rings[f].layout.tokenBytes as 1 | 2 });

describe("ring layout v2", () => {
  test("the fixture has one ring per family, ids as wide as the family's framing says", () => {
    expect(Object.keys(rings).sort()).toEqual([...FAMILIES].sort());
    for (const f of FAMILIES) expect(rings[f].layout.tokenBytes).toBe(FRAMING[f].bytes);
  });
  for (const family of FAMILIES) {
    describe(family, () => {
      const ring = rings[family];
      const header = headerOf(family);
      test("header bytes equal the Python side's", () => {
        expect(hex(packRingHeader(header))).toBe(ring.headerHex);
        expect(unpackRingHeader(new Uint8Array(Buffer.from(ring.headerHex, "hex")))).toEqual(header);
      });
      test("slot offsets", () => {
        expect([slotIn(header, 0), slotIn(header, 1)]).toEqual(ring.slotIn);
        expect([slotOut(header, 0), slotOut(header, 1)]).toEqual(ring.slotOut);
        for (const [n, off] of Object.entries(ring.lensOffset)) expect(lensOffset(Number(n), header.tokenBytes)).toBe(off);
      });
      test("packBatch writes the fixture's input bytes: framed ids, padding, lengths", () => {
        const b = ring.batch;
        const seqs = b.seqs.map((s) => (header.tokenBytes === 1 ? Uint8Array.from(s) : Uint16Array.from(s)));
        const buf = new Uint8Array(header.dataOffset + 2 * (header.inBytes + header.outBytes)).fill(0xee);
        const used = inputUsed(b.tokens, seqs.length, header.tokenBytes);
        packBatch(buf, header, 1, seqs, b.tokens, planeFraming(family, header));
        const got = hex(buf.subarray(slotIn(header, 1), slotIn(header, 1) + used));
        const want = ring.batch.inputHex;
        // packBatch leaves the padding between ids and lengths as it was (the worker never reads it)
        const pad = [2 * b.tokens * header.tokenBytes, 2 * lensOffset(b.tokens, header.tokenBytes)] as const;
        expect(got.slice(0, pad[0]) + got.slice(pad[1])).toBe(want.slice(0, pad[0]) + want.slice(pad[1]));
        expect(used).toBe(want.length / 2);
      });
      test("result messages with the fixture's blocks parse", () => {
        const msg = { type: "result", batch: 3, slot: 1, outputs: ring.blocks, ms: 1.5, nonFinite: 0 };
        expect(FromWorker.parse(msg)).toEqual(msg as never);
        expect(FromWorker.safeParse({ ...msg, outputs: [{ ...ring.blocks[0], kind: "nope" }] }).success).toBe(false);
      });
    });
  }
  test("bad magic, version and token width are refused", () => {
    const raw = new Uint8Array(Buffer.from(rings.esm2.headerHex, "hex"));
    const bad = raw.slice();
    bad[0] = 0x58;
    expect(() => unpackRingHeader(bad)).toThrow("not an embed ring");
    const v1 = raw.slice();
    v1[8] = 1;
    expect(() => unpackRingHeader(v1)).toThrow("ring version 1, expected 2");
    const w3 = raw.slice();
    w3[40] = 3;
    expect(() => unpackRingHeader(w3)).toThrow("token width 3");
  });
  test("a plane refuses a family whose id width is not its ring's", () => {
    expect(() => planeFraming("esm2", headerOf("dnabert-s"))).toThrow("esm2 token ids are 1 byte(s) wide but the worker's ring holds 2-byte ids");
    expect(planeFraming("dnabert-s", headerOf("dnabert-s"))).toEqual({ bytes: 2, bos: 1, eos: 2 });
  });
});

describe("socket frame v1", () => {
  const codes = frameFixture.kinds;
  test("header bytes equal the Python side's, and round-trip", () => {
    expect(FRAME_BYTES).toBe(frameFixture.frameBytes);
    expect(FRAME_MAGIC).toBe(frameFixture.magic);
    expect(FRAME_VERSION).toBe(frameFixture.version);
    for (const f of frameFixture.frames) {
      const h: FrameHeader = { kind: f.kind as FrameHeader["kind"], batch: f.batch, slot: f.slot, offset: f.offset, length: f.length };
      expect(hex(packFrame(h))).toBe(f.hex);
      expect(unpackFrame(new Uint8Array(Buffer.from(f.hex, "hex")))).toEqual(h);
      expect(new Uint8Array(Buffer.from(f.hex, "hex"))[10]).toBe(codes[h.kind]);
    }
  });
  test("frame lengths: the input bytes of a batch, and the output region up to the last block", () => {
    const u = frameFixture.inputUsed;
    expect(inputUsed(u.tokens, u.seqs)).toBe(u.bytes);
    expect(outputUsed(rings.esm2.blocks as OutputBlock[])).toBe(frameFixture.frames[1]!.length);
  });
  test("bad magic, version and kind are refused", () => {
    const raw = new Uint8Array(Buffer.from(frameFixture.frames[0]!.hex, "hex"));
    const bad = raw.slice();
    bad[0] = 0x58;
    expect(() => unpackFrame(bad)).toThrow("not an embed frame");
    const v9 = raw.slice();
    v9[8] = 9;
    expect(() => unpackFrame(v9)).toThrow("frame version 9");
    const k7 = raw.slice();
    k7[10] = 7;
    expect(() => unpackFrame(k7)).toThrow("unknown frame kind 7");
  });
});
