/**
 * `embed run` into a complete store: the command that wrote it, again, has nothing to do and
 * succeeds (a job array resubmitted whole after one task failed: the finished tasks exit 0 at
 * once); another input or options that change the content is refused, naming what differs. What
 * counts as "the same" is store/request.ts's.
 *
 * `--format` is not part of "the same": the other formats are views of the store's final
 * embeddings, written into the store directory after its manifest (run.ts finishRun), so the
 * manifest cannot say which were asked. A rerun writes each asked format whose outputs are not
 * all there and newer than the manifest (a run killed while converting, or a format not asked
 * before: writing it changes nothing the store holds, and is what `embed convert` would do), under
 * the run's lock, and leaves the rest alone.
 */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Format, RunConfig } from "./config.ts";
import { OutputError } from "./errors.ts";
import type { ReadingOptions } from "./input/alphabet-guard.ts";
import { ingest } from "./input/ingest.ts";
import { log } from "./log.ts";
import { POOLING } from "./protocol.ts";
import type { RunSummary } from "./run-summary.ts";
import { convertStore, VIRNUCPRO_PER_FILE } from "./store/formats.ts";
import { completeManifest, requestDiff, runRequest, type CompleteManifest } from "./store/request.ts";
import { MANIFEST } from "./store/store.ts";

/**
 * A rerun of the command that wrote the complete store in `out` (same input, same options that
 * decide its content: store/rerun.ts) has nothing to do and succeeds, so a job array can be
 * resubmitted whole; asked formats whose outputs are missing or stale are written first (see
 * above). Undefined when `out` holds no complete store, or one written before requests were
 * recorded (Store.checkTarget then refuses, its hint offering `embed convert` for other formats);
 * a complete store of another input or options is refused here. The caller holds `out`'s lock.
 */
export async function unchangedRerun(cfg: RunConfig, out: string, reading: ReadingOptions, t0: number): Promise<RunSummary | undefined> {
  const m = completeManifest(out);
  if (!m) return undefined;
  let table = await ingest(cfg, reading); // the input is read as a run reads it: bad input fails alike
  if (cfg.slice) table = table.slice(cfg.slice.index, cfg.slice.count);
  const diff = requestDiff(out, m, runRequest(cfg), table.digest());
  if (!diff) return undefined;
  if (diff.length) {
    throw new OutputError(`${out} already holds a complete store of other ${diff.join(", ")}`, "choose another -o, or pass --overwrite to replace it (rerunning the command that wrote it is a no-op)");
  }
  const formats: RunSummary["formats"] = [{ format: "npy", files: [] }];
  const written: string[] = [];
  for (const f of cfg.formats.filter((f) => f !== "npy")) {
    const have = convertedOutputs(out, m, f);
    if (have) {
      formats.push({ format: f, files: have });
      continue;
    }
    const c = await convertStore(out, f, { python: cfg.python, locked: out, checked: true }); // under this run's lock; requestDiff checked it
    log.info(`${f}: ${c.files.join(", ")}`);
    formats.push({ format: f, files: c.files });
    written.push(f);
  }
  log.info(`${out} already holds this run's complete store: ${written.length ? `wrote only the missing ${written.join(", ")}` : "nothing to do"}`);
  const seconds = (performance.now() - t0) / 1000;
  const family = cfg.family ?? "esm2";
  return {
    output: out,
    family,
    pooling: Object.fromEntries(cfg.include.map((k) => [k, POOLING[family][k]])),
    ...table.summary(),
    identical: 0,
    ...(cfg.slice ? { slice: `${cfg.slice.index}/${cfg.slice.count}` } : {}),
    batches: 0,
    budget: 0,
    density: 0,
    devices: [],
    model: m.model?.name ?? cfg.model,
    layers: m.layers ?? [],
    include: m.include ?? [...cfg.include],
    seconds,
    startupSeconds: seconds,
    workerStartup: {},
    embedSeconds: 0,
    tokensPerSecond: 0,
    finishSeconds: 0,
    perWorker: {},
    busy: {},
    resumed: table.size,
    restarts: 0,
    splits: 0,
    formats,
    unchanged: true,
  };
}

/**
 * The files (absolute paths) that `embed run --format f` converted into the complete store `out`
 * of manifest `m`, when all are there and none is older than the manifest; undefined otherwise
 * (missing: a run killed while converting, or a format not asked before; older: converted from an
 * earlier store in this directory, which --overwrite does not remove). The converter renames each
 * file into place whole (py tools/atomic.py), so a final name that exists holds a finished file;
 * what is checked is which names exist and their times, not their contents. The names are the
 * converter's defaults (py tools/convert.py default_out): embeddings.h5; one
 * `{kind}.layer{L}.parquet` per array of the store; virnucpro/output_{k}_ESM.pt, k = 1 ..
 * ceil(records / 10,000), its files renamed one by one, so each must be there.
 */
function convertedOutputs(out: string, m: CompleteManifest, f: Exclude<Format, "npy">): string[] | undefined {
  const dir = resolve(out);
  const arrays = (m.files?.arrays ?? []).filter((a) => /^(mean|bos|residues)\.layer-?\d+\.npy$/.test(a));
  const records = m.counts?.records ?? 0;
  const names =
    f === "hdf5" ? ["embeddings.h5"]
    : f === "parquet" ? arrays.map((a) => a.replace(/\.npy$/, ".parquet"))
    : Array.from({ length: Math.ceil(records / VIRNUCPRO_PER_FILE) }, (_, k) => `virnucpro/output_${k + 1}_ESM.pt`);
  if (f === "virnucpro" && !existsSync(join(dir, "virnucpro"))) return undefined;
  if (f === "parquet" && !names.length) return undefined;
  const written = statSync(join(dir, MANIFEST)).mtimeMs;
  const fresh = (n: string) => {
    try {
      return statSync(join(dir, n)).mtimeMs >= written;
    } catch {
      return false;
    }
  };
  return names.every(fresh) ? names.map((n) => join(dir, n)) : undefined;
}
