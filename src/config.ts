/**
 * Options validated once, at the edge. CLI strings, API objects and the environment become one
 * frozen `RunConfig`; code further in never re-checks options. This is the only module that
 * reads `process.env`.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { OptionsError } from "./errors.ts";
import { log } from "./log.ts";
import { KERNELS, OUTPUT_KINDS, OUT_DTYPES, TRANSPORTS, type Family, type Transport } from "./protocol.ts";

/** The package root (holds py/, scripts/, .venv/ and .models/ when set up). */
export const PACKAGE_ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
export const PYTHON_PACKAGE_DIR = join(PACKAGE_ROOT, "py");
export const DEFAULT_MODEL = "esm2_t33_650M_UR50D";
/** fair-esm's extract.py default: 1022 residues + BOS + EOS = 1024 positions. */
export const DEFAULT_TRUNCATE = 1022;
/**
 * DNABERT-S's default `--truncate`, in BPE tokens: its config's max_position_embeddings (512)
 * less [CLS] and [SEP]. The model has no position table (ALiBi), and VirNucPro truncates nothing;
 * its 300/500-bp chunks are ~60-120 tokens, so they are never cut. Longer inputs (contigs) are,
 * with a warning; pass --truncate N to keep more.
 */
export const DNABERT_S_TRUNCATE = 510;

const csv = (s: string): string[] =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

const Layers = z.union([z.string(), z.array(z.number())]).transform((v, ctx) => {
  const parts = typeof v === "string" ? csv(v) : v.map(String);
  const out: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (!Number.isInteger(n)) {
      ctx.addIssue({ code: "custom", message: `layer "${p}" is not an integer (use e.g. -1 or 0,6,-1)` });
      return z.NEVER;
    }
    if (!out.includes(n)) out.push(n);
  }
  if (!out.length) {
    ctx.addIssue({ code: "custom", message: "no layers given" });
    return z.NEVER;
  }
  return out;
});

const Include = z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
  const parts = typeof v === "string" ? csv(v) : v;
  const out: (typeof OUTPUT_KINDS)[number][] = [];
  for (const p of parts) {
    // per_tok: fair-esm extract.py's name for per-residue, accepted as its users type it.
    const k = p === "per-residue" || p === "per_tok" ? "residues" : p;
    if (!(OUTPUT_KINDS as readonly string[]).includes(k)) {
      ctx.addIssue({ code: "custom", message: `unknown output "${p}" (choose from mean, bos, per-residue)` });
      return z.NEVER;
    }
    const kind = k as (typeof OUTPUT_KINDS)[number];
    if (!out.includes(kind)) out.push(kind);
  }
  return out;
});

const Devices = z.string().transform((v, ctx) => {
  if (v === "auto" || v === "cpu") return v;
  const ids = csv(v).map(Number);
  if (!ids.length || ids.some((n) => !Number.isInteger(n) || n < 0)) {
    ctx.addIssue({ code: "custom", message: `--devices "${v}" is not auto, cpu, or a list of GPU indices like 0,1` });
    return z.NEVER;
  }
  return ids;
});

/** Output formats: npy is the store itself; the others are converted from it (formats.ts). */
export const FORMATS = ["npy", "hdf5", "parquet", "virnucpro"] as const;
export type Format = (typeof FORMATS)[number];
export function isFormat(s: string): s is Format {
  return (FORMATS as readonly string[]).includes(s);
}

const Formats = z.union([z.string(), z.array(z.string())]).transform((v, ctx) => {
  const parts = typeof v === "string" ? csv(v) : v;
  const out: Format[] = [];
  for (const p of parts) {
    if (!isFormat(p)) {
      ctx.addIssue({ code: "custom", message: `unknown format "${p}" (choose from ${FORMATS.join(", ")})` });
      return z.NEVER;
    }
    if (!out.includes(p)) out.push(p);
  }
  return out;
});

/** `I/N`: this job embeds slice I (1-based) of N of the input (records k with k mod N = I - 1). */
const Slice = z.union([z.string(), z.object({ index: z.number(), count: z.number() })]).transform((v, ctx) => {
  const given = typeof v === "string" ? v : `${v.index}/${v.count}`; // one parse for both forms
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(given);
  const [index, count] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index < 1 || index > count) {
    ctx.addIssue({ code: "custom", message: `"${given}" is not I/N with 1 ≤ I ≤ N (e.g. 1/4 ... 4/4; a SLURM array: --array=1-4 and --slice $SLURM_ARRAY_TASK_ID/4)` });
    return z.NEVER;
  }
  return { index, count };
});

/** A batch's token budget: at the least one record's BOS, one residue and EOS (3 tokens). */
const MAX_TOKENS_RULE = "must be auto or a whole number of tokens per batch >=3 (e.g. 4096)";
const MaxTokens = z.union([z.literal("auto"), z.coerce.number(MAX_TOKENS_RULE).int(MAX_TOKENS_RULE).min(3, MAX_TOKENS_RULE)], MAX_TOKENS_RULE);

/** Everything a run needs, as given by a user (CLI or API). */
export const RunOptions = z.object({
  inputs: z
    .array(z.string())
    .min(1, "give at least one FASTA input (a path, a .gz, or - for stdin)")
    // Standard input can be read once: a second '-' would find it consumed.
    .refine((l) => l.filter((i) => i === "-").length <= 1, "'-' (standard input) given more than once; it can be read only once"),
  output: z.string().min(1).optional(),
  model: z.string().default(DEFAULT_MODEL),
  layers: Layers.default([-1]),
  include: Include.default(["mean"]),
  precision: z.enum(["auto", "fp16", "bf16", "fp32"]).default("auto"),
  devices: Devices.default("auto"),
  maxTokens: MaxTokens.default("auto"),
  /** Tokens kept per record; unset: the family's default (DEFAULT_TRUNCATE, DNABERT_S_TRUNCATE). */
  truncate: z.coerce.number().int().min(1).optional(),
  /** `on`: refuse protein letters for a nucleotide model, and nucleotide-looking input for ESM-2. */
  alphabetCheck: z.enum(["on", "off"]).default("on"),
  /** What an input character the tokenizer maps to its unknown token ([UNK]) does: counted, or an error. */
  unknown: z.enum(["count", "error"]).default("count"),
  duplicateIds: z.enum(["error", "rename"]).default("error"),
  /** Embed identical sequences (equal after truncation) once and write their rows for every id. */
  dedup: z.boolean().default(false),
  /** Embed only slice I of N of the input (a job of an array; `embed merge` joins the stores). */
  slice: Slice.optional(),
  /** Deprecated name of `slice` (a shard is the commit unit inside a store); still accepted. */
  shard: Slice.optional(),
  outDtype: z.enum(OUT_DTYPES).default("float32"),
  overwrite: z.boolean().default(false),
  dry: z.boolean().default(false),
  /** Commit a shard (the unit a resumed run keeps, inside one store) at least every this many records. */
  shardRecords: z.coerce.number().int().min(1).default(10_000),
  /** Download a released ESM-2 checkpoint missing from every local cache (on by default, as fair-esm does). */
  download: z.boolean().default(true),
  /** Formats written after the run (npy is the store itself; others are converted from it). */
  formats: Formats.default(["npy"]),
  /** Replacements of dead workers allowed in one run. */
  maxRestarts: z.coerce.number().int().min(0).default(3),
  /** How GPU workers run the blocks: `auto` = triton on GPUs (compile where Triton is missing), eager on CPU. */
  kernels: z.enum(["auto", ...KERNELS]).default("auto"),
  threads: z.coerce.number().int().min(1).optional(),
  /** Worker data plane; unset or auto: EMBED_TRANSPORT, else shm when /dev/shm is writable, else socket. */
  transport: z.enum(["auto", ...TRANSPORTS]).optional(),
});
export type RunOptionsInput = z.input<typeof RunOptions>;

export interface RunConfig extends Readonly<Omit<z.output<typeof RunOptions>, "truncate">> {
  /** Tokens kept per record: as given, else ESM-2's default until resolveRun knows the family. */
  readonly truncate: number;
  /** Whether `truncate` was given (else resolveRun applies the model family's default). */
  readonly truncateGiven: boolean;
  readonly python: string;
  readonly pythonPath: string;
  readonly workerModule: string;
  readonly ringDir: string | undefined;
  /** The data plane every worker of this run uses (see transport.ts). */
  readonly transport: Transport;
  /** How long a worker may take to load and say READY (EMBED_READY_TIMEOUT_MS; default 10 min). */
  readonly readyTimeoutMs: number | undefined;
  /** Worker health checks while embedding (watchdog.ts): EMBED_HEALTH_INTERVAL_MS (default 30 s),
   * EMBED_PING_TIMEOUT_MS (60 s), EMBED_BATCH_TIMEOUT_MS (the floor of a batch's limit: 10 min on a
   * GPU, 1 h on a CPU). */
  readonly health: { intervalMs?: number; pingTimeoutMs?: number; batchTimeoutMs?: number };
  /** Test hook (EMBED_FAULT): a deliberate error in the worker, to prove that checks can fail. */
  readonly fault: string | undefined;
  /** Threads that tokenize DNABERT-S input beside the reader (input/bpe-pool.ts): EMBED_TOKENIZER_THREADS,
   * default one per core (the reader's own parsing is ~5% of the work), at most {@link MAX_TOKENIZER_THREADS}; 0 tokenizes in line. */
  readonly tokenizerThreads: number;
  /** The model's family, set where the model is resolved (resolveRun); unset means "esm2". Every
   * worker is told it (and refuses a checkpoint of another family); it picks the wire framing. */
  readonly family?: Family;
}

/** Parse and freeze options; throws OptionsError naming the bad option. */
export function resolveConfig(input: RunOptionsInput, env: NodeJS.ProcessEnv = process.env): RunConfig {
  const parsed = RunOptions.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    // The option's CLI name: camelCase to dashes, and `formats` is written --format.
    const key = String(issue.path[0]) === "formats" ? "format" : String(issue.path[0]);
    const where = issue.path.length ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ` : "";
    throw new OptionsError(`${where}${issue.message}`, "see `embed run --help`");
  }
  const o = parsed.data;
  if (o.shard) {
    if (o.slice && (o.slice.index !== o.shard.index || o.slice.count !== o.shard.count)) {
      throw new OptionsError(`--slice ${o.slice.index}/${o.slice.count} and --shard ${o.shard.index}/${o.shard.count} disagree`, "pass only --slice I/N (--shard is its old name)");
    }
    warnOnce("shard", "--shard I/N is deprecated and will be removed: use --slice I/N (same meaning)");
  }
  return Object.freeze({
    ...o,
    slice: o.slice ?? o.shard,
    shard: undefined,
    truncate: o.truncate ?? DEFAULT_TRUNCATE,
    truncateGiven: o.truncate !== undefined,
    python: pythonBin(env),
    pythonPath: env.EMBED_WORKER_PYTHONPATH ?? PYTHON_PACKAGE_DIR,
    workerModule: env.EMBED_WORKER_MODULE ?? "embed_worker",
    ringDir: env.EMBED_RING_DIR,
    transport: resolveTransport(o.transport, env),
    fault: env.EMBED_FAULT || undefined,
    tokenizerThreads: tokenizerThreads(env),
    readyTimeoutMs: msFromEnv(env, "EMBED_READY_TIMEOUT_MS"),
    health: {
      intervalMs: msFromEnv(env, "EMBED_HEALTH_INTERVAL_MS"),
      pingTimeoutMs: msFromEnv(env, "EMBED_PING_TIMEOUT_MS"),
      batchTimeoutMs: msFromEnv(env, "EMBED_BATCH_TIMEOUT_MS"),
    },
  });
}

/** Tokenizer threads by default at most: 8 feed about 8 GPUs (one core: ~110k reads/s, one GPU ~63k). */
export const MAX_TOKENIZER_THREADS = 8;

/** The DNABERT-S tokenizer threads a run starts (EMBED_TOKENIZER_THREADS, else one per core the
 * process may use, at most 8); OptionsError for a value that is not a count. */
export function tokenizerThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.EMBED_TOKENIZER_THREADS;
  if (raw === undefined || raw === "") return Math.min(MAX_TOKENIZER_THREADS, availableParallelism());
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 256) {
    throw new OptionsError(`EMBED_TOKENIZER_THREADS=${raw}: not a whole number from 0 to 256`, "unset it (one per core, at most 8), or set e.g. EMBED_TOKENIZER_THREADS=4 (0: tokenize on the reader's thread)");
  }
  return n;
}

const warned = new Set<string>();
/** A deprecation said once per process, however many runs resolve options. */
function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  log.warn(message);
}

/** A positive duration in milliseconds from the environment, or undefined when unset. */
function msFromEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const ms = Number(raw);
  if (!Number.isFinite(ms) || ms <= 0) throw new OptionsError(`${name}=${raw}: not a positive number of milliseconds`, `unset it, or set e.g. ${name}=60000`);
  return ms;
}

/** The `transport` option when given (not auto), else EMBED_TRANSPORT=shm|socket, else the default. */
function resolveTransport(option: string | undefined, env: NodeJS.ProcessEnv): Transport {
  const asked = option && option !== "auto" ? option : env.EMBED_TRANSPORT;
  try {
    return chooseTransport(asked);
  } catch (e) {
    throw new OptionsError(`EMBED_TRANSPORT: ${(e as Error).message}`, "set EMBED_TRANSPORT to shm or socket, or unset it");
  }
}

/**
 * The workers' Python: EMBED_PYTHON, else the checkout's venv (scripts/setup), else the per-user
 * venv (`embed setup`, for a package installed into another project), else python3 on PATH (the
 * GPU image's torch). A worker started on a Python without torch says which and how to fix it.
 */
export function pythonBin(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EMBED_PYTHON) return env.EMBED_PYTHON;
  for (const venv of [checkoutVenv(), userVenv(env)]) {
    const python = join(venv, "bin", "python");
    if (existsSync(python)) return python;
  }
  return "python3";
}

/** The venv scripts/setup makes beside the sources. */
export function checkoutVenv(): string {
  return join(PACKAGE_ROOT, ".venv");
}

/** The venv `embed setup` makes for an installed package: `$XDG_CACHE_HOME/embed/venv` (~/.cache). */
export function userVenv(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME ? env.XDG_CACHE_HOME.replace(/^~(?=\/|$)/, homedir()) : join(homedir(), ".cache");
  return join(cache, "embed", "venv");
}

/** Whether this copy of embed is a git checkout (scripts/setup's place) rather than an installed package. */
export function isCheckout(): boolean {
  return existsSync(join(PACKAGE_ROOT, ".git"));
}

/** Where a model name is searched (model-dirs.ts): the worker registry's places, by its rules. */
export interface ModelSearch {
  /** EMBED_MODEL_DIR, when set. */
  modelDir?: string;
  /** `<repo>/.models` (the test models). */
  repoModels: string;
  /** `$TORCH_HOME/hub/checkpoints` (fair-esm downloads). */
  torchHub: string;
  /** The Hugging Face hub cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). */
  hfHub: string;
}

/** The Hugging Face hub downloads come from: HF_ENDPOINT (a mirror), else huggingface.co, as
 * py/embed_worker/hub.py `hf_endpoint` reads it; for messages naming where a download was tried. */
export function hfEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
}

/** {@link ModelSearch} from the environment. */
export function modelSearch(env: NodeJS.ProcessEnv = process.env): ModelSearch {
  const home = (p: string) => (p.startsWith("~") ? join(homedir(), p.slice(1)) : p);
  const cache = env.XDG_CACHE_HOME ? home(env.XDG_CACHE_HOME) : join(homedir(), ".cache");
  const hf = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  return {
    ...(env.EMBED_MODEL_DIR ? { modelDir: home(env.EMBED_MODEL_DIR) } : {}),
    repoModels: join(PACKAGE_ROOT, ".models"),
    torchHub: join(env.TORCH_HOME ? home(env.TORCH_HOME) : join(cache, "torch"), "hub", "checkpoints"),
    hfHub: hf ? home(hf) : env.HF_HOME ? join(home(env.HF_HOME), "hub") : join(cache, "huggingface", "hub"),
  };
}

/** GPU indices visible to this process per CUDA_VISIBLE_DEVICES, or undefined if unset. */
export function visibleDevicesEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.CUDA_VISIBLE_DEVICES;
}

/** The environment workers inherit. */
export function childEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** "shm" when `shmDir` is a writable directory, else "socket". */
export function defaultTransport(shmDir = "/dev/shm"): Transport {
  try {
    if (!statSync(shmDir).isDirectory()) return "socket";
    accessSync(shmDir, constants.W_OK);
    return "shm";
  } catch {
    return "socket";
  }
}

/** The transport for a run: the one asked for (flag or EMBED_TRANSPORT), else the default. */
export function chooseTransport(requested: string | undefined, shmDir = "/dev/shm"): Transport {
  if (requested === undefined || requested === "" || requested === "auto") return defaultTransport(shmDir);
  if ((TRANSPORTS as readonly string[]).includes(requested)) return requested as Transport;
  throw new Error(`unknown transport "${requested}" (choose from auto, ${TRANSPORTS.join(", ")})`);
}
