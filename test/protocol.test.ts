/** The wire layouts (ring v1, socket frame v1), pinned by the golden fixtures that py/tests/test_protocol.py also reads. */
import { describe, expect, test } from "bun:test";
import fixture from "./fixtures/ring-v1.json";
import frameFixture from "./fixtures/socket-frame-v1.json";
import {
  FRAME_BYTES,
  FRAME_MAGIC,
  FRAME_VERSION,
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
  type FrameHeader,
  type OutputBlock,
  type RingHeader,
} from "../src/protocol.ts";

const header: RingHeader = { version: 1, ...fixture.layout };
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("ring layout v1", () => {
  test("header bytes equal the Python side's", () => {
    expect(hex(packRingHeader(header))).toBe(fixture.headerHex);
    expect(unpackRingHeader(new Uint8Array(Buffer.from(fixture.headerHex, "hex")))).toEqual(header);
  });
  test("slot offsets", () => {
    expect([slotIn(header, 0), slotIn(header, 1)]).toEqual(fixture.slotIn);
    expect([slotOut(header, 0), slotOut(header, 1)]).toEqual(fixture.slotOut);
    for (const [n, off] of Object.entries(fixture.lensOffset)) expect(lensOffset(Number(n))).toBe(off);
  });
  test("bad magic and version are refused", () => {
    const raw = new Uint8Array(Buffer.from(fixture.headerHex, "hex"));
    const bad = raw.slice();
    bad[0] = 0x58;
    expect(() => unpackRingHeader(bad)).toThrow("not an embed ring");
    const v9 = raw.slice();
    v9[8] = 9;
    expect(() => unpackRingHeader(v9)).toThrow("version 9");
  });
  test("result messages with the fixture's blocks parse", () => {
    const msg = { type: "result", batch: 3, slot: 1, outputs: fixture.blocks, ms: 1.5, nonFinite: 0 };
    expect(FromWorker.parse(msg)).toEqual(msg as never);
    expect(FromWorker.safeParse({ ...msg, outputs: [{ ...fixture.blocks[0], kind: "nope" }] }).success).toBe(false);
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
    expect(outputUsed(fixture.blocks as OutputBlock[])).toBe(frameFixture.frames[1]!.length);
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
