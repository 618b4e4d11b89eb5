/** Run events: NDJSON through the CLI (fake workers), and the terminal / log renderings. */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { progress, terminalModes } from "../src/commands/progress.ts";
import { runText } from "../src/commands/run.ts";
import type { RunSummary } from "../src/run.ts";
import { PACKAGE_ROOT } from "../src/config.ts";
import type { RunEvent } from "../src/events.ts";
import { FAKE_DIR } from "./helpers.ts";
import { log } from "../src/log.ts";

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

/** The start and two batches of a run of `records` records. */
function feedRun(p: ReturnType<typeof progress>, records: number) {
  p.onEvent({ type: "start", records, todo: records, resumed: 0, batches: 2, tokens: 400, budget: 256, density: 0.8, devices: ["cuda:0"] });
  p.onEvent({ type: "batch", batches: 1, totalBatches: 2, records: records / 2, tokens: 200, elapsed: 1, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
  p.onEvent({ type: "batch", batches: 2, totalBatches: 2, records, tokens: 400, elapsed: 2, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
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

  test("terminal: one drawn bar redrawn in place, ended by a newline on close", () => {
    const tty = capture(() => feed(progress("tty", { now: () => 0, columns: 200 })));
    expect(tty).toContain("\r\x1b[2K[████████████] 100.0%  8/8 records  400/400 tokens  200 tok/s  elapsed 0s  ETA 0s  [cuda:0 2]");
    expect(tty.endsWith("\n")).toBe(true);
    expect(tty.split("\n").length).toBe(2); // one line, however often redrawn
  });

  test("terminal: the bar fills with records done, shows elapsed time and ETA, redraws at most every 100 ms", () => {
    let t = 0;
    const p = progress("tty", { now: () => t, columns: 200 });
    const batch = (k: number) =>
      p.onEvent({ type: "batch", batches: k, totalBatches: 4, records: 2 * k, tokens: 100 * k, elapsed: k, tokensPerSecond: 10, worker: "cpu", density: 0.8 });
    const draws: string[] = [];
    const step = (fn: () => void) => draws.push(...capture(fn).split("\r\x1b[2K").filter(Boolean));
    step(() => p.onEvent({ type: "start", records: 8, todo: 8, resumed: 0, batches: 4, tokens: 400, budget: 256, density: 0.8, devices: ["cpu"] }));
    t = 61_000;
    step(() => batch(1)); // a quarter done, 61 s in, 300 tokens to go at 10 tok/s
    t = 61_050;
    step(() => batch(2)); // 50 ms later: not drawn
    t = 61_200;
    step(() => batch(3));
    expect(draws).toEqual([
      "[███░░░░░░░░░] 25.0%  2/8 records  100/400 tokens  10 tok/s  elapsed 1m01s  ETA 30s  [cpu 1]",
      "[█████████░░░] 75.0%  6/8 records  300/400 tokens  10 tok/s  elapsed 1m01s  ETA 10s  [cpu 3]",
    ]);
    capture(() => p.close());
  });

  test("terminal: a log line while the bar is drawn (a worker's too) clears the bar and draws it again under it", () => {
    let t = 0;
    const p = progress("tty", { now: () => t, columns: 200 });
    const out = capture(() => {
      p.onEvent({ type: "start", records: 8, todo: 8, resumed: 0, batches: 2, tokens: 400, budget: 256, density: 0.8, devices: ["cuda:0"] });
      t = 1000;
      p.onEvent({ type: "batch", batches: 1, totalBatches: 2, records: 4, tokens: 200, elapsed: 1, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
      log.withTag("cuda:1").info("ready (a worker started for the next step)");
      p.close();
    });
    const bar = "[██████░░░░░░] 50.0%  4/8 records  200/400 tokens  200 tok/s  elapsed 1s  ETA 1s  [cuda:0 1]";
    const at = out.indexOf("ready (a worker started");
    expect(at).toBeGreaterThan(0);
    expect(out.slice(0, at)).toMatch(new RegExp(`${bar.replace(/[[\]()]/g, "\\$&")}\\r\\x1b\\[2K[^\\n]*$`)); // cleared, not appended to
    expect(out.slice(at)).toContain(`\n${bar}`); // drawn again on the line under it
    const after = capture(() => log.info("after close"));
    expect(after).not.toContain("\r\x1b[2K"); // close took its reporters away
  });

  test("terminal: each run's bar (embed virnucpro runs two) keeps its last line and counts its own batches", () => {
    const p = progress("tty", { now: () => 0, columns: 200 });
    const out = capture(() => {
      feedRun(p, 8);
      p.onEvent({ type: "finish", records: 8, seconds: 1, tokensPerSecond: 400, output: "/a" });
      feedRun(p, 4);
      p.close();
    });
    const lines = out.split("\n").filter(Boolean).map((l) => l.split("\r\x1b[2K").at(-1));
    expect(lines).toEqual([
      "[████████████] 100.0%  8/8 records  400/400 tokens  200 tok/s  elapsed 0s  ETA 0s  [cuda:0 2]",
      "[████████████] 100.0%  4/4 records  400/400 tokens  200 tok/s  elapsed 0s  ETA 0s  [cuda:0 2]",
    ]);
  });

  test("terminal: the line is cut to the terminal's width, so that a redraw stays on one line", () => {
    const tty = capture(() => feed(progress("tty", { now: () => 0, columns: 40 })));
    const drawn = tty.split("\r\x1b[2K").at(-1)!.replace(/\n$/, "");
    expect(drawn.length).toBe(39);
    expect(drawn).toEndWith("…");
    expect(drawn).toStartWith("[████████████] 100.0%  8/8 records");
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

describe("terminal manners: the result's form and the progress rendering", () => {
  test("terminalModes: human summary and bar on a terminal, JSON off one, --json NDJSON everywhere, --quiet no progress", () => {
    const both = { stdout: true, stderr: true };
    expect(terminalModes({ json: false, quiet: false }, both)).toEqual({ progress: "tty", result: "human" });
    expect(terminalModes({ json: false, quiet: false }, {})).toEqual({ progress: "log", result: "json" });
    expect(terminalModes({ json: false, quiet: false }, { stdout: false, stderr: true })).toEqual({ progress: "tty", result: "json" }); // embed run ... > summary.json
    expect(terminalModes({ json: false, quiet: false }, { stdout: true, stderr: false })).toEqual({ progress: "log", result: "human" }); // 2> run.log
    expect(terminalModes({ json: true, quiet: false }, both)).toEqual({ progress: "json", result: "ndjson" });
    expect(terminalModes({ json: false, quiet: true }, both)).toEqual({ progress: "none", result: "human" });
    expect(terminalModes({ json: false, quiet: true }, {})).toEqual({ progress: "none", result: "json" });
  });

  test("the human summary: records, time, tokens/s, output, how to load in Python", () => {
    const text = runText({ records: 1234, seconds: 2.5, output: "/o", tokensPerSecond: 5000.4, busy: { cpu: 0.9 }, model: "esm2_t6_8M_UR50D", layers: [6], include: ["mean"], resumed: 0, formats: [{ format: "npy", files: [] }] } as unknown as RunSummary);
    const lines = text.split("\n");
    expect(lines[0]).toBe("1,234 records embedded in 2.5 s → /o");
    expect(lines[1]).toBe("  5,000 tokens/s while embedding (time computing: cpu 90%)");
    expect(text).toContain(`load in Python:  import numpy as np; X = np.load("/o/mean.layer6.npy", mmap_mode="r")`);
    expect(text).not.toContain("{");
  });

  test("off a terminal (pipes): stdout is one JSON summary, the summary lines go to stderr", async () => {
    const { NO_COLOR: _n, FORCE_COLOR: _f, ...env } = process.env;
    const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", join(tmp, "pipe"), "--devices", "cpu"], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...env, EMBED_PYTHON: "python3", EMBED_WORKER_MODULE: "fake_worker", EMBED_WORKER_PYTHONPATH: FAKE_DIR, EMBED_FAKE: "{}" },
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    expect(JSON.parse(out).records).toBe(6);
    expect(out).not.toContain("load in Python");
    expect(err).toContain("6 records embedded in");
  });

  // A real pseudo-terminal through util-linux `script`, where present: what a person sees.
  const script = Bun.which("script");
  describe.skipIf(!script)("on a pseudo-terminal (util-linux script)", () => {
    const onTty = async (extra: string[]) => {
      const cmd = ["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", join(PACKAGE_ROOT, "examples", "example.fasta"), "-o", join(tmp, `tty${extra.length}`), "--devices", "cpu", ...extra];
      const proc = Bun.spawn([script!, "-qec", cmd.map((a) => `'${a}'`).join(" "), "/dev/null"], {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, EMBED_PYTHON: "python3", EMBED_WORKER_MODULE: "fake_worker", EMBED_WORKER_PYTHONPATH: FAKE_DIR, EMBED_FAKE: "{}" },
      });
      const [out, , code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { out: out.replace(/\r\n/g, "\n"), code };
    };

    test("the bar and the human summary, no JSON", async () => {
      const { out, code } = await onTty([]);
      expect(code).toBe(0);
      expect(out).toMatch(/\r\x1b\[2K\[█+\] 100\.0%  6\/6 records .* elapsed \S+  ETA 0s/);
      expect(out).toContain("6 records embedded in");
      expect(out).toContain("load in Python:");
      expect(out).not.toMatch(/^\{/m);
    });

    test("--json: NDJSON even on a terminal, no human summary", async () => {
      const { out, code } = await onTty(["--json"]);
      expect(code).toBe(0);
      const json = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { type: string });
      expect(json[0]!.type).toBe("start");
      expect(json.at(-1)!.type).toBe("summary");
      expect(out).not.toContain("(JSON summary: pipe the output");
    });
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
