/**
 * The orchestrator <-> worker bridge, with the fake worker (real protocol, no torch):
 * several workers at once, large replies, typed remote errors, death noticed at once, pings
 * during work, and no stray processes afterwards; every test runs over both data transports
 * (the mapped ring and the unix-socket fallback).
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { ModelNotFoundError, WorkerError } from "../src/errors.ts";
import { runPool } from "../src/workers/pool.ts";
import type { BatchResult } from "../src/protocol.ts";
import { TRANSPORTS, type Transport } from "../src/workers/transport.ts";
import type { WorkerWireConfig } from "../src/protocol.ts";
import { isAlive, startFake, toks } from "./helpers.ts";

// These tests spawn Python workers; torch alone takes seconds to import on 2 cores.
setDefaultTimeout(120_000);

const meanOf = (t: Uint8Array) => t.reduce((a, b) => a + b, 0) / t.length;

describe.each(TRANSPORTS.map((t) => [t]))("bridge (fake worker, %s)", (transport: Transport) => {
  const start = (name: string, fake: Record<string, unknown> = {}, over: Partial<WorkerWireConfig> = {}) =>
    startFake(name, fake, { transport, ...over });

  test("READY names the transport; a fresh start leaves no ring or socket file behind", async () => {
    await using w = await start("files");
    expect(w.transport).toBe(transport);
    expect(w.ready.ring.transport).toBe(transport);
    const r = await w.embed({ id: 0, seqs: [toks("MKV")] }, () => {});
    expect(await Bun.file(w.ready.ring.path).exists()).toBe(false);
    expect(r.outputs[0]!.data[0]).toBeCloseTo(meanOf(toks("MKV")), 4);
  });

  test("three workers at once share one queue; every batch comes back right", async () => {
    const workers = await Promise.all([start("w0"), start("w1", { slowMs: 20 }), start("w2")]);
    const batches = Array.from({ length: 30 }, (_, i) => [toks("MKT".repeat(1 + (i % 5))), toks("AC".repeat(1 + i))]);
    const seen = new Map<number, number[]>();
    const stats = await runPool(workers, {
      count: () => batches.length,
      tokens: () => 0,
      batch: (i) => ({ id: i, seqs: batches[i]! }),
      consume: (i, r: BatchResult) => {
        const out = r.outputs[0]!;
        expect(out.kind).toBe("mean");
        expect(out.layer).toBe(4);
        seen.set(i, [out.data[0]!, out.data[8]!]);
      },
    });
    expect(stats.batches).toBe(30);
    expect(Object.keys(stats.perWorker).sort()).toEqual(["w0", "w1", "w2"]);
    // Busy time is what the workers measured: the slow one sleeps 20 ms in every batch.
    expect(stats.busyMs.w1!).toBeGreaterThanOrEqual(20 * stats.perWorker.w1!);
    expect(stats.busyMs.w0!).toBeLessThan(20 * stats.perWorker.w0!);
    for (let i = 0; i < batches.length; i++) {
      const [a, b] = seen.get(i)!;
      expect(a).toBeCloseTo(meanOf(batches[i]![0]!), 4);
      expect(b).toBeCloseTo(meanOf(batches[i]![1]!), 4);
    }
    const pids = workers.map((w) => w.pid);
    await Promise.all(workers.map((w) => w.stop()));
    expect(pids.filter(isAlive)).toEqual([]);
  });

  test("the queue is shared, not split: a slow worker takes fewer batches", async () => {
    const workers = await Promise.all([start("fast"), start("slow", { slowMs: 150 })]);
    const stats = await runPool(workers, { count: () => 24, tokens: () => 0, batch: (i) => ({ id: i, seqs: [toks("MKV")] }), consume: () => {} });
    expect(stats.batches).toBe(24);
    // A static split would give each 12; the slow one holds at most its two slots' worth per
    // 150 ms while the fast one drains the rest.
    expect(stats.perWorker.fast!).toBeGreaterThan(3 * stats.perWorker.slow!);
    await Promise.all(workers.map((w) => w.stop()));
  });

  test("a reply over 1 MB arrives intact", async () => {
    await using w = await start("big", { dim: 1024 }, { include: ["residues"], maxTokens: 8192 });
    const seq = toks("ACDEFGHIKLMNPQRSTVWY".repeat(20));
    let bytes = 0;
    let ok = true;
    await w.embed({ id: 0, seqs: [seq, seq] }, (r) => {
      const out = r.outputs[0]!;
      bytes = out.data.byteLength;
      for (let row = 0; row < out.rows; row++) {
        const t = seq[row % seq.length]!;
        if (Math.abs(out.data[row * 1024 + 1023]! - (t + 1.023)) > 1e-3) ok = false;
      }
    });
    expect(bytes).toBeGreaterThan(1 << 20);
    expect(ok).toBe(true);
  });

  test("a Python exception in a batch surfaces as a typed WorkerError", async () => {
    await using w = await start("err", { raiseOn: 1 });
    await w.embed({ id: 0, seqs: [toks("MK")] }, () => {});
    const err = await w.embed({ id: 1, seqs: [toks("MK")] }, () => {}).catch((e) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as WorkerError).remoteName).toBe("ValueError");
    expect((err as WorkerError).message).toContain("ValueError: fake failure");
    // The worker survives a failed batch.
    await w.embed({ id: 2, seqs: [toks("MK")] }, () => {});
  });

  test("a startup error is rebuilt as its own type", async () => {
    const err = await start("nf", { failStart: "model-not-found" }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelNotFoundError);
    expect(err.message).toContain("searched");
  });

  test("a worker that exits before READY fails start with its log", async () => {
    const err = await start("early", { failStart: "exit" }).catch((e) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.message).toContain("exited with code 3");
    expect(err.hint).toContain("exiting before ready");
  });

  test("a worker killed mid-batch is noticed within a second", async () => {
    const w = await start("dies", { slowMs: 5000 });
    const pending = w.embed({ id: 0, seqs: [toks("MKV")] }, () => {}).catch((e) => e);
    const t0 = performance.now();
    process.kill(w.pid, "SIGKILL");
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.message).toContain("SIGKILL");
    // Later calls fail at once too, instead of hanging.
    const again = await w.embed({ id: 1, seqs: [toks("MK")] }, () => {}).catch((e) => e);
    expect(again).toBeInstanceOf(WorkerError);
    await w.stop();
  });

  test("a crash reported as exit code fails pending work and the pool", async () => {
    const workers = [await start("c0", { crashAfter: 2 })];
    const err = await runPool(workers, { count: () => 10, tokens: () => 5, batch: (i) => ({ id: i, seqs: [toks("MKV")] }), consume: () => {} }).catch((e) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.message).toContain("exited with code 70");
    await workers[0]!.stop();
  });

  test("a malformed message is a protocol error, not a hang", async () => {
    const w = await start("bad", { badFrame: 0 });
    const err = await w.embed({ id: 0, seqs: [toks("MK")] }, () => {}).catch((e) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect(err.message).toContain("bad message");
    // The orchestrator kills a worker that breaks the protocol.
    for (let i = 0; i < 100 && isAlive(w.pid); i++) await Bun.sleep(10);
    expect(isAlive(w.pid)).toBe(false);
    await w.stop();
    expect(isAlive(w.pid)).toBe(false);
  });

  test("ping is answered while a batch computes", async () => {
    await using w = await start("ping", { slowMs: 800 });
    const work = w.embed({ id: 0, seqs: [toks("MK")] }, () => {});
    const t0 = performance.now();
    const pong = await w.ping();
    expect(performance.now() - t0).toBeLessThan(500);
    expect(pong.batches).toBe(0);
    await work;
    expect((await w.ping()).batches).toBe(1);
  });

  if (transport === "socket") {
    test("a broken data socket fails pending and later work with a WorkerError, not a hang", async () => {
      const w = await start("drop", { dropSocketOn: 1 });
      await w.embed({ id: 0, seqs: [toks("MK")] }, () => {});
      const t0 = performance.now();
      const err = await w.embed({ id: 1, seqs: [toks("MK")] }, () => {}).catch((e) => e);
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(err).toBeInstanceOf(WorkerError);
      expect(err.message).toContain("data socket");
      const again = await w.embed({ id: 2, seqs: [toks("MK")] }, () => {}).catch((e) => e);
      expect(again).toBeInstanceOf(WorkerError);
      for (let i = 0; i < 100 && isAlive(w.pid); i++) await Bun.sleep(10);
      expect(isAlive(w.pid)).toBe(false);
      await w.stop();
    });
  }
});
