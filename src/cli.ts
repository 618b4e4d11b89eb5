#!/usr/bin/env bun
/**
 * `embed`: a thin CLI over the library. Commands parse arguments, call one function, print the
 * result on stdout, and exit with a documented code (see errors.ts `ExitCode`).
 */
import { type CommandDef, defineCommand, renderUsage, runCommand, runMain } from "citty";
import pkg from "../package.json" with { type: "json" };
import { foreignOption, type Mistake, positionalMistake, spacedList } from "./commands/mistakes.ts";

const main = defineCommand({
  meta: {
    name: "embed",
    version: pkg.version,
    description: `Protein FASTA to ESM-2 embeddings: packed FP16 batches, one worker per GPU.

Examples:
  embed run proteins.fasta -o out/              mean of the last layer, every GPU (or the CPU)
  embed run proteins.fasta --dry                print the batch plan as JSON; start nothing
  embed validate proteins.fasta --sample 200    compare with an fp32 reference
  embed inspect out/                            what a store holds
  embed merge all/ part-*/                      join the stores of a sharded job array
  embed translate reads.fa -p r.faa -n r.fna    six-frame peptides + nucleotides (VirNucPro)
  embed virnucpro reads.fa -o vnp/ --chunk 300  VirNucPro's features: frames, DNABERT-S, ESM-2 3B, .pt files
  embed extract esm2_t33_650M_UR50D x.fa out/ --include mean per_tok    fair-esm extract.py's .pt files
  embed models                                  the ESM-2 family and where each is found
  embed doctor                                  check Python, torch, GPUs
  embed setup                                   install a Python with torch for the workers (once)`,
  },
  subCommands: {
    run: () => import("./commands/run.ts").then((m) => m.default),
    validate: () => import("./commands/validate.ts").then((m) => m.default),
    models: () => import("./commands/models.ts").then((m) => m.default),
    doctor: () => import("./commands/doctor.ts").then((m) => m.default),
    convert: () => import("./commands/convert.ts").then((m) => m.default),
    inspect: () => import("./commands/inspect.ts").then((m) => m.default),
    merge: () => import("./commands/merge.ts").then((m) => m.default),
    translate: () => import("./commands/translate.ts").then((m) => m.default),
    extract: () => import("./commands/extract.ts").then((m) => m.default),
    setup: () => import("./commands/setup.ts").then((m) => m.default),
    virnucpro: () => import("./commands/virnucpro.ts").then((m) => m.default),
  },
});

/** A description's first paragraph, and its examples (from "Example:" / "Examples:" on). */
function splitExamples(description = ""): [summary: string, examples: string] {
  const at = description.search(/\n\nExamples?:\n/);
  return at < 0 ? [description, ""] : [description.slice(0, at), description.slice(at + 2)];
}

/**
 * `--help`: citty's usage with the examples after the options, where they are read last, and
 * one line per command in a command list (its examples are in its own help).
 */
async function showUsage(cmd: CommandDef<any>, parent?: CommandDef<any>): Promise<void> {
  const meta = (await resolve(cmd.meta)) ?? {};
  const [summary, examples] = splitExamples(meta.description);
  const subs = cmd.subCommands ? await resolve(cmd.subCommands) : undefined;
  const shown: CommandDef<any> = {
    ...cmd,
    meta: { ...meta, description: summary },
    ...(subs && {
      subCommands: Object.fromEntries(
        await Promise.all(
          Object.entries(subs).map(async ([name, sub]) => {
            const def = await resolve(sub);
            const m = (await resolve(def.meta)) ?? {};
            return [name, { ...def, meta: { ...m, description: splitExamples(m.description)[0] } }] as const;
          }),
        ),
      ),
    }),
  };
  const text = `${(await renderUsage(shown, parent)).trimEnd()}${examples ? `\n\n${examples}` : ""}\n`;
  // citty colours by environment alone; into a pipe or a file (`embed --help | less`) help is plain text
  console.log(process.stdout.isTTY ? text : text.replace(/\x1b\[[0-9;]*m/g, ""));
}

/** citty's `Resolvable`: a value, a promise, or a function returning either. */
async function resolve<T>(v: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof v === "function" ? await (v as () => T | Promise<T>)() : await v;
}

/**
 * The first mistake in `rawArgs` for command `sub`, or undefined: an option it does not define
 * (with the nearest it does, or the embed spelling of a fair-esm habit), a list spaced
 * extract.py's way, or a model or output directory given as an input (mistakes.ts). citty ignores
 * unknown options, so a typo (`--max-token 512`) would silently run with the default instead.
 */
async function unknownOption(sub: string, rawArgs: string[]): Promise<Mistake | undefined> {
  const subs = main.subCommands ? await resolve(main.subCommands) : undefined;
  const loader = subs?.[sub];
  if (!loader) return undefined;
  const cmd = await resolve(loader);
  const args = ((cmd.args ? await resolve(cmd.args) : undefined) ?? {}) as Record<string, { type?: string; alias?: string | string[] }>;
  const takesValue = new Set<string>();
  const known = new Set(["--help", "-h"]);
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    // citty also takes the camelCase spelling (--maxTokens).
    const camel = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const names = [...new Set([`--${name}`, `--${camel}`])];
    names.push(...[def.alias ?? []].flat().map((a) => (a.length === 1 ? `-${a}` : `--${a}`)));
    for (const n of names) {
      known.add(n);
      if (def.type === "boolean") known.add(n.replace(/^--/, "--no-"));
      else takesValue.add(n);
    }
  }
  const inputs = args.inputs?.type === "positional" && "model" in args; // embed run, embed validate
  for (let i = rawArgs.indexOf(sub) + 1; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") break;
    if (a === "-" || !a.startsWith("-") || /^-\d/.test(a)) {
      const m = inputs ? positionalMistake(sub, a) : undefined;
      if (m) return m;
      continue;
    }
    const name = a.split("=")[0]!;
    if (!known.has(name)) {
      const near = nearest(name, [...known].filter((k) => k.startsWith("--")));
      return foreignOption(sub, name, known) ?? { message: `unknown option ${name} for \`embed ${sub}\`${near ? ` (did you mean ${near}?)` : ""}`, hint: `see \`embed ${sub} --help\`` };
    }
    if (takesValue.has(name)) {
      const value = a.includes("=") ? a.slice(name.length + 1) : rawArgs[++i]; // its value, which may start with '-'
      const m = value !== undefined && inputs ? spacedList(name, value, rawArgs.slice(i + 1)) : undefined;
      if (m) return m;
    }
  }
  return undefined;
}

/** The candidate closest to `word` by edit distance, if close enough to be a likely typo. */
function nearest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(word.length / 5)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

const given = process.argv.slice(2);
// `embed help` and `embed help run` (git's and npm's habit) are `embed --help` and `embed run --help`.
const rawArgs = given[0] === "help" ? [...given.slice(1), "--help"] : given;
const builtin = rawArgs.length === 0 || rawArgs.some((a) => a === "--help" || a === "-h") ||
  (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v"));
if (builtin) {
  await runMain(main, { rawArgs, showUsage });
} else {
  const sub = rawArgs.find((a) => !a.startsWith("-"));
  const commands = Object.keys((main.subCommands && (await resolve(main.subCommands))) ?? {});
  if (sub && !commands.includes(sub)) {
    const near = nearest(sub, commands);
    console.error(`error: Unknown command ${sub}${near ? ` (did you mean ${near}?)` : ""}\n  hint: see \`embed --help\``);
    process.exit(2);
  }
  const unknown = sub ? await unknownOption(sub, rawArgs) : undefined;
  if (unknown) {
    console.error(`error: ${unknown.message}\n  hint: ${unknown.hint}`);
    process.exit(2);
  }
  try {
    await runCommand(main, { rawArgs });
  } catch (e) {
    // citty's argument errors (unknown command, enum value not allowed, missing argument) are bad
    // options: one line and exit 2, like every other bad option, instead of the whole usage text.
    if (e instanceof Error && e.name === "CLIError") {
      const sub = rawArgs.find((a) => !a.startsWith("-"));
      console.error(`error: ${e.message.replace(/\x1b\[[0-9;]*m/g, "")}\n  hint: see \`embed ${sub && main.subCommands && sub in main.subCommands ? `${sub} ` : ""}--help\``);
      process.exit(2);
    }
    // A named error that a command did not catch still gets its message, hint and exit code.
    const { EmbedError } = await import("./errors.ts");
    if (e instanceof EmbedError) (await import("./commands/report.ts")).fail(e);
    console.error(e);
    process.exit(1);
  }
}
