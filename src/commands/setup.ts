/**
 * `embed setup`: a Python for the workers, by the same steps as scripts/setup's Python half
 * (scripts/setup-python): torch, the worker's requirements and the test model. In a checkout it
 * makes `.venv` beside the sources; in a package installed into another project, a per-user venv
 * (config.ts `userVenv`), which `pythonBin()` then finds with no environment variable.
 */
import { join } from "node:path";
import { defineCommand } from "citty";
import { checkoutVenv, isCheckout, PACKAGE_ROOT, pythonBin, userVenv } from "../config.ts";
import { EmbedError, ExitCode } from "../errors.ts";
import { log } from "../log.ts";
import { runPythonSetup } from "../workers/python.ts";
import { fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "setup",
    description: `Install a Python with torch for embed's workers (once; fast when it is there).

Uses python3 when it has torch and the worker's requirements; else makes a venv (on python3 with
--system-site-packages when python3 has torch, else installing torch) in ~/.cache/embed/venv
($XDG_CACHE_HOME/embed/venv), or .venv in a checkout. EMBED_PYTHON, when set, is the one used.

Examples:
  embed setup                                     then: embed doctor
  bunx --package embed-fasta embed setup          from a project without the package`,
  },
  args: {},
  async run() {
    const venv = isCheckout() ? checkoutVenv() : userVenv();
    const script = join(PACKAGE_ROOT, "scripts", "setup-python");
    log.info(`setting up the workers' Python (venv: ${venv})`);
    const code = await runPythonSetup(script, venv);
    if (code !== 0) {
      fail(new EmbedError(`embed setup failed (${script} exited ${code})`, { hint: "see its messages above (pip needs the network, or a pip index/wheels it is configured for); rerun `embed setup` when fixed", exitCode: ExitCode.workerFailed }));
    }
    const python = pythonBin();
    process.stdout.write(`${JSON.stringify({ python, venv })}\n`);
    log.success(`ready: embed's workers run ${python}`);
  },
});
