/**
 * Host-side throughput benchmark: FASTA reading + tokenization + planning, no GPU.
 *
 *   bun bench/host.ts --records 1000000 --len 50 [--budget 16384] [--gzip]
 *   bun bench/host.ts --records 10000000 --len 50 --keep /tmp/b10m.fa   # write once...
 *   bun bench/host.ts --input /tmp/b10m.fa                               # ...then reuse
 *   bun bench/host.ts --records 4800000 --len 49 --dedup                 # + grouping (--dedup)
 *
 * Writes N random records of `len` residues to a temp dir (or `--keep PATH`), then times the
 * CLI's own ingest (reader, tokenizer, record table) and planBatches, and prints one JSON line:
 * records/s over read+plan (wall clock, and per CPU-second of all threads), the split of the
 * time, and memory: `peakRssMiB` (sampled every 20 ms during read+plan), `maxRssMiB` (the
 * kernel's high-water mark for the whole process: with `--input` nothing else ran, so this is
 * the orchestrator's peak for ingest + plan) and `heldRssMiB` (after a full GC, table and plan
 * still alive: what the run holds during the GPU phase).
 */
import { defineCommand, runMain } from "citty";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { groupIdentical } from "../src/input/dedup.ts";
import { planBatches } from "../src/plan.ts";
import { planRecords } from "../src/workers/session.ts";
import { ingest } from "../src/input/ingest.ts";

const STANDARD = "ACDEFGHIKLMNPQRSTVWY";

async function writeFasta(path: string, records: number, len: number, gzip: boolean): Promise<number> {
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16;
  const parts: string[] = [];
  let bytes = 0;
  const w = gzip ? undefined : Bun.file(path).writer();
  for (let i = 0; i < records; i++) {
    let s = "";
    for (let k = 0; k < len; k++) s += STANDARD[next() % 20];
    const rec = `>sp|B${i}|BENCH_${i} benchmark record ${i}\n${s}\n`;
    bytes += rec.length;
    if (w) w.write(rec);
    else parts.push(rec);
  }
  if (w) await w.end();
  else await Bun.write(path, gzipSync(parts.join("")));
  return bytes;
}

const main = defineCommand({
  meta: { name: "bench-host", description: "Time reading + tokenizing into the record table + planning on a generated FASTA" },
  args: {
    records: { type: "string", default: "1000000" },
    len: { type: "string", default: "50" },
    budget: { type: "string", default: "16384", description: "tokens per batch" },
    gzip: { type: "boolean", default: false },
    input: { type: "string", description: "read this FASTA instead of generating one" },
    keep: { type: "string", description: "write the generated FASTA here and keep it" },
    dedup: { type: "boolean", default: false, description: "also group identical sequences (embed run --dedup) before planning" },
  },
  async run({ args }) {
    const records = Number(args.records);
    const len = Number(args.len);
    const budget = Number(args.budget);
    const dir = mkdtempSync(join(tmpdir(), "embed-bench-"));
    try {
      const path = args.input ?? args.keep ?? join(dir, args.gzip ? "bench.fa.gz" : "bench.fa");
      const bytes = args.input ? statSync(args.input).size : await writeFasta(path, records, len, args.gzip);
      // The table keeps every record for the run; the benchmark holds it to the end like a run.
      Bun.gc(true);
      let peakRss = process.memoryUsage().rss;
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);

      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      // The orchestrator's own ingest: reader + tokenizer + record table (ids, tokens, digest).
      const table = await ingest({ inputs: [path], truncate: 1022, duplicateIds: "error" });
      const n = table.size;
      const truncated = table.truncated;
      const t1 = performance.now();
      const identical = args.dedup ? groupIdentical(table, table.indices()) : undefined;
      const tDedup = performance.now();
      // As the run plans a subset (session.planRecords): lengths gathered, batches mapped back.
      const plan = identical ? planRecords(table, budget, undefined, identical.firsts) : planBatches(table.lengths(), { budget });
      const t2 = performance.now();
      const cpu = process.cpuUsage(cpu0);
      clearInterval(sampler);
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      const maxRss = process.resourceUsage().maxRSS * 1024;
      Bun.gc(true);
      const heldRss = process.memoryUsage().rss;

      const seconds = (t2 - t0) / 1000;
      console.log(
        JSON.stringify({
          records: n,
          len: args.input ? +(table.residues / n).toFixed(1) : len,
          gzip: args.gzip,
          inputMiB: +(bytes / 2 ** 20).toFixed(1),
          readSeconds: +((t1 - t0) / 1000).toFixed(3),
          planSeconds: +((t2 - tDedup) / 1000).toFixed(3),
          ...(identical ? { dedupSeconds: +((tDedup - t1) / 1000).toFixed(3), identical: identical.copies } : {}),
          recordsPerSecond: Math.round(n / seconds),
          // CPU time of all threads (JS + GC helpers); wall-clock throughput suffers on a busy host.
          cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(3),
          recordsPerCpuSecond: Math.round(n / ((cpu.user + cpu.system) / 1e6)),
          residuesPerSecond: Math.round(table.residues / seconds),
          batches: plan.batches.length,
          density: +plan.density.toFixed(4),
          truncated,
          peakRssMiB: +(peakRss / 2 ** 20).toFixed(0),
          maxRssMiB: +(maxRss / 2 ** 20).toFixed(0),
          heldRssMiB: +(heldRss / 2 ** 20).toFixed(0),
          bun: Bun.version,
        }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});

await runMain(main);
