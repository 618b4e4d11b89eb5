/**
 * The TypeScript API for notebooks and programs. Workers start once per `Embedder` and are reused
 * by every `embed` call; `await using` stops them.
 *
 *   await using e = await Embedder.create({ model: "esm2_t33_650M_UR50D" });
 *   for await (const { id, vector } of e.embed("proteins.fasta")) ...
 *   for await (const x of e.embed([{ id: "a", sequence: "MKTAYIAK" }])) ...
 *
 * Input: a FASTA path ("-" for stdin, .gz ok), FASTA text, or an (async) iterable of
 * `{ id, sequence }`. Output: one `Embedding` per record, layer and output kind, in the order
 * batches finish (length-sorted packing does not follow input order; use `index` to restore it).
 * Iterables are embedded in chunks of `chunkRecords`, so memory stays bounded.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig, visibleDevicesEnv, type RunConfig, type RunOptionsInput } from "./config.ts";
import { listGpus, resolveDevices, type DeviceSlot } from "./devices.ts";
import { InputError } from "./errors.ts";
import { ingest } from "./ingest.ts";
import type { OutputKind } from "./protocol.ts";
import { RecordTable } from "./records.ts";
import { embedPlan, planRecords, startWorkers, workerLimits } from "./session.ts";
import { tokenize, TokenizeError } from "./tokenize.ts";
import type { WorkerHandle } from "./worker.ts";

export type EmbedderOptions = Omit<RunOptionsInput, "inputs" | "output" | "dry" | "overwrite" | "shardRecords"> & {
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
  private busy: Promise<void> = Promise.resolve();

  private constructor(cfg: RunConfig, devices: DeviceSlot[], workers: WorkerHandle[], chunkRecords: number) {
    this.cfg = cfg;
    this.devices = devices;
    this.workers = workers;
    this.chunkRecords = chunkRecords;
  }

  /** Validate options (the same zod schema as the CLI) and start one worker per device. */
  static async create(options: EmbedderOptions = {}): Promise<Embedder> {
    const { chunkRecords, ...rest } = options;
    const cfg = resolveConfig({ ...rest, inputs: ["<api>"] });
    const devices = resolveDevices(cfg.devices, listGpus(), visibleDevicesEnv());
    return new Embedder(cfg, devices, await startWorkers(cfg, devices), chunkRecords ?? DEFAULT_CHUNK);
  }

  /** What the workers loaded: model, resolved layers, dims, device and attention backend. */
  get info() {
    const r = this.workers[0]!.ready;
    return { model: r.model, layers: r.layers, include: r.include, device: r.device, backend: r.backend, precision: r.dtype };
  }

  /** Embed `input`; calls on one Embedder run one after another. */
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
        yield await ingest({ ...base, inputs: [input] });
      } else if (/^\s*>/.test(input)) {
        // FASTA text: parsed by the same reader as files, from a private temp file.
        const dir = mkdtempSync(join(tmpdir(), "embed-api-"));
        try {
          const path = join(dir, "input.fasta");
          writeFileSync(path, input);
          yield await ingest({ ...base, inputs: [path] });
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      } else {
        throw new InputError(`"${input.slice(0, 60)}" is neither a file nor FASTA text`, undefined, "pass a FASTA path, FASTA text starting with '>', or an iterable of {id, sequence}");
      }
      return;
    }
    let table = new RecordTable(this.cfg.truncate, this.cfg.duplicateIds);
    let n = 0;
    for await (const rec of input as AsyncIterable<SequenceRecord>) {
      n++;
      let tokens: Uint8Array;
      try {
        tokens = tokenize(rec.sequence).tokens;
      } catch (e) {
        if (e instanceof TokenizeError) throw new InputError(e.message, { file: "<input>", line: n, recordId: rec.id }, e.hint);
        throw e;
      }
      if (!tokens.length) throw new InputError("empty sequence", { file: "<input>", line: n, recordId: rec.id }, "drop the record or give it a sequence");
      table.add({ id: rec.id, tokens, file: "<input>", line: n });
      if (table.size >= this.chunkRecords) {
        yield table.sealed();
        table = new RecordTable(this.cfg.truncate, this.cfg.duplicateIds);
      }
    }
    if (table.size) yield table.sealed();
  }

  private async *embedTable(table: RecordTable, offset: number, signal?: AbortSignal): AsyncGenerator<Embedding> {
    const { budget, maxSeqs } = workerLimits(this.workers);
    const plan = planRecords(table, budget, maxSeqs);
    const lengths = table.lengths();
    const ready: Embedding[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    const running = embedPlan(
      this.workers,
      table,
      plan,
      (b, result) => {
        for (const o of result.outputs) {
          let row = 0;
          b.records.forEach((r) => {
            const rows = o.kind === "residues" ? lengths[r]! : 1;
            const vector = o.data.slice(row * o.dim, (row + rows) * o.dim);
            row += rows;
            ready.push({ id: table.id(r), index: offset + r, layer: o.layer, kind: o.kind, vector });
          });
        }
        wake?.();
      },
      { signal, restart: { cfg: this.cfg, devices: this.devices } },
    ).then(
      () => {
        finished = true;
        wake?.();
      },
      (e) => {
        failure = e ?? new Error("embedding failed");
        wake?.();
      },
    );
    while (true) {
      while (ready.length) yield ready.shift()!;
      if (failure) throw failure;
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    await running;
  }
}

/** One-shot convenience: start workers, embed `input`, stop them. */
export async function* embed(input: EmbedInput, options: EmbedderOptions = {}): AsyncGenerator<Embedding> {
  await using e = await Embedder.create(options);
  yield* e.embed(input);
}
