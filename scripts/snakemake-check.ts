/**
 * The Snakemake workflow (workflows/snakemake) checked the way scripts/slurm-check checks the
 * README's sbatch block: run locally (`--cores 2`) and through the Slurm executor plugin on the
 * one-node Slurm that slurm-check started, each merged store compared byte for byte with the
 * single run; then one slice stopped mid-run (SIGTERM once it committed a batch, as scancel or a
 * time limit sends), the workflow fails, the slice's shards are still there, and the same command
 * run again resumes that slice alone and completes.
 *
 * Snakemake and the plugin go in their own virtual environment, .tools/snakemake-venv (pinned
 * versions, installed once), not in the worker's .venv. Called by scripts/slurm-check.ts.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "..");
const WORKFLOW = join(REPO, "workflows", "snakemake");
const VENV = join(REPO, ".tools", "snakemake-venv");
/** Versions that install on Python 3.11 and drive Slurm 22.05's CLI (Debian 12's). */
const PINS = ["snakemake==9.27.1", "snakemake-executor-plugin-slurm==2.8.0", "snakemake-executor-plugin-slurm-jobstep==0.6.1"];
/** Wall-clock limit of one snakemake invocation, seconds: a hang fails the check, not the suite. */
const LIMIT_S = 300;

type Sh = (cmd: string[], opts?: { env?: Record<string, string>; cwd?: string }) => { code: number; out: string; err: string };
export interface Ctx {
  work: string;
  env: Record<string, string>;
  slices: number;
  check: (what: string, ok: boolean, detail?: string) => boolean;
  sh: Sh;
  content: (dir: string) => Record<string, string>;
}

/** Install the pinned Snakemake into .tools/snakemake-venv unless it is there already. */
function install(ctx: Ctx): boolean {
  const snakemake = join(VENV, "bin", "snakemake");
  const pip = join(VENV, "bin", "pip");
  const have = () => existsSync(snakemake) && ctx.sh([pip, "freeze", "--all"]).out.split("\n").filter((l) => PINS.includes(l.trim())).length === PINS.length;
  if (have()) return true;
  rmSync(VENV, { recursive: true, force: true });
  const venv = ctx.sh(["python3", "-m", "venv", VENV]);
  const r = venv.code === 0 ? ctx.sh([pip, "install", "-q", "--disable-pip-version-check", ...PINS]) : venv;
  return ctx.check(`Snakemake installed in .tools/snakemake-venv (${PINS.join(", ")})`, r.code === 0 && have(), (r.err + r.out).slice(-2000));
}

export async function snakemakeChecks(ctx: Ctx): Promise<void> {
  const { work, env, check, sh, content } = ctx;
  if (!install(ctx)) return;
  const single = JSON.stringify(content(join(work, "single")));
  const same = (out: string) => existsSync(join(work, out, "merged", "manifest.json")) && JSON.stringify(content(join(work, out, "merged"))) === single;
  const logOf = (out: string, name: string) => {
    const f = join(work, out, "logs", `${name}.log`);
    return existsSync(f) ? readFileSync(f, "utf8") : "";
  };
  /** snakemake with the shipped config.yaml, this check's values over it. */
  const snakemake = (out: string, extra: string[], config: string[] = [], runEnv = env) => {
    const cmd = [
      "timeout", String(LIMIT_S), join(VENV, "bin", "snakemake"),
      "--snakefile", join(WORKFLOW, "Snakefile"), "--configfile", join(WORKFLOW, "config.yaml"),
      "--config", "input=in.fa", `output=${out}`, "model=test-tiny", `slices=${ctx.slices}`, "run_options=--no-download", "threads=1", ...config,
      "--directory", work, ...extra,
    ];
    const r = sh(cmd, { env: runEnv, cwd: work });
    return { ...r, detail: (r.err + r.out).slice(-3000) };
  };

  // (a) Locally: the slices run side by side on the 2 cores, then the merge.
  const local = snakemake("sm-local", ["--cores", "2"]);
  check("snakemake --cores 2 (locally) runs every slice and the merge", local.code === 0, local.detail);
  check("the local workflow's merged store equals the single run byte for byte", same("sm-local"));

  // (b) Through the Slurm executor with the shipped profile. The check's Slurm keeps no
  // accounting database, so job states come from squeue (MinJobAge is an hour there) and no
  // account is guessed with sacct; the resources are cut down to this one 2-CPU node.
  // The plugin's job step runs `srun` with every SLURM_* variable removed, SLURM_CONF included:
  // on a cluster srun finds /etc/slurm/slurm.conf (or DNS), but this Slurm's config is private,
  // so the jobs find an `srun` first on PATH that puts SLURM_CONF back.
  const bin = join(work, "snakemake-bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "srun"), `#!/bin/sh\nSLURM_CONF=${env.SLURM_CONF} exec ${sh(["sh", "-c", "command -v srun"], { env }).out.trim() || "/usr/bin/srun"} "$@"\n`, { mode: 0o755 });
  const slurmEnv = { ...env, PATH: `${bin}:${env.PATH}` };
  const slurm = [
    "--profile", join(WORKFLOW, "profiles", "slurm"),
    "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
    "--set-resources", "embed_slice:gpu=1", "embed_slice:nodes=1", "embed_slice:cpus_per_task=1", "embed_slice:mem_mb=500", "embed_merge:cpus_per_task=1", "embed_merge:mem_mb=500",
  ];
  const onSlurm = snakemake("sm-slurm", slurm, [], slurmEnv);
  check("snakemake --profile profiles/slurm runs the slices and the merge as Slurm jobs", onSlurm.code === 0, onSlurm.detail);
  const ours = sh(["scontrol", "show", "job", "-o"], { env }).out.split("\n").filter((l) => / Comment=rule_embed_slice_/.test(l));
  check(`the ${ctx.slices} slices ran as ${ctx.slices} Slurm jobs, each asking for a GPU (TresPerJob gres:gpu:1)`,
    ours.length === ctx.slices && ours.every((l) => / TresPerJob=\S*gpu:1\b/.test(l) && / JobState=COMPLETED /.test(l)),
    ours.join("\n") || "no embed_slice job in scontrol show job");
  check("the Slurm workflow's merged store equals the single run byte for byte", same("sm-slurm"));

  // (c) Slice 2 stopped mid-run on Slurm: `embed` for this run is a wrapper that sends slice 2
  // SIGTERM once its first shard is committed (what scancel or a time limit sends).
  const wrapper = join(work, "embed-stopping-slice-2");
  writeFileSync(wrapper, `#!/usr/bin/env bash
# embed, except that slice 2 gets SIGTERM once it committed its first shard.
case " $* " in *" --slice 2/"*) ;; *) exec embed "$@" ;; esac
out=""; prev=""; for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
embed "$@" & pid=$!
for _ in $(seq 3000); do
  ls "$out/shards" 2>/dev/null | grep -q . && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"
`);
  chmodSync(wrapper, 0o755);
  const failing = snakemake("sm-fail", slurm, [`embed=${wrapper}`], slurmEnv);
  const sliceDir = join(work, "sm-fail", "slices", "2");
  check("a slice stopped mid-run fails the workflow, and no merged store is written", failing.code !== 0 && !existsSync(join(work, "sm-fail", "merged", "manifest.json")), failing.detail);
  const shards = existsSync(join(sliceDir, "shards")) ? readdirSync(join(sliceDir, "shards")) : [];
  const inspect = sh(["embed", "inspect", sliceDir, "--json"], { env, cwd: work });
  const committed = inspect.code === 0 ? ((JSON.parse(inspect.out).committed as number | undefined) ?? -1) : -1;
  check("the stopped slice's committed shards were kept (no manifest.json, records committed)",
    !existsSync(join(sliceDir, "manifest.json")) && shards.length > 0 && committed > 0, `shards: ${shards.join(", ")}\n${inspect.out}${inspect.err}\n${logOf("sm-fail", "slice_2")}`);
  const done = [1, 3].map((i) => join(work, "sm-fail", "slices", String(i), "manifest.json"));
  const before = done.map((f) => (existsSync(f) ? statSync(f).mtimeMs : -1));

  const rerun = snakemake("sm-fail", slurm, [], slurmEnv);
  check("the same command run again completes", rerun.code === 0, rerun.detail);
  check("the stopped slice resumed from its committed shards", /resuming: \d+ of \d+ records already committed/.test(logOf("sm-fail", "slice_2")), logOf("sm-fail", "slice_2"));
  check("the finished slices were not run again", before.every((t) => t > 0) && done.every((f, k) => statSync(f).mtimeMs === before[k]), rerun.detail);
  check("the resumed workflow's merged store equals the single run byte for byte", same("sm-fail"));
}
