/**
 * A project that depends on embed, on a machine of its own: the packed tarball, a HOME of its
 * own, and a PATH of Bun, a `python3` shim and the system. Shared by bunx.test.ts and
 * setup-venv.test.ts. No EMBED_PYTHON anywhere: the package finds its Python itself.
 */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";

/** The environment without the variables that would choose embed's Python for it. */
export const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !["EMBED_PYTHON", "EMBED_HOME", "XDG_CACHE_HOME"].includes(k)));

export async function sh(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { ...baseEnv, NO_COLOR: "1", ...env } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** `bun pm pack` of this checkout into `dir`; the tarball's path, or "" when packing failed. */
export async function pack(dir: string): Promise<string> {
  const r = await sh(["bun", "pm", "pack", "--destination", dir, "--quiet"], PACKAGE_ROOT);
  if (r.code !== 0) return "";
  return join(dir, r.stdout.trim().split("\n").at(-1)!.split("/").at(-1)!);
}

/**
 * A machine under `root`: `home` (empty HOME), `shims` (holds `python3`), `app` (the consumer
 * project). `env()` is its HOME and PATH; `python3(target, args)` makes `python3` run `target`.
 */
export function consumerMachine(root: string) {
  const home = join(root, "home");
  const shims = join(root, "bin");
  const app = join(root, "app");
  for (const d of [home, shims, app]) mkdirSync(d, { recursive: true });
  const env = () => ({ HOME: home, PATH: [shims, dirname(Bun.which("bun")!), dirname(Bun.which("bunx")!), "/usr/bin", "/bin"].join(":") });
  const python3 = (target: string, args = "") => {
    writeFileSync(join(shims, "python3"), `#!/bin/sh\nexec "${target}" ${args} "$@"\n`);
    chmodSync(join(shims, "python3"), 0o755);
  };
  return { home, shims, app, env, python3 };
}
