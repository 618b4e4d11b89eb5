/**
 * The shape of the code, checked. The tree names the data path:
 *   cli.ts, commands/  ->  run.ts, api.ts, validate/  ->  input/ -> plan.ts -> workers/ -> store/
 * with the shared contract at the top (config, errors, log, protocol, events).
 * - A stage imports only shared modules, its own folder and earlier stages; the store imports no
 *   worker module except workers/python.ts (the one-shot helper runner that `embed convert` uses).
 * - Nothing imports the CLI or a command; shared modules import only each other.
 * - Only config.ts reads the environment; only workers/handle.ts and workers/python.ts spawn.
 * - Pure modules do no I/O; no source file is over 400 lines.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";

const SRC = join(PACKAGE_ROOT, "src");
const walk = (dir: string): string[] =>
  readdirSync(join(SRC, dir)).flatMap((f) => {
    const rel = dir ? `${dir}/${f}` : f;
    return statSync(join(SRC, rel)).isDirectory() ? walk(rel) : rel.endsWith(".ts") ? [rel] : [];
  });
const files = walk("");
const text = (f: string) => readFileSync(join(SRC, f), "utf8");
/** Relative imports of `f`, as paths from src/ (e.g. "input/records.ts"). */
const imports = (f: string) =>
  [...text(f).matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)].map((m) => relative(SRC, normalize(join(SRC, dirname(f), m[1]!))));
const SHARED = ["config.ts", "errors.ts", "log.ts", "protocol.ts", "events.ts"];
/** The data path's stages in order; a stage may import earlier ones. */
const STAGES = ["input/", "plan.ts", "workers/", "store/"];
const stageOf = (f: string) => STAGES.findIndex((s) => (s.endsWith("/") ? f.startsWith(s) : f === s));

/** Modules with no I/O: planning, tokenizing, parsing, layouts. */
const PURE = ["input/alphabet.ts", "input/tokenize.ts", "input/bpe.ts", "input/translate.ts", "input/nucleotide-fasta.ts", "input/id-index.ts", "input/fasta-parser.ts", "input/dedup.ts", "plan.ts", "protocol.ts", "store/npy.ts", "errors.ts"];

describe("architecture", () => {
  test("the tree is the data path: input/, workers/, store/, validate/, commands/", () => {
    const dirs = readdirSync(SRC).filter((f) => statSync(join(SRC, f)).isDirectory()).sort();
    expect(dirs).toEqual(["commands", "input", "store", "validate", "workers"]);
  });
  test("nothing below the CLI imports the CLI or a command", () => {
    for (const f of files.filter((f) => f !== "cli.ts" && !f.startsWith("commands/"))) {
      expect({ f, bad: imports(f).filter((i) => i === "cli.ts" || i.startsWith("commands/")) }).toEqual({ f, bad: [] });
    }
  });
  test("shared modules import only each other", () => {
    for (const f of SHARED) expect({ f, bad: imports(f).filter((i) => !SHARED.includes(i)) }).toEqual({ f, bad: [] });
  });
  test("a stage imports shared modules, its own stage and earlier stages only", () => {
    for (const f of files.filter((f) => stageOf(f) >= 0)) {
      const bad = imports(f).filter((i) => {
        if (SHARED.includes(i)) return false;
        const s = stageOf(i);
        if (s < 0 || s > stageOf(f)) return true; // an entry module, validate/, or a later stage
        return f.startsWith("store/") && i.startsWith("workers/") && i !== "workers/python.ts";
      });
      expect({ f, bad }).toEqual({ f, bad: [] });
    }
  });
  test("only config.ts reads process.env", () => {
    expect(files.filter((f) => f !== "config.ts" && text(f).includes("process.env"))).toEqual([]);
  });
  test("only the worker handle spawns workers (python.ts runs one-shot helpers)", () => {
    const spawners = files.filter((f) => /Bun\.spawn\(/.test(text(f)));
    expect(spawners.sort()).toEqual(["workers/handle.ts", "workers/python.ts"]);
    expect(text("workers/python.ts")).not.toContain("ipc");
  });
  test("pure modules do no I/O", () => {
    for (const f of PURE) {
      expect({ f, io: [...text(f).matchAll(/from\s+"(node:[^"]+|bun)"/g)].map((m) => m[1]) }).toEqual({ f, io: [] });
      expect({ f, bun: /Bun\.(spawn|file|write|mmap)/.test(text(f)) }).toEqual({ f, bun: false });
    }
  });
  test("no source file is over 400 lines", () => {
    const long = files.map((f) => ({ f, lines: text(f).split("\n").length })).filter((x) => x.lines > 400);
    expect(long).toEqual([]);
  });
});
