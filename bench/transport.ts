#!/usr/bin/env bun
/**
 * Measure the data plane per transport (the mapped /dev/shm ring vs the unix-socket fallback)
 * with the fake worker (no torch): per-residue float16 outputs of `--mib` MiB per batch, two
 * slots in flight, as `runPool` drives real workers.
 *   bun bench/transport.ts [--mib 64] [--batches 24] [--fill fast,none]
 * fill "fast": the fake writes each block as one row pattern repeated (a single bytes
 * multiplication), so the time is the transport plus one fill pass; fill "none": the fake
 * writes nothing, so the time is the transport alone. The consumer checks one value per block
 * (the bytes are consumed in place, as the store writer does). Prints one JSON line per case.
 */
import { parseArgs } from "node:util";
import { runPool } from "../src/workers/pool.ts";
import { TRANSPORTS, type Transport } from "../src/workers/transport.ts";
import { startFake, toks } from "../test/helpers.ts";

const { values } = parseArgs({
  options: {
    mib: { type: "string", default: "64" },
    batches: { type: "string", default: "24" },
    fill: { type: "string", default: "fast,none" },
    transports: { type: "string", default: TRANSPORTS.join(",") },
    help: { type: "boolean" },
  },
});
if (values.help) {
  console.error("usage: bun bench/transport.ts [--mib 64] [--batches 24] [--fill fast,none] [--transports shm,socket]");
  process.exit(0);
}

const DIM = 1024;
const SEQ_LEN = 1024;
const residues = Math.round((Number(values.mib) * 2 ** 20) / (DIM * 2));
const nSeqs = Math.max(1, Math.round(residues / SEQ_LEN));
const seq = toks("ACDEFGHIKLMNPQRSTVWY".repeat(Math.ceil(SEQ_LEN / 20)).slice(0, SEQ_LEN));
const seqs = Array.from({ length: nSeqs }, () => seq);
const maxTokens = nSeqs * (SEQ_LEN + 2);
const bytesPerBatch = nSeqs * SEQ_LEN * DIM * 2;
const batches = Number(values.batches);

for (const fill of values.fill!.split(",")) {
  for (const transport of values.transports!.split(",") as Transport[]) {
    await using w = await startFake(`bench-${transport}`, { dim: DIM, fill }, { include: ["residues"], outDtype: "float16", maxTokens, transport });
    let checked = 0;
    const job = (count: number) =>
      runPool([w], {
        count: () => count,
        tokens: () => 0,
        batch: (i) => ({ id: i, seqs }),
        consume: (_i, r) => {
          const out = r.outputs[0]!;
          if (out.data.byteLength !== bytesPerBatch) throw new Error(`got ${out.data.byteLength} bytes`);
          if (fill === "fast" && Math.abs(out.data[DIM - 1]! - (DIM - 1) / 1000) > 1e-3) throw new Error("bad value");
          checked++;
        },
      });
    await job(2); // warm: first-touch of both slots on each side
    const t0 = performance.now();
    await job(batches);
    const s = (performance.now() - t0) / 1000;
    console.log(
      JSON.stringify({
        transport,
        fill,
        batches,
        mib_per_batch: Number((bytesPerBatch / 2 ** 20).toFixed(1)),
        seconds: Number(s.toFixed(3)),
        ms_per_batch: Number(((s * 1000) / batches).toFixed(1)),
        gb_per_s: Number(((bytesPerBatch * batches) / s / 1e9).toFixed(2)),
        checked,
      }),
    );
  }
}
