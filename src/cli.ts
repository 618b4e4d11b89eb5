#!/usr/bin/env bun
/**
 * `embed`: a thin CLI over the library. Commands parse arguments, call one function, print the
 * result on stdout, and exit with a documented code (see errors.ts `ExitCode`).
 */
import { defineCommand, runCommand, runMain } from "citty";
import pkg from "../package.json" with { type: "json" };

const main = defineCommand({
  meta: {
    name: "embed",
    version: pkg.version,
    description: "Protein FASTA to ESM-2 embeddings: packed FP16 batches, one worker per GPU.",
  },
  subCommands: {
    run: () => import("./commands/run.ts").then((m) => m.default),
    validate: () => import("./commands/validate.ts").then((m) => m.default),
    models: () => import("./commands/models.ts").then((m) => m.default),
    doctor: () => import("./commands/doctor.ts").then((m) => m.default),
    convert: () => import("./commands/convert.ts").then((m) => m.default),
    inspect: () => import("./commands/inspect.ts").then((m) => m.default),
  },
});

const rawArgs = process.argv.slice(2);
const builtin = rawArgs.length === 0 || rawArgs.some((a) => a === "--help" || a === "-h") ||
  (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v"));
if (builtin) {
  await runMain(main);
} else {
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
    console.error(e);
    process.exit(1);
  }
}
