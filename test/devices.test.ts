/**
 * `--devices auto|cpu|0,1,...` without a GPU: `resolveDevices` on fake GPU lists and
 * CUDA_VISIBLE_DEVICES values, the precision default per device kind, and, through the CLI, a
 * fake `nvidia-smi` on PATH giving one fake worker per visible GPU, each started with its own
 * CUDA_VISIBLE_DEVICES.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { type DeviceSlot, type GpuInfo, resolveDevices } from "../src/workers/devices.ts";
import { ExitCode, OptionsError } from "../src/errors.ts";
import { resolvePrecision } from "../src/workers/session.ts";
import { FAKE_DIR, runText } from "./helpers.ts";

setDefaultTimeout(60_000);

const H200 = "NVIDIA H200";
const gpus = (n: number): GpuInfo[] => Array.from({ length: n }, (_, i) => ({ index: String(i), name: `${H200} #${i}`, memoryMiB: 143_771 }));
const CPU: DeviceSlot = { name: "cpu", kind: "cpu", label: "CPU" };
/** What a test needs of a slot: its worker name and its CUDA_VISIBLE_DEVICES. */
const brief = (slots: DeviceSlot[]) => slots.map((d) => [d.name, d.visible ?? null]);

/** The OptionsError `fn` throws (exit code 2, message and hint), or fails the test. */
function optionsError(fn: () => unknown): OptionsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(OptionsError);
    expect((e as OptionsError).exitCode).toBe(ExitCode.badOptions);
    return e as OptionsError;
  }
  throw new Error("expected an OptionsError");
}

describe("resolveDevices", () => {
  test("auto with no GPU is the CPU", () => {
    expect(resolveDevices("auto", [], undefined)).toEqual([CPU]);
  });

  test("auto with one GPU is one worker on it", () => {
    expect(resolveDevices("auto", gpus(1), undefined)).toEqual([{ name: "cuda:0", kind: "cuda", visible: "0", label: `${H200} #0` }]);
  });

  test("auto with four GPUs is one worker per GPU, each seeing only its own", () => {
    const slots = resolveDevices("auto", gpus(4), undefined);
    expect(brief(slots)).toEqual([["cuda:0", "0"], ["cuda:1", "1"], ["cuda:2", "2"], ["cuda:3", "3"]]);
    expect(slots.every((d) => d.kind === "cuda")).toBe(true);
    expect(slots.map((d) => d.label)).toEqual(gpus(4).map((g) => g.name));
  });

  test("cpu is the CPU even when GPUs are present", () => {
    expect(resolveDevices("cpu", gpus(4), undefined)).toEqual([CPU]);
    expect(resolveDevices("cpu", gpus(4), "1")).toEqual([CPU]);
  });

  test("an explicit list picks those GPUs, in the order given", () => {
    expect(brief(resolveDevices([3, 1], gpus(4), undefined))).toEqual([["cuda:3", "3"], ["cuda:1", "1"]]);
    expect(brief(resolveDevices([0], gpus(4), undefined))).toEqual([["cuda:0", "0"]]);
  });

  test("CUDA_VISIBLE_DEVICES narrows auto, and explicit indices count within it", () => {
    expect(brief(resolveDevices("auto", gpus(4), "2,3"))).toEqual([["cuda:0", "2"], ["cuda:1", "3"]]);
    // As CUDA counts: index 1 of "2,3" is physical GPU 3.
    expect(brief(resolveDevices([1], gpus(4), "2,3"))).toEqual([["cuda:1", "3"]]);
    expect(resolveDevices([1], gpus(4), "2,3")[0]!.label).toBe(`${H200} #3`);
    // Spaces are tolerated; order is the user's.
    expect(brief(resolveDevices("auto", gpus(4), " 3, 0 "))).toEqual([["cuda:0", "3"], ["cuda:1", "0"]]);
  });

  test("CUDA_VISIBLE_DEVICES that hides every GPU (empty, -1, unknown index) makes auto the CPU", () => {
    for (const env of ["", "-1", "7"]) expect(resolveDevices("auto", gpus(2), env)).toEqual([CPU]);
  });

  test("GPU and MIG UUIDs in CUDA_VISIBLE_DEVICES are passed through as they are", () => {
    const uuid = "GPU-8f2c1a9e-0000-1111-2222-333344445555";
    const mig = "MIG-0b1c2d3e-4444-5555-6666-777788889999";
    const slots = resolveDevices("auto", gpus(2), `${uuid},${mig}`);
    expect(brief(slots)).toEqual([["cuda:0", uuid], ["cuda:1", mig]]);
    expect(slots[0]!.label).toBe(uuid);
  });

  test("an index beyond the visible GPUs is a clear options error", () => {
    const e = optionsError(() => resolveDevices([0, 4], gpus(4), undefined));
    expect(e.message).toBe("--devices 0,4: GPU 4 is not visible (4 visible)");
    expect(e.hint).toBe("use indices 0..3, or --devices auto");
  });

  test("out of range within CUDA_VISIBLE_DEVICES says so", () => {
    const e = optionsError(() => resolveDevices([2], gpus(4), "2,3"));
    expect(e.message).toBe("--devices 2: GPU 2 is not visible (2 visible, counted within CUDA_VISIBLE_DEVICES=\"2,3\")");
    expect(e.hint).toBe("use indices 0..1, or --devices auto");
  });

  test("a GPU index on a machine without GPUs points to --devices cpu", () => {
    const e = optionsError(() => resolveDevices([0], [], undefined));
    expect(e.message).toContain("GPU 0 is not visible (0 visible)");
    expect(e.hint).toBe("no GPU found: use --devices cpu");
  });

  test("a GPU listed twice is an options error, not two workers named alike on one GPU", () => {
    const e = optionsError(() => resolveDevices([0, 1, 0], gpus(4), undefined));
    expect(e.message).toBe("--devices 0,1,0: GPU 0 is listed twice");
  });
});

describe("precision default", () => {
  const cuda = resolveDevices("auto", gpus(2), undefined);
  test("auto: fp16 on GPUs, fp32 on the CPU", () => {
    expect(resolvePrecision({ precision: "auto" }, cuda)).toBe("fp16");
    expect(resolvePrecision({ precision: "auto" }, [CPU])).toBe("fp32");
    expect(resolvePrecision({ precision: "auto" }, resolveDevices("auto", [], undefined))).toBe("fp32");
  });
  test("an explicit precision wins on either", () => {
    for (const p of ["fp16", "bf16", "fp32"] as const) {
      expect(resolvePrecision({ precision: p }, cuda)).toBe(p);
      expect(resolvePrecision({ precision: p }, [CPU])).toBe(p);
    }
  });
});

describe("through the CLI, with a fake nvidia-smi and fake workers", () => {
  const tmp = mkdtempSync(join(tmpdir(), "embed-devices-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const bin = join(tmp, "bin");
  mkdirSync(bin);
  // Answers the query listGpus makes, as nvidia-smi does (csv, noheader, nounits).
  writeFileSync(join(bin, "nvidia-smi"), `#!/bin/sh\nfor i in 0 1 2 3; do echo "$i, NVIDIA H200, 143771"; done\n`);
  chmodSync(join(bin, "nvidia-smi"), 0o755);
  // A worker module that records what it was started with, then is the fake worker.
  const seen = join(tmp, "seen");
  mkdirSync(seen);
  writeFileSync(
    join(tmp, "probe_worker.py"),
    `import json, os, sys
sys.path.insert(0, ${JSON.stringify(FAKE_DIR)})
cfg = json.loads(os.environ["EMBED_WORKER_CONFIG"])
with open(os.path.join(${JSON.stringify(seen)}, cfg["name"].replace(":", "_")), "w") as f:
    json.dump({"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": cfg["device"], "precision": cfg["precision"], "maxLen": cfg["maxLen"], "expectedTokens": cfg.get("expectedTokens")}, f)
import fake_worker
sys.exit(fake_worker.main())
`,
  );

  /** The CLI with the fake nvidia-smi first on PATH; CUDA_VISIBLE_DEVICES only when `env` sets it. */
  function embed(args: string[], env: Record<string, string> = {}) {
    const { CUDA_VISIBLE_DEVICES: _, ...base } = process.env;
    return runText(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...args], { ...base, NO_COLOR: "1", PATH: `${bin}:${process.env.PATH}`, ...env });
  }
  const EXAMPLE = join(PACKAGE_ROOT, "examples", "example.fasta");

  test("one worker per visible GPU, each with its own CUDA_VISIBLE_DEVICES and fp16", async () => {
    // 150 tokens: one record per batch, 6 batches for 4 lanes, so both workers get some.
    // --truncate 140: each worker is told the longest sequence the run can send (+ BOS/EOS).
    const r = await embed(["run", EXAMPLE, "-o", join(tmp, "out"), "--max-tokens", "150", "--truncate", "140"], {
      CUDA_VISIBLE_DEVICES: "1,3",
      EMBED_PYTHON: "python3",
      EMBED_WORKER_MODULE: "probe_worker",
      EMBED_WORKER_PYTHONPATH: tmp,
      EMBED_FAKE: "{}",
    });
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.records).toBe(6);
    expect(Object.keys(summary.perWorker).sort()).toEqual(["cuda:0", "cuda:1"]);
    const started = Object.fromEntries(readdirSync(seen).sort().map((f) => [f, JSON.parse(readFileSync(join(seen, f), "utf8"))]));
    // Each worker is told its share of the input's size (the "auto" kernels' run-length estimate).
    const share = Math.ceil(statSync(EXAMPLE).size / 2);
    expect(started).toEqual({
      cuda_0: { CUDA_VISIBLE_DEVICES: "1", device: "cuda", precision: "fp16", maxLen: 142, expectedTokens: share },
      cuda_1: { CUDA_VISIBLE_DEVICES: "3", device: "cuda", precision: "fp16", maxLen: 142, expectedTokens: share },
    });
  });

  test("--dry shows the GPUs auto picks; a bad index exits 2 with the message and hint", async () => {
    const dry = await embed(["run", EXAMPLE, "--dry"]);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout).devices).toEqual(["cuda:0", "cuda:1", "cuda:2", "cuda:3"]);
    const bad = await embed(["run", EXAMPLE, "--dry", "--devices", "0,4"], { CUDA_VISIBLE_DEVICES: "" });
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toContain("--devices 0,4: GPU 0 is not visible (0 visible, counted within CUDA_VISIBLE_DEVICES=\"\")");
    expect(bad.stderr).toContain("no GPU found: use --devices cpu");
  });
});
