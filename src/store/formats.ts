/**
 * Output formats of a store: `convertStore` turns embeddings in any of embed's formats (a complete
 * store in the native npy layout, see store.ts, or an HDF5 file or Parquet directory embed wrote)
 * into any other (HDF5, Parquet, npy, VirNucPro `.pt` files) through the Python converter
 * (`py/embed_worker/tools/convert.py`, which tells the sources apart and streams with h5py / pyarrow /
 * torch), and `inspectStore` describes a store, complete or not, without starting Python.
 * Layouts: README "Output formats".
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmdirSync, statSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { FORMATS, isFormat, type Format } from "../config.ts";
import { EmbedError, ExitCode, OptionsError, OutputError } from "../errors.ts";
export { FORMATS, isFormat, type Format };
import { lockStore, type StoreLock } from "./lock.ts";
import { parseNpyHeader } from "./npy.ts";
import { commandLine } from "./ownership.ts";
import { pythonJson } from "../workers/python.ts";
import { MANIFEST, RUN_STATE, SHARDS } from "./store.ts";
import { checkStore, DAMAGED_HINT, damagedError, type CheckedManifest, type Damage } from "./verify.ts";


/** What `convertStore` reads, for messages. */
/** Records per VirNucPro `.pt` file: VirNucPro's `sequences_per_file` (py tools/convert.py VIRNUCPRO_PER_FILE). */
export const VIRNUCPRO_PER_FILE = 10_000;

export const CONVERT_SOURCES = "a store directory (-o of `embed run`), an HDF5 file or a Parquet directory written by `embed convert` / `embed run --format`";

export interface ConvertOptions {
  /**
   * hdf5: a file (default SOURCE/embeddings.h5); parquet, npy, virnucpro: a directory (default
   * SOURCE, SOURCE, SOURCE/virnucpro). "SOURCE" is the store or Parquet directory, or the directory
   * holding the HDF5 file; npy from an HDF5 file or Parquet directory needs `out`.
   */
  out?: string;
  /** The Python to run the converter with (default: config.ts `pythonBin()`). */
  python?: string;
  /** Only this layer (negative: from the model's last, fair-esm style); virnucpro defaults to the last layer. */
  layer?: number;
  /** Only this output (mean, bos, residues); virnucpro defaults to mean. */
  kind?: string;
  /** A directory whose writer lock the caller already holds (a run converting its own store):
   * writing there takes no second lock. */
  locked?: string;
  /** The caller has just checked this complete store against its manifest (rerun.ts, via
   * request.ts requestDiff): it is not read a second time before the converter reads it. */
  checked?: boolean;
}

export interface ConvertSummary {
  format: Format;
  files: string[];
  records: number;
  /** The format read: npy (a store), hdf5 or parquet. */
  from?: Exclude<Format, "virnucpro">;
  source?: string;
  out?: string;
  residues?: number;
  outputs?: { kind: string; layer: number }[];
  dim?: number;
  dtype?: string;
  bytes?: number;
  seconds?: number;
}


/**
 * Convert `source` (a complete store, or an HDF5 file or Parquet directory embed wrote; the
 * converter tells them apart) to `format`; throws OptionsError / OutputError with hints.
 */
export async function convertStore(source: string, format: Format, opts: ConvertOptions = {}): Promise<ConvertSummary> {
  if (!isFormat(format)) throw new OptionsError(`--to ${String(format)}: unknown format`, `choose from ${FORMATS.join(", ")}`);
  const abs = resolve(source);
  if (!existsSync(abs)) throw new OutputError(`${abs} does not exist`, `give ${CONVERT_SOURCES}`);
  const isDir = statSync(abs).isDirectory();
  if (isDir && !opts.checked) {
    // An unfinished store is told here, where its committed shards can be counted.
    const info = inspectStore(abs);
    if (info.state === "unfinished") throw notComplete(info);
    // Sizes, headers and the ids count up front; the converter checks checksums as it reads.
    if (info.state === "damaged") throw damagedError(info.dir, info.damaged);
  }
  const args = [abs, "--to", format, "--json"];
  if (opts.out !== undefined) args.push("--out", resolve(opts.out));
  if (opts.layer !== undefined) args.push(`--layer=${opts.layer}`);
  if (opts.kind !== undefined) args.push("--kind", opts.kind);
  // One writer per directory, as `embed run` and `embed merge` (lock.ts): a second writer exits 6.
  const target = convertTarget(abs, isDir, format, opts.out);
  const created = existsSync(target) ? undefined : mkdirSync(target, { recursive: true });
  let lock: Pick<StoreLock, "release">;
  try {
    lock = opts.locked !== undefined && resolve(opts.locked) === target ? { release: () => {} } : lockStore(target, commandLine());
  } catch (e) {
    if (created) removeEmpty(target, created);
    throw e;
  }
  let ok = false;
  try {
    const r = await pythonJson<ConvertSummary>("embed_worker.tools.convert", args, opts.python);
    ok = r.ok && r.value !== undefined;
    if (r.ok && r.value) return r.value;
    throw convertError(r.error ?? "no output", format);
  } finally {
    lock.release();
    if (!ok && created) removeEmpty(target, created);
  }
}

/**
 * The directory a conversion of `abs` writes into, which it locks: the output directory (an
 * HDF5 file's directory), or the source store itself when the output goes inside it (the
 * defaults: SOURCE/embeddings.h5, SOURCE/*.parquet, SOURCE/virnucpro/).
 */
export function convertTarget(abs: string, isDir: boolean, format: Format, out?: string): string {
  let dest = isDir ? abs : dirname(abs);
  if (out !== undefined) {
    const o = resolve(out);
    dest = format === "hdf5" && !(existsSync(o) && statSync(o).isDirectory()) ? dirname(o) : o;
  }
  return isDir && (dest === abs || dest.startsWith(abs + sep)) ? abs : dest;
}

/** Remove `dir` and its parents up to `top` (the first one made for it) while they are empty. */
function removeEmpty(dir: string, top: string): void {
  for (let d = dir; ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty: the converter wrote something there (it removes what it left unfinished)
    }
    if (d === top || dirname(d) === d) return;
  }
}

/** A failure of the Python converter, rebuilt from its last stderr line `{name, message, hint}`. */
function convertError(error: string, format: Format): EmbedError {
  if (error.startsWith("cannot start")) {
    return new EmbedError(`cannot run the converter: ${error}`, { hint: "run scripts/setup, or set EMBED_PYTHON to a Python with numpy, h5py and pyarrow", exitCode: ExitCode.internal });
  }
  const last = error.trim().split("\n").at(-1) ?? "";
  let wire: { name?: string; message?: string; hint?: string } | undefined;
  try {
    wire = JSON.parse(last);
  } catch {}
  if (wire?.message) {
    if (wire.name === "BadOptions") return new OptionsError(wire.message, wire.hint || undefined);
    return new OutputError(wire.message, wire.hint || undefined);
  }
  if (/No module named/.test(error)) {
    return new OutputError(`converting to ${format} failed: ${last}`, "run scripts/setup (it installs h5py and pyarrow), or set EMBED_PYTHON to a Python that has them");
  }
  return new EmbedError(`converting to ${format} failed: ${error}`, { hint: "this is likely a bug in embed; please report it with the message above", exitCode: ExitCode.internal });
}

function notComplete(info: StoreInfo): OutputError {
  return new OutputError(
    `${info.dir} is an unfinished store: ${info.committed} of ${info.records ?? "?"} records committed, no manifest.json yet`,
    "rerun the same `embed run` command to resume and finish it, then convert",
  );
}

// ---------------------------------------------------------------------------------------------
// Inspect

export interface ArrayInfo {
  file: string;
  kind: string;
  layer: number | null;
  shape: number[] | null;
  dtype: string | null;
  bytes: number;
}

export interface FormatFiles {
  format: Exclude<Format, "npy">;
  files: string[];
  bytes: number;
  /** Older than the store's manifest: written from an earlier store in this directory. */
  stale: boolean;
}

export interface StoreInfo {
  dir: string;
  /**
   * complete: manifest.json present and every file it lists checks out; damaged: a manifest, but
   * a file is missing or not what it records (`damaged`); unfinished: run state, no manifest;
   * missing / not-a-store.
   */
  state: "complete" | "damaged" | "unfinished" | "missing" | "not-a-store";
  complete: boolean;
  model: { name: string; numLayers?: number; dim?: number; path?: string } | null;
  layers: number[];
  outputs: string[];
  /** Embedding width (the model's). */
  dim: number | null;
  dtype: string | null;
  precision: string | null;
  records: number | null;
  residues: number | null;
  /** Unfinished stores: records (and residues) in committed shards. */
  committed?: number;
  committedResidues?: number;
  shards?: number;
  createdAt?: string;
  inputs?: string[];
  recordsSha256?: string;
  /** A `--slice I/N` job's store: its slice of an input of `of` records (join with `embed merge`). */
  slice?: { index: number; count: number; of: number };
  ids: { file: string; present: boolean } | null;
  arrays: ArrayInfo[];
  /** Arrays the manifest lists that are missing (a damaged store; also in `damaged`). */
  missing: string[];
  /** Files of a store with a manifest that are missing or not what the manifest says. */
  damaged: Damage[];
  /** none: an older store, no checksums recorded; recorded: not read (pass verify); verified: every file read and matched. */
  checksums?: "none" | "recorded" | "verified";
  formats: FormatFiles[];
  hint?: string;
}

interface Manifest extends CheckedManifest {
  model?: { name: string; numLayers?: number; dim?: number; path?: string };
  layers?: number[];
  include?: string[];
  dtype?: string;
  precision?: string;
  counts?: { records?: number; residues?: number };
  createdAt?: string;
  inputs?: string[];
  recordsSha256?: string;
  slice?: { index: number; count: number; records: number };
  /** The slice, in stores written before it was renamed. */
  shard?: { index: number; count: number; records: number };
}

interface RunState {
  createdAt?: string;
  identity?: { records?: number; model?: { name: string; numLayers?: number; dim?: number; path?: string }; layers?: number[]; include?: string[]; dtype?: string; precision?: string; recordsSha256?: string };
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch (e) {
    throw new OutputError(`${path} is unreadable: ${(e as Error).message}`, "the store is damaged; rerun `embed run` with --overwrite");
  }
}

function npyInfo(path: string): { shape: number[]; dtype: string } | null {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const buf = new Uint8Array(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const h = parseNpyHeader(buf.subarray(0, n));
    if (!h) return null;
    const dtype = { "<f4": "float32", "<f2": "float16", "<i8": "int64" }[h.descr] ?? h.descr;
    return { shape: h.shape, dtype };
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const ARRAY_RE = /^(mean|bos|residues)\.layer(-?\d+)\.npy$/;

/**
 * Describe the store in `dir` (complete or not) from its files alone; never starts Python. A
 * complete store's files are checked against its manifest (sizes, .npy headers, ids count; with
 * `verify`, SHA-256 checksums): any damage makes it `damaged`, each file named.
 */
export function inspectStore(dir: string, opts: { verify?: boolean } = {}): StoreInfo {
  const abs = resolve(dir);
  const base: StoreInfo = { dir: abs, state: "missing", complete: false, model: null, layers: [], outputs: [], dim: null, dtype: null, precision: null, records: null, residues: null, ids: null, arrays: [], missing: [], damaged: [], formats: [] };
  if (!existsSync(abs) || !statSync(abs).isDirectory()) return { ...base, hint: "no such directory; give the -o directory of an `embed run`" };
  const names = readdirSync(abs);
  if (names.includes(MANIFEST)) return completeInfo(base, names, opts);
  if (names.includes(RUN_STATE) || names.includes(SHARDS)) return unfinishedInfo(base, names);
  return { ...base, state: "not-a-store", formats: otherFormats(abs, names, Infinity), hint: "no manifest.json or run.json here; give the -o directory of an `embed run`" };
}

/** The array files `files` of store directory `abs`: kind, layer, .npy shape and dtype, bytes. */
function arrayInfos(abs: string, files: string[]): ArrayInfo[] {
  return files.map((file) => {
    const m = ARRAY_RE.exec(file);
    const npy = npyInfo(join(abs, file));
    const kind = m ? m[1]! : file === "residues.offsets.npy" ? "offsets" : "other";
    return { file, kind, layer: m ? Number(m[2]) : null, shape: npy?.shape ?? null, dtype: npy?.dtype ?? null, bytes: statSync(join(abs, file)).size };
  });
}

/** A store with a manifest (`names`: its entries): complete, or damaged when a file does not check out. */
function completeInfo(base: StoreInfo, names: string[], opts: { verify?: boolean }): StoreInfo {
  const abs = base.dir;
  const m = readJson<Manifest>(join(abs, MANIFEST));
  const listed = m.files?.arrays ?? names.filter((f) => f.endsWith(".npy"));
  const present = listed.filter((f) => names.includes(f));
  const idsFile = m.files?.ids ?? "ids.txt";
  const check = checkStore(abs, { ...m, files: { ...m.files, arrays: listed } }, opts);
  const ok = check.damaged.length === 0;
  const slice = m.slice ?? m.shard;
  return {
    ...base,
    state: ok ? "complete" : "damaged",
    complete: ok,
    damaged: check.damaged,
    checksums: check.checksums,
    model: m.model ?? null,
    layers: m.layers ?? [],
    outputs: m.include ?? [],
    dim: m.model?.dim ?? null,
    dtype: m.dtype ?? null,
    precision: m.precision ?? null,
    records: m.counts?.records ?? null,
    residues: m.counts?.residues ?? null,
    createdAt: m.createdAt,
    inputs: m.inputs,
    recordsSha256: m.recordsSha256,
    ...(slice
      ? {
          slice: { index: slice.index, count: slice.count, of: slice.records },
          hint: `slice ${slice.index}/${slice.count} of a job array; join the ${slice.count} stores with \`embed merge OUT STORE...\``,
        }
      : {}),
    ...(ok ? {} : { hint: DAMAGED_HINT }),
    ids: { file: idsFile, present: names.includes(idsFile) },
    arrays: arrayInfos(abs, present),
    missing: listed.filter((f) => !names.includes(f)),
    formats: otherFormats(abs, names, statSync(join(abs, MANIFEST)).mtimeMs),
  };
}

/** A store being written (run state or shards, no manifest yet): what its committed shards hold. */
function unfinishedInfo(base: StoreInfo, names: string[]): StoreInfo {
  const abs = base.dir;
  const run = names.includes(RUN_STATE) ? readJson<RunState>(join(abs, RUN_STATE)) : {};
  const id = run.identity ?? {};
  let committed = 0;
  let committedResidues = 0;
  let shards = 0;
  const shardDir = join(abs, SHARDS);
  if (existsSync(shardDir)) {
    for (const f of readdirSync(shardDir).filter((f) => f.endsWith(".meta.json"))) {
      const meta = readJson<{ records?: number; residues?: number }>(join(shardDir, f));
      committed += meta.records ?? 0;
      committedResidues += meta.residues ?? 0;
      shards++;
    }
  }
  return {
    ...base,
    state: "unfinished",
    model: id.model ?? null,
    layers: id.layers ?? [],
    outputs: id.include ?? [],
    dim: id.model?.dim ?? null,
    dtype: id.dtype ?? null,
    precision: id.precision ?? null,
    records: id.records ?? null,
    residues: null,
    committed,
    committedResidues,
    shards,
    createdAt: run.createdAt,
    recordsSha256: id.recordsSha256,
    formats: otherFormats(abs, names, Infinity),
    hint: "rerun the same `embed run` command (same inputs and options) to resume: committed shards are kept and only the rest is embedded",
  };
}

/** Converted outputs found in the store directory (and its virnucpro/ folder). */
function otherFormats(abs: string, names: string[], manifestMtime: number): FormatFiles[] {
  const out: FormatFiles[] = [];
  const add = (format: FormatFiles["format"], files: string[]) => {
    if (!files.length) return;
    const stats = files.map((f) => statSync(join(abs, f)));
    out.push({ format, files, bytes: stats.reduce((a, s) => a + s.size, 0), stale: stats.some((s) => s.mtimeMs < manifestMtime) });
  };
  add("hdf5", names.filter((f) => /\.(h5|hdf5)$/.test(f)).sort());
  add("parquet", names.filter((f) => f.endsWith(".parquet")).sort());
  const vnp = /^output_(\d+)_ESM\.pt$/;
  const byNumber = (a: string, b: string) => Number(vnp.exec(a.split("/").at(-1)!)![1]) - Number(vnp.exec(b.split("/").at(-1)!)![1]);
  const local = names.filter((f) => vnp.test(f));
  const sub = names.includes("virnucpro") && statSync(join(abs, "virnucpro")).isDirectory() ? readdirSync(join(abs, "virnucpro")).filter((f) => vnp.test(f)).map((f) => `virnucpro/${f}`) : [];
  add("virnucpro", [...local, ...sub].sort(byNumber));
  return out;
}
