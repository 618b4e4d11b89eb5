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

  test("terminal line and plain log line", () => {
    const written: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    (process.stderr as { write: unknown }).write = (s: string) => (written.push(String(s)), true);
    try {
      for (const mode of ["tty", "log"] as const) {
        const p = progress(mode);
        p.onEvent({ type: "start", records: 10, todo: 8, resumed: 2, batches: 2, tokens: 400, budget: 256, density: 0.8, devices: ["cuda:0"] });
        p.onEvent({ type: "batch", batches: 1, totalBatches: 2, records: 4, tokens: 200, elapsed: 1, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
        p.onEvent({ type: "batch", batches: 2, totalBatches: 2, records: 8, tokens: 400, elapsed: 2, tokensPerSecond: 200, worker: "cuda:0", density: 0.78 });
        p.close();
      }
    } finally {
      (process.stderr as { write: unknown }).write = orig;
    }
    const all = written.join("");
    expect(all).toContain("\r\x1b[2Kembedding 100.0%  8/8 records  400/400 tokens  200 tok/s  ETA 0s  [cuda:0 2]");
    expect(all).toMatch(/embedding 100\.0% .* \[cuda:0 2\]/);
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
