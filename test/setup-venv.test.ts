/**
 * `embed setup` on a machine whose python3 has no torch: the branch of scripts/setup-python that
 * makes a per-user venv ($XDG_CACHE_HOME/embed/venv) and installs torch==2.13.0 and
 * py/requirements.txt into it with pip. The packed tarball in another project, HOME and
 * XDG_CACHE_HOME empty, no EMBED_PYTHON. Slow (pip installs torch: 1-5 minutes from a local wheel).
 * Skipped, saying why, where python3 already has torch (setup would reuse it, not install) or where
 * pip reaches no package index.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { baseEnv, consumerMachine, pack, sh } from "./consumer.ts";

const TORCH = "2.13.0"; // scripts/setup-python's TORCH_VERSION
const probe = (args: string[], timeoutMs: number) => Bun.spawnSync(["python3", ...args], { env: baseEnv, stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
/** The interpreter behind `python3` (a pyenv shim finds it through HOME, which the test replaces). */
const base = probe(["-c", "import sys; print(sys.executable)"], 30_000).stdout.toString().trim();
const hasTorch = base !== "" && probe(["-c", "import torch"], 60_000).exitCode === 0;
const indexDir = mkdtempSync(join(tmpdir(), "embed-pipcheck-"));
// One small wheel from whatever index pip is configured for (the network, or a local mirror).
const pipReaches = base !== "" && !hasTorch && probe(["-m", "pip", "download", "-q", "--no-deps", "-d", indexDir, "six"], 60_000).exitCode === 0;
rmSync(indexDir, { recursive: true, force: true });
const skipWhy = base === "" ? "no python3 on PATH" : hasTorch ? `${base} has torch, so embed setup reuses it and installs none` : !pipReaches ? "pip reaches no package index (pip download six failed)" : "";
if (skipWhy) console.warn(`setup-venv.test.ts skipped: ${skipWhy}`);

describe.skipIf(skipWhy !== "")(`embed setup installs torch into a new venv (slow)${skipWhy ? ` [skipped: ${skipWhy}]` : ""}`, () => {
  const root = mkdtempSync(join(tmpdir(), "embed-setup-venv-"));
  // The venv holds torch (about 1 GB in many files): removing it takes seconds.
  afterAll(() => rmSync(root, { recursive: true, force: true }), 120_000);
  const { app, env, python3 } = consumerMachine(root);
  const cache = join(root, "cache");
  const userEnv = () => ({ ...env(), XDG_CACHE_HOME: cache });
  const venv = join(cache, "embed", "venv");
  const model = join(PACKAGE_ROOT, ".models", "test-tiny");
  const fasta = "node_modules/embed-fasta/examples/example.fasta";

  test(
    "slow: first use names the Python and `embed setup`; embed setup makes the venv with torch; then embed run needs no variable",
    async () => {
      mkdirSync(cache, { recursive: true });
      python3(base); // the real interpreter, without torch
      const tgz = await pack(root);
      expect(tgz).toEndWith(".tgz");
      await Bun.write(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
      const add = await sh(["bun", "add", tgz], app, userEnv());
      expect(add.code).toBe(0);

      // (1) First use: no venv anywhere, python3 without torch: the worker error, exit code 4.
      const first = await sh(["bunx", "--no-install", "embed", "run", fasta, "-o", "out0", "--model", model], app, userEnv());
      expect(first.code).toBe(4);
      expect(first.stdout).toBe("");
      expect(first.stderr).toContain(`No module named 'torch' in ${base}`);
      expect(first.stderr).toMatch(/hint: run `?embed setup`? once/);
      expect(existsSync(venv)).toBe(false);

      // (2) embed setup: the branch that makes the venv on python3 and installs torch with pip.
      const setup = await sh(["bunx", "--no-install", "embed", "setup"], app, userEnv());
      expect(setup.stderr).toContain(`setup: creating ${venv}`);
      expect(setup.stderr).toContain(`installing torch==${TORCH} into ${venv}`);
      expect(setup.stderr).toContain("installing worker requirements");
      expect(setup.code).toBe(0);
      const python = join(venv, "bin", "python");
      expect(JSON.parse(setup.stdout)).toEqual({ python, venv });
      const check = await sh(
        [python, "-c", "import torch, numpy, safetensors, h5py, pyarrow, huggingface_hub, filelock, sys; print(torch.__version__.split('+')[0], sys.prefix)"],
        app,
        userEnv(),
      );
      expect(check.code).toBe(0);
      expect(check.stdout.trim()).toBe(`${TORCH} ${venv}`);
      // A venv of its own, not one on python3's site-packages.
      expect(await Bun.file(join(venv, "pyvenv.cfg")).text()).toContain("include-system-site-packages = false");

      // (3) embed run: the new venv found by the package itself, no variable set.
      const run = await sh(["bunx", "--no-install", "embed", "run", fasta, "-o", "out", "--model", model], app, userEnv());
      expect(run.stderr).not.toContain("ERROR");
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout).records).toBe(6);
    },
    600_000,
  );
});
