/**
 * DNABERT-S's BPE on several cores. BPE is 95% of reading a nucleotide FASTA on one core (1M
 * 150-bp reads: 9 s of BPE against 0.5 s of parsing), and one core tokenizes about 110k reads/s
 * where one GPU embeds 63k: a host with several GPUs needs more cores. The parser hands each
 * record's bases to {@link BpeBlocks}, which packs them into blocks of about {@link BLOCK_BYTES}
 * and sends each block to a thread of a {@link BpePool} (bpe-worker.ts, Bun Workers with the
 * buffers transferred, not copied); the blocks' token ids come back and go to the sink in input
 * order, so the table is the one the in-line tokenizer makes (test/bpe-pool.test.ts).
 *
 * On the 2-core VM, 1M 150-bp reads: 9.3 s in line, 8.3 s with one thread (the reader then mostly
 * waits), 4.4–5.0 s with two; hence one thread per core by default (config.ts), the reader's own
 * parsing being ~5% of the work.
 *
 * Small inputs never start a thread: the pool starts when the first block is full. At most
 * {@link IN_FLIGHT_PER_THREAD} blocks per thread are out at once; the reader waits on the oldest
 * beyond that (fasta.ts), which bounds memory whatever the input's size.
 */
/** Where a block's records go, in order (fasta-parser.ts RecordSink's `record`). */
export interface BpeSink {
  record(entry: number, tokens: Uint16Array, start: number, end: number, unknown?: number): void;
}

/** A block's bases: about this many bytes per message (~6,900 150-bp reads, ~60 ms of BPE). */
export const BLOCK_BYTES = 1 << 20;
export const IN_FLIGHT_PER_THREAD = 2;

export interface BpeWorkerInit {
  tokenizer: string;
}

export interface BpeBlock {
  seq: number;
  bases: Uint8Array;
  /** count + 1 offsets into `bases`. */
  offsets: Uint32Array;
  count: number;
}

export interface BpeBlockResult {
  seq: number;
  /** Each record's ids, [CLS] … [SEP] framed, back to back. */
  ids: Uint16Array;
  idOffsets: Uint32Array;
  unknown: Uint32Array;
}

/** Threads that encode blocks with the tokenizer at `tokenizer` (a tokenizer.json path). */
export class BpePool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (r: BpeBlockResult) => void; reject: (e: Error) => void }>();
  private next = 0;
  private failed: Error | undefined;

  /** `blockBytes`: bases per block (tests make it small, to cross many blocks with little input). */
  constructor(readonly tokenizer: string, readonly threads: number, readonly blockBytes = BLOCK_BYTES) {}

  private start(): void {
    for (let k = 0; k < this.threads; k++) {
      const w = new Worker(new URL("./bpe-worker.ts", import.meta.url).href);
      w.onmessage = (e: MessageEvent<BpeBlockResult>) => {
        const p = this.waiting.get(e.data.seq);
        this.waiting.delete(e.data.seq);
        p?.resolve(e.data);
      };
      w.onerror = (e: ErrorEvent) => this.fail(new Error(`a tokenizer thread failed: ${e.message}`));
      w.postMessage({ tokenizer: this.tokenizer } satisfies BpeWorkerInit);
      this.workers.push(w);
    }
  }

  private fail(e: Error): void {
    this.failed = e;
    for (const p of this.waiting.values()) p.reject(e);
    this.waiting.clear();
  }

  /** Encode one block (its buffers are handed over: the caller must not touch them again). */
  encode(bases: Uint8Array, offsets: Uint32Array, count: number): Promise<BpeBlockResult> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.workers.length === 0) this.start();
    const seq = this.next++;
    const w = this.workers[seq % this.workers.length]!;
    const done = new Promise<BpeBlockResult>((resolve, reject) => this.waiting.set(seq, { resolve, reject }));
    w.postMessage({ seq, bases, offsets, count } satisfies BpeBlock, [bases.buffer, offsets.buffer] as ArrayBuffer[]);
    return done;
  }

  /** Stop the threads (pending blocks are dropped). */
  close(): void {
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
    this.fail(new Error("the tokenizer pool was closed"));
    this.failed = undefined;
  }
}

/** One parser's records on their way through the pool to the sink, in order. */
export class BpeBlocks {
  private bases: Uint8Array;
  private offsets = new Uint32Array(4096);
  private count = 0;
  private firstEntry = 0;
  private readonly pending: { firstEntry: number; result: Promise<BpeBlockResult> }[] = [];
  private sent = false;

  /** `inline`: the same tokenizer on this thread, for an input smaller than one block. */
  constructor(
    private readonly pool: BpePool,
    private readonly sink: BpeSink,
    private readonly inline: { encode(seq: Uint8Array): { ids: Uint16Array; unknown: number } },
  ) {
    this.bases = new Uint8Array(pool.blockBytes + (pool.blockBytes >> 2));
  }

  /** Record `entry`'s bases (copied). */
  add(entry: number, seq: Uint8Array): void {
    if (this.count === 0) this.firstEntry = entry;
    const at = this.offsets[this.count]!;
    if (at + seq.length > this.bases.length) {
      const grown = new Uint8Array(2 * (at + seq.length));
      grown.set(this.bases.subarray(0, at));
      this.bases = grown;
    }
    this.bases.set(seq, at);
    if (this.count + 2 > this.offsets.length) {
      const grown = new Uint32Array(2 * this.offsets.length);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    this.offsets[++this.count] = at + seq.length;
    if (at + seq.length >= this.pool.blockBytes) this.send();
  }

  private send(): void {
    if (this.count === 0) return;
    const used = this.offsets[this.count]!;
    const [basesRoom, offsetsRoom] = [this.bases.length, this.offsets.length];
    // The buffers go to the thread whole (transferred: detached here): this side starts new ones.
    const result = this.pool.encode(this.bases.subarray(0, used), this.offsets.subarray(0, this.count + 1), this.count);
    result.catch(() => {}); // awaited in settle(); a parse error may abandon it first
    this.pending.push({ firstEntry: this.firstEntry, result });
    this.bases = new Uint8Array(basesRoom);
    this.offsets = new Uint32Array(offsetsRoom);
    this.count = 0;
    this.sent = true;
  }

  /** An input smaller than one block: its records tokenized here, no thread started. */
  private encodeHere(): void {
    for (let r = 0; r < this.count; r++) {
      const { ids, unknown } = this.inline.encode(this.bases.subarray(this.offsets[r]!, this.offsets[r + 1]!));
      this.sink.record(this.firstEntry + r, ids, 1, ids.length - 1, unknown);
    }
    this.count = 0;
  }

  /**
   * Hand finished blocks to the sink in order, waiting while more than `keep` blocks are out
   * (`keep` 0: send the partial block and wait for every one).
   */
  async settle(keep = this.pool.threads * IN_FLIGHT_PER_THREAD): Promise<void> {
    if (keep === 0) {
      if (this.sent) this.send();
      else this.encodeHere();
    }
    while (this.pending.length > keep) {
      const { firstEntry, result } = this.pending.shift()!;
      const { ids, idOffsets, unknown } = await result;
      for (let r = 0; r < unknown.length; r++) {
        // [CLS] … [SEP] framing dropped: the wire adds it (as the in-line path).
        this.sink.record(firstEntry + r, ids, idOffsets[r]! + 1, idOffsets[r + 1]! - 1, unknown[r]!);
      }
    }
  }
}
