#!/usr/bin/env bun
/**
 * `embed`: a thin CLI over the library. Commands parse arguments, call one function, print the
 * result on stdout, and exit with a documented code (see errors.ts `ExitCode`).
 */
import { defineCommand, runMain } from "citty";
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

await runMain(main);
