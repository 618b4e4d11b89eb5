/**
 * The wire protocol between the orchestrator and a worker, version 3 (mirror of
 * py/embed_worker/wire/protocol.py; both are pinned by test/fixtures/ring-v2.json).
 *
 * Control: JSON lines over Bun's `ipc` channel. Messages are a discriminated union on `type`;
 * outgoing ones are checked with `satisfies`, incoming ones parsed with zod.
 * Data: a ring file created by the worker and mapped by both sides (transport "shm"), or the same
 * slot layout kept privately by each side with the bytes sent as frames over a unix socket
 * (transport "socket", where /dev/shm is missing; pinned by test/fixtures/socket-frame-v1.json).
 */
import { z } from "zod";

/** 2: READY names the compute precision `precision` (it was `dtype`, beside `outDtype`).
 * 3: model families: the worker config and READY name the `family`; token ids travel 1 or 2 bytes
 * wide (ring v2: the header and READY's ring say `tokenBytes`). */
export const PROTOCOL_VERSION = 3;
export const RING_MAGIC = "EMBRING\0";
export const RING_VERSION = 2;
export const HEADER_BYTES = 4096;
export const OUTPUT_KINDS = ["mean", "bos", "residues"] as const;
export type OutputKind = (typeof OUTPUT_KINDS)[number];
export const OUT_DTYPES = ["float32", "float16"] as const;
export type OutDtype = (typeof OUT_DTYPES)[number];
export const DTYPE_BYTES: Record<OutDtype, number> = { float32: 4, float16: 2 };
export const TRANSPORTS = ["shm", "socket"] as const;
export type Transport = (typeof TRANSPORTS)[number];
/** How a GPU worker runs the model's blocks (py model.use_kernels): "quack" is "triton" with
 * FC1+GELU and QKV+rotary as quack GEMMs with fused epilogues (py epilogues.py). */
export const KERNELS = ["quack", "triton", "compile", "eager"] as const;
export type Kernels = (typeof KERNELS)[number];
/** What a worker is asked for: a kernels arrangement, or "auto" (the worker takes the fastest
 * that runs on its device; READY says which). */
export type KernelsRequest = Kernels | "auto";

/**
 * Model families: what the orchestrator and a worker must agree on for each. A family's token ids
 * travel `bytes` wide (ESM-2's 33-letter vocabulary in one byte, DNABERT-S's 4,096 BPE entries in
 * two), each sequence framed by `bos`/`eos` on the wire ([CLS]/[SEP] for DNABERT-S); `pooling`
 * says what each output kind means for the family (the manifest records it).
 */
export const FAMILIES = ["esm2", "dnabert-s"] as const;
export type Family = (typeof FAMILIES)[number];
export interface TokenFraming {
  bytes: 1 | 2;
  bos: number;
  eos: number;
}
export const FRAMING: Readonly<Record<Family, Readonly<TokenFraming>>> = Object.freeze({
  esm2: Object.freeze({ bytes: 1, bos: 0, eos: 2 }),
  "dnabert-s": Object.freeze({ bytes: 2, bos: 1, eos: 2 }),
});
export const POOLING: Readonly<Record<Family, Readonly<Record<OutputKind, string>>>> = Object.freeze({
  esm2: Object.freeze({ mean: "mean over residues 1..L (BOS and EOS excluded; fair-esm)", bos: "the BOS token's row", residues: "one row per residue (BOS and EOS excluded)" }),
  "dnabert-s": Object.freeze({ mean: "mean over all tokens, [CLS] and [SEP] included (VirNucPro)", bos: "the [CLS] token's row", residues: "one row per BPE token ([CLS] and [SEP] excluded)" }),
});

export const align = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Byte offset of the i32 sequence lengths inside a slot's input region: after the ids
 * (`tokenBytes` each), 8-byte aligned. */
export const lensOffset = (nTokens: number, tokenBytes: 1 | 2 = 1): number => align(nTokens * tokenBytes, 8);

// ---- orchestrator -> worker ------------------------------------------------------------------

export type ToWorker =
  | { type: "embed"; batch: number; slot: number; seqs: number; tokens: number; maxLen: number }
  | { type: "ping"; seq: number }
  | { type: "shutdown" };

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
  /** "shm": `path` is the ring file to map; "socket": `path` is the unix socket to connect to. */
  transport: z.enum(TRANSPORTS),
  version: z.literal(RING_VERSION),
  slots: z.number().int().positive(),
  inBytes: z.number().int().positive(),
  outBytes: z.number().int().positive(),
  dataOffset: z.number().int().nonnegative(),
  /** Width of one token id in a slot's input region: 1 (u8) or 2 (u16, little-endian). */
  tokenBytes: z.union([z.literal(1), z.literal(2)]),
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
  /** The family of the model the worker loaded (it refuses to start on another than it was told). */
  family: z.enum(FAMILIES),
  pid: z.number().int(),
  device: z.string(),
  backend: z.string(),
  /** What runs the blocks: quack | triton | compile | eager (older or fake workers: eager). */
  kernels: z.enum(KERNELS).optional().default("eager"),
  /** Compute precision the model runs in: fp32 | fp16 | bf16 (the stored dtype is `outDtype`). */
  precision: z.string(),
  model: ModelInfo,
  layers: z.array(z.number().int().nonnegative()),
  include: z.array(z.enum(OUTPUT_KINDS)),
  outDtype: z.enum(OUT_DTYPES),
  maxTokens: z.number().int().positive(),
  maxSeqs: z.number().int().positive(),
  ring: RingInfo,
  versions: z.record(z.string(), z.string()),
  loadMs: z.number(),
  /** Milliseconds of each start-up phase, in order (torch, device, load, kernels, ring, warm-up). */
  startupMs: z.record(z.string(), z.number()).optional().default({}),
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

/** The fixed header at the start of a ring file (44 bytes used of HEADER_BYTES). */
export interface RingHeader {
  version: number;
  slots: number;
  inBytes: number;
  outBytes: number;
  dataOffset: number;
  tokenBytes: 1 | 2;
}

export function packRingHeader(h: RingHeader): Uint8Array {
  const buf = new Uint8Array(44);
  const dv = new DataView(buf.buffer);
  buf.set(new TextEncoder().encode(RING_MAGIC), 0);
  dv.setUint32(8, h.version, true);
  dv.setUint32(12, h.slots, true);
  dv.setBigUint64(16, BigInt(h.inBytes), true);
  dv.setBigUint64(24, BigInt(h.outBytes), true);
  dv.setBigUint64(32, BigInt(h.dataOffset), true);
  dv.setUint32(40, h.tokenBytes, true);
  return buf;
}

export function unpackRingHeader(bytes: Uint8Array): RingHeader {
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== RING_MAGIC) throw new Error(`not an embed ring (magic ${JSON.stringify(magic)})`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 44);
  const tokenBytes = dv.getUint32(40, true);
  const h = {
    version: dv.getUint32(8, true),
    slots: dv.getUint32(12, true),
    inBytes: Number(dv.getBigUint64(16, true)),
    outBytes: Number(dv.getBigUint64(24, true)),
    dataOffset: Number(dv.getBigUint64(32, true)),
  };
  if (h.version !== RING_VERSION) throw new Error(`ring version ${h.version}, expected ${RING_VERSION}`);
  if (tokenBytes !== 1 && tokenBytes !== 2) throw new Error(`ring token width ${tokenBytes} bytes, expected 1 or 2`);
  return { ...h, tokenBytes };
}

export const slotIn = (h: RingHeader, slot: number): number => h.dataOffset + slot * (h.inBytes + h.outBytes);
export const slotOut = (h: RingHeader, slot: number): number => slotIn(h, slot) + h.inBytes;

/** Bytes of a slot's input region a batch uses (tokens, padding, lengths): an `in` frame's length. */
export const inputUsed = (nTokens: number, nSeqs: number, tokenBytes: 1 | 2 = 1): number => lensOffset(nTokens, tokenBytes) + 4 * nSeqs;

/** Bytes from a slot's output region start to the end of the last block: an `out` frame's length. */
export const outputUsed = (blocks: readonly OutputBlock[]): number =>
  blocks.reduce((end, b) => Math.max(end, b.offset + b.rows * b.dim * DTYPE_BYTES[b.dtype]), 0);

// ---- socket transport frames -----------------------------------------------------------------
//
// Frame v1 (little-endian, 40 bytes, then `length` raw bytes), mirrored in protocol.py:
//   0 8s magic "EMBFRAME" | 8 u16 version | 10 u16 kind (1 in, 2 out) | 12 u32 slot
//   16 u64 batch | 24 u64 offset inside the slot's input/output region | 32 u64 length

export const FRAME_MAGIC = "EMBFRAME";
export const FRAME_VERSION = 1;
export const FRAME_BYTES = 40;
const FRAME_KIND_CODES = { in: 1, out: 2 } as const;
export type FrameKind = keyof typeof FRAME_KIND_CODES;

export interface FrameHeader {
  kind: FrameKind;
  batch: number;
  slot: number;
  offset: number;
  length: number;
}

const MAGIC_BYTES = new TextEncoder().encode(FRAME_MAGIC);

/** Write a frame header into `into` (FRAME_BYTES long), or a new buffer. */
export function packFrame(h: FrameHeader, into: Uint8Array = new Uint8Array(FRAME_BYTES)): Uint8Array {
  const dv = new DataView(into.buffer, into.byteOffset, FRAME_BYTES);
  into.set(MAGIC_BYTES, 0);
  dv.setUint16(8, FRAME_VERSION, true);
  dv.setUint16(10, FRAME_KIND_CODES[h.kind], true);
  dv.setUint32(12, h.slot, true);
  dv.setBigUint64(16, BigInt(h.batch), true);
  dv.setBigUint64(24, BigInt(h.offset), true);
  dv.setBigUint64(32, BigInt(h.length), true);
  return into;
}

export function unpackFrame(bytes: Uint8Array): FrameHeader {
  for (let i = 0; i < MAGIC_BYTES.length; i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) {
      throw new Error(`not an embed frame (magic ${JSON.stringify(new TextDecoder().decode(bytes.subarray(0, 8)))})`);
    }
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, FRAME_BYTES);
  const version = dv.getUint16(8, true);
  if (version !== FRAME_VERSION) throw new Error(`frame version ${version}, expected ${FRAME_VERSION}`);
  const code = dv.getUint16(10, true);
  const kind = code === 1 ? "in" : code === 2 ? "out" : undefined;
  if (!kind) throw new Error(`unknown frame kind ${code}`);
  return {
    kind,
    slot: dv.getUint32(12, true),
    batch: Number(dv.getBigUint64(16, true)),
    offset: Number(dv.getBigUint64(24, true)),
    length: Number(dv.getBigUint64(32, true)),
  };
}

// ---- What crosses between the orchestrator's parts: worker handle, pool, store ----

/** What the worker process is told in EMBED_WORKER_CONFIG. */
export interface WorkerWireConfig {
  name: string;
  model: string;
  /** The model family the run expects (the worker refuses a checkpoint of another family). */
  family: Family;
  device: "cpu" | "cuda";
  precision: "fp32" | "fp16" | "bf16";
  layers: number[];
  include: string[];
  outDtype: "float32" | "float16";
  maxTokens: number | null;
  slots: number;
  ringDir?: string;
  threads?: number;
  /** Data plane: the mapped ring ("shm") or frames over a unix socket ("socket"); see transport.ts. */
  transport: Transport;
  /** Fetch a released checkpoint that no local cache holds (opt-in). */
  download?: boolean;
  /** What runs the blocks on a GPU (see protocol KERNELS); "auto" lets the worker choose. */
  kernels?: KernelsRequest;
  /** The longest sequence the run can send, BOS and EOS included (--truncate + 2): a worker
   * leaves out kernels only longer sequences need. */
  maxLen?: number;
  /** This worker's tokens as the orchestrator guesses them from the input's size (absent:
   * unknown); "auto" kernels skip quack's import for a run too short to repay it. */
  expectedTokens?: number;
  /** Test hook: make the worker wrong on purpose (see py worker.py FAULTS), to prove checks fail. */
  fault?: string;
}

/** One batch as the orchestrator hands it over: token ids per sequence, without the family's
 * framing tokens (BOS/EOS, [CLS]/[SEP]): u8 ids for ESM-2, u16 BPE ids for DNABERT-S. */
export interface BatchInput {
  id: number;
  seqs: readonly TokenIds[];
}

/** One sequence's token ids as the tokenizer wrote them (FRAMING says the width per family). */
export type TokenIds = Uint8Array | Uint16Array;

/** One output block as a typed-array view into the ring; valid only inside the consumer. */
export interface OutputView extends OutputBlock {
  data: Float32Array | Float16Array;
}

export interface BatchResult {
  batch: number;
  ms: number;
  nonFinite: number;
  outputs: OutputView[];
}
