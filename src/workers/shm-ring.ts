/**
 * The shared-memory data plane (transport "shm"): the ring file the worker created, mapped once
 * by both sides. A batch written into a slot is already the worker's to read, and a result's
 * blocks are in the slot when its message arrives, so there is nothing to send or wait for.
 */
import { unlinkSync } from "node:fs";
import { unpackRingHeader, type Family, type OutputBlock, type ResultMsg, type RingHeader, type RingInfo, type TokenFraming, type TokenIds } from "../protocol.ts";
import { blockView, packBatch, planeFraming, type DataPlane } from "./data-plane.ts";

export class ShmRing implements DataPlane {
  readonly transport = "shm" as const;
  readonly header: RingHeader;
  readonly closed = false;
  private readonly ring: Uint8Array;
  private readonly framing: TokenFraming;

  constructor(info: RingInfo, family: Family) {
    this.ring = Bun.mmap(info.path, { shared: true });
    this.header = unpackRingHeader(this.ring);
    this.framing = planeFraming(family, this.header);
    // Both sides have it mapped now: unlink so that no file is left behind, whatever happens.
    try {
      unlinkSync(info.path);
    } catch {}
  }

  async open(): Promise<void> {}

  sendBatch(_batch: number, slot: number, seqs: readonly TokenIds[], nTokens: number): void {
    packBatch(this.ring, this.header, slot, seqs, nTokens, this.framing);
  }

  onResult(_m: ResultMsg, _slot: number, ready: (problem?: string) => void): void {
    ready();
  }

  forget(_batch: number): void {}

  outputView(slot: number, b: OutputBlock): Float32Array | Float16Array {
    return blockView(this.ring, this.header, slot, b);
  }

  /** The mapping stays until the handle is collected: views handed out may still be read. */
  close(): void {}
}
