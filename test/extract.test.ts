/**
 * `embed extract`: fair-esm extract.py's command line (several values after one option, underscore
 * spellings) and its refusals. The .pt files themselves are compared with extract.py's in
 * py/tests/test_extract_pt.py.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractText, parseExtractArgv, parseInclude, STORE_DIR } from "../src/commands/extract.ts";
import { PACKAGE_ROOT } from "../src/config.ts";
import { ExitCode, OptionsError } from "../src/errors.ts";
import { realPython, runText } from "./helpers.ts";

setDefaultTimeout(60_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-extract-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const extract = (args: string[]) => runText(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "extract", ...args], { ...process.env, EMBED_PYTHON: realPython(), NO_COLOR: "1" });

describe("extract.py's arguments", () => {
  test("several values after --repr_layers and --include, negative layers as values, underscore spellings", () => {
    const p = parseExtractArgv(["esm2_t33_650M_UR50D", "in.fa", "out", "--repr_layers", "0", "-1", "32", "--include", "mean", "per_tok", "bos", "--toks_per_batch", "8192", "--truncation_seq_length", "500", "--nogpu"]);
    expect(p.positionals).toEqual(["esm2_t33_650M_UR50D", "in.fa", "out"]);
    expect(p.values).toEqual({ repr_layers: ["0", "-1", "32"], include: ["mean", "per_tok", "bos"], toks_per_batch: ["8192"], truncation_seq_length: ["500"] });
    expect(p.flags).toEqual({ nogpu: true });
  });

  test("dashed, camelCase and --x=v spellings; a single-value option takes one value, the rest are positionals", () => {
    const p = parseExtractArgv(["--repr-layers=-1", "--toksPerBatch", "100", "m.pt", "--include", "mean,bos", "in.fa", "--keep-store", "out"]);
    expect(p.values.repr_layers).toEqual(["-1"]);
    expect(p.values.toks_per_batch).toEqual(["100"]);
    // --include takes values up to the next option: in.fa is one of them, as argparse's nargs="+" would take it.
    expect(p.values.include).toEqual(["mean,bos", "in.fa"]);
    expect(p.positionals).toEqual(["m.pt", "out"]);
    expect(p.flags.keep_store).toBe(true);
  });

  test("--include: extract.py's names, embed's per-residue as per_tok, contacts refused with a hint", () => {
    expect(parseInclude(["mean", "per_tok", "bos", "mean"])).toEqual(["mean", "per_tok", "bos"]);
    expect(parseInclude(["per-residue"])).toEqual(["per_tok"]);
    expect(parseInclude(["bos,mean"])).toEqual(["bos", "mean"]);
    expect(() => parseInclude(["contacts"])).toThrow(OptionsError);
    expect(() => parseInclude(["logits"])).toThrow("unknown output");
    expect(() => parseInclude([])).toThrow("--include is required");
  });

  test("the summary for a terminal says where the files are and how to load one", () => {
    const text = extractText({ outDir: "/o", records: 3, written: 2, skipped: 1, layers: [0, 33], include: ["per_tok"], seconds: 1.5 });
    expect(text).toContain("2 .pt files written to /o (1 existed and were kept) in 1.5 s");
    expect(text).toContain(`torch.load("/o/LABEL.pt"); d["representations"][33]`);
  });
});

describe("embed extract refuses, before embedding anything", () => {
  const fasta = join(tmp, "in.fa");
  writeFileSync(fasta, ">ok one\nMKT\n>../escape two\nMKV\n");

  test("--include contacts: exit 2, says embed computes no contact maps", async () => {
    const r = await extract(["esm2_t6_8M_UR50D", fasta, join(tmp, "c"), "--include", "mean", "contacts"]);
    expect(r.code).toBe(ExitCode.badOptions);
    expect(r.stderr).toContain("--include contacts: embed computes no contact maps");
    expect(r.stderr).toContain("hint: drop contacts");
    expect(r.stdout).toBe("");
  });

  test("a fourth positional (values after an option that takes one): exit 2 naming it", async () => {
    const r = await extract(["esm2_t6_8M_UR50D", fasta, join(tmp, "p"), "--include", "mean", "--toks_per_batch", "100", "200"]);
    expect(r.code).toBe(ExitCode.badOptions);
    expect(r.stderr).toContain("expected MODEL FASTA OUT_DIR, got 4 positional argument(s): 200");
  });

  test("a label that would write outside OUT_DIR: exit 3 with file:line, no store made", async () => {
    const out = join(tmp, "esc");
    const r = await extract([join(PACKAGE_ROOT, ".models", "test-tiny.pt"), fasta, out, "--include", "mean", "--nogpu"]);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toContain(`${fasta}:3: label '../escape two' would write outside OUT_DIR/`);
    expect(existsSync(join(out, STORE_DIR))).toBe(false);
  });

  test("repeated whole-header labels: exit 3 naming both lines", async () => {
    const dup = join(tmp, "dup.fa");
    writeFileSync(dup, ">a b\nMKT\n>a b\nMKV\n");
    const r = await extract([join(PACKAGE_ROOT, ".models", "test-tiny.pt"), dup, join(tmp, "dup"), "--include", "mean", "--nogpu"]);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toContain(`${dup}:3: label 'a b' repeats line 1`);
  });
});
