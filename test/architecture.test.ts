/**
 * The shape of the code, checked. The tree names the data path:
 *   cli.ts, commands/  ->  run.ts, api.ts, validate/  ->  input/ -> plan.ts -> workers/ -> store/
 * with the shared contract at the top (config, errors, log, protocol, events).
 * - A stage imports only shared modules, its own folder and earlier stages; the store imports no
 *   worker module except workers/python.ts (the one-shot helper runner that `embed convert` uses).
 * - Nothing imports the CLI or a command; shared modules import only each other.
 * - Only config.ts reads the environment; only workers/handle.ts and workers/python.ts spawn.
 * - Pure modules do no I/O; no source file is over 400 lines.
 * - No function, method or arrow body is over 80 lines unless `// long: <reason>` sits on the
 *   line above its header.
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
const PURE = ["input/alphabet.ts", "input/fasta-lines.ts", "input/tokenize.ts", "input/bpe.ts", "input/bpe-json.ts", "input/translate.ts", "input/nucleotide-fasta.ts", "input/id-index.ts", "input/id-store.ts", "input/id-bytes.ts", "input/fasta-parser.ts", "input/fasta-errors.ts", "input/dedup.ts", "plan.ts", "protocol.ts", "store/npy.ts", "errors.ts"];

/** Longest function body, in lines from header to closing brace, without a `// long:` reason. */
const MAX_FUNCTION_LINES = 80;

/** Functions of `f` over MAX_FUNCTION_LINES with no `// long: <reason>` on the line above. */
function longFunctions(f: string, src = text(f)): string[] {
  const lines = src.split("\n");
  return functionSpans(src)
    .filter((s) => s.end - s.line + 1 > MAX_FUNCTION_LINES && !/^\s*\/\/ long: \S/.test(lines[s.line - 2] ?? ""))
    .map((s) => `${f}:${s.line} ${s.name} (${s.end - s.line + 1} lines)`);
}

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
  test(`no function is over ${MAX_FUNCTION_LINES} lines without a \`// long: <reason>\` above it`, () => {
    expect(files.flatMap((f) => longFunctions(f))).toEqual([]);
  });
  test("the function scan measures bodies, skips braces in strings, templates and regexes, and honours `// long:`", () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `  x += ${i};`).join("\n");
    const src = [
      "export function short(a: string): { b: number } {",
      '  const s = "}}}" + `${"{"}${a}}` + String(/\}/.exec(a));',
      "  return { b: s.length };",
      "}",
      "class K {",
      "  private long(x: number): number {",
      body(MAX_FUNCTION_LINES - 2),
      "  }",
      "  // long: a table of cases reads best in one place",
      "  allowed(x: number) {",
      body(MAX_FUNCTION_LINES),
      "  }",
      "}",
      "const arrow = async (x: number) => {",
      body(MAX_FUNCTION_LINES - 1),
      "};",
    ].join("\n");
    const spans = functionSpans(src).map((s) => [s.name, s.end - s.line + 1]);
    expect(spans).toEqual([["short", 4], ["long", MAX_FUNCTION_LINES], ["allowed", MAX_FUNCTION_LINES + 2], ["arrow =>", MAX_FUNCTION_LINES + 1]]);
    expect(longFunctions("fixture.ts", src)).toEqual([`fixture.ts:${2 * MAX_FUNCTION_LINES + 10} arrow => (${MAX_FUNCTION_LINES + 1} lines)`]);
  });
});

/**
 * `src` with comments, string, template and regex-literal text blanked (newlines kept), so that
 * braces and parentheses in what is left are code.
 */
function codeOnly(src: string): string {
  const out = src.split("");
  const blank = (a: number, b: number) => {
    for (let k = a; k < b && k < out.length; k++) if (out[k] !== "\n") out[k] = " ";
  };
  /** Brace depth at each open template substitution `${`. */
  const subs: number[] = [];
  let depth = 0;
  let prev = ""; // the last code character that is not white space
  for (let i = 0; i < src.length; ) {
    const c = src[i]!;
    const next = src[i + 1];
    let end = -1;
    if (c === "/" && next === "/") end = src.indexOf("\n", i) < 0 ? src.length : src.indexOf("\n", i);
    else if (c === "/" && next === "*") end = src.indexOf("*/", i + 2) < 0 ? src.length : src.indexOf("*/", i + 2) + 2;
    else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      end = j + 1;
    } else if (c === "`" || (c === "}" && subs.at(-1) === depth)) {
      if (c === "}") subs.pop();
      let j = i + 1;
      while (j < src.length && src[j] !== "`" && !(src[j] === "$" && src[j + 1] === "{")) j += src[j] === "\\" ? 2 : 1;
      if (src[j] === "$") subs.push(depth);
      end = src[j] === "$" ? j + 2 : j + 1;
    } else if (c === "/" && (prev === "" || "(,=:[!&|?{};+-*%<>~^".includes(prev))) {
      let j = i + 1;
      let inClass = false;
      while (j < src.length && src[j] !== "\n" && (inClass || src[j] !== "/")) {
        if (src[j] === "[") inClass = true;
        else if (src[j] === "]") inClass = false;
        j += src[j] === "\\" ? 2 : 1;
      }
      end = j + 1;
    }
    if (end >= 0) {
      blank(i, end);
      if (c !== "/" || next !== "/" && next !== "*") prev = "a"; // a string or regex is a value
      i = end;
      continue;
    }
    if (c === "{") depth++;
    else if (c === "}") depth--;
    if (!/\s/.test(c)) prev = c;
    i++;
  }
  return out.join("");
}

/** Index of the bracket closing the one at `open` in `code`, or -1. */
function closing(code: string, open: number): number {
  const o = code[open]!;
  const c = o === "(" ? ")" : "}";
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    if (code[i] === o) depth++;
    else if (code[i] === c && --depth === 0) return i;
  }
  return -1;
}

/** After a parameter list closing at `close`: the body's `{`, past a return type; -1 if none. */
function bodyAfter(code: string, close: number): number {
  let i = close + 1;
  while (/\s/.test(code[i] ?? "")) i++;
  if (code[i] === "{") return i;
  if (code[i] !== ":") return -1;
  let depth = 0;
  for (i++; i < code.length; i++) {
    const c = code[i]!;
    if (c === "=" && code[i + 1] === ">") i++;
    else if ("<([".includes(c)) depth++;
    else if (">)]".includes(c)) depth--;
    else if (c === "{" && depth === 0) {
      if (!/[:|&]\s*$/.test(code.slice(close + 1, i))) return i; // the body
      i = closing(code, i); // an object type literal: `): { a: number } {`
      if (i < 0) return -1;
    }
    else if ((c === ";" || c === "}" || (c === "=" && depth === 0)) && depth <= 0) return -1;
  }
  return -1;
}

const NOT_METHODS = new Set("if for while switch catch return function new await typeof else do with throw yield void delete case const let var export import super this in of".split(" "));

interface FunctionSpan {
  name: string;
  /** 1-based line of the header and of the closing brace. */
  line: number;
  end: number;
}

/** The functions, methods and arrow functions with a block body in TypeScript source `src`. */
function functionSpans(src: string): FunctionSpan[] {
  const code = codeOnly(src);
  const starts = [0, ...[...code.matchAll(/\n/g)].map((m) => m.index + 1)];
  const lineAt = (i: number) => starts.findLastIndex((s) => s <= i) + 1;
  const spans: FunctionSpan[] = [];
  const add = (name: string, at: number, open: number) => {
    const close = closing(code, open);
    if (open >= 0 && close > 0) spans.push({ name, line: lineAt(at), end: lineAt(close) });
  };
  const headers = [/\bfunction\b\s*\*?\s*([\w$]*)\s*(?:<[^>(]*>)?\s*\(/g, /^[ \t]*(?:(?:public|private|protected|static|async|override|get|set)\s+)*\*?\s*(\[[\w$.]+\]|[\w$]+)\s*(?:<[^>(\n]*>)?\s*\(/gm];
  for (const re of headers) {
    for (const m of code.matchAll(re)) {
      if (NOT_METHODS.has(m[1]!) && re === headers[1]) continue;
      const paren = m.index + m[0].length - 1;
      const close = closing(code, paren);
      const open = close < 0 ? -1 : bodyAfter(code, close);
      if (open >= 0) add(m[1] || "function", m.index + m[0].search(/\S/), open);
    }
  }
  for (const m of code.matchAll(/=>\s*\{/g)) {
    const lineStart = code.lastIndexOf("\n", m.index) + 1;
    const before = code.slice(lineStart, m.index);
    const name = /(?:const|let|var)\s+([\w$]+)/.exec(before)?.[1] ?? /([\w$]+)\s*[:=]\s*(?:async\s*)?\(/.exec(before)?.[1] ?? "arrow";
    add(`${name} =>`, m.index, m.index + m[0].length - 1);
  }
  return spans.sort((a, b) => a.line - b.line);
}

