/** `embed doctor`: Bun, Python, torch, devices and the attention backend, each with a fix hint. */
import { defineCommand } from "citty";
import { pythonBin } from "../config.ts";
import { listGpus } from "../workers/devices.ts";
import { ExitCode } from "../errors.ts";
import { log } from "../log.ts";
import { pythonJson } from "../workers/python.ts";
import { availableParallelism } from "node:os";
import { defaultTransport, tokenizerThreads } from "../config.ts";
import { emit } from "./report.ts";

interface Problem {
  what: string;
  hint: string;
  severity?: "warn" | "error";
}

export default defineCommand({
  meta: { name: "doctor", description: "Check this machine for embed: Python, torch, GPUs, attention backend.\n\nExample:\n  embed doctor && embed run x.fasta -o out/" },
  args: { json: { type: "boolean", description: "print the report as JSON on stdout", default: false } },
  async run({ args }) {
    const python = pythonBin();
    const py = await pythonJson<{ problems: Problem[]; [k: string]: unknown }>("embed_worker.tools.doctor", [], python);
    const problems: Problem[] = [];
    if (!py.ok) problems.push({ what: `${python} failed: ${py.error}`, hint: "run `embed setup` (in a checkout: scripts/setup), or set EMBED_PYTHON to a Python with torch", severity: "error" });
    else problems.push(...py.value!.problems);
    const shm = defaultTransport() === "shm";
    if (!shm) problems.push({ what: "/dev/shm is not a writable directory: workers hand data over a unix socket instead of the shared-memory ring (slower)", hint: "mount a tmpfs on /dev/shm", severity: "warn" });
    // Cores this process may use (its CPU affinity: a Slurm task's share) and the DNABERT-S
    // tokenizer threads a run would start (config.ts: EMBED_TOKENIZER_THREADS, else one per core).
    const cpus = availableParallelism();
    let threads: number | null = null;
    try {
      threads = tokenizerThreads();
    } catch (e) {
      problems.push({ what: (e as Error).message, hint: (e as { hint?: string }).hint ?? "unset EMBED_TOKENIZER_THREADS", severity: "error" });
    }
    const report = { bun: Bun.version, pythonBin: python, python: py.value ?? null, gpus: listGpus(), cpus, tokenizerThreads: threads, devShm: shm, problems };
    const errors = problems.filter((p) => p.severity !== "warn");
    if (args.json || !process.stdout.isTTY) emit(report);
    else {
      log.info(`bun ${Bun.version}; python ${python}: ${py.ok ? `torch ${String(py.value?.torch)}` : "FAILED"}`);
      log.info(`CPUs: ${cpus} (DNABERT-S tokenizer threads: ${threads || "none"})`);
      log.info(`GPUs: ${report.gpus.map((g) => `${g.index}: ${g.name}`).join(", ") || "none"}; attention: ${JSON.stringify(py.value?.attention ?? null)}; kernels: ${JSON.stringify(py.value?.kernels ?? null)}; families: ${JSON.stringify(py.value?.families ?? null)}`);
    }
    for (const p of problems) (p.severity === "warn" ? log.warn : log.error)(`${p.what}\n  hint: ${p.hint}`);
    if (!problems.length) log.success("everything embed needs is here");
    process.exit(errors.length ? ExitCode.workerFailed : ExitCode.ok);
  },
});
