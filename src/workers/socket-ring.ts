/**
 * The socket data plane (transport "socket", where /dev/shm is missing): a private copy of the
 * ring's slot layout, kept in step with the worker's copy by frames on the unix socket the
 * worker listens on (transport.ts `DataSocket`). A batch goes as one `in` frame, written before
 * its `embed` message (the worker reads frames and messages in the same order); a result is
 * handed over only once both its message and its `out` frame are in, whichever comes first.
 */
import { unlinkSync } from "node:fs";
import { inputUsed, outputUsed, packRingHeader, slotIn, slotOut, type Family, type FrameHeader, type OutputBlock, type ResultMsg, type RingHeader, type RingInfo, type TokenFraming, type TokenIds } from "../protocol.ts";
import { blockView, packBatch, planeFraming, type DataPlane } from "./data-plane.ts";
import { DataSocket } from "./transport.ts";

/** A batch in flight: its slot, and how far its result got. */
interface InFlight {
  slot: number;
  /** The result message, held until the batch's out frame is complete. */
  result?: ResultMsg;
  ready?: (problem?: string) => void;
  /** Bytes of the batch's complete out frame (undefined until it is in). */
  frameBytes?: number;
}

export class SocketRing implements DataPlane {
  readonly transport = "socket" as const;
  readonly header: RingHeader;
  private readonly ring: Uint8Array;
  private readonly path: string;
  private readonly inFlight = new Map<number, InFlight>();
  private data: DataSocket | undefined;
  private readonly framing: TokenFraming;

  /** `broken` runs once if the socket fails or a frame is refused while not closed by us. */
  constructor(info: RingInfo, family: Family, private readonly broken: (err: Error) => void) {
    const { slots, inBytes, outBytes, dataOffset, tokenBytes } = info;
    this.path = info.path;
    this.header = { version: info.version, slots, inBytes, outBytes, dataOffset, tokenBytes };
    this.framing = planeFraming(family, this.header);
    this.ring = new Uint8Array(dataOffset + slots * (inBytes + outBytes));
    this.ring.set(packRingHeader(this.header), 0);
  }

  get closed(): boolean {
    return this.data?.closed ?? false;
  }

  async open(): Promise<void> {
    this.data = await DataSocket.connect(this.path, {
      begin: (h) => this.frameBegin(h),
      end: (h) => this.frameEnd(h),
      broken: (err) => this.broken(err),
    });
    // Connected: the path is needed no more. The worker unlinks it once it accepts; unlinking
    // here too leaves nothing behind even if the worker is killed before its accept thread runs.
    try {
      unlinkSync(this.path);
    } catch {}
  }

  sendBatch(batch: number, slot: number, seqs: readonly TokenIds[], nTokens: number): void {
    packBatch(this.ring, this.header, slot, seqs, nTokens, this.framing);
    this.inFlight.set(batch, { slot });
    const base = slotIn(this.header, slot);
    const length = inputUsed(nTokens, seqs.length, this.header.tokenBytes);
    this.data?.sendFrame({ kind: "in", batch, slot, offset: 0, length }, this.ring.subarray(base, base + length));
  }

  onResult(m: ResultMsg, _slot: number, ready: (problem?: string) => void): void {
    const f = this.inFlight.get(m.batch);
    if (!f || f.frameBytes === undefined) {
      // Its out frame is still arriving: frameEnd finishes the batch.
      if (f) Object.assign(f, { result: m, ready });
      return;
    }
    this.finish(m.batch, f, m, ready);
  }

  forget(batch: number): void {
    this.inFlight.delete(batch);
  }

  outputView(slot: number, b: OutputBlock): Float32Array | Float16Array {
    return blockView(this.ring, this.header, slot, b);
  }

  close(): void {
    this.data?.close();
  }

  private finish(batch: number, f: InFlight, m: ResultMsg, ready: (problem?: string) => void): void {
    if (outputUsed(m.outputs) > f.frameBytes!) {
      return ready(`batch ${m.batch}: result blocks end at ${outputUsed(m.outputs)}, out frame has ${f.frameBytes} bytes`);
    }
    this.inFlight.delete(batch);
    ready();
  }

  /** Where an out frame's bytes go: the batch's output region. */
  private frameBegin(h: FrameHeader): Uint8Array {
    const f = this.inFlight.get(h.batch);
    if (h.kind !== "out" || !f || f.slot !== h.slot || f.frameBytes !== undefined) {
      throw new Error(`unexpected ${h.kind} frame for batch ${h.batch} slot ${h.slot}`);
    }
    if (h.offset !== 0 || h.length > this.header.outBytes) {
      throw new Error(`out frame of ${h.length} bytes at ${h.offset} does not fit the slot (${this.header.outBytes})`);
    }
    const base = slotOut(this.header, h.slot);
    return this.ring.subarray(base, base + h.length);
  }

  private frameEnd(h: FrameHeader): void {
    const f = this.inFlight.get(h.batch);
    if (!f) return;
    f.frameBytes = h.length;
    if (f.result && f.ready) this.finish(h.batch, f, f.result, f.ready);
  }
}
