#!/usr/bin/env bun
/**
 * Can one Bun orchestrator feed 8 GPUs? Drive N fake workers (real protocol and ring, no
 * compute: `fill: none`) with the real pool, plan and sharded store, on batches shaped like the
 * 3B `reads` workload (65,536-token budget, about 1,300 sequences of ~49 aa, 2,560-wide float32
 * means), and report the orchestrator's CPU time per batch against what N H200s need.
 *
 *   bun bench/orchestrator.ts [--workers 8] [--batches 200] [--gpu-batches-per-s 1.54] [--dim 2560]
 *                                     [--include mean|bos|per-residue,...] [--out-dtype float32|float16]
 *
 * 1.54 batches/s = one H200 at 100.9k tokens/s (3B, --kernels triton, docs/PERFORMANCE.md); for
 * the 650M shape use --dim 1280 --gpu-batches-per-s 5.47 (358k tokens/s). `--include per-residue`
 * measures the store-bound case (every residue row written). Prints one JSON line, with the
 * output bytes per batch and the output rate the orchestrator sustained.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { planBatches } from "../src/plan.ts";
import type { OutputKind } from "../src/protocol.ts";
import { RecordTable } from "../src/input/records.ts";
import { embedPlan } from "../src/workers/session.ts";
import { Store } from "../src/store/store.ts";
import { startFake } from "../test/helpers.ts";

const { values } = parseArgs({
  options: { workers: { type: "string", default: "8" }, batches: { type: "string", default: "200" }, "gpu-batches-per-s": { type: "string", default: "1.54" }, dim: { type: "string", default: "2560" }, include: { type: "string", default: "mean" }, "out-dtype": { type: "string", default: "float32" }, help: { type: "boolean" } },
});
if (values.help) {
  console.error("usage: bun bench/orchestrator.ts [--workers 8] [--batches 200] [--gpu-batches-per-s 1.54] [--dim 2560] [--include mean] [--out-dtype float32]");
  process.exit(0);
}
const nWorkers = Number(values.workers);
const BUDGET = 65536;
const DIM = Number(values.dim);
const INCLUDE = values.include!.split(",").map((k) => (k === "per-residue" ? "residues" : k)) as OutputKind[];
const OUT_DTYPE = values["out-dtype"] as "float32" | "float16";
const perBatch = Math.floor(BUDGET / 51);
const records = perBatch * Number(values.batches);

const table = new RecordTable(1022, "error", false);
let seed = 1;
for (let i = 0; i < records; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  const len = 40 + (seed % 19);
  const tokens = new Uint8Array(len);
  for (let k = 0; k < len; k++) tokens[k] = 4 + ((seed >>> (k % 24)) % 20);
  table.add({ id: `r${i}`, tokens, file: "bench", line: i + 1 });
}
const plan = planBatches(table.lengths(), { budget: BUDGET });
const dir = mkdtempSync(join(tmpdir(), "embed-orch-"));
const workers = await Promise.all(
  Array.from({ length: nWorkers }, (_, i) => startFake(`fake:${i}`, { dim: DIM, fill: "none" }, { include: INCLUDE, outDtype: OUT_DTYPE, maxTokens: BUDGET })),
);
try {
  const store = Store.open(
    dir,
    { recordsSha256: "bench", records: table.size, model: { name: "fake", path: "", numLayers: 4, dim: DIM }, layers: [4], include: INCLUDE, dtype: OUT_DTYPE, precision: "fp16", family: "esm2", truncate: 1022, duplicateIds: "error" },
    { dim: DIM, layers: [4], include: INCLUDE, dtype: OUT_DTYPE, lengths: table.lengths() },
    { overwrite: true, shardRecords: 10_000 },
  );
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await embedPlan(workers, table, plan, (b, r) => void store.write(b.records, r));
  store.commitShard();
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuMsPerBatch = (cpu.user + cpu.system) / 1000 / plan.batches.length;
  const need = nWorkers * Number(values["gpu-batches-per-s"]);
  const rowBytes = DIM * (OUT_DTYPE === "float32" ? 4 : 2);
  const rows = INCLUDE.reduce((n, k) => n + (k === "residues" ? plan.tokens - 2 * table.size : table.size), 0);
  const outBytes = rows * rowBytes;
  console.log(
    JSON.stringify({
      workers: nWorkers,
      batches: plan.batches.length,
      records: table.size,
      density: Number(plan.density.toFixed(4)),
      wallSeconds: Number(wall.toFixed(2)),
      batchesPerSecondWall: Number((plan.batches.length / wall).toFixed(1)),
      orchestratorCpuMsPerBatch: Number(cpuMsPerBatch.toFixed(2)),
      orchestratorMaxBatchesPerSecond: Number((1000 / cpuMsPerBatch).toFixed(1)),
      neededBatchesPerSecond: Number(need.toFixed(1)),
      headroom: Number((1000 / cpuMsPerBatch / need).toFixed(1)),
      outputMiBPerBatch: Number((outBytes / plan.batches.length / 2 ** 20).toFixed(1)),
      outputGBPerSecondWall: Number((outBytes / wall / 1e9).toFixed(2)),
    }),
  );
} finally {
  await Promise.all(workers.map((w) => w.stop()));
  rmSync(dir, { recursive: true, force: true });
}
