/**
 * `embed merge OUT STORE...`: the stores of a job array (`embed run --slice I/N`, one job per
 * slice of one input) joined into one store, equal to what a single unsharded run writes: rows
 * and ids in input order, the whole input's digest and counts in the manifest. Every store is
 * checked before anything is written: complete, a slice of the same input (digest and record
 * count), embedded alike (model, layers, outputs, dtype, precision, truncation), each slice
 * present once with the rows its index implies. The arrays are written as `*.partial` and
 * renamed, and the manifest comes last, so an interrupted merge never looks complete.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { OptionsError, OutputError } from "../errors.ts";
import { parseNpyHeader, type NpyDescr } from "./npy.ts";
import type { RecordsSummary } from "../input/records.ts";
import { writeAtomicFile } from "./shards.ts";
import { checkInputsOutside, claimOutput, commandLine } from "./ownership.ts";
import { discardStore, MANIFEST, NpyFile, RUN_STATE, SHARDS, sortedKeys, Store } from "./store.ts";
import { loadHint, sliceOf, type SliceInfo } from "./identity.ts";
import { checkStore, damagedError, hashing, VerifiedReader, type FileChecksum } from "./verify.ts";

/** Bytes of rows gathered from the slices per write, by default. */
const BLOCK_BYTES = 64 << 20;
const OFFSETS = "residues.offsets.npy";

interface ShardManifest {
  model: { name: string; numLayers: number; dim: number; path?: string };
  layers: number[];
  include: string[];
  dtype: string;
  precision: string;
  truncate: number;
  counts: RecordsSummary;
  recordsSha256: string;
  slice?: SliceInfo;
  /** The slice, in stores written before it was renamed. */
  shard?: SliceInfo;
  run?: Record<string, unknown>;
  files: { ids: string; arrays: string[]; checksums?: Record<string, FileChecksum> };
  [key: string]: unknown;
}

interface Slice {
  dir: string;
  manifest: ShardManifest;
  /** Records in this slice. */
  n: number;
  /** Per-residue row offsets (residues.offsets.npy), when the store has per-residue output. */
  offsets?: BigInt64Array;
  /** ids.txt, read (and its checksum checked) before anything is written. */
  ids?: Uint8Array;
}

export interface MergeSummary {
  output: string;
  slices: number;
  records: number;
  residues: number;
  arrays: string[];
  seconds: number;
}

function readManifest(dir: string): ShardManifest {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) {
    if (existsSync(join(dir, RUN_STATE))) {
      throw new OutputError(`${dir} is unfinished`, "rerun its job (the same `embed run ... --slice I/N` command) to finish it, then merge");
    }
    throw new OptionsError(`${dir} is not an embed store (no ${MANIFEST})`, "pass the -o directories of the `embed run --slice I/N` jobs");
  }
  try {
    return JSON.parse(readFileSync(path, "utf8")) as ShardManifest;
  } catch (e) {
    throw new OutputError(`${path} is unreadable: ${(e as Error).message}`, "the store is damaged; rerun its job with --overwrite");
  }
}

/** What must be equal between the slices of one job array. */
function alike(m: ShardManifest): Record<string, unknown> {
  return {
    "input (records digest)": sliceOf(m)!.recordsSha256,
    "input record count": sliceOf(m)!.records,
    "slice count (N of --slice I/N)": sliceOf(m)!.count,
    model: `${m.model.name} (${m.model.numLayers} layers, dim ${m.model.dim})`,
    layers: m.layers,
    "outputs (--include)": m.include,
    "--out-dtype": m.dtype,
    precision: m.precision,
    "--truncate": m.truncate,
    arrays: [...m.files.arrays].sort(),
  };
}

/** Check the stores are the N slices of one input, embedded alike; in slice order. */
function slicesOf(dirs: string[], output: string): Slice[] {
  if (dirs.length === 0) throw new OptionsError("no stores to merge", "pass the -o directories of the `embed run --slice I/N` jobs");
  const manifests = dirs.map((dir) => {
    if (resolve(dir) === resolve(output)) throw new OptionsError(`the output ${output} is one of the stores to merge`, "write the merged store to a new directory");
    const m = readManifest(dir);
    if (!sliceOf(m)) throw new OptionsError(`${dir} is not a slice of a job array (it was not written with --slice I/N)`, "merge only the stores of `embed run --slice I/N` jobs");
    // Sizes, .npy headers and the ids count up front; checksums as the bytes are read.
    const { damaged } = checkStore(dir, m);
    if (damaged.length) throw damagedError(dir, damaged, "the store is damaged; rerun its job with --overwrite, then merge");
    return m;
  });
  const ref = alike(manifests[0]!);
  manifests.forEach((m, k) => {
    const mine = alike(m);
    for (const [what, value] of Object.entries(ref)) {
      if (JSON.stringify(mine[what]) !== JSON.stringify(value)) {
        throw new OptionsError(
          `${dirs[k]} differs from ${dirs[0]} in ${what}: ${JSON.stringify(mine[what])} vs ${JSON.stringify(value)}`,
          "merge only the stores of one job array: the same input and options, --slice 1/N ... N/N",
        );
      }
    }
  });
  const count = sliceOf(manifests[0]!)!.count;
  const total = sliceOf(manifests[0]!)!.records;
  const byIndex = new Map<number, Slice>();
  manifests.forEach((m, k) => {
    const i = sliceOf(m)!.index;
    const other = byIndex.get(i);
    if (other) throw new OptionsError(`${other.dir} and ${dirs[k]} are both slice ${i}/${count}`, "pass each job's store once");
    const n = Math.ceil((total - (i - 1)) / count);
    if (m.counts.records !== n) throw new OutputError(`${dirs[k]} holds ${m.counts.records} records; slice ${i}/${count} of ${total} has ${n}`, "the store is damaged; rerun its job with --overwrite");
    byIndex.set(i, { dir: dirs[k]!, manifest: m, n });
  });
  const missing = Array.from({ length: count }, (_, k) => k + 1).filter((i) => !byIndex.has(i));
  const residues = manifests.reduce((a, m) => a + m.counts.residues, 0);
  if (missing.length) {
    throw new OptionsError(
      `slice${missing.length > 1 ? "s" : ""} ${missing.map((i) => `${i}/${count}`).join(", ")} missing`,
      `run the missing job${missing.length > 1 ? "s" : ""} (embed run ... --slice ${missing[0]}/${count}), then merge all ${count} stores`,
    );
  }
  const whole = sliceOf(manifests[0]!)!.counts.residues;
  if (residues !== whole) throw new OutputError(`the slices hold ${residues} residues; the input has ${whole}`, "a store is damaged; rerun its job with --overwrite");
  return Array.from({ length: count }, (_, k) => byIndex.get(k + 1)!);
}

const SLICE_HINT = "the store is damaged; rerun its job with --overwrite, then merge";

/**
 * An .npy of a slice, open for reading rows front to back: its dtype, shape and where its data
 * starts; the reader hashes what it reads, and `finish` checks it against the slice's manifest.
 */
function openNpy(s: Slice, name: string): { reader: VerifiedReader; descr: string; shape: number[]; dataStart: number } {
  const path = join(s.dir, name);
  const reader = new VerifiedReader(path, s.manifest.files.checksums?.[name], SLICE_HINT);
  const h = parseNpyHeader(reader.readAt(Math.min(4096, Bun.file(path).size), 0));
  if (!h) {
    reader.close();
    throw new OutputError(`${path} is not a .npy file`, SLICE_HINT);
  }
  return { reader, ...h };
}

/**
 * Write `name` of the merged store: global record g is record floor(g / N) of slice g mod N.
 * Blocks of records (the same local records of every slice) are read from each slice in one
 * piece, put in input order and written in one piece.
 */
function mergeArray(slices: Slice[], name: string, outDir: string, blockBytes: number): FileChecksum {
  const N = slices.length;
  const perResidue = name.startsWith("residues.");
  const files = slices.map((s) => openNpy(s, name));
  try {
    const { descr, shape } = files[0]!;
    const dim = shape[1]!;
    const rowBytes = dim * (descr === "<f2" ? 2 : 4);
    const rowStart = (s: number, j: number) => (perResidue ? Number(slices[s]!.offsets![j]!) : j);
    files.forEach((f, s) => {
      const rows = rowStart(s, slices[s]!.n);
      if (f.descr !== descr || f.shape[1] !== dim || f.shape[0] !== rows) {
        throw new OutputError(`${join(slices[s]!.dir, name)} is [${f.shape.join(", ")}] ${f.descr}; expected [${rows}, ${dim}] ${descr}`, "the store is damaged; rerun its job with --overwrite");
      }
    });
    const totalRows = files.reduce((a, f) => a + f.shape[0]!, 0);
    const out = new NpyFile(join(outDir, name), descr as NpyDescr, [totalRows, dim]);
    try {
      const longest = slices[0]!.n; // slice 1 is never shorter than another
      for (let j = 0; j < longest; ) {
        // Local records [j, end) of every slice, as many as fit blockBytes (at least one).
        let end = j + 1;
        const bytesTo = (e: number) => slices.reduce((a, s, k) => a + (rowStart(k, Math.min(e, s.n)) - rowStart(k, Math.min(j, s.n))) * rowBytes, 0);
        while (end < longest && bytesTo(end + 1) <= blockBytes) end++;
        const pieces = slices.map((s, k) => {
          const lo = rowStart(k, Math.min(j, s.n));
          const hi = rowStart(k, Math.min(end, s.n));
          return files[k]!.reader.readAt((hi - lo) * rowBytes, files[k]!.dataStart + lo * rowBytes);
        });
        const block = new Uint8Array(bytesTo(end));
        let at = 0;
        for (let jj = j; jj < end; jj++) {
          for (let k = 0; k < N; k++) {
            const s = slices[k]!;
            if (jj >= s.n) break; // the last round of a block: only the first slices have it
            const from = (rowStart(k, jj) - rowStart(k, j)) * rowBytes;
            const len = (rowStart(k, jj + 1) - rowStart(k, jj)) * rowBytes;
            block.set(pieces[k]!.subarray(from, from + len), at);
            at += len;
          }
        }
        out.append(block);
        j = end;
      }
      for (const f of files) f.reader.finish(); // a slice whose bytes changed is never committed
      return out.commit();
    } catch (e) {
      out.abort();
      throw e;
    }
  } finally {
    for (const f of files) f.reader.close();
  }
}

/** The merged residues.offsets.npy: each record's per-residue row count, in input order. */
function mergeOffsets(slices: Slice[], outDir: string, total: number): FileChecksum {
  const N = slices.length;
  const offsets = new BigInt64Array(total + 1);
  for (let g = 0; g < total; g++) {
    const o = slices[g % N]!.offsets!;
    const j = Math.floor(g / N);
    offsets[g + 1] = offsets[g]! + (o[j + 1]! - o[j]!);
  }
  const out = new NpyFile(join(outDir, OFFSETS), "<i8", [total + 1]);
  out.append(new Uint8Array(offsets.buffer));
  return out.commit();
}

/** The merged ids.txt: each slice's lines, taken in turn. */
function* mergedIds(slices: Slice[], total: number): Generator<Uint8Array> {
  const N = slices.length;
  const texts = slices.map((s) => s.ids!);
  const pos = new Array<number>(N).fill(0);
  const piece = new Uint8Array(1 << 20);
  let used = 0;
  for (let g = 0; g < total; g++) {
    const k = g % N;
    const text = texts[k]!;
    const nl = text.indexOf(10, pos[k]!);
    if (nl < 0) throw new OutputError(`${join(slices[k]!.dir, slices[k]!.manifest.files.ids)} has fewer ids than records`, "the store is damaged; rerun its job with --overwrite");
    const line = text.subarray(pos[k]!, nl + 1);
    pos[k] = nl + 1;
    if (used + line.length > piece.length) {
      yield piece.subarray(0, used);
      used = 0;
    }
    if (line.length > piece.length) yield line;
    else {
      piece.set(line, used);
      used += line.length;
    }
  }
  if (used) yield piece.subarray(0, used);
}

/**
 * Merge the stores `dirs` of a job array into a new store `output`. `blockBytes`: rows gathered
 * per write (default 64 MiB; tests make it small to cross many block boundaries).
 */
export function mergeStores(output: string, dirs: string[], opts: { overwrite?: boolean; blockBytes?: number } = {}): MergeSummary {
  const t0 = performance.now();
  const slices = slicesOf(dirs, output);
  // A store under OUT/shards would go with it; one elsewhere inside OUT is never touched.
  checkInputsOutside(join(output, SHARDS), dirs, "store");
  const lock = claimOutput(output, { command: commandLine() });
  try {
    return mergeLocked(output, slices, opts, t0);
  } finally {
    lock.release();
  }
}

/** The merge, with the output claimed and locked (mergeStores). */
function mergeLocked(output: string, slices: Slice[], opts: { overwrite?: boolean; blockBytes?: number }, t0: number): MergeSummary {
  const first = slices[0]!.manifest;
  const info = sliceOf(first)!;
  const total = info.records;
  Store.checkTarget(output, opts.overwrite ?? false);
  if (!opts.overwrite && existsSync(join(output, RUN_STATE))) {
    throw new OutputError(`${output} holds an unfinished embed run`, "merge into another directory, or pass --overwrite to discard that run");
  }
  try {
    if (opts.overwrite) discardStore(output);
  } catch (e) {
    throw new OutputError(`cannot prepare output directory ${output}: ${(e as Error).message}`, "check the path and its permissions", e);
  }
  const perResidue = first.files.arrays.includes(OFFSETS);
  const arrays = [...first.files.arrays].sort();
  const checksums: Record<string, FileChecksum> = {};
  try {
    for (const s of slices) {
      // ids and offsets are read whole (merge holds them), so they are checked before any write.
      const ids = new VerifiedReader(join(s.dir, s.manifest.files.ids), s.manifest.files.checksums?.[s.manifest.files.ids], SLICE_HINT);
      try {
        s.ids = ids.readAt(Bun.file(ids.path).size, 0);
        ids.finish();
      } finally {
        ids.close();
      }
      if (!perResidue) continue;
      const f = openNpy(s, OFFSETS);
      try {
        s.offsets = new BigInt64Array(f.reader.readAt((s.n + 1) * 8, f.dataStart).buffer);
        f.reader.finish();
      } finally {
        f.reader.close();
      }
    }
    for (const name of arrays) if (name !== OFFSETS) checksums[name] = mergeArray(slices, name, output, opts.blockBytes ?? BLOCK_BYTES);
    if (perResidue) checksums[OFFSETS] = mergeOffsets(slices, output, total);
    const idSum: { sum?: FileChecksum } = {};
    writeAtomicFile(join(output, "ids.txt"), hashing(mergedIds(slices, total), idSum));
    checksums["ids.txt"] = idSum.sum!;
  } catch (e) {
    // What this merge wrote goes: a merged store is whole or absent.
    for (const name of Object.keys(checksums)) rmSync(join(output, name), { force: true });
    throw e instanceof OutputError || e instanceof OptionsError ? e : new OutputError(`merging into ${output} failed: ${(e as Error).message}`, "check free space; rerun the same merge", e);
  }
  const { shard: _, slice: ___, run: __, ...rest } = first;
  const manifest = {
    ...rest,
    complete: true,
    createdAt: new Date().toISOString(),
    counts: info.counts,
    recordsSha256: info.recordsSha256,
    run: { merged: slices.map((s) => ({ store: resolve(s.dir), slice: `${sliceOf(s.manifest)!.index}/${info.count}`, ...s.manifest.run })) },
    load: loadHint(output, first.include, first.layers),
    files: { ids: "ids.txt", arrays, checksums: sortedKeys(checksums) },
  };
  writeAtomicFile(join(output, MANIFEST), JSON.stringify(manifest, null, 2) + "\n");
  return { output, slices: slices.length, records: total, residues: info.counts.residues, arrays, seconds: (performance.now() - t0) / 1000 };
}
