/**
 * The wire protocol between the orchestrator and a worker, version 1 (mirror of
 * py/embed_worker/protocol.py; both are pinned by test/fixtures/ring-v1.json).
 *
 * Control: JSON lines over Bun's `ipc` channel. Messages are a discriminated union on `type`;
 * outgoing ones are checked with `satisfies`, incoming ones parsed with zod.
 * Data: a ring file created by the worker and mapped by both sides; see `RingLayout`.
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 1;
export const RING_MAGIC = "EMBRING\0";
export const RING_VERSION = 1;
export const HEADER_BYTES = 4096;
export const OUTPUT_KINDS = ["mean", "bos", "residues"] as const;
export type OutputKind = (typeof OUTPUT_KINDS)[number];
export const OUT_DTYPES = ["float32", "float16"] as const;
export type OutDtype = (typeof OUT_DTYPES)[number];
export const DTYPE_BYTES: Record<OutDtype, number> = { float32: 4, float16: 2 };

export const align = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Byte offset of the i32 sequence lengths inside a slot's input region. */
export const lensOffset = (nTokens: number): number => align(nTokens, 8);

// ---- orchestrator -> worker ------------------------------------------------------------------

export type ToWorker =
  | { type: "embed"; batch: number; slot: number; seqs: number; tokens: number; maxLen: number }
  | { type: "ping"; seq: number }
  | { type: "shutdown" }
  /** Test hook: the worker exits at once with `code`, as a crash would. */
  | { type: "crash"; code: number };

// ---- worker -> orchestrator ------------------------------------------------------------------

export const WireError = z.object({
  name: z.string(),
  message: z.string(),
  hint: z.string().optional().default(""),
  traceback: z.string().optional(),
});
export type WireError = z.infer<typeof WireError>;

export const RingInfo = z.object({
  path: z.string(),
  version: z.literal(RING_VERSION),
  slots: z.number().int().positive(),
  inBytes: z.number().int().positive(),
  outBytes: z.number().int().positive(),
  dataOffset: z.number().int().nonnegative(),
});
export type RingInfo = z.infer<typeof RingInfo>;

export const OutputBlock = z.object({
  kind: z.enum(OUTPUT_KINDS),
  layer: z.number().int().nonnegative(),
  offset: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  dim: z.number().int().positive(),
  dtype: z.enum(OUT_DTYPES),
});
export type OutputBlock = z.infer<typeof OutputBlock>;

export const ModelInfo = z.object({
  name: z.string(),
  path: z.string(),
  format: z.string(),
  numLayers: z.number().int().positive(),
  dim: z.number().int().positive(),
  heads: z.number().int().positive(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export const ReadyMsg = z.object({
  type: z.literal("ready"),
  protocol: z.literal(PROTOCOL_VERSION),
  pid: z.number().int(),
  device: z.string(),
  backend: z.string(),
  dtype: z.string(),
  model: ModelInfo,
  layers: z.array(z.number().int().nonnegative()),
  include: z.array(z.enum(OUTPUT_KINDS)),
  outDtype: z.enum(OUT_DTYPES),
  maxTokens: z.number().int().positive(),
  maxSeqs: z.number().int().positive(),
  ring: RingInfo,
  versions: z.record(z.string(), z.string()),
  loadMs: z.number(),
});
export type ReadyMsg = z.infer<typeof ReadyMsg>;

export const ResultMsg = z.object({
  type: z.literal("result"),
  batch: z.number().int(),
  slot: z.number().int(),
  outputs: z.array(OutputBlock),
  ms: z.number(),
  nonFinite: z.number().int(),
});
export type ResultMsg = z.infer<typeof ResultMsg>;

export const ErrorMsg = z.object({
  type: z.literal("error"),
  batch: z.number().int().optional(),
  error: WireError,
});
export type ErrorMsg = z.infer<typeof ErrorMsg>;

export const PongMsg = z
  .object({ type: z.literal("pong"), seq: z.number().int(), batches: z.number().optional(), tokens: z.number().optional() })
  .loose();
export type PongMsg = z.infer<typeof PongMsg>;

export const FromWorker = z.discriminatedUnion("type", [ReadyMsg, ResultMsg, ErrorMsg, PongMsg]);
export type FromWorker = z.infer<typeof FromWorker>;

// ---- ring layout -----------------------------------------------------------------------------

/** The fixed header at the start of a ring file (64 bytes used of HEADER_BYTES). */
export interface RingHeader {
  version: number;
  slots: number;
  inBytes: number;
  outBytes: number;
  dataOffset: number;
}

export function packRingHeader(h: RingHeader): Uint8Array {
  const buf = new Uint8Array(40);
  const dv = new DataView(buf.buffer);
  buf.set(new TextEncoder().encode(RING_MAGIC), 0);
  dv.setUint32(8, h.version, true);
  dv.setUint32(12, h.slots, true);
  dv.setBigUint64(16, BigInt(h.inBytes), true);
  dv.setBigUint64(24, BigInt(h.outBytes), true);
  dv.setBigUint64(32, BigInt(h.dataOffset), true);
  return buf;
}

export function unpackRingHeader(bytes: Uint8Array): RingHeader {
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== RING_MAGIC) throw new Error(`not an embed ring (magic ${JSON.stringify(magic)})`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 40);
  const h = {
    version: dv.getUint32(8, true),
    slots: dv.getUint32(12, true),
    inBytes: Number(dv.getBigUint64(16, true)),
    outBytes: Number(dv.getBigUint64(24, true)),
    dataOffset: Number(dv.getBigUint64(32, true)),
  };
  if (h.version !== RING_VERSION) throw new Error(`ring version ${h.version}, expected ${RING_VERSION}`);
  return h;
}

export const slotIn = (h: RingHeader, slot: number): number => h.dataOffset + slot * (h.inBytes + h.outBytes);
export const slotOut = (h: RingHeader, slot: number): number => slotIn(h, slot) + h.inBytes;
