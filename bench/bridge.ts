#!/usr/bin/env bun
/**
 * Measure the control channel with the fake worker (no torch): round trips per second (ping,
 * answered by the worker's reader thread).
 *   bun bench/bridge.ts [--pings 5000]
 * Prints one JSON line.
 */
import { parseArgs } from "node:util";
import { startFake } from "../test/helpers.ts";

const { values } = parseArgs({ options: { pings: { type: "string", default: "5000" }, help: { type: "boolean" } } });
if (values.help) {
  console.error("usage: bun bench/bridge.ts [--pings N]");
  process.exit(0);
}
const n = Number(values.pings);
await using w = await startFake("bench");
const t0 = performance.now();
for (let i = 0; i < n; i++) await w.ping();
const pingUs = ((performance.now() - t0) * 1000) / n;
console.log(JSON.stringify({ pings: n, ping_roundtrip_us: Number(pingUs.toFixed(1)), pings_per_s: Math.round(1e6 / pingUs) }));
