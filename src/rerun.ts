/**
 * `embed run` into a complete store: the command that wrote it, again, has nothing to do and
 * succeeds (a job array resubmitted whole after one task failed: the finished tasks exit 0 at
 * once); another input or options that change the content is refused, naming what differs. What
 * counts as "the same" is store/request.ts's.
 */
import type { RunConfig } from "./config.ts";
import { OutputError } from "./errors.ts";
import type { ReadingOptions } from "./input/alphabet-guard.ts";
import { ingest } from "./input/ingest.ts";
import { log } from "./log.ts";
import { POOLING } from "./protocol.ts";
import type { RunSummary } from "./run.ts";
import { completeManifest, requestDiff, runRequest } from "./store/request.ts";

/**
 * A rerun of the command that wrote the complete store in `out` (same input, same options that
 * decide its content: store/rerun.ts) has nothing to do and succeeds, so a job array can be
 * resubmitted whole. Undefined when `out` holds no complete store, or one written before requests
 * were recorded, or the run also asks for other formats (Store.checkTarget then refuses, its hint
 * offering `embed convert`); a complete store of another input or options is refused here.
 */
export async function unchangedRerun(cfg: RunConfig, out: string, reading: ReadingOptions, t0: number): Promise<RunSummary | undefined> {
  const m = completeManifest(out);
  if (!m || cfg.formats.some((f) => f !== "npy")) return undefined;
  let table = await ingest(cfg, reading); // the input is read as a run reads it: bad input fails alike
  if (cfg.slice) table = table.slice(cfg.slice.index, cfg.slice.count);
  const diff = requestDiff(out, m, runRequest(cfg), table.digest());
  if (!diff) return undefined;
  if (diff.length) {
    throw new OutputError(`${out} already holds a complete store of other ${diff.join(", ")}`, "choose another -o, or pass --overwrite to replace it (rerunning the command that wrote it is a no-op)");
  }
  log.info(`${out} already holds this run's complete store: nothing to do`);
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
    perWorker: {},
    busy: {},
    resumed: table.size,
    restarts: 0,
    splits: 0,
    formats: [{ format: "npy", files: [] }],
    unchanged: true,
  };
}
