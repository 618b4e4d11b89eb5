/** The wire layout, pinned by the golden fixture that py/tests/test_protocol.py also reads. */
import { describe, expect, test } from "bun:test";
import fixture from "./fixtures/ring-v1.json";
import { FromWorker, lensOffset, packRingHeader, slotIn, slotOut, unpackRingHeader, type RingHeader } from "../src/protocol.ts";

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
