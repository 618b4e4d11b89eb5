/**
 * A named DNABERT-S model that no local cache holds is downloaded before any worker starts (the
 * orchestrator needs its tokenizer.json to read the input): `embed run --model DNABERT-S` and
 * `embed virnucpro` (whose default --dnabert-model is DNABERT-S) against a stand-in Hugging Face
 * hub on loopback (py/tests/fakehub.py, HF_ENDPOINT) serving a tiny random-weight folder, with the
 * cache in a temporary HF_HOME. Checked: config.json, the weights and tokenizer.json are fetched
 * once (never the repository's .py file), a second run asks the hub nothing, --no-download refuses
 * with exit 5 and the command to run, an unreachable hub is exit 5 naming the URL tried.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, PYTHON_PACKAGE_DIR } from "../src/config.ts";
import { randomReads, readsFasta, writeTinyDnabert } from "./dnabert-folder.ts";
import { realPython, runText } from "./helpers.ts";

// Real torch workers start on 2 shared cores: seconds each.
setDefaultTimeout(240_000);

const tmp = mkdtempSync(join(tmpdir(), "embed-dl-dnabert-"));
const READS = join(tmp, "reads.fa");
const REPO = "zhihan1996/DNABERT-S";

/** The fake hub in a Python process: prints its URL, then for each line on stdin what it was asked. */
const HUB = `
import json, sys
from pathlib import Path
from fakehub import FakeHub
hub = FakeHub({${JSON.stringify(REPO)}: Path(sys.argv[1])})
print(json.dumps({"url": hub.url}), flush=True)
for _ in sys.stdin:
    print(json.dumps({"requests": len(hub.requests), "downloads": hub.downloads()}), flush=True)
`;

class FakeHub {
  private proc = Bun.spawn([realPython(), "-c", HUB, join(tmp, "served")], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, PYTHONPATH: [join(PACKAGE_ROOT, "py", "tests"), PYTHON_PACKAGE_DIR].join(":") },
  });
  private reader = this.proc.stdout.getReader();
  private buffered = "";
  url = "";

  private async line(): Promise<string> {
    while (!this.buffered.includes("\n")) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error("the fake hub exited");
      this.buffered += new TextDecoder().decode(value);
    }
    const i = this.buffered.indexOf("\n");
    const l = this.buffered.slice(0, i);
    this.buffered = this.buffered.slice(i + 1);
    return l;
  }
  async start(): Promise<this> {
    this.url = JSON.parse(await this.line()).url;
    return this;
  }
  /** Every request so far (count) and the files fetched in order, as repo/file. */
  async asked(): Promise<{ requests: number; downloads: string[] }> {
    this.proc.stdin.write("?\n");
    await this.proc.stdin.flush();
    return JSON.parse(await this.line());
  }
  close(): void {
    this.proc.kill();
  }
}

let hub: FakeHub;

beforeAll(async () => {
  const served = await writeTinyDnabert(join(tmp, "served"));
  writeFileSync(join(served, "bert_layers.py"), "raise SystemExit('never fetched, never run')\n");
  writeFileSync(READS, readsFasta(randomReads(12, 30, 120)));
  hub = await new FakeHub().start();
});
afterAll(() => {
  hub?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** The environment of a run: the fake hub (or `endpoint`), the cache in `hfHome`, no other model place. */
function env(hfHome: string, endpoint = hub.url): Record<string, string | undefined> {
  const e: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", HF_ENDPOINT: endpoint, HF_HOME: join(tmp, hfHome) };
  for (const v of ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "EMBED_MODEL_DIR", "HF_HUB_OFFLINE"]) delete e[v];
  return e;
}

const cli = (args: string[], e: Record<string, string | undefined>) => runText(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...args], e);

const WANT = [`${REPO}/config.json`, `${REPO}/model.safetensors`, `${REPO}/tokenizer.json`];

describe("embed run --model DNABERT-S with no local copy", () => {
  test("--no-download: exit 5 with the command that fetches it, nothing asked of the hub", async () => {
    const before = (await hub.asked()).requests;
    const r = await cli(["run", READS, "-o", join(tmp, "out-no"), "--model", "DNABERT-S", "--devices", "cpu", "--no-download"], env("hf-no"));
    expect(r.code).toBe(5);
    expect(r.stderr).toContain("no local copy");
    expect(r.stderr).toContain("python -m embed_worker.registry --download DNABERT-S");
    expect((await hub.asked()).requests).toBe(before);
    expect(existsSync(join(tmp, "out-no", "manifest.json"))).toBe(false);
  });

  test("downloaded once (config.json, weights, tokenizer.json; no .py), embedded; the second run asks the hub nothing", async () => {
    const before = await hub.asked();
    const r = await cli(["run", READS, "-o", join(tmp, "out-1"), "--model", "zhihan1996/DNABERT-S", "--devices", "cpu"], env("hf"));
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`downloading ${hub.url}/${REPO}`);
    const after = await hub.asked();
    expect(after.downloads.slice(before.downloads.length).sort()).toEqual(WANT);
    const snaps = join(tmp, "hf", "hub", "models--zhihan1996--DNABERT-S", "snapshots");
    const [rev] = readdirSync(snaps);
    expect(readdirSync(join(snaps, rev!)).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
    expect(readFileSync(join(tmp, "out-1", "ids.txt"), "utf8").split("\n").filter(Boolean)).toHaveLength(12);

    const again = await cli(["run", READS, "-o", join(tmp, "out-2"), "--model", "DNABERT-S", "--devices", "cpu"], env("hf"));
    expect(again.stderr).not.toContain("error:");
    expect(again.code).toBe(0);
    expect(again.stderr).not.toContain("downloading");
    expect((await hub.asked()).requests).toBe(after.requests);
    expect(existsSync(join(tmp, "out-2", "manifest.json"))).toBe(true);
  });

  test("an unreachable hub: exit 5 naming the URL tried, no worker output", async () => {
    const dead = "http://127.0.0.1:9"; // the discard port: nothing listens on loopback
    const r = await cli(["run", READS, "-o", join(tmp, "out-dead"), "--model", "DNABERT-S", "--devices", "cpu"], env("hf-dead", dead));
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`${dead}/${REPO}`);
    expect(r.stderr).toContain("HF_ENDPOINT");
    expect(existsSync(join(tmp, "out-dead", "manifest.json"))).toBe(false);
  });
});

describe("embed virnucpro with the default --dnabert-model DNABERT-S", () => {
  test("--no-download: exit 5 with the command, before anything is translated", async () => {
    const out = join(tmp, "vnp-no");
    const r = await cli(["virnucpro", READS, "-o", out, "--esm-model", "test-tiny", "--devices", "cpu", "--no-download"], env("hf-vnp-no"));
    expect(r.code).toBe(5);
    expect(r.stderr).toContain("python -m embed_worker.registry --download DNABERT-S");
    expect(existsSync(join(out, "frames.faa"))).toBe(false);
  });

  test("downloaded from the hub before the run, then every step runs", async () => {
    const before = await hub.asked();
    const out = join(tmp, "vnp");
    const r = await cli(["virnucpro", READS, "-o", out, "--esm-model", "test-tiny", "--devices", "cpu", "--per-file", "5"], env("hf-vnp"));
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    expect((await hub.asked()).downloads.slice(before.downloads.length).sort()).toEqual(WANT);
    expect(existsSync(join(out, "dnabert-s", "manifest.json"))).toBe(true);
    expect(readdirSync(join(out, "virnucpro")).some((f) => f.endsWith("_DNABERT_S.pt"))).toBe(true);
  });
});
