/**
 * The shape of the code, checked: imports go one way (nothing imports the CLI), only config.ts
 * reads the environment, only worker.ts spawns workers, and the pure modules do no I/O.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";

const SRC = join(PACKAGE_ROOT, "src");
const files = [...readdirSync(SRC).map((f) => f), ...readdirSync(join(SRC, "commands")).map((f) => `commands/${f}`)].filter((f) => f.endsWith(".ts"));
const text = (f: string) => readFileSync(join(SRC, f), "utf8");
const imports = (f: string) => [...text(f).matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]!);

/** Modules with no I/O: planning, tokenizing, parsing, layouts. */
const PURE = ["alphabet.ts", "tokenize.ts", "plan.ts", "protocol.ts", "npy.ts", "id-index.ts", "fasta-parser.ts", "errors.ts", "dedup.ts"];

describe("architecture", () => {
  test("nothing below the CLI imports the CLI or a command", () => {
    for (const f of files.filter((f) => f !== "cli.ts" && !f.startsWith("commands/"))) {
      expect(imports(f).filter((i) => i.includes("cli") || i.includes("commands/"))).toEqual([]);
    }
  });
  test("only config.ts reads process.env", () => {
    expect(files.filter((f) => f !== "config.ts" && text(f).includes("process.env"))).toEqual([]);
  });
  test("only worker.ts spawns worker processes", () => {
    const spawners = files.filter((f) => /Bun\.spawn\(/.test(text(f)));
    // python.ts runs one-shot helpers (models, doctor), not workers.
    expect(spawners.sort()).toEqual(["python.ts", "worker.ts"]);
    expect(text("python.ts")).not.toContain("ipc");
  });
  test("pure modules do no I/O", () => {
    for (const f of PURE) {
      expect({ f, io: imports(f).filter((i) => i.startsWith("node:") || i === "bun") }).toEqual({ f, io: [] });
      expect({ f, bun: /Bun\.(spawn|file|write|mmap)/.test(text(f)) }).toEqual({ f, bun: false });
    }
  });
  test("no module is imported by a module in a lower layer (run.ts is the only entry into workers and store)", () => {
    const low = ["config.ts", "plan.ts", "tokenize.ts", "protocol.ts", "records.ts", "store.ts", "worker.ts", "pool.ts", "fasta.ts"];
    for (const f of low) expect({ f, bad: imports(f).filter((i) => i.endsWith("/run.ts") || i === "./run.ts") }).toEqual({ f, bad: [] });
  });
});
