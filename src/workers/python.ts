/**
 * One-shot Python helpers (not workers): run `python -m MODULE ARGS` with the worker package on
 * PYTHONPATH and parse the JSON it prints. Used by `embed models` and `embed doctor`.
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
