/**
 * `embed extract MODEL FASTA OUT_DIR --repr_layers ... --include mean per_tok bos`: fair-esm's
 * scripts/extract.py command line and output, on embed's engine. Its arguments are taken as
 * extract.py spells them (underscores, several values after one option; the dashed spellings and
 * comma lists work too), and OUT_DIR gets one `{label}.pt` per record with extract.py's keys and
 * dtypes (py/embed_worker/tools/extract_pt.py writes them).
 *
 * The records are embedded into a store hidden in OUT_DIR/.embed-store (an interrupted extract
 * resumes there), then written out as .pt files (files that exist are kept, as extract.py keeps
 * them), and the store is removed unless `--keep-store`.
 */
import { defineCommand } from "citty";
import { existsSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { DEFAULT_TRUNCATE } from "../config.ts";
import { EmbedError, ExitCode, InputError, OptionsError, OutputError } from "../errors.ts";
import { log } from "../log.ts";
import { embedToStore, type RunHooks, type RunSummary } from "../run.ts";
import { pythonJson } from "../workers/python.ts";
import { setLogLevel } from "./args.ts";
import { interruptOnSignals } from "./interrupt.ts";
import { progress, terminalModes } from "./progress.ts";
import { fail, result } from "./report.ts";

/** The hidden store inside OUT_DIR (extract_pt.py's STORE_DIR: no label may write into it). */
export const STORE_DIR = ".embed-store";
const PT_KINDS = { mean: "mean", per_tok: "residues", bos: "bos" } as const;
type PtKind = keyof typeof PT_KINDS;

export interface ExtractOptions {
  model: string;
  fasta: string;
  outDir: string;
  /** fair-esm layer indices: -1 = last, 0 = embeddings (written under absolute numbers). */
  reprLayers: number[];
  include: PtKind[];
  /** --toks_per_batch: embed's token budget per batch (undefined: embed's auto). */
  toksPerBatch?: number;
  truncationSeqLength: number;
  devices: string;
  precision: "auto" | "fp16" | "bf16" | "fp32";
  keepStore: boolean;
}

export interface ExtractSummary {
  outDir: string;
  records: number;
  /** .pt files written by this call, and kept because they existed. */
  written: number;
  skipped: number;
  layers: number[];
  include: PtKind[];
  seconds: number;
  /** The embedding run (absent when every file existed and nothing was embedded). */
  run?: RunSummary;
}

/** `--include` values: extract.py's, plus embed's per-residue/residues for per_tok; contacts refused. */
export function parseInclude(values: string[]): PtKind[] {
  const out: PtKind[] = [];
  for (const v of values.flatMap((x) => x.split(",")).filter(Boolean)) {
    const k = v === "per-residue" || v === "residues" || v === "per-tok" ? "per_tok" : v;
    if (k === "contacts") throw new OptionsError("--include contacts: embed computes no contact maps", "drop contacts (use fair-esm's extract.py for contact maps), or keep mean, per_tok and bos");
    if (!(k in PT_KINDS)) throw new OptionsError(`--include ${v}: unknown output`, "choose from mean, per_tok, bos");
    if (!out.includes(k as PtKind)) out.push(k as PtKind);
  }
  if (!out.length) throw new OptionsError("--include is required (as in extract.py)", "e.g. --include mean per_tok");
  return out;
}

/** Embed FASTA into OUT_DIR's hidden store, then write extract.py's per-sequence .pt files. */
export async function extractToDir(o: ExtractOptions, hooks: RunHooks = {}): Promise<ExtractSummary> {
  const t0 = performance.now();
  const fasta = resolve(o.fasta);
  const outDir = resolve(o.outDir);
  if (o.fasta === "-") throw new OptionsError("FASTA - (standard input): extract reads the file twice (embedding, then its labels)", "save the input to a file first");
  if (!existsSync(fasta) || !statSync(fasta).isFile()) throw new InputError(`${fasta}: no such file`, undefined, "give the FASTA file extract.py would read");
  // Labels checked (unique, inside OUT_DIR) before anything is embedded.
  const plan = await tool<{ records: number; missing: number }>(["plan", fasta, outDir]);
  const store = join(outDir, STORE_DIR);
  let run: RunSummary | undefined;
  if (plan.missing > 0 || plan.records === 0) {
    const options = {
      inputs: [fasta],
      output: store,
      model: o.model,
      layers: o.reprLayers,
      include: o.include.map((k) => PT_KINDS[k]),
      outDtype: "float32" as const,
      precision: o.precision,
      devices: o.devices,
      maxTokens: o.toksPerBatch ?? ("auto" as const),
      truncate: o.truncationSeqLength,
      // Labels are whole header lines (unique, checked above); embed's ids are first words, which may repeat.
      duplicateIds: "rename" as const,
      // A complete store left by --keep-store or a failed write is embedded again (it may be of other options).
      overwrite: existsSync(join(store, "manifest.json")),
    };
    try {
      run = await embedToStore(options, hooks);
    } catch (e) {
      // The hidden store of an interrupted extract with other options is ours to discard.
      if (!(e instanceof OutputError && e.message.startsWith(`${store} holds an unfinished run with different`))) throw e;
      log.info(`${store}: discarding an unfinished extract made with other options`);
      run = await embedToStore({ ...options, overwrite: true }, hooks);
    }
  }
  const wrote = run ? await tool<{ records: number; written: number; skipped: number; layers: number[] }>(["write", store, fasta, outDir, "--include", ...o.include]) : undefined;
  if (run && !o.keepStore) rmSync(store, { recursive: true, force: true });
  return {
    outDir,
    records: plan.records,
    written: wrote?.written ?? 0,
    skipped: wrote?.skipped ?? plan.records,
    layers: wrote?.layers ?? [],
    include: o.include,
    seconds: (performance.now() - t0) / 1000,
    ...(run && { run }),
  };
}

/** Run the .pt tool; its `{name, message, hint}` failure becomes the named error. */
async function tool<T>(args: string[]): Promise<T> {
  const r = await pythonJson<T>("embed_worker.tools.extract_pt", args);
  if (r.ok && r.value) return r.value;
  const err = r.error ?? "no output";
  let wire: { name?: string; message?: string; hint?: string } | undefined;
  try {
    wire = JSON.parse(err.trim().split("\n").at(-1) ?? "");
  } catch {}
  if (wire?.message && wire.name === "InputError") throw new InputError(wire.message, undefined, wire.hint ?? "");
  if (wire?.message) throw new OutputError(wire.message, wire.hint || undefined);
  throw new EmbedError(`cannot write the .pt files: ${err}`, { hint: "run scripts/setup, or set EMBED_PYTHON to a Python with torch and numpy", exitCode: ExitCode.internal });
}

/** Options by extract.py's spelling (underscores) or embed's (dashes, camelCase). */
const MULTI = new Set(["repr_layers", "include"]);
const VALUE = new Set(["toks_per_batch", "truncation_seq_length", "devices", "precision"]);
const FLAG = new Set(["nogpu", "keep_store", "quiet", "json", "verbose"]);

/**
 * extract.py's argv: three positionals, and options of which --repr_layers and --include take
 * several values (argparse nargs="+"), which citty cannot parse. A negative number is a value.
 */
export function parseExtractArgv(argv: string[]): { positionals: string[]; values: Record<string, string[]>; flags: Record<string, boolean> } {
  const positionals: string[] = [];
  const values: Record<string, string[]> = {};
  const flags: Record<string, boolean> = {};
  const isOption = (t: string) => t.startsWith("-") && t !== "-" && !/^-\d/.test(t);
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!;
    if (t === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!isOption(t)) {
      positionals.push(t);
      continue;
    }
    const [raw, inline] = t.replace(/^--?/, "").split(/=(.*)/s) as [string, string | undefined];
    const name = raw.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/-/g, "_");
    const negated = name.startsWith("no_") && FLAG.has(name.slice(3));
    if (FLAG.has(name) || negated) flags[negated ? name.slice(3) : name] = !negated;
    else if (MULTI.has(name) || VALUE.has(name)) {
      const got = inline !== undefined ? [inline] : [];
      while (i + 1 < argv.length && !isOption(argv[i + 1]!) && (MULTI.has(name) || !got.length)) got.push(argv[++i]!);
      if (!got.length) throw new OptionsError(`--${raw} needs a value`, "see `embed extract --help`");
      values[name] = MULTI.has(name) ? [...(values[name] ?? []), ...got] : got;
    }
  }
  return { positionals, values, flags };
}

/** Integers from `--repr_layers 0 -1` (or 0,-1). */
function ints(option: string, values: string[]): number[] {
  return values.flatMap((v) => v.split(",")).filter(Boolean).map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new OptionsError(`--${option} ${v}: not an integer`, "e.g. --repr_layers 0 -1");
    return n;
  });
}

export default defineCommand({
  meta: {
    name: "extract",
    description: `fair-esm's extract.py, on embed's engine: one {label}.pt per record, same keys and dtypes.

Examples:
  embed extract esm2_t33_650M_UR50D proteins.fasta out/ --repr_layers 0 32 33 --include mean per_tok
  embed extract esm2_t33_650M_UR50D proteins.fasta out/ --include bos --nogpu
  embed extract ./esm2_t6_8M_UR50D.pt proteins.fasta out/ --include mean --toks_per_batch 8192`,
  },
  args: {
    model: { type: "positional", description: "model name (see `embed models`) or checkpoint path", required: true, valueHint: "MODEL" },
    fasta: { type: "positional", description: "FASTA file (.gz ok)", required: true, valueHint: "FASTA" },
    output_dir: { type: "positional", description: "directory for the {label}.pt files (label: the whole header line)", required: true, valueHint: "OUT_DIR" },
    repr_layers: { type: "string", alias: "repr-layers", description: "layers, several values: -1 = last, 0 = embeddings (default -1)", valueHint: "N..." },
    include: { type: "string", description: "mean, per_tok, bos (several values; contacts is not supported)", valueHint: "KIND..." },
    toks_per_batch: { type: "string", alias: "toks-per-batch", description: "token budget per batch (default: embed's auto, from free GPU memory; 4096 on CPU)" },
    truncation_seq_length: { type: "string", alias: "truncation-seq-length", description: `keep at most this many residues (default ${DEFAULT_TRUNCATE})` },
    nogpu: { type: "boolean", description: "run on the CPU even where GPUs are present", default: false },
    devices: { type: "string", description: "auto, cpu, or GPU indices like 0,1 (default auto)" },
    precision: { type: "enum", options: ["auto", "fp16", "bf16", "fp32"], description: "compute precision (auto: fp16 on GPU, fp32 on CPU; fp32 is extract.py's)", default: "auto" },
    "keep-store": { type: "boolean", description: `keep the embed store OUT_DIR/${STORE_DIR} after the .pt files are written`, default: false },
    quiet: { type: "boolean", description: "no logs or progress on stderr, only errors and their hints", default: false },
    json: { type: "boolean", description: "NDJSON events on stdout, then the summary", default: false },
    verbose: { type: "boolean", description: "debug logs and stack traces", default: false },
  },
  async run({ rawArgs }) {
    let verbose = false;
    try {
      const { positionals, values, flags } = parseExtractArgv(rawArgs);
      verbose = flags.verbose ?? false;
      setLogLevel(flags);
      if (positionals.length !== 3) throw new OptionsError(`expected MODEL FASTA OUT_DIR, got ${positionals.length} positional argument(s)${positionals.length > 3 ? `: ${positionals.slice(3).join(" ")}` : ""}`, "several values go after --repr_layers or --include only; see `embed extract --help`");
      const [model, fasta, outDir] = positionals as [string, string, string];
      const one = (k: string) => values[k]?.[0];
      if (flags.nogpu && one("devices") && one("devices") !== "cpu") throw new OptionsError(`--nogpu and --devices ${one("devices")} contradict each other`, "pass one of them");
      const precision = one("precision") ?? "auto";
      if (!["auto", "fp16", "bf16", "fp32"].includes(precision)) throw new OptionsError(`--precision ${precision}: unknown`, "choose from auto, fp16, bf16, fp32");
      const toks = one("toks_per_batch");
      const trunc = one("truncation_seq_length");
      const options: ExtractOptions = {
        model,
        fasta,
        outDir,
        reprLayers: values.repr_layers ? ints("repr_layers", values.repr_layers) : [-1],
        include: parseInclude(values.include ?? []),
        toksPerBatch: toks === undefined ? undefined : ints("toks_per_batch", [toks])[0],
        truncationSeqLength: trunc === undefined ? DEFAULT_TRUNCATE : ints("truncation_seq_length", [trunc])[0]!,
        devices: flags.nogpu ? "cpu" : (one("devices") ?? "auto"),
        precision: precision as ExtractOptions["precision"],
        keepStore: flags.keep_store ?? false,
      };
      const modes = terminalModes({ json: flags.json ?? false, quiet: flags.quiet ?? false }, { stdout: process.stdout.isTTY, stderr: process.stderr.isTTY });
      const view = progress(modes.progress);
      // As `embed run`: the first interrupt drains and commits the batches in flight (a rerun resumes), a second exits.
      const signal = interruptOnSignals();
      let summary: ExtractSummary;
      try {
        summary = await extractToDir(options, { signal, onEvent: view.onEvent });
      } finally {
        view.close();
      }
      if (modes.result !== "human") log.success(extractText(summary).split("\n")[0]);
      result(summary, modes.result, extractText);
      process.exit(0);
    } catch (e) {
      fail(e, verbose);
    }
  },
});

/** The extract summary for a person at a terminal. */
export function extractText(s: ExtractSummary): string {
  const key = s.include.includes("mean") ? "mean_representations" : s.include.includes("per_tok") ? "representations" : "bos_representations";
  return [
    `${s.written.toLocaleString("en-US")} .pt files written to ${s.outDir} (${s.skipped.toLocaleString("en-US")} existed and were kept) in ${s.seconds.toFixed(1)} s`,
    ...(s.run ? [`  ${Math.round(s.run.tokensPerSecond).toLocaleString("en-US")} tokens/s while embedding, ${s.run.model}, layers ${s.layers.join(",")}`] : []),
    `  load in Python:  import torch; d = torch.load("${s.outDir}/LABEL.pt"); d["${key}"][${s.layers.at(-1) ?? "LAYER"}]`,
  ].join("\n");
}
