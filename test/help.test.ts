/**
 * `embed --help` and each command's `--help` show examples, and every option an example uses is
 * one that command takes (citty ignores unknown options, so a stale example would silently do
 * something else).
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import type { ArgsDef, CommandDef } from "citty";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { runText } from "./helpers.ts";

setDefaultTimeout(30_000);

/** The commands the issue names; the test also finds any other in the top-level help. */
const COMMANDS = ["run", "validate", "convert", "inspect", "merge", "models", "doctor", "translate", "extract", "virnucpro"];

function help(args: string[], env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1" }) {
  return runText(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...args, "--help"], env);
}

/** The lines under the "Example:" / "Examples:" heading, up to the first blank line. */
function examples(text: string): string[] {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => /^Examples?:$/.test(l));
  if (at < 0) return [];
  const end = lines.findIndex((l, i) => i > at && !l.trim());
  return lines.slice(at + 1, end < 0 ? undefined : end);
}

/** Each `embed CMD ...` invocation in an example line (a line may pipe or chain several). */
function invocations(line: string): { command: string; options: string[] }[] {
  return line
    .split(/\||&&/)
    .map((part) => part.trim().match(/^embed\s+([a-z]+)(.*)$/))
    .filter((m) => m !== null)
    .map((m) => ({
      command: m[1]!,
      options: m[2]!
        .trim()
        .split(/\s+/)
        .filter((t) => t.startsWith("-") && t !== "-" && !/^-\d/.test(t))
        .map((t) => t.split("=")[0]!),
    }));
}

/** The options a command takes: `--name` (and `--no-name` for booleans) and `-alias`. */
async function optionsOf(command: string): Promise<Set<string>> {
  const def = (await import(join(PACKAGE_ROOT, "src", "commands", `${command}.ts`))).default as CommandDef<ArgsDef>;
  const args = (typeof def.args === "function" ? await def.args() : await def.args) ?? {};
  const names = new Set(["--help", "-h"]);
  for (const [name, a] of Object.entries(args)) {
    if (a.type === "positional") continue;
    names.add(`--${name}`);
    if (a.type === "boolean") names.add(`--no-${name}`);
    for (const alias of ["alias" in a ? (a.alias ?? []) : []].flat()) names.add(`-${alias}`);
  }
  return names;
}

/** Every option in the examples exists; returns the commands they call. */
async function expectValidExamples(lines: string[]): Promise<string[]> {
  const calls = lines.flatMap(invocations);
  for (const { command, options } of calls) {
    const known = await optionsOf(command);
    expect({ command, unknown: options.filter((o) => !known.has(o)) }).toEqual({ command, unknown: [] });
  }
  return calls.map((c) => c.command);
}

describe("embed --help", () => {
  test("lists every command on one line each, then examples", async () => {
    const r = await help([]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const usage = r.stdout.match(/^USAGE embed (\S+)/m);
    expect(usage).not.toBeNull();
    const listed = usage![1]!.split("|");
    for (const c of COMMANDS) expect(listed).toContain(c);
    // The command list has each command's summary, not its examples (those are in its own help).
    const list = r.stdout.slice(r.stdout.indexOf("COMMANDS"), r.stdout.indexOf("Use embed <command> --help"));
    for (const c of listed) expect(list).toMatch(new RegExp(`^ *${c} {4}\\S.*$`, "m"));
    expect(list).not.toContain("Example");
    expect(r.stdout.match(/^Examples?:$/gm)?.length).toBe(1);
    const ex = examples(r.stdout);
    // At least the main path is shown.
    expect(ex.some((l) => /^ {2}embed run \S+ -o /.test(l))).toBe(true);
    expect(await expectValidExamples(ex)).toContain("run");
  });

  test("into a pipe, help is plain text even where colour is not switched off", async () => {
    const { NO_COLOR: _n, CI: _c, TEST: _t, TERM: _term, ...env } = process.env;
    for (const args of [[], ["run"]]) {
      const r = await help(args, { ...env, TERM: "xterm-256color" });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("USAGE embed");
      expect(r.stdout).not.toContain("\x1b[");
    }
  });
});

describe("each command's --help", () => {
  for (const command of COMMANDS) {
    test(`embed ${command} --help shows examples of embed ${command}, with options it takes`, async () => {
      const r = await help([command]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      expect(r.stdout).toContain(`USAGE embed ${command}`);
      const ex = examples(r.stdout);
      expect(ex.length).toBeGreaterThan(0);
      // The examples come last, after the options.
      expect(r.stdout.lastIndexOf("OPTIONS")).toBeLessThan(r.stdout.search(/^Examples?:$/m));
      expect(await expectValidExamples(ex)).toContain(command);
    });
  }
});
