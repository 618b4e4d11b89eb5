/**
 * One-shot Python helpers (not workers): run `python -m MODULE ARGS` with the worker package on
 * PYTHONPATH and parse the JSON it prints (`embed models`, `embed doctor`, `embed convert`), and the
 * set-up script of `embed setup`.
 */
import { childEnv, PYTHON_PACKAGE_DIR, pythonBin } from "../config.ts";
import { EmbedError, ExitCode } from "../errors.ts";

export interface PythonJsonResult<T> {
  ok: boolean;
  value?: T;
  error?: string;
}

export async function pythonJson<T>(module: string, args: string[] = [], python = pythonBin()): Promise<PythonJsonResult<T>> {
  const env = childEnv();
  let proc;
  try {
    proc = Bun.spawn([python, "-m", module, ...args], {
      env: { ...env, PYTHONPATH: [PYTHON_PACKAGE_DIR, env.PYTHONPATH].filter(Boolean).join(":") },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (e) {
    return { ok: false, error: `cannot start ${python}: ${(e as Error).message}` };
  }
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) return { ok: false, error: err.trim().split("\n").slice(-3).join("\n") || `exit code ${code}` };
  try {
    return { ok: true, value: JSON.parse(out) as T };
  } catch {
    throw new EmbedError(`python -m ${module} printed no JSON`, { exitCode: ExitCode.internal });
  }
}

/**
 * Run the Python set-up script (`embed setup`: scripts/setup-python VENV) with its output on this
 * terminal; resolves to its exit code. It lives here so that spawning stays in this folder.
 */
export async function runPythonSetup(script: string, venv: string): Promise<number> {
  const p = Bun.spawn(["bash", script, venv], { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
  return await p.exited;
}
