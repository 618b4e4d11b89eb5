/**
 * The README's Slurm recipe ("Job arrays on a cluster"), run as written on a one-node Slurm:
 * munged, slurmctld and slurmd started here on their own socket, ports, state and config (nothing
 * in /etc is used or changed), the submit block taken from the README, one task cancelled mid-run
 * and the block submitted again, the merged store compared byte for byte with a single run, and
 * every daemon this check started stopped by its PID. On the same Slurm, scripts/snakemake-check.ts
 * then runs the Snakemake workflow (workflows/snakemake) locally and through the Slurm executor
 * (EMBED_SNAKEMAKE_CHECK=0 leaves it out).
 *
 * Root only (the daemons and job ownership); the Debian packages are installed when missing.
 * Without root or packages it prints a skip line and passes. Ends with "N passed, N failed".
 * Usage: bun scripts/slurm-check.ts [--keep]   (--keep: leave the work directory for a look)
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { snakemakeChecks } from "./snakemake-check.ts";

const REPO = resolve(import.meta.dir, "..");
const N = 3; // tasks: 300 records, 100 each
const RECORDS = 300;
const keep = process.argv.includes("--keep");
if (process.argv.includes("--help")) {
  console.log("usage: bun scripts/slurm-check.ts [--keep]\nruns the README's Slurm job-array recipe on a one-node Slurm started here (root only)");
  process.exit(0);
}

let passed = 0;
let failed = 0;
function check(what: string, ok: boolean, detail = ""): boolean {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok" : "not ok"} - ${what}${ok || !detail ? "" : `\n    ${detail.replaceAll("\n", "\n    ")}`}`);
  return ok;
}
function finish(): never {
  console.log(`slurm-check: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
function skip(why: string): never {
  console.log(`slurm-check: skipped: ${why}`);
  finish();
}

function sh(cmd: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(cmd, { env: { ...process.env, ...opts.env } as Record<string, string>, cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}
const which = (b: string) => sh(["sh", "-c", `command -v ${b} || ls /usr/sbin/${b}`]).code === 0;

/** The README's settings block (the variables the submit block uses) and the submit block. */
function readmeBlocks(): { names: string[]; submit: string } {
  const text = readFileSync(join(REPO, "README.md"), "utf8");
  const section = text.slice(text.indexOf("### Job arrays on a cluster"));
  const marker = section.indexOf("<!-- scripts/slurm-check runs the next block as written -->");
  if (marker < 0) throw new Error("README.md: the marked submit block of \"Job arrays on a cluster\" is missing");
  const fence = (from: number) => {
    const a = section.indexOf("```sh\n", from) + 6;
    return section.slice(a, section.indexOf("```", a));
  };
  const settings = fence(section.lastIndexOf("```sh\n", marker));
  const names = [...settings.matchAll(/^(?:export )?([A-Z_]+)=/gm)].map((m) => m[1]!);
  return { names, submit: fence(marker) };
}

/** Install the Debian packages when missing, without letting their scripts start any daemon. */
function install(): boolean {
  const bins = ["munged", "slurmctld", "slurmd", "sbatch"];
  if (bins.every(which)) return true;
  if (!which("apt-get")) return false;
  const policy = "/usr/sbin/policy-rc.d";
  const ours = !existsSync(policy);
  if (ours) writeFileSync(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 }); // no service starts during install
  try {
    const apt = ["apt-get", "install", "-y", "-qq", "munge", "slurmctld", "slurmd", "slurm-client"];
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    if (sh(apt, { env }).code !== 0) {
      sh(["apt-get", "update", "-qq"], { env });
      sh(apt, { env });
    }
  } finally {
    if (ours) rmSync(policy, { force: true });
  }
  return bins.every(which);
}

/** The daemons this check started: PIDs from their pid files, stopped in reverse order. */
const started: { name: string; pidFile: string }[] = [];
async function stopDaemons(): Promise<void> {
  for (const d of started.reverse()) {
    const pid = existsSync(d.pidFile) ? Number(readFileSync(d.pidFile, "utf8").trim()) : NaN;
    if (!Number.isInteger(pid) || pid <= 1) continue;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      continue; // already gone
    }
    for (let i = 0; i < 100 && alive(pid); i++) await Bun.sleep(100);
    if (alive(pid)) process.kill(pid, "SIGKILL");
    check(`${d.name} (pid ${pid}) stopped`, !alive(pid) || (await gone(pid)));
  }
}
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 50 && alive(pid); i++) await Bun.sleep(100);
  return !alive(pid);
}
function daemon(name: string, cmd: string[], pidFile: string, env: Record<string, string>): void {
  const r = sh(cmd, { env });
  if (r.code !== 0) throw new Error(`${name} did not start: ${r.err || r.out}`);
  started.push({ name, pidFile });
}

/** Wait for `cond`, polling every `ms`, at most `limitS` seconds; false if it never held. */
async function until(cond: () => boolean, limitS: number, ms = 100): Promise<boolean> {
  for (let t = 0; t < (limitS * 1000) / ms; t++) {
    if (cond()) return true;
    await Bun.sleep(ms);
  }
  return cond();
}

/** Each job (array tasks one by one) with its state, from `scontrol show job -o`. */
function jobs(id: string, env: Record<string, string>): Map<string, Record<string, string>> {
  const r = sh(["scontrol", "show", "job", "-o", id], { env });
  const out = new Map<string, Record<string, string>>();
  for (const line of r.out.split("\n").filter(Boolean)) {
    const f = Object.fromEntries(line.split(" ").filter((w) => w.includes("=")).map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]));
    out.set(f.ArrayTaskId ?? "", f);
  }
  return out;
}
const ENDED = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"];
const ended = (id: string, env: Record<string, string>) => [...jobs(id, env).values()].every((j) => ENDED.includes(j.JobState ?? ""));

function fasta(): string {
  let seed = 28;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
  const aa = "ACDEFGHIKLMNPQRSTVWY";
  let text = "";
  for (let i = 0; i < RECORDS; i++) text += `>p${i}\n${Array.from({ length: 600 + Math.floor(rnd() * 400) }, () => aa[Math.floor(rnd() * 20)]).join("")}\n`;
  return text;
}

/** The store's ids and arrays, each file's bytes hashed. */
function content(dir: string): Record<string, string> {
  const files = readdirSync(dir).filter((f) => f.endsWith(".npy") || f === "ids.txt").sort();
  return Object.fromEntries(files.map((f) => [f, new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, f))).digest("hex")]));
}

async function main(): Promise<void> {
  if (process.env.EMBED_SLURM_CHECK === "0") skip("EMBED_SLURM_CHECK=0");
  if (process.getuid?.() !== 0) skip("not root (the check starts slurmctld, slurmd and munged)");
  if (!existsSync(join(REPO, ".tools", "bin", "embed"))) skip("no .tools/bin/embed: run scripts/setup first");
  if (!install()) skip("munge / Slurm packages not installed and not installable here (apt-get)");
  const { names, submit } = readmeBlocks();
  const work = mkdtempSync(join(tmpdir(), "embed-slurm-"));
  const host = hostname().split(".")[0]!;
  const conf = join(work, "slurm.conf");
  const env: Record<string, string> = {
    SLURM_CONF: conf,
    PATH: `${join(REPO, ".tools", "bin")}:${process.env.PATH}`, // the Quick start's export line
    EMBED_MODEL_DIR: join(work, "models"),
    NO_COLOR: "1",
  };
  try {
    // munge on its own socket and key; Slurm on its own ports, state and config.
    const m = join(work, "munge");
    mkdirSync(m, { mode: 0o700 });
    writeFileSync(join(m, "munge.key"), crypto.getRandomValues(new Uint8Array(1024)), { mode: 0o600 });
    daemon("munged", ["munged", "--force", `--socket=${m}/sock`, `--key-file=${m}/munge.key`, `--pid-file=${m}/pid`, `--log-file=${m}/log`, `--seed-file=${m}/seed`], `${m}/pid`, env);
    for (const d of ["state", "spool"]) mkdirSync(join(work, d));
    const port = 20000 + (process.pid % 20000); // not the default 6817/6818: another Slurm may run here
    writeFileSync(conf, [
      "ClusterName=embedcheck", `SlurmctldHost=${host}`, `SlurmctldPort=${port}`, `SlurmdPort=${port + 1}`,
      "AuthType=auth/munge", "CredType=cred/munge", `AuthInfo=socket=${m}/sock`, "SlurmUser=root",
      `StateSaveLocation=${work}/state`, `SlurmdSpoolDir=${work}/spool`,
      `SlurmctldPidFile=${work}/slurmctld.pid`, `SlurmdPidFile=${work}/slurmd.pid`,
      `SlurmctldLogFile=${work}/slurmctld.log`, `SlurmdLogFile=${work}/slurmd.log`,
      "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none", "ReturnToService=2", "MinJobAge=3600",
      "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
      "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
      // Two GPUs that are not there (no driver here): --gpus-per-node is scheduled as on a GPU
      // cluster and CUDA_VISIBLE_DEVICES is set; embed finds no GPU and runs on the CPU.
      "GresTypes=gpu",
      // RealMemory (MiB; 90% of this machine's, below what slurmd finds) lets a job ask for memory
      // (--mem) as the Snakemake profile's jobs do; CR_CPU leaves memory unscheduled all the same.
      `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${navigator.hardwareConcurrency} RealMemory=${Math.floor((totalmem() / 2 ** 20) * 0.9)} Gres=gpu:2 State=UNKNOWN`,
      `PartitionName=check Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
    ].join("\n") + "\n");
    writeFileSync(join(work, "gres.conf"), "Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n");
    daemon("slurmctld", ["slurmctld", "-f", conf], `${work}/slurmctld.pid`, env);
    daemon("slurmd", ["slurmd", "-f", conf], `${work}/slurmd.pid`, env);
    const idle = await until(() => /idle/.test(sh(["sinfo", "-h", "-o", "%t"], { env }).out), 60, 250);
    if (!check("one-node Slurm up (sinfo: idle)", idle, sh(["tail", "-n", "5", `${work}/slurmctld.log`, `${work}/slurmd.log`]).out)) return;

    // The input, the test model where --no-download finds it, and a single run to compare with.
    writeFileSync(join(work, "in.fa"), fasta());
    mkdirSync(env.EMBED_MODEL_DIR!);
    copyFileSync(join(REPO, ".models", "test-tiny.pt"), join(env.EMBED_MODEL_DIR!, "test-tiny.pt"));
    const single = sh(["embed", "run", "in.fa", "-o", "single", "--model", "test-tiny", "--no-download", "--quiet"], { env, cwd: work });
    if (!check("a single run (the reference)", single.code === 0, single.err)) return;

    const vars: Record<string, string> = { N: String(N), GPUS: "1", IN: "in.fa", MODEL: "test-tiny" };
    check(`the README's settings block sets what this check sets (${Object.keys(vars).join(", ")})`, JSON.stringify(names.sort()) === JSON.stringify(Object.keys(vars).sort()), `README: ${names.join(", ")}`);
    const submitBlock = () => {
      const r = sh(["bash", "-euo", "pipefail", "-c", submit], { env: { ...env, ...vars }, cwd: work });
      const ids = /array (\d+), merge (\d+)/.exec(r.out);
      check("the README's submit block submits the array and the chained merge", r.code === 0 && ids !== null, r.err + r.out);
      return { array: ids?.[1] ?? "", merge: ids?.[2] ?? "" };
    };

    // First submission; task 2 is cancelled once it has written a batch (its shard file exists),
    // with ~20 of its 22 batches to go (~1-3 s here): the check below finds it unfinished.
    const first = submitBlock();
    if (!first.array) return;
    check("each task asks for a GPU (TresPerNode gres:gpu:1)", [...jobs(first.array, env).values()].every((j) => (j.TresPerNode ?? "").includes("gpu:1")));
    const shards = join(work, "parts", "2", "shards");
    const embedding = await until(() => existsSync(shards) && readdirSync(shards).length > 0, 180);
    // scancel sends a running task SIGTERM, and embed drains. (Not held with `scontrol suspend`
    // first: a suspended job is cancelled with SIGKILL, and nothing in flight is committed.)
    const cancelled = embedding && sh(["scancel", `${first.array}_2`], { env }).code === 0;
    check("task 2 cancelled mid-run (scancel once its first batch was written)", cancelled);
    await until(() => ended(first.array, env) && ended(first.merge, env), 300, 250);
    const t1 = jobs(first.array, env);
    check("tasks 1 and 3 COMPLETED, task 2 CANCELLED", t1.get("1")?.JobState === "COMPLETED" && t1.get("3")?.JobState === "COMPLETED" && t1.get("2")?.JobState === "CANCELLED", JSON.stringify([...t1].map(([k, j]) => [k, j.JobState, j.ExitCode])));
    const inspect = sh(["embed", "inspect", "parts/2", "--json"], { env, cwd: work });
    const committed = inspect.code === 0 ? (JSON.parse(inspect.out).committed as number | undefined) ?? -1 : -1;
    check("the cancelled task committed the batches in flight (store unfinished, records committed)", !existsSync(join(work, "parts", "2", "manifest.json")) && committed > 0, inspect.out + inspect.err);
    const m1 = jobs(first.merge, env).get("") ?? jobs(first.merge, env).get("N/A");
    check("the chained merge ran after the array and refused the unfinished slice (nothing in all/)", m1?.JobState === "FAILED" && !existsSync(join(work, "all", "manifest.json")), JSON.stringify(m1));

    // The same block again: 1 and 3 are no-ops, 2 resumes, the merge completes.
    const again = submitBlock();
    await until(() => ended(again.array, env) && ended(again.merge, env), 300, 250);
    const t2 = jobs(again.array, env);
    check("resubmitted: every task COMPLETED", [...t2.values()].every((j) => j.JobState === "COMPLETED"), JSON.stringify([...t2].map(([k, j]) => [k, j.JobState, j.ExitCode])));
    const log = (i: number) => {
      const f = join(work, "parts", `${again.array}_${i}.out`);
      return existsSync(f) ? readFileSync(f, "utf8") : "";
    };
    check("tasks 1 and 3 found their complete store: nothing to do", log(1).includes("nothing to do") && log(3).includes("nothing to do"), log(1) + log(3));
    check("task 2 resumed from what it committed", /resuming: \d+ of \d+ records already committed/.test(log(2)), log(2));
    const m2 = [...jobs(again.merge, env).values()][0];
    check("the merge COMPLETED", m2?.JobState === "COMPLETED", JSON.stringify(m2));
    const equal = existsSync(join(work, "all", "manifest.json")) && JSON.stringify(content(join(work, "all"))) === JSON.stringify(content(join(work, "single")));
    check("the merged store equals the single run byte for byte (ids.txt and every array)", equal, JSON.stringify({ all: existsSync(join(work, "all")) ? content(join(work, "all")) : null, single: content(join(work, "single")) }));

    // The Snakemake workflow (workflows/snakemake): locally, through the Slurm executor on this
    // Slurm, and a slice stopped mid-run then resumed; see scripts/snakemake-check.ts.
    if (process.env.EMBED_SNAKEMAKE_CHECK === "0") console.log("slurm-check: the Snakemake workflow skipped: EMBED_SNAKEMAKE_CHECK=0");
    else await snakemakeChecks({ work, env, slices: N, check, sh, content });
  } finally {
    sh(["scancel", "--full", "--partition=check"], { env }); // nothing of ours left queued
    await stopDaemons();
    if (keep) console.log(`slurm-check: work directory kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

await main().catch((e) => check("slurm-check ran to its end", false, (e as Error).stack ?? String(e)));
finish();
