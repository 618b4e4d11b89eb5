/** Run events: NDJSON through the CLI (fake workers), and the terminal / log renderings. */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { progress } from "../src/commands/progress.ts";
import { PACKAGE_ROOT } from "../src/config.ts";
import type { RunEvent } from "../src/events.ts";
import { FAKE_DIR } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-progress-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What `fn` writes on stderr (the live line, and consola's log lines). */
function capture(fn: () => void): string {
  const written: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  (process.stderr as { write: unknown }).write = (s: string) => (written.push(String(s)), true);
  try {
    fn();
  } finally {
    (process.stderr as { write: unknown }).write = orig;
  }
  return written.join("");
}

/** Two batches of one run, then close. */
function feed(p: ReturnType<typeof progress>) {
  p.onEvent({ type: "start", records: 10, todo: 8, resumed: 2, batches: 2, tokens: 400, budget: 256, density: 0.8, devices: ["cuda:0"] });
  p.onEvent({ type: "batch", batches: 1, totalBatches: 2, records: 4, tokens: 200, elapsed: 1, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
  p.onEvent({ type: "batch", batches: 2, totalBatches: 2, records: 8, tokens: 400, elapsed: 2, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
  p.close();
}

test("the progress line shows each worker's status: replacements and a lowered budget", () => {
  const p = progress("log", { logEveryMs: 0 });
  const out = capture(() => {
    p.onEvent({ type: "start", records: 10, todo: 10, resumed: 0, batches: 3, tokens: 600, budget: 256, density: 0.8, devices: ["cuda:0", "cuda:1"] });
    p.onEvent({ type: "worker", worker: "cuda:1", state: "replaced", detail: "the worker died; a replacement is starting" });
    p.onEvent({ type: "worker", worker: "cuda:0", state: "budget-lowered", detail: "out of memory", budget: 32768 });
    p.onEvent({ type: "batch", batches: 1, totalBatches: 3, records: 4, tokens: 200, elapsed: 1, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
    p.onEvent({ type: "batch", batches: 2, totalBatches: 3, records: 8, tokens: 400, elapsed: 2, tokensPerSecond: 200, worker: "cuda:1", density: 0.78 });
    p.close();
  });
  expect(out).toContain("[cuda:0 1 (budget 32,768), cuda:1 1 (replaced 1x)]");
});

describe("run events", () => {
  test("--json: NDJSON events on stdout, start first, finish last, nothing else", async () => {
    const proc = Bun.spawn(
      ["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", join(tmp, "out"), "--devices", "cpu", "--max-tokens", "150", "--shard-records", "2", "--json"],
      {
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, EMBED_PYTHON: "python3", EMBED_WORKER_MODULE: "fake_worker", EMBED_WORKER_PYTHONPATH: FAKE_DIR, EMBED_FAKE: "{}" },
      },
    );
    const [out, , code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    const events = out.trim().split("\n").map((l) => JSON.parse(l) as RunEvent);
    expect(events[0]!.type).toBe("start");
    expect(events.at(-2)!.type).toBe("finish");
    // The run summary comes last in every mode.
    expect((events.at(-1) as unknown as { type: string; records: number }).type).toBe("summary");
    expect((events.at(-1) as unknown as { records: number }).records).toBe(6);
    const start = events[0] as Extract<RunEvent, { type: "start" }>;
    const batches = events.filter((e) => e.type === "batch");
    expect(batches.length).toBe(start.batches);
    expect(start.records).toBe(6);
    expect((batches.at(-1) as Extract<RunEvent, { type: "batch" }>).records).toBe(6);
    const shards = events.filter((e): e is Extract<RunEvent, { type: "shard" }> => e.type === "shard");
    expect(shards.length).toBeGreaterThanOrEqual(2);
    expect(shards.reduce((a, e) => a + e.records, 0)).toBe(6);
    expect(shards.at(-1)!.committed).toBe(6);
  });

  test("terminal: one live line redrawn in place, ended by a newline on close", () => {
    const tty = capture(() => feed(progress("tty")));
    expect(tty).toContain("\r\x1b[2Kembedding 100.0%  8/8 records  400/400 tokens  200 tok/s  ETA 0s  [cuda:0 2]");
    expect(tty.endsWith("\n")).toBe(true);
    expect(tty.split("\n").length).toBe(2); // one line, however often redrawn
  });

  test("off a terminal: plain log lines, no carriage returns or escape codes", () => {
    const plain = capture(() => feed(progress("log")));
    expect(plain).not.toContain("\r");
    expect(plain).not.toContain("\x1b");
    // Only the final batch is logged here (the two batches come within one period).
    const lines = plain.split("\n").filter(Boolean);
    expect(lines.length).toBe(1);
    expect(lines[0]).toEndWith("embedding 100.0%  8/8 records  400/400 tokens  200 tok/s  ETA 0s  [cuda:0 2]");
  });

  test("off a terminal: a line per period, and the last batch's line on close when splits grew the total", () => {
    let t = 0;
    const p = progress("log", { logEveryMs: 1000, now: () => t });
    const batch = (k: number, total: number) =>
      p.onEvent({ type: "batch", batches: k, totalBatches: total, records: 2 * k, tokens: 200 * k, elapsed: k, tokensPerSecond: 200, worker: "cpu", density: 0.8 });
    const out = capture(() => {
      p.onEvent({ type: "start", records: 10, todo: 10, resumed: 0, batches: 5, tokens: 1000, budget: 256, density: 0.8, devices: ["cpu"] });
      t = 400;
      batch(1, 5); // within the first period: no line
      t = 1000;
      batch(2, 5); // one period after the start: a line
      t = 1500;
      batch(3, 6); // an out-of-memory split made 6 batches of 5; within the period
      t = 2600;
      batch(4, 6); // a line
      t = 2700;
      batch(5, 6); // the last batch (batches 5 of 6: its parent was split), within the period
    });
    expect(out.split("\n").filter(Boolean).map((l) => l.match(/embedding \S+%  (\d+)\/10 records/)?.[1])).toEqual(["4", "8"]);
    const closed = capture(() => p.close());
    expect(closed.split("\n").filter(Boolean).length).toBe(1);
    expect(closed).toContain("embedding 100.0%  10/10 records  1,000/1,000 tokens  200 tok/s  ETA 0s  [cpu 5]");
    expect(out + closed).not.toMatch(/[\r\x1b]/);
  });

  test("off a terminal through the CLI: the final line comes even when out-of-memory splits grew the batch count", async () => {
    // As a user's pipe sees it: no colour settings and no test environment.
    const { NO_COLOR: _n, FORCE_COLOR: _f, NODE_ENV: _e, CI: _c, ...env } = process.env;
    const proc = Bun.spawn(
      ["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", join(tmp, "log"), "--devices", "cpu", "--max-tokens", "400"],
      {
        stdout: "pipe",
        stderr: "pipe",
        env: { ...env, EMBED_PYTHON: "python3", EMBED_WORKER_MODULE: "fake_worker", EMBED_WORKER_PYTHONPATH: FAKE_DIR, EMBED_FAKE: JSON.stringify({ oomAbove: 150 }) },
      },
    );
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    expect(JSON.parse(out).splits).toBeGreaterThan(0);
    expect(err).not.toMatch(/[\r\x1b]/);
    const progressLines = err.split("\n").filter((l) => l.includes("embedding ") && l.includes("records"));
    expect(progressLines.length).toBe(1);
    expect(progressLines[0]).toMatch(/embedding 100\.0%  6\/6 records  \S+ tokens  .* tok\/s  ETA 0s  \[cpu \d+ \(budget \d+\)\]$/);
    // Then the run's closing summary line.
    expect(err.indexOf("6 records embedded in")).toBeGreaterThan(err.indexOf(progressLines[0]!));
  });
});

test("--quiet: nothing on stderr, the summary on stdout", async () => {
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", join(tmp, "quiet"), "--devices", "cpu", "--quiet"], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, EMBED_PYTHON: "python3", EMBED_WORKER_MODULE: "fake_worker", EMBED_WORKER_PYTHONPATH: FAKE_DIR, EMBED_FAKE: "{}" },
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  expect(err).toBe("");
  expect(JSON.parse(out).records).toBe(6);
});
