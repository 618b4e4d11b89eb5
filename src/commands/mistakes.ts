/**
 * Command-line habits that citty would silently take as something else, each turned into one error
 * that names the fix: fair-esm extract.py's option spellings on `embed run`, a list spaced the way
 * extract.py takes it (`--layers 0 32 33`: the 32 and 33 would become input files), and a model or
 * an output directory given where a FASTA input goes (extract.py's `MODEL FASTA OUT_DIR` order).
 * cli.ts calls these before any command runs, so no worker starts on a mistaken command line.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { isDir, tableFamily } from "../models.ts";

/** A mistake: the error line and the hint printed under it (exit code 2, a bad option). */
export interface Mistake {
  message: string;
  hint: string;
}

const EXTRACT_HINT = "for fair-esm's own spellings and per-sequence .pt files: embed extract MODEL FASTA OUT_DIR --repr_layers 0 32 33 --include mean per_tok";

/** fair-esm extract.py's options (keys with underscores) → embed's option, and how its value is written there. */
const FAIR_ESM: Record<string, { option: string; how: string }> = {
  "--repr_layers": { option: "--layers", how: "one comma list: --repr_layers 0 32 33 is --layers 0,32,33" },
  "--toks_per_batch": { option: "--max-tokens", how: "--toks_per_batch 4096 is --max-tokens 4096" },
  "--truncation_seq_length": { option: "--truncate", how: "--truncation_seq_length 1022 is --truncate 1022" },
  "--nogpu": { option: "--devices", how: "--nogpu is --devices cpu" },
};

/**
 * An unknown option `name` of `embed sub` that is a known habit: a fair-esm spelling (dashed or
 * not) of an option `known` holds, or one of `known` written with underscores.
 */
export function foreignOption(sub: string, name: string, known: ReadonlySet<string>): Mistake | undefined {
  const f = FAIR_ESM[`--${name.slice(2).replace(/-/g, "_")}`];
  if (name.startsWith("--") && f && known.has(f.option)) {
    return { message: `unknown option ${name} for \`embed ${sub}\` (did you mean ${f.option}? ${f.how})`, hint: EXTRACT_HINT };
  }
  const dashed = name.replace(/_/g, "-");
  if (dashed !== name && known.has(dashed)) return { message: `unknown option ${name} for \`embed ${sub}\` (did you mean ${dashed}?)`, hint: "embed's options are spelled with dashes" };
  return undefined;
}

/** Options whose value is one comma list, and what a further spaced value of each looks like. */
const LIST_VALUES: Record<string, RegExp> = {
  "--layers": /^-?\d+$/,
  "--include": /^(mean|bos|per_tok|per-residue|contacts)$/,
  "--format": /^(npy|hdf5|parquet|virnucpro)$/,
};

/**
 * `option` took `value`, and `more` (the arguments after it) begin with further values of it
 * spaced as extract.py's lists are: they would be read as input files. Undefined when they do not
 * (or name files that exist, which are inputs).
 */
export function spacedList(option: string, value: string, more: readonly string[]): Mistake | undefined {
  const looks = LIST_VALUES[option];
  if (!looks) return undefined;
  const extra: string[] = [];
  for (const a of more) {
    if (!looks.test(a) || existsSync(a)) break;
    extra.push(a);
  }
  if (!extra.length) return undefined;
  const list = [value, ...extra].join(",");
  return {
    message: `${option} takes one comma list: ${option} ${value} ${extra.join(" ")} is ${option} ${list} (${extra.join(", ")} would be read as ${extra.length > 1 ? "input files" : "an input file"})`,
    hint: `write ${option} ${list}`,
  };
}

/** A positional input of `embed sub` that is a model or an output directory, not a FASTA input. */
export function positionalMistake(sub: string, arg: string): Mistake | undefined {
  if (arg === "-") return undefined;
  const dir = isDir(arg);
  const model = /\.(pt|pth|safetensors|ckpt)$/i.test(arg) || (dir && existsSync(join(arg, "config.json"))) || (!existsSync(arg) && tableFamily(arg) !== undefined);
  if (model) {
    return {
      message: `${arg} is a model, not a FASTA input: pass it as --model ${arg}`,
      hint: `embed ${sub} INPUT.fasta --model ${arg}${sub === "run" ? " -o OUT_DIR" : ""}; ${EXTRACT_HINT}`,
    };
  }
  const store = dir ? existsSync(join(arg, "manifest.json")) || existsSync(join(arg, "shards")) : !existsSync(arg) && arg.endsWith("/");
  if (store && sub === "run") return { message: `${arg} looks like an output directory, not a FASTA input: pass it as -o ${arg}`, hint: "embed run INPUT.fasta -o OUT_DIR" };
  return undefined;
}
