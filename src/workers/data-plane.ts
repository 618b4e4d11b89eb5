/**
 * How batches and results move between the orchestrator and one worker: the `DataPlane` the
 * worker handle talks to, whichever transport carries the bytes (as the Python side has
 * wire/ring.py and wire/datasock.py behind one channel). Two implementations, chosen once per
 * worker from its READY message (handle.ts):
 * - shm-ring.ts: the worker's ring file, mapped by both sides;
 * - socket-ring.ts: a private copy of the same slot layout kept in step by frames on a unix socket.
 * Both share the slot layout of protocol.ts, so a batch is packed the same way into either.
 */
import { FRAMING, lensOffset, type Family, slotIn, slotOut, type OutputBlock, type ResultMsg, type RingHeader, type TokenFraming, type TokenIds, type Transport } from "../protocol.ts";

export interface DataPlane {
  readonly transport: Transport;
  /** The slot layout (slots, bytes per input and output region). */
  readonly header: RingHeader;
  /** Set once the plane can carry nothing more (socket closed): every later batch is refused. */
  readonly closed: boolean;
  /** Ready for use (socket: connect); rejects when the worker's end cannot be reached. */
  open(): Promise<void>;
  /**
   * Pack `seqs` (`nTokens` tokens with the family's BOS/EOS, checked against the budget by the caller) into
   * slot `slot`'s input region and make them visible to the worker as batch `batch`, before
   * its `embed` message is sent.
   */
  sendBatch(batch: number, slot: number, seqs: readonly TokenIds[], nTokens: number): void;
  /**
   * The worker's result message for a batch in `slot` arrived: `ready` runs once its output
   * bytes are readable here (at once for shm; socket: when the out frame is in), with a problem
   * (a protocol error) when they do not cover the result's blocks.
   */
  onResult(m: ResultMsg, slot: number, ready: (problem?: string) => void): void;
  /** Batch `batch` ended without a result (failed, or the worker died): forget its state. */
  forget(batch: number): void;
  /** A view of output block `b` of slot `slot`; valid until the slot is reused. */
  outputView(slot: number, b: OutputBlock): Float32Array | Float16Array;
  /** Close our end (idempotent); no `broken` after this. */
  close(): void;
}

/**
 * Write batch `seqs` into slot `slot` of `ring`: token ids `framing.bytes` wide (u16 little-endian,
 * as the worker reads them), each sequence framed by `framing.bos`/`eos`, then int32 lengths.
 * The ring's width must be the family's (checked once, where the plane is made: planeFraming).
 */
export function packBatch(ring: Uint8Array, header: RingHeader, slot: number, seqs: readonly TokenIds[], nTokens: number, framing: TokenFraming): void {
  const base = slotIn(header, slot);
  const at = ring.byteOffset + base;
  // Slot input regions start 4096-aligned (dataOffset, inBytes and outBytes are), so a u16 view is aligned.
  const tokens = framing.bytes === 1 ? ring.subarray(base, base + nTokens) : new Uint16Array(ring.buffer, at, nTokens);
  const lens = new Int32Array(ring.buffer, at + lensOffset(nTokens, framing.bytes), seqs.length);
  const { bos, eos } = framing;
  let o = 0;
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i]!;
    tokens[o] = bos;
    tokens.set(s, o + 1);
    tokens[o + s.length + 1] = eos;
    o += s.length + 2;
    lens[i] = s.length + 2;
  }
}

/** A typed view of output block `b` of slot `slot` in `ring` (no copy). */
export function blockView(ring: Uint8Array, header: RingHeader, slot: number, b: OutputBlock): Float32Array | Float16Array {
  const at = ring.byteOffset + slotOut(header, slot) + b.offset;
  const count = b.rows * b.dim;
  return b.dtype === "float32" ? new Float32Array(ring.buffer, at, count) : new Float16Array(ring.buffer, at, count);
}

/** The framing a plane packs with: the READY family's, which must match the ring's token width. */
export function planeFraming(family: Family, header: RingHeader): TokenFraming {
  const framing = FRAMING[family];
  if (framing.bytes !== header.tokenBytes) {
    throw new Error(`${family} token ids are ${framing.bytes} byte(s) wide but the worker's ring holds ${header.tokenBytes}-byte ids`);
  }
  return framing;
}
