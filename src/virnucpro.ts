/**
 * `embed virnucpro` as a library call: VirNucPro's feature extraction (Li-Jing-1997/VirNucPro
 * `prediction.py` up to its classifier) in four steps into one directory OUT:
 *
 *   1. translate  reads -> OUT/frames.faa + OUT/frames.fna (input/translate-fasta.ts: chunking,
 *                 six frames; the two files record for record, ids `{read}F1`...`{read}R3`)
 *   2. DNABERT-S  OUT/frames.fna -> OUT/dnabert-s/ (a store: mean over all tokens of the last layer)
 *   3. ESM-2      OUT/frames.faa -> OUT/esm2/ (a store: mean of the last layer, 36 for the 3B model)
 *   4. files      OUT/virnucpro/output_{k}_{DNABERT_S,ESM,merged}.pt, k from 1, 10,000 records each
 *                 (py/embed_worker/tools/virnucpro.py, which checks the stores' ids agree)
 *
 * The models run one after the other, each on every device: a step's workers hold all GPUs, and
 * the next step starts once its store is complete. (Running both at once would split the GPUs
 * between two models, and the slower one would end alone on its half.)
 *
 * Resuming: OUT/virnucpro.json says what each finished step was made from (the inputs' SHA-256
 * and --chunk; each store's model, precision and manifest checksum; the .pt files' record count
 * per file and the stores they came from). A rerun of the same command skips what is done and
 * continues where it stopped: the stores resume by themselves (run.ts); translation and the .pt
 * files are redone whole when unfinished (each output appears by an atomic rename). A complete
 * run reruns as a no-op. Other inputs or --chunk, or a complete store of another model, are
 * refused unless --overwrite, which redoes every step.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { resolveConfig, type RunOptionsInput } from "./config.ts";
import { EmbedError, ExitCode, InputError, InterruptedError, OptionsError, OutputError } from "./errors.ts";
import { translateFasta } from "./input/translate-fasta.ts";
import { log } from "./log.ts";
import type { Family } from "./protocol.ts";
import { resolveRunProbed } from "./resolve.ts";
import { embedToStore, prestartWorkers, type RunHooks, type RunSummary } from "./run.ts";
import { VIRNUCPRO_PER_FILE } from "./store/formats.ts";
import { lockStore } from "./store/lock.ts";
import { checkInputsOutside, commandLine } from "./store/ownership.ts";
import { writeAtomicFile } from "./store/shards.ts";
import type { WorkerHandle } from "./workers/handle.ts";
import { pythonJson } from "./workers/python.ts";

export const VIRNUCPRO_ESM_MODEL = "esm2_t36_3B_UR50D";
export const VIRNUCPRO_DNABERT_MODEL = "DNABERT-S";
export { VIRNUCPRO_PER_FILE };
const STATE = "virnucpro.json";
/** What a VirNucPro directory holds, besides its lock: refused in a directory without STATE. */
const NAMES = [STATE, "frames.faa", "frames.fna", "dnabert-s", "esm2", "virnucpro"];

/** Run options shared by both models: how, where and how much, not what (model, layers, outputs). */
export type SharedRunOptions = Omit<RunOptionsInput, "inputs" | "output" | "model" | "layers" | "include" | "outDtype" | "formats" | "overwrite" | "dry" | "slice" | "shard" | "truncate">;

export interface VirnucproOptions extends SharedRunOptions {
  /** Nucleotide FASTA files (.gz ok); read twice (checksum, translation), so not stdin. */
  inputs: string[];
  /** The directory every step writes into. */
  output: string;
  /** Default esm2_t36_3B_UR50D, VirNucPro's. */
  esmModel?: string;
  /** Default DNABERT-S (a local copy of zhihan1996/DNABERT-S, or a folder). */
  dnabertModel?: string;
  /** Cut reads into chunks of this many bases first (VirNucPro: 300 or 500). */
  chunk?: number;
  /** Records per .pt file (default 10,000, VirNucPro's). */
  perFile?: number;
  /** Redo every step, replacing what OUT holds. */
  overwrite?: boolean;
}

interface StoreState {
  model: string;
  precision: string;
  /** SHA-256 of the finished store's manifest.json; absent until this command saw it finish. */
  manifestSha256?: string;
}

interface State {
  format: "embed-virnucpro";
  version: 1;
  inputs: { path: string; bytes: number; sha256: string }[];
  chunk: number | null;
  translate?: { records: number; frames: number; faaBytes: number; fnaBytes: number };
  stores: { "dnabert-s"?: StoreState; esm2?: StoreState };
  files?: { perFile: number; files: number; records: number; from: { "dnabert-s": string; esm2: string } };
}

export interface VirnucproSummary {
  output: string;
  /** Each step, and whether it was found done (skipped) or done now. */
  translate: { skipped: boolean; records: number; frames: number; peptides: string; nucleotides: string };
  dnabert: { skipped: boolean; store: string; model: string; run?: RunSummary };
  esm: { skipped: boolean; store: string; model: string; run?: RunSummary };
  /** `writerSeconds`: the tool's writer processes, summed over them: building and saving the
   * files ("write"), fsyncing them ("sync"), and the wall wait for the stores' checksums after the
   * last set ("verify"); absent when one process wrote them. */
  files: { skipped: boolean; dir: string; files: number; records: number; perFile: number; mergedDim?: number; writerSeconds?: Record<string, number> };
  seconds: number;
  /** Wall seconds of each step, the checks and input hashing before them included in "prepare"
   * (a step found done takes almost none). */
  stepSeconds: { prepare: number; translate: number; "dnabert-s": number; esm2: number; files: number };
}

interface Step {
  name: "dnabert-s" | "esm2";
  family: Family;
  dir: string;
  options: RunOptionsInput;
}

/** Run (or resume, or find done) VirNucPro's feature extraction into `o.output`. */
export async function embedVirnucpro(o: VirnucproOptions, hooks: RunHooks = {}): Promise<VirnucproSummary> {
  const t0 = performance.now();
  const out = o.output;
  const steps = await checkOptions(o);
  const lock = claim(out, o.inputs);
  let esmWorkers: Promise<WorkerHandle[]> | undefined;
  try {
    let mark = t0;
    const lap = () => {
      const now = performance.now();
      const s = (now - mark) / 1000;
      mark = now;
      return Math.round(s * 100) / 100;
    };
    const inputs = await hashInputs(o.inputs);
    const state = startState(out, inputs, o.chunk ?? null, o.overwrite ?? false);
    const prepare = lap();
    const translate = await translateStep(o, state, hooks);
    const tTranslate = lap();
    // The ESM-2 step's workers start now and load while DNABERT-S embeds (3B's start-up is 7 s on
    // an H100, 19 s with quack's import); the ESM-2 step takes them, or they are stopped if it
    // never runs.
    esmWorkers = willRun(steps[1], o.overwrite ?? false) ? prestartWorkers(steps[1].options) : undefined;
    esmWorkers?.catch(() => {}); // a failed start is the ESM-2 step's error, raised when it takes them
    const dnabert = await storeStep(steps[0], state, out, o.overwrite ?? false, hooks);
    const tDnabert = lap();
    const esm = await storeStep(steps[1], state, out, o.overwrite ?? false, { ...hooks, workers: esmWorkers });
    const tEsm = lap();
    const files = await filesStep(o, state, steps, hooks);
    const tFiles = lap();
    return {
      output: out,
      translate,
      dnabert: { ...dnabert, model: steps[0].options.model! },
      esm: { ...esm, model: steps[1].options.model! },
      files,
      seconds: (performance.now() - t0) / 1000,
      stepSeconds: { prepare, translate: tTranslate, "dnabert-s": tDnabert, esm2: tEsm, files: tFiles },
    };
  } catch (e) {
    void esmWorkers?.then((ws) => ws.forEach((w) => w.kill()), () => {}); // started for a step that will not run now
    throw e;
  } finally {
    lock.release();
  }
}

/** Whether storeStep will embed: no complete store there, or --overwrite. */
function willRun(step: Step, overwrite: boolean): boolean {
  return overwrite || !existsSync(join(step.dir, "manifest.json"));
}

/** Every option checked, both models resolved (family, tokenizer), before anything is written: a
 * named DNABERT-S model no local cache holds is downloaded here, as by `embed run` (resolve.ts). */
async function checkOptions(o: VirnucproOptions): Promise<[Step, Step]> {
  if (!o.output) throw new OptionsError("--output is required", "pass -o OUT_DIR: the frames, both stores and the .pt files go there");
  if (!o.inputs.length) throw new OptionsError("give at least one nucleotide FASTA input", "e.g. embed virnucpro reads.fa -o out/");
  if (o.inputs.includes("-")) throw new OptionsError("- (standard input): embed virnucpro reads its inputs twice (checksum, then translation), so a rerun can resume", "save the input to a file first");
  if (o.chunk !== undefined && (!Number.isInteger(o.chunk) || o.chunk < 1)) throw new OptionsError(`--chunk ${o.chunk}: not a whole number ≥ 1`, "VirNucPro's models use --chunk 300 or 500");
  const perFile = o.perFile ?? VIRNUCPRO_PER_FILE;
  if (!Number.isInteger(perFile) || perFile < 1) throw new OptionsError(`--per-file ${o.perFile}: not a whole number ≥ 1`, "VirNucPro writes 10,000 records per file (the default)");
  const { inputs: _i, output: _o, esmModel, dnabertModel, chunk: _c, perFile: _p, overwrite: _w, ...shared } = o;
  const step = async (name: Step["name"], family: Family, model: string, input: string, flag: string): Promise<Step> => {
    const dir = join(o.output, name);
    const options: RunOptionsInput = { ...shared, inputs: [join(o.output, input)], output: dir, model, layers: [-1], include: ["mean"], outDtype: "float32" };
    const got = (await resolveRunProbed(options)).family;
    if (got !== family) throw new OptionsError(`${flag} ${model} is a ${got} model; VirNucPro needs ${family} there`, `e.g. --esm-model ${VIRNUCPRO_ESM_MODEL} --dnabert-model ${VIRNUCPRO_DNABERT_MODEL}`);
    return { name, family, dir, options };
  };
  return [
    await step("dnabert-s", "dnabert-s", dnabertModel ?? VIRNUCPRO_DNABERT_MODEL, "frames.fna", "--dnabert-model"),
    await step("esm2", "esm2", esmModel ?? VIRNUCPRO_ESM_MODEL, "frames.faa", "--esm-model"),
  ];
}

/** OUT made and locked (one writer); refused when it holds our names without our state file. */
function claim(out: string, inputs: string[]) {
  checkInputsOutside(out, inputs);
  if (existsSync(out) && !statSync(out).isDirectory()) throw new OutputError(`${out} is a file, not a directory`, "choose a new or empty directory for -o");
  if (existsSync(out) && !existsSync(join(out, STATE))) {
    const hit = readdirSync(out).find((n) => NAMES.includes(n));
    if (hit) throw new OutputError(`${join(out, hit)} exists and was not written by embed virnucpro (${out} has no ${STATE}); embed never overwrites files it did not create`, "choose an empty or new output directory");
  }
  try {
    mkdirSync(out, { recursive: true });
  } catch (e) {
    throw new OutputError(`cannot create output directory ${out}: ${(e as Error).message}`, "check the path and its permissions", e);
  }
  return lockStore(out, commandLine());
}

/** Each input's size and SHA-256 (a rerun with changed reads must not resume the old run). */
async function hashInputs(inputs: string[]): Promise<State["inputs"]> {
  const out: State["inputs"] = [];
  for (const input of inputs) {
    if (!existsSync(input) || !statSync(input).isFile()) throw new InputError(`${input}: no such file`, undefined, "give nucleotide FASTA files (.gz ok)");
    const hasher = new Bun.CryptoHasher("sha256");
    let bytes = 0;
    for await (const chunk of Bun.file(input).stream()) {
      hasher.update(chunk);
      bytes += chunk.length;
    }
    out.push({ path: resolve(input), bytes, sha256: hasher.digest("hex") });
  }
  return out;
}

function readState(out: string): State | undefined {
  try {
    const s = JSON.parse(readFileSync(join(out, STATE), "utf8"));
    return s?.format === "embed-virnucpro" ? (s as State) : undefined;
  } catch {
    return undefined;
  }
}

function saveState(out: string, state: State): void {
  writeAtomicFile(join(out, STATE), JSON.stringify(state, null, 2) + "\n");
}

/** The state to continue from: the saved one when it is of these inputs and --chunk, else new. */
function startState(out: string, inputs: State["inputs"], chunk: number | null, overwrite: boolean): State {
  const saved = readState(out);
  const same = saved && saved.chunk === chunk && JSON.stringify(saved.inputs) === JSON.stringify(inputs);
  if (saved && !same && !overwrite) {
    const what = saved.chunk !== chunk ? `--chunk ${saved.chunk ?? "(none)"}` : `other inputs (${saved.inputs.map((i) => i.path).join(", ")}, as they were then)`;
    throw new OutputError(`${out} holds an embed virnucpro run of ${what}`, "rerun with the same inputs and options to continue it, choose another -o, or pass --overwrite to start again (replaces the frames, stores and .pt files there)");
  }
  const state: State = same && !overwrite ? saved : { format: "embed-virnucpro", version: 1, inputs, chunk, stores: {} };
  saveState(out, state); // first: from now on OUT's names are this command's
  return state;
}

function checkInterrupt(hooks: RunHooks): void {
  const s = hooks.signal;
  if (s?.aborted) throw s.reason instanceof EmbedError ? s.reason : new InterruptedError("signal");
}

async function translateStep(o: VirnucproOptions, state: State, hooks: RunHooks): Promise<VirnucproSummary["translate"]> {
  const peptides = join(o.output, "frames.faa");
  const nucleotides = join(o.output, "frames.fna");
  const size = (p: string) => (existsSync(p) ? statSync(p).size : -1);
  const t = state.translate;
  if (t && size(peptides) === t.faaBytes && size(nucleotides) === t.fnaBytes) {
    log.info(`translation done: ${t.frames} frames of ${t.records} records in ${peptides}, ${nucleotides}`);
    return { skipped: true, records: t.records, frames: t.frames, peptides, nucleotides };
  }
  checkInterrupt(hooks);
  log.info(`translating ${o.inputs.join(", ")}${o.chunk ? ` in chunks of ${o.chunk} bases` : ""}`);
  const s = await translateFasta({ inputs: o.inputs, peptides, nucleotides, chunk: o.chunk, overwrite: true });
  log.info(`${s.records} records: ${s.frames.kept} frames kept, ${s.frames.dropped.total} dropped (${s.frames.dropped.stop} with a stop codon)`);
  state.translate = { records: s.records, frames: s.frames.kept, faaBytes: size(peptides), fnaBytes: size(nucleotides) };
  saveState(o.output, state);
  return { skipped: false, records: s.records, frames: s.frames.kept, peptides, nucleotides };
}

function sha256File(path: string): string {
  return new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex");
}

/** Embed one model's frames into its store, resuming it, or find it done. */
async function storeStep(step: Step, state: State, out: string, overwrite: boolean, hooks: RunHooks): Promise<{ skipped: boolean; store: string; run?: RunSummary }> {
  const want: StoreState = { model: step.options.model!, precision: String(step.options.precision ?? "auto") };
  const manifest = join(step.dir, "manifest.json");
  const had = state.stores[step.name];
  if (!willRun(step, overwrite)) {
    const sha = sha256File(manifest);
    const same = had && had.model === want.model && had.precision === want.precision && (had.manifestSha256 ?? sha) === sha;
    if (!same) throw new OutputError(`${step.dir} holds a complete store made with other options (${had ? `--${step.family === "esm2" ? "esm" : "dnabert"}-model ${had.model}, --precision ${had.precision}` : "not by this command"})`, "rerun with the options it was made with, choose another -o, or pass --overwrite to embed every step again");
    state.stores[step.name] = { ...want, manifestSha256: sha };
    saveState(out, state);
    log.info(`${step.name}: complete store ${step.dir}`);
    return { skipped: true, store: step.dir };
  }
  checkInterrupt(hooks);
  // Recorded before the run: a store that finishes and is then killed before the checksum is
  // saved is recognised as this request's by the rerun.
  state.stores[step.name] = want;
  state.files = undefined;
  saveState(out, state);
  log.info(`${step.name}: embedding ${step.options.inputs[0]} with ${want.model}`);
  const run = await embedToStore({ ...step.options, overwrite }, hooks);
  state.stores[step.name] = { ...want, manifestSha256: sha256File(manifest) };
  saveState(out, state);
  return { skipped: false, store: step.dir, run };
}

interface ToolSummary {
  files: number;
  records: number;
  perFile: number;
  mergedDim: number;
  writerSeconds?: Record<string, number>;
}

/** VirNucPro's .pt files from the two stores, or found written from these very stores. */
async function filesStep(o: VirnucproOptions, state: State, steps: [Step, Step], hooks: RunHooks): Promise<VirnucproSummary["files"]> {
  const dir = join(o.output, "virnucpro");
  const perFile = o.perFile ?? VIRNUCPRO_PER_FILE;
  const from = { "dnabert-s": state.stores["dnabert-s"]!.manifestSha256!, esm2: state.stores.esm2!.manifestSha256! };
  const f = state.files;
  const present = (k: number) => ["DNABERT_S", "ESM", "merged"].every((kind) => existsSync(join(dir, `output_${k}_${kind}.pt`)));
  if (f && f.perFile === perFile && JSON.stringify(f.from) === JSON.stringify(from) && Array.from({ length: f.files }, (_, i) => present(i + 1)).every(Boolean)) {
    log.info(`VirNucPro files done: ${f.files} × 3 in ${dir}`);
    return { skipped: true, dir, files: f.files, records: f.records, perFile };
  }
  checkInterrupt(hooks);
  log.info(`writing VirNucPro's .pt files into ${dir} (${perFile} records each)`);
  const r = await pythonJson<ToolSummary>("embed_worker.tools.virnucpro", [steps[0].dir, steps[1].dir, dir, "--per-file", String(perFile), "--json"], resolveConfig(steps[0].options).python);
  if (!r.ok || !r.value) throw toolError(r.error ?? "no output");
  state.files = { perFile, files: r.value.files, records: r.value.records, from };
  saveState(o.output, state);
  return { skipped: false, dir, files: r.value.files, records: r.value.records, perFile, mergedDim: r.value.mergedDim, ...(r.value.writerSeconds ? { writerSeconds: r.value.writerSeconds } : {}) };
}

/** The tool's `{name, message, hint}` (its last stderr line) as a named error. */
function toolError(err: string): EmbedError {
  let wire: { name?: string; message?: string; hint?: string } | undefined;
  try {
    wire = JSON.parse(err.trim().split("\n").at(-1) ?? "");
  } catch {}
  if (wire?.message) return new OutputError(wire.message, wire.hint || undefined);
  return new EmbedError(`cannot write the VirNucPro .pt files: ${err}`, { hint: "run scripts/setup, or set EMBED_PYTHON to a Python with torch and numpy", exitCode: ExitCode.internal });
}
