/**
 * The TypeScript API for notebooks and programs. Workers start once per `Embedder` and are reused
 * by every `embed` call; `await using` stops them.
 *
 *   await using e = await Embedder.create({ model: "esm2_t33_650M_UR50D" });
 *   for await (const { id, vector } of e.embed("proteins.fasta")) ...
 *   for await (const x of e.embed([{ id: "a", sequence: "MKTAYIAK" }])) ...
 *
 * Input: a FASTA path ("-" for stdin, .gz ok), FASTA text, or an (async) iterable of
 * `{ id, sequence }`: protein for ESM-2, nucleotides for DNABERT-S (the model decides the family,
 * as for `embed run`; reads go through the BPE of the folder's tokenizer.json, with the same
 * alphabet checks and [UNK] policy as FASTA files). Output: one `Embedding` per record, layer and output kind, in the order
 * batches finish (length-sorted packing does not follow input order; use `index` to restore it).
 * Iterables are embedded in chunks of `chunkRecords`, so memory stays bounded. The workers run
 * only as far ahead of the consumer as their ring slots (backpressure), and leaving the loop early
 * (break, throw) stops the call before the next one starts.
 *
 * The free function `embed()` is the one-shot form: it starts workers, embeds one input and stops
 * them. Reuse across calls is the `Embedder`'s job, because the workers' lifetime must be owned by
 * something the caller disposes: a hidden cache would keep the model processes (and GPU memory)
 * alive after the loop, and keep Bun's event loop from exiting at the end of a script.
 */
import { existsSync } from "node:fs";
import type { RunConfig, RunOptionsInput } from "./config.ts";
import { groupIdentical, withCopies } from "./input/dedup.ts";
import type { DeviceSlot } from "./workers/devices.ts";
import { InputError, type InputLocation } from "./errors.ts";
import { ingest, ingestText } from "./input/ingest.ts";
import { readNucleotideLine, type ReadingOptions } from "./input/alphabet-guard.ts";
import { readingFor } from "./input/reading.ts";
import { resolveRunProbed } from "./resolve.ts";
import { log } from "./log.ts";
import type { Family, OutputKind } from "./protocol.ts";
import { RecordTable } from "./input/records.ts";
import { embedPlan, planRecords, startWorkers, workerLimits } from "./workers/session.ts";
import { tokenize, TokenizeError } from "./input/tokenize.ts";
import type { WorkerHandle } from "./workers/handle.ts";

export type EmbedderOptions = Omit<RunOptionsInput, "inputs" | "output" | "dry" | "overwrite" | "shardRecords" | "slice" | "shard"> & {
  /** Records per chunk when the input is an iterable (default 50,000). */
  chunkRecords?: number;
};

export interface SequenceRecord {
  id: string;
  sequence: string;
}

export type EmbedInput = string | Iterable<SequenceRecord> | AsyncIterable<SequenceRecord>;

export interface Embedding {
  id: string;
  /** Position of the record in the input of this `embed` call. */
  index: number;
  layer: number;
  kind: OutputKind;
  /** `dim` values (mean, bos) or residues × dim values, row-major (residues). */
  vector: Float32Array | Float16Array;
}

const DEFAULT_CHUNK = 50_000;

export class Embedder implements AsyncDisposable {
  private readonly cfg: RunConfig;
  private readonly devices: DeviceSlot[];
  private readonly workers: WorkerHandle[];
  private readonly chunkRecords: number;
  /** How input is read: the family's tokenizer and checks (input/reading.ts). */
  private readonly reading: ReadingOptions;
  private readonly family: Family;
  private busy: Promise<void> = Promise.resolve();

  private constructor(cfg: RunConfig, devices: DeviceSlot[], workers: WorkerHandle[], chunkRecords: number, reading: ReadingOptions, family: Family) {
    this.cfg = cfg;
    this.devices = devices;
    this.workers = workers;
    this.chunkRecords = chunkRecords;
    this.reading = reading;
    this.family = family;
  }

  /** Validate options (resolveRun, as the CLI does: --layers against a known model included)
   * and start one worker per device. */
  static async create(options: EmbedderOptions = {}): Promise<Embedder> {
    const { chunkRecords, ...rest } = options;
    const { cfg, devices, family, tokenizer } = await resolveRunProbed({ ...rest, inputs: ["<api>"] });
    const reading = readingFor(family, tokenizer, cfg); // a bad tokenizer.json stops here, before a worker starts
    return new Embedder(cfg, devices, await startWorkers(cfg, devices), chunkRecords ?? DEFAULT_CHUNK, reading, family);
  }

  /** What the workers loaded: model, resolved layers, dims, device and attention backend. */
  get info() {
    const r = this.workers[0]!.ready;
    return { model: r.model, family: this.family, layers: r.layers, include: r.include, device: r.device, backend: r.backend, precision: r.precision };
  }

  /**
   * Embed `input`; calls on one Embedder run one after another. Leaving the loop early waits for
   * the batches in flight (at most one per ring slot) and discards them; `signal` stops the call
   * after the batches in flight have come out, then throws its reason.
   */
  async *embed(input: EmbedInput, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Embedding> {
    const prev = this.busy;
    let release!: () => void;
    this.busy = new Promise<void>((r) => (release = r));
    await prev;
    try {
      let offset = 0;
      for await (const table of this.tables(input)) {
        yield* this.embedTable(table, offset, opts.signal);
        offset += table.size;
      }
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async *tables(input: EmbedInput): AsyncGenerator<RecordTable> {
    const base = { truncate: this.cfg.truncate, duplicateIds: this.cfg.duplicateIds };
    if (typeof input === "string") {
      if (input === "-" || existsSync(input)) {
        yield await ingest({ ...base, inputs: [input] }, this.reading);
      } else if (/^\s*>/.test(input)) {
        // FASTA text: parsed in memory by the same parser as files (errors name "<text>":line).
        yield ingestText(input, base, "<text>", this.reading);
      } else {
        throw new InputError(`"${input.slice(0, 60)}" is neither a file nor FASTA text`, undefined, "pass a FASTA path, FASTA text starting with '>', or an iterable of {id, sequence}");
      }
      return;
    }
    const width = this.reading.bpe ? 2 : 1;
    let table = new RecordTable(this.cfg.truncate, this.cfg.duplicateIds, true, width);
    let n = 0;
    for await (const rec of input as AsyncIterable<SequenceRecord>) {
      n++;
      const tokens = recordTokens(rec.sequence, this.reading, { file: "<input>", line: n, recordId: rec.id });
      if (!tokens.length) throw new InputError("empty sequence", { file: "<input>", line: n, recordId: rec.id }, "drop the record or give it a sequence");
      table.add({ id: rec.id, tokens, file: "<input>", line: n });
      if (table.size >= this.chunkRecords) {
        yield table.sealed();
        table = new RecordTable(this.cfg.truncate, this.cfg.duplicateIds, true, width);
      }
    }
    if (table.size) yield table.sealed();
  }

  /**
   * Embed one table. A lane of the pool takes its next batch only while fewer than `ahead` finished
   * batches wait for the consumer (backpressure, the pool's `admit`). Leaving the loop early
   * (break, throw, return) stops the pool: no new batch is sent, the batches in flight finish and
   * are discarded, and only then does the generator return, so the workers' ring slots are free
   * for the next call. `ahead` is the workers' ring slots in all, so a worker can keep its next
   * batch queued while the consumer keeps up. A worker that replaces a dead one takes the dead
   * one's place in `this.workers` (embedPlan updates the array in place).
   */
  private async *embedTable(table: RecordTable, offset: number, signal?: AbortSignal): AsyncGenerator<Embedding> {
    const { budget, maxSeqs } = workerLimits(this.workers);
    const lengths = table.lengths();
    const identical = this.cfg.dedup ? groupIdentical(table, table.indices()) : undefined;
    const plan = planRecords(table, budget, maxSeqs, identical?.firsts);
    const left = new AbortController();
    const stop = signal ? AbortSignal.any([signal, left.signal]) : left.signal;
    const backlog = new Backlog(this.workers.reduce((n, w) => n + w.slots, 0));
    const running = embedPlan(
      this.workers,
      table,
      plan,
      (b, batch) => {
        if (left.signal.aborted) return; // the consumer has gone: discard
        const { records, result } = identical ? withCopies(b.records, batch, identical, lengths) : { records: b.records, result: batch };
        const out: Embedding[] = [];
        for (const o of result.outputs) {
          let row = 0;
          records.forEach((r) => {
            const rows = o.kind === "residues" ? lengths[r]! : 1;
            const vector = o.data.slice(row * o.dim, (row + rows) * o.dim);
            row += rows;
            out.push({ id: table.id(r), index: offset + r, layer: o.layer, kind: o.kind, vector });
          });
        }
        backlog.push(out);
      },
      { signal: stop, admit: () => backlog.admit(stop), health: this.cfg.health, restart: { cfg: this.cfg, devices: this.devices } },
    ).then(
      () => backlog.close(),
      (e) => backlog.close(e ?? new Error("embedding failed")),
    );
    try {
      for (;;) {
        const batch = await backlog.take();
        if (!batch) break;
        yield* batch;
      }
    } finally {
      const early = !backlog.closed;
      if (early) left.abort(EARLY_EXIT);
      await running; // early: the pool throws EARLY_EXIT after its in-flight batches; the caller sees its own exit
      if (early && backlog.error !== EARLY_EXIT) log.debug(`embed: while stopping after an early exit: ${String(backlog.error)}`);
    }
  }
}

/** One encoder for every iterable record (not one per record). */
const utf8 = new TextEncoder();

/**
 * One iterable record's token ids, without framing, read as a FASTA line of its family is:
 * ESM-2's alphabet, or (DNABERT-S) the bases upper-cased and checked (alphabet-guard.ts), then
 * BPE over the whole sequence. [UNK] tokens are embedded but not counted here (no summary).
 */
function recordTokens(sequence: string, reading: ReadingOptions, at: InputLocation): Uint8Array | Uint16Array {
  if (!reading.bpe) {
    try {
      return tokenize(sequence).tokens;
    } catch (e) {
      if (e instanceof TokenizeError) throw new InputError(e.message, at, e.hint);
      throw e;
    }
  }
  const text = utf8.encode(sequence);
  const bases = new Uint8Array(text.length);
  const n = readNucleotideLine(text, 0, text.length, bases, 0, reading, () => at);
  const ids = reading.bpe.encode(bases.subarray(0, n)).ids;
  return ids.subarray(1, ids.length - 1); // [CLS] ... [SEP]: the worker frames each record itself
}

/** The abort reason when the consumer leaves the loop before the end. */
const EARLY_EXIT = new Error("the consumer left the loop");

/**
 * Finished batches (their embeddings, copied out of the ring) waiting for the consumer, then the
 * end of the run or its error. `admit` holds a lane back while `ahead` batches are waiting.
 */
class Backlog {
  private readonly batches: Embedding[][] = [];
  private lanes: (() => void)[] = [];
  private consumer: (() => void) | undefined;
  closed = false;
  error: unknown;

  constructor(private readonly ahead: number) {}

  push(batch: Embedding[]): void {
    this.batches.push(batch);
    this.consumer?.();
  }

  close(error?: unknown): void {
    this.closed = true;
    this.error = error;
    this.consumer?.();
  }

  /** The next finished batch; undefined at the end; the run's error once the backlog is empty. */
  async take(): Promise<Embedding[] | undefined> {
    for (;;) {
      const batch = this.batches.shift();
      if (batch) {
        const lanes = this.lanes;
        this.lanes = [];
        for (const wake of lanes) wake();
        return batch;
      }
      if (this.closed) {
        if (this.error !== undefined) throw this.error;
        return undefined;
      }
      await new Promise<void>((r) => (this.consumer = r));
      this.consumer = undefined;
    }
  }

  /** Resolves once fewer than `ahead` batches wait; rejects when `signal` aborts first. */
  async admit(signal: AbortSignal): Promise<void> {
    while (this.batches.length >= this.ahead) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const abort = () => reject(signal.reason);
        signal.addEventListener("abort", abort, { once: true });
        this.lanes.push(() => {
          signal.removeEventListener("abort", abort);
          resolve();
        });
      });
    }
    signal.throwIfAborted();
  }
}

/**
 * One-shot: start workers, embed `input`, stop them (also when the loop is left early). Each call
 * pays the model load again; to embed more than once, create an `Embedder`, whose workers start
 * once and serve every call until it is disposed.
 */
export async function* embed(input: EmbedInput, options: EmbedderOptions = {}): AsyncGenerator<Embedding> {
  await using e = await Embedder.create(options);
  yield* e.embed(input);
}
