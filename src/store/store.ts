/**
 * The output store (layout version 2): what users read, plus the run state that makes a crashed
 * or interrupted run resumable.
 *
 * While a run is in progress:
 *   OUT/run.json      identity of the run (identity.ts: input digest, model, layers, outputs, dtype, precision)
 *   OUT/shards/       committed shards (see shards.ts); a shard is committed by its meta file
 * When every record is in a committed shard, the shards are assembled in input order into
 *   OUT/ids.txt, OUT/mean.layer{L}.npy, OUT/bos.layer{L}.npy  [records, dim]
 *   OUT/residues.layer{L}.npy [residues, dim] + OUT/residues.offsets.npy [records+1]
 * and OUT/manifest.json is written last (its presence means complete); run state is removed.
 *
 * Rerunning the same command resumes: committed shards are verified (sizes, CRC-32) and their
 * records skipped; anything uncommitted is removed and redone. A different input or different
 * options are refused, so two runs never mix in one store.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { OutputError } from "../errors.ts";
import { log } from "../log.ts";
import { npyHeader, type NpyDescr } from "./npy.ts";
import { DTYPE_BYTES } from "../protocol.ts";
import { ARRAY } from "./ownership.ts";
import { fsyncDir, INDEX_FILE, outputFile, readIndex, removeShards, scanShards, shardName, ShardWriter, writeAtomicFile, type ShardMeta, type ShardSpec } from "./shards.ts";
import { hashing, type FileChecksum } from "./verify.ts";
import { assembleInOrder, locateRecords } from "./assemble.ts";
import type { BatchResult } from "../protocol.ts";
import { identityDiff, type RunIdentity } from "./identity.ts";

export const STORE_FORMAT = "embed-store";
export const STORE_VERSION = 2;
export const MANIFEST = "manifest.json";
export const RUN_STATE = "run.json";
export const SHARDS = "shards";
/** Roll to a new shard after this many bytes of output (bounds memory when assembling). */
const SHARD_BYTES = 256 << 20;

export interface OpenOptions {
  overwrite: boolean;
  /** Commit a shard at least every this many records. */
  shardRecords: number;
}

export class Store {
  readonly dir: string;
  readonly resumed: number;
  private readonly spec: ShardSpec;
  private readonly opts: OpenOptions;
  private readonly done: Uint8Array;
  private doneCount: number;
  private readonly metas: ShardMeta[];
  private current: ShardWriter | undefined;
  private currentBytes = 0;

  /** Fails early if `dir` holds a complete store and `overwrite` is not set. `formats`: what the
   * run would write beside npy; a run that stopped while converting left a complete store, so the
   * hint offers `embed convert` for those rather than --overwrite, which would discard the embeddings. */
  static checkTarget(dir: string, overwrite: boolean, formats: readonly string[] = []): void {
    if (existsSync(join(dir, MANIFEST)) && !overwrite) {
      const other = formats.filter((f) => f !== "npy");
      const convert = other.map((f) => `embed convert ${dir} --to ${f}`).join("; ");
      throw new OutputError(
        `${dir} already holds a complete store`,
        other.length
          ? `its embeddings are final: to write the other formats, run ${convert}; to embed again, choose another -o or pass --overwrite (deletes it)`
          : "choose another -o, or pass --overwrite to replace it",
      );
    }
  }

  static open(dir: string, identity: RunIdentity, spec: ShardSpec, opts: OpenOptions): Store {
    Store.checkTarget(dir, opts.overwrite);
    try {
      mkdirSync(dir, { recursive: true });
      if (opts.overwrite) discardStore(dir);
    } catch (e) {
      throw new OutputError(`cannot prepare output directory ${dir}: ${(e as Error).message}`, "check the path and its permissions", e);
    }
    const statePath = join(dir, RUN_STATE);
    if (existsSync(statePath)) {
      const prev = JSON.parse(readFileSync(statePath, "utf8")).identity as RunIdentity;
      const diff = identityDiff(prev, identity);
      if (diff.length) {
        throw new OutputError(
          `${dir} holds an unfinished run with different ${diff.join(", ")}`,
          "rerun with the same inputs and options to resume it, choose another -o, or pass --overwrite to discard it",
        );
      }
    } else {
      writeAtomicFile(statePath, JSON.stringify({ format: "embed-run", version: STORE_VERSION, createdAt: new Date().toISOString(), identity }, null, 2) + "\n");
    }
    const { metas, done, removed } = scanShards(join(dir, SHARDS), spec, identity.records);
    if (removed.length) log.info(`removed ${removed.length} uncommitted file(s) from an interrupted run`);
    return new Store(dir, spec, opts, done, metas);
  }

  private constructor(dir: string, spec: ShardSpec, opts: OpenOptions, done: Uint8Array, metas: ShardMeta[]) {
    this.dir = dir;
    this.spec = spec;
    this.opts = opts;
    this.done = done;
    this.metas = metas;
    this.doneCount = metas.reduce((a, m) => a + m.records, 0);
    this.resumed = this.doneCount;
  }

  /** Records already committed (input order), so that the plan can skip them. */
  isDone(i: number): boolean {
    return this.done[i] === 1;
  }

  get recordsDone(): number {
    return this.doneCount;
  }

  /** Append one batch to the current shard; commits it when it is full (and returns its record). */
  write(records: Uint32Array, result: BatchResult): ShardMeta | undefined {
    for (const r of records) {
      if (this.done[r]) throw new OutputError(`record ${r} was embedded twice`, "this is a bug in embed's scheduling; please report it");
    }
    this.current ??= new ShardWriter(join(this.dir, SHARDS), this.nextShard(), this.spec);
    try {
      this.current.appendBatch(records, result);
    } catch (e) {
      // A shard that could not be rolled back after a failed write is dropped, not committed:
      // its records are redone by the next run of the same command.
      if (this.current.broken) this.abort();
      throw e;
    }
    for (const r of records) this.done[r] = 1;
    this.doneCount += records.length;
    for (const o of result.outputs) this.currentBytes += o.data.byteLength;
    if (this.current.records >= this.opts.shardRecords || this.currentBytes >= SHARD_BYTES) return this.commitShard();
    return undefined;
  }

  /** Commit the current shard (if it holds anything). */
  commitShard(): ShardMeta | undefined {
    if (!this.current) return undefined;
    let meta: ShardMeta | undefined;
    if (this.current.records > 0) this.metas.push((meta = this.current.commit()));
    else this.current.abort();
    this.current = undefined;
    this.currentBytes = 0;
    return meta;
  }

  private nextShard(): number {
    return this.metas.reduce((m, s) => Math.max(m, s.shard + 1), 0);
  }

  /** Drop the uncommitted shard; committed shards stay for a resume. */
  abort(): void {
    this.current?.abort();
    this.current = undefined;
  }

  /** Assemble every shard into the final arrays, write ids and the manifest, remove run state. */
  finalize(ids: { id(i: number): string; idLines(): Iterable<Uint8Array> }, manifest: Record<string, unknown>): void {
    this.commitShard();
    const n = this.spec.lengths.length;
    if (this.doneCount !== n) {
      const missing: string[] = [];
      for (let i = 0; i < n && missing.length < 5; i++) if (!this.done[i]) missing.push(ids.id(i));
      throw new OutputError(`count mismatch: ${n} records in, ${this.doneCount} embedded (first missing: ${missing.join(", ")})`, "this is a bug; the store was not completed");
    }
    const { dim, dtype, layers, include, lengths } = this.spec;
    const rowBytes = dim * DTYPE_BYTES[dtype];
    const descr: NpyDescr = dtype === "float32" ? "<f4" : "<f2";
    const arrays: string[] = [];
    const checksums: Record<string, FileChecksum> = {};
    const shardDir = join(this.dir, SHARDS);
    const prefix = (m: ShardMeta) => join(shardDir, shardName(m.shard));
    const where = locateRecords(this.metas.map((m) => readIndex(`${prefix(m)}.${INDEX_FILE}`)), lengths);
    for (const layer of layers) {
      for (const kind of include) {
        const name = `${kind}.layer${layer}.npy`;
        const residues = kind === "residues";
        const out = new NpyFile(join(this.dir, name), descr, [residues ? where.residues : n, dim]);
        try {
          assembleInOrder(out, this.metas.map((m) => `${prefix(m)}.${outputFile(kind, layer, dtype)}`), where, residues ? lengths : undefined, rowBytes);
          checksums[name] = out.commit();
        } catch (e) {
          out.abort();
          throw e instanceof OutputError ? e : new OutputError(`assembling ${name} failed: ${(e as Error).message}`, "check free space; rerun the same command to finish", e);
        }
        arrays.push(name);
      }
    }
    if (include.includes("residues")) {
      const start = new Float64Array(n + 1);
      for (let i = 0; i < n; i++) start[i + 1] = start[i]! + lengths[i]!;
      const off = new NpyFile(join(this.dir, "residues.offsets.npy"), "<i8", [n + 1]);
      const data = BigInt64Array.from(start, (x) => BigInt(x));
      off.append(new Uint8Array(data.buffer));
      checksums["residues.offsets.npy"] = off.commit();
      arrays.push("residues.offsets.npy");
    }
    const idSum: { sum?: FileChecksum } = {};
    writeAtomicFile(join(this.dir, "ids.txt"), hashing(ids.idLines(), idSum)); // piece by piece: never all ids in one buffer
    checksums["ids.txt"] = idSum.sum!;
    const files = { ids: "ids.txt", arrays: arrays.sort(), checksums: sortedKeys(checksums) };
    writeAtomicFile(join(this.dir, MANIFEST), JSON.stringify({ format: STORE_FORMAT, version: STORE_VERSION, ...manifest, files }, null, 2) + "\n");
    const left = removeShards(shardDir);
    if (left.length) log.warn(`${shardDir} kept: it holds files embed did not write (${left.slice(0, 3).join(", ")}${left.length > 3 ? ", ..." : ""})`);
    rmSync(join(this.dir, RUN_STATE), { force: true });
  }
}

/**
 * Empty `dir` of a store (for --overwrite): the old store stops looking complete before any of
 * its files change, and the arrays it listed go too (a new one may hold other layers or outputs).
 * Only embed's own files go: arrays by their names (a manifest listing another name is not
 * trusted), run state, shard files; anything else in `dir` or `shards/` stays.
 */
export function discardStore(dir: string): void {
  const old = join(dir, MANIFEST);
  let listed: string[] = [];
  try {
    if (existsSync(old)) listed = (JSON.parse(readFileSync(old, "utf8")).files?.arrays ?? []) as string[];
  } catch {} // an unreadable manifest lists nothing: its arrays are overwritten by name
  rmSync(old, { force: true });
  for (const f of listed) if (typeof f === "string" && ARRAY.test(f)) rmSync(join(dir, f), { force: true });
  rmSync(join(dir, RUN_STATE), { force: true });
  removeShards(join(dir, SHARDS));
}

/** `record` with its keys in order (the manifest lists files alphabetically). */
export function sortedKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * A .npy written front to back, as `*.partial` until `commit`, which returns its size and SHA-256
 * for the manifest: every writer (a run's assembly, assemble.ts; merge; offsets) appends in order,
 * so the file is hashed as it is written and never read back.
 */
export class NpyFile {
  private readonly fd: number;
  private readonly path: string;
  private readonly hasher = new Bun.CryptoHasher("sha256");
  /** Bytes written (and hashed) so far, the header included. */
  private bytes = 0;
  constructor(path: string, descr: NpyDescr, shape: number[]) {
    this.path = path;
    try {
      this.fd = openSync(`${path}.partial`, "w");
      this.append(npyHeader(descr, shape));
    } catch (e) {
      throw new OutputError(`cannot write ${path}: ${(e as Error).message}`, "check free space and permissions of the output directory", e);
    }
  }
  append(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, this.bytes + done);
    this.hasher.update(bytes);
    this.bytes += bytes.length;
  }
  commit(): FileChecksum {
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(`${this.path}.partial`, this.path);
    fsyncDir(dirname(this.path));
    return { bytes: this.bytes, sha256: this.hasher.digest("hex") };
  }
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {}
    rmSync(`${this.path}.partial`, { force: true });
  }
}
