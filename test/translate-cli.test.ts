/**
 * `embed translate` through the CLI: plain, gzip and stdin inputs give both FASTA files with the
 * ids, order and sequences of the pure preparation (src/input/translate.ts `translateRecord`),
 * chunking included; bad input and refused outputs give located errors and their exit codes, and
 * leave no output file (complete or `.partial`) behind.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { PACKAGE_ROOT } from "../src/config.ts";
import { translateRecord } from "../src/input/translate.ts";

setDefaultTimeout(30_000);

const dir = mkdtempSync(join(tmpdir(), "embed-translate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);
const CLI = join(PACKAGE_ROOT, "src", "cli.ts");

/** Run `embed translate ARGS` (stdin from `stdin` when given): exit code, stdout, stderr. */
async function translate(args: string[], stdin?: Uint8Array) {
  const p = Bun.spawn(["bun", CLI, "translate", ...args], { cwd: dir, stdin: stdin ?? "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** Deterministic reads: mostly ACGT, some lowercase and N, lengths 1-120; wrapped at 50 columns. */
function reads(n: number, seed: number): { id: string; seq: string }[] {
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / 2 ** 24;
  return Array.from({ length: n }, (_, i) => {
    const len = 1 + Math.floor(rnd() * 120);
    const seq = Array.from({ length: len }, () => {
      const r = rnd();
      return r < 0.02 ? "N" : r < 0.1 ? "acgt"[Math.floor(rnd() * 4)] : "ACGT"[Math.floor(rnd() * 4)];
    }).join("");
    return { id: `read${i}`, seq };
  });
}

function fasta(records: { id: string; seq: string }[], eol = "\n"): string {
  return records.map((r) => `>${r.id} some description${eol}${r.seq.replace(/(.{50})(?=.)/g, `$1${eol}`)}${eol}`).join("");
}

/** The two FASTA texts the pure function gives for `records`. */
function expected(records: { id: string; seq: string }[], chunk?: number): { faa: string; fna: string } {
  const frames = records.flatMap((r) => translateRecord(r.id, r.seq, chunk));
  return { faa: frames.map((f) => `>${f.id}\n${f.peptide}\n`).join(""), fna: frames.map((f) => `>${f.id}\n${f.nucleotide}\n`).join("") };
}

const read = (name: string) => readFileSync(at(name), "utf8");
/** Output files left in the test directory under `prefix` (complete or .partial). */
const leftovers = (prefix: string) => readdirSync(dir).filter((f) => f.startsWith(prefix));

const RECORDS = reads(300, 11);
writeFileSync(at("reads.fa"), fasta(RECORDS));
writeFileSync(at("reads.fa.gz"), gzipSync(fasta(RECORDS, "\r\n")));

describe("embed translate: outputs equal the pure preparation", () => {
  const want = expected(RECORDS);

  test("plain file: both FASTA files, same ids in the same order; JSON summary on stdout", async () => {
    const r = await translate(["reads.fa", "-p", "plain.faa", "-n", "plain.fna"]);
    expect(r.stderr).toContain("300 records");
    expect(r.code).toBe(0);
    expect(read("plain.faa")).toBe(want.faa);
    expect(read("plain.fna")).toBe(want.fna);
    const ids = (t: string) => t.split("\n").filter((l) => l.startsWith(">"));
    expect(ids(read("plain.fna"))).toEqual(ids(read("plain.faa")));
    const summary = JSON.parse(r.stdout);
    const kept = want.faa.split("\n").filter((l) => l.startsWith(">")).length;
    expect(summary.records).toBe(300);
    expect(summary.chunkSize).toBeNull();
    expect(summary.frames.kept).toBe(kept);
    expect(summary.frames.dropped.total).toBe(6 * 300 - kept);
    expect(summary.frames.dropped.stop + summary.frames.dropped.empty).toBe(6 * 300 - kept);
    expect(summary.frames.dropped.empty).toBeGreaterThan(0); // reads of 1-2 bases have no codon
    expect(leftovers("plain.").sort()).toEqual(["plain.faa", "plain.fna"]);
  });

  test(".gz with CRLF line ends gives the same files", async () => {
    const r = await translate(["reads.fa.gz", "-p", "gz.faa", "-n", "gz.fna"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).inputs[0].gzip).toBe(true);
    expect(read("gz.faa")).toBe(want.faa);
    expect(read("gz.fna")).toBe(want.fna);
  });

  test("stdin (gzip) in, peptides on stdout: stdout is the peptide FASTA only", async () => {
    const r = await translate(["-", "-p", "-", "-n", "stdin.fna"], readFileSync(at("reads.fa.gz")));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(want.faa);
    expect(read("stdin.fna")).toBe(want.fna);
    expect(r.stderr).toContain("→ stdout, stdin.fna");
  });

  test("several inputs are read in order into one pair of files", async () => {
    const more = reads(20, 5).map((r) => ({ ...r, id: `other${r.id}` }));
    writeFileSync(at("more.fa"), fasta(more));
    const r = await translate(["reads.fa", "more.fa", "-p", "two.faa", "-n", "two.fna"]);
    expect(r.code).toBe(0);
    const both = expected([...RECORDS, ...more]);
    expect(read("two.faa")).toBe(both.faa);
    expect(read("two.fna")).toBe(both.fna);
    expect(JSON.parse(r.stdout).inputs.map((i: { records: number }) => i.records)).toEqual([300, 20]);
  });

  test("--chunk N: chunks with VirNucPro's overlaps, ids ID_chunk_K then the frame", async () => {
    const r = await translate(["reads.fa", "-p", "c.faa", "-n", "c.fna", "--chunk", "37"]);
    expect(r.code).toBe(0);
    const chunked = expected(RECORDS, 37);
    expect(read("c.faa")).toBe(chunked.faa);
    expect(read("c.fna")).toBe(chunked.fna);
    // A 120-base read cut into 37-base chunks: 4 chunks.
    const long = RECORDS.find((x) => x.seq.length > 111)!;
    expect(read("c.faa")).toContain(`>${long.id}_chunk_4`);
    const s = JSON.parse(r.stdout);
    expect(s.chunkSize).toBe(37);
    expect(s.sequences).toBe(RECORDS.reduce((n, x) => n + Math.ceil(x.seq.length / 37), 0));
  });
});

describe("embed translate: bad input and refused outputs", () => {
  /** Run on `text` as file `name`; expect `code`, and no output file or .partial left. */
  async function refused(name: string, text: string, code: number, extra: string[] = []) {
    writeFileSync(at(name), text);
    const r = await translate([name, "-p", `${name}.faa`, "-n", `${name}.fna`, ...extra]);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe("");
    expect(leftovers(`${name}.f`)).toEqual([]);
    return r.stderr;
  }

  test("protein given to translate: file:line, record, and says it looks like protein", async () => {
    const err = await refused("protein.fa", ">ok\nACGT\n>p1 a protein\nMKVLAAGIEL\n", 3);
    expect(err).toContain('protein.fa:4 (record "p1")');
    // M, K, V and A are IUPAC nucleotide codes too; L is the first letter no nucleotide has.
    expect(err).toContain("'L' at column 4");
    expect(err).toContain("looks like a protein sequence");
    expect(err).toContain("embed run");
  });

  test("an empty record, gaps, digits, a missing header: exit 3 with the line", async () => {
    expect(await refused("empty.fa", ">a\nACGT\n>b\n\n>c\nACG\n", 3)).toContain('empty.fa:3 (record "b"): empty sequence');
    expect(await refused("gap.fa", ">a\nAC-GT\n", 3)).toMatch(/gap\.fa:2 \(record "a"\): alignment gap '-' at column 3/);
    expect(await refused("digit.fa", ">a\n1 ACGT\n", 3)).toContain("digit");
    expect(await refused("nohead.fa", "ACGT\n>a\nACGT\n", 3)).toContain("nohead.fa:1: sequence data before the first '>' header");
    expect(await refused("nothing.fa", "", 3)).toContain("empty (0 bytes)");
  });

  test("bad input late in a later file: no output is left, not even a .partial", async () => {
    const err = await refused("late.fa", `${fasta(reads(50, 3))}>bad\nACGTX\n`, 3, []);
    expect(err).toMatch(/late\.fa:\d+ \(record "bad"\): 'X' at column 5/);
    const r = await translate(["reads.fa", "late.fa", "-p", "late2.faa", "-n", "late2.fna"]);
    expect(r.code).toBe(3);
    expect(leftovers("late2.")).toEqual([]);
  });

  test("an existing output is refused (exit 6, file untouched) unless --overwrite", async () => {
    writeFileSync(at("keep.faa"), "precious\n");
    const r = await translate(["reads.fa", "-p", "keep.faa", "-n", "keep.fna"]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("keep.faa already exists");
    expect(r.stderr).toContain("--overwrite");
    expect(read("keep.faa")).toBe("precious\n");
    expect(existsSync(at("keep.fna"))).toBe(false);
    const again = await translate(["reads.fa", "-p", "keep.faa", "-n", "keep.fna", "--overwrite"]);
    expect(again.code).toBe(0);
    expect(read("keep.faa")).toBe(expected(RECORDS).faa);
  });

  test("an input is never an output, even with --overwrite; outputs are distinct; bad --chunk: exit 2", async () => {
    const before = read("reads.fa");
    const self = await translate(["reads.fa", "-p", "x.faa", "-n", "./reads.fa", "--overwrite"]);
    expect(self.code).toBe(2);
    expect(self.stderr).toContain("is the input reads.fa");
    expect(read("reads.fa")).toBe(before);
    expect((await translate(["reads.fa", "-p", "same.fa", "-n", "same.fa"])).code).toBe(2);
    expect((await translate(["reads.fa", "-p", "-", "-n", "-"])).code).toBe(2);
    const chunk = await translate(["reads.fa", "-p", "y.faa", "-n", "y.fna", "--chunk", "3.5"]);
    expect(chunk.code).toBe(2);
    expect(chunk.stderr).toContain("--chunk");
    expect(leftovers("x.")).toEqual([]);
    expect(leftovers("y.")).toEqual([]);
    expect(leftovers("same.")).toEqual([]);
  });
});
