import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { InputError } from "../src/errors.ts";
import { readFastaInto } from "../src/input/fasta.ts";
import { type DuplicateIdPolicy, FastaParser, type FastaParserOptions } from "../src/input/fasta-parser.ts";
import { RecordTable } from "../src/input/records.ts";
import { tokenize } from "../src/input/tokenize.ts";

const dir = mkdtempSync(join(tmpdir(), "embed-fasta-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function file(content: string | Uint8Array, name = `f${n++}.fa`): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** What a test compares: the record's id, residue tokens and header line. */
interface Read {
  id: string;
  seq: number[];
  line: number;
}

/** Residues are never truncated here (truncation: test/ingest.test.ts). */
const NO_TRUNCATION = 2 ** 31;

/** The records of a table filled through `opts` (its parser options), with their header lines. */
function records(t: RecordTable, opts: FastaParserOptions): Read[] {
  return Array.from({ length: t.size }, (_, i) => ({ id: t.id(i), seq: [...t.tokens(i)], line: opts.ids!.line(i) }));
}

/**
 * `path` read as the CLI reads it: the reader hands each record to a RecordTable (through its
 * parser options), and repeats renamed once it is read (`onRename` hears of each).
 */
async function read(path: string, duplicateIds: DuplicateIdPolicy = "error", onRename?: FastaParserOptions["onRename"]): Promise<Read[]> {
  const t = new RecordTable(NO_TRUNCATION, duplicateIds);
  const opts = t.parserOptions();
  expect(await readFastaInto(path, opts)).toBe(t.size);
  t.renameDuplicates(onRename);
  return records(t, opts);
}

async function readError(path: string): Promise<InputError> {
  try {
    await read(path);
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error(`expected ${path} to be rejected`);
}

const ids = (s: string) => [...tokenize(s).tokens];

describe("readFastaInto: accepted input", () => {
  test("ids (the header's first word), multi-line, header lines", async () => {
    const rs = await read(file(">sp|P1|A_HUMAN  Some protein OS=Homo sapiens  \nMKV\nLAG\n>b\nW\n>\t c\td\nK\n"));
    expect(rs).toEqual([
      { id: "sp|P1|A_HUMAN", seq: ids("MKVLAG"), line: 1 },
      { id: "b", seq: ids("W"), line: 4 },
      { id: "c", seq: ids("K"), line: 6 },
    ]);
  });
  test("CRLF, blank lines, lowercase, no trailing newline, BOM, masks, stop codon", async () => {
    const rs = await read(file("\uFEFF\r\n>a desc\r\nmkv\r\n\r\nla<mask>G*\r\n\r\n>b\r\nW"));
    expect(rs).toEqual([
      { id: "a", seq: ids("MKVLA<mask>G"), line: 2 },
      { id: "b", seq: ids("W"), line: 7 },
    ]);
  });
  test("; comment lines are skipped anywhere", async () => {
    expect(await read(file(";comment\n>a\nMK\n;mid\nV\n"))).toEqual([{ id: "a", seq: ids("MKV"), line: 2 }]);
  });
  test("records spanning chunk boundaries parse identically (parser fed byte by byte)", () => {
    const text = new TextEncoder().encode(">a x\r\nMKV\nLA\n\n>b\nW<mask>*\n>c\nG");
    const parse = (pieces: Uint8Array[]): Read[] => {
      const t = new RecordTable(NO_TRUNCATION, "error");
      const opts = t.parserOptions();
      const parser = new FastaParser("t", opts);
      for (const piece of pieces) parser.push(piece);
      parser.end();
      return records(t, opts);
    };
    const whole = parse([text]);
    expect(parse(Array.from(text, (_, i) => text.subarray(i, i + 1)))).toEqual(whole);
    expect(whole.map((r) => r.id)).toEqual(["a", "b", "c"]);
  });
  test("long single-line sequence", async () => {
    const seq = "MKVLAG".repeat(200_000);
    const rs = await read(file(`>long\n${seq}\n>s\nM\n`));
    expect(rs[0]!.seq.length).toBe(seq.length);
    expect(rs[0]!.seq.slice(0, 6)).toEqual(ids("MKVLAG"));
    expect(rs[1]!.seq.length).toBe(1);
  });
  test("gzip detected by magic bytes, whatever the extension; multi-member (bgzip-style)", async () => {
    const text = ">a\nMKV\n>b\nLAG\n";
    const expected = await read(file(text));
    expect(await read(file(gzipSync(text), "x.fa.gz"))).toEqual(expected);
    expect(await read(file(gzipSync(text), "renamed.fa"))).toEqual(expected);
    const multi = Buffer.concat([gzipSync(">a\nMK"), gzipSync("V\n>b\nLAG\n")]);
    expect(await read(file(multi, "multi.fa.gz"))).toEqual(expected);
  });
  test("stdin via '-' (plain and gzip), named <stdin> in errors, in a child process", async () => {
    const script = file(
      `import { ingest } from ${JSON.stringify(join(import.meta.dir, "../src/input/ingest.ts"))};\n` +
        `try {\n` +
        `  const t = await ingest({ inputs: ["-"], truncate: 1022, duplicateIds: "error" });\n` +
        `  for (let i = 0; i < t.size; i++) console.log(t.id(i), t.tokens(i).length);\n` +
        `} catch (e) {\n` +
        `  console.log((e as Error).message);\n` +
        `}\n`,
      "stdin-reader.ts",
    );
    const cases: [Uint8Array, string][] = [
      [Buffer.from(">a d\nMKV\n>b\nLA\n"), "a 3\nb 2\n"],
      [gzipSync(">a d\nMKV\n>b\nLA\n"), "a 3\nb 2\n"],
      [Buffer.from(">a d\nMKV\n>a\nLA\n"), '<stdin>:3 (record "a"): duplicate id "a" (first seen at line 1)\n'],
    ];
    for (const [input, expected] of cases) {
      const proc = Bun.spawnSync([process.execPath, script], { stdin: input });
      expect(proc.stderr.toString()).toBe("");
      expect(proc.stdout.toString()).toBe(expected);
    }
  });
  test("duplicate ids renamed with _2, _3 ...: never to an id that any record of the input has", async () => {
    const renames: string[] = [];
    // `a_2` comes after the repeat of `a`: renaming on the spot would have taken it.
    const p = file(">a\nM\n>a\nK\n>a_2\nV\n>a\nL\n>a_3\nW\n>a_2\nG\n");
    const rs = await read(p, "rename", (f, t, l) => renames.push(`${f}->${t}@${l}`));
    expect(rs.map((r) => r.id)).toEqual(["a", "a_4", "a_2", "a_5", "a_3", "a_2_2"]);
    expect(renames).toEqual(["a->a_4@3", "a->a_5@7", "a_2->a_2_2@11"]);
    // The record labelled a_2 is the input's a_2 (V), not the repeat of a (K).
    expect(rs.find((r) => r.id === "a_2")!.seq).toEqual(ids("V"));
  });
  test("a parser without a shared rename list renames its repeats at end()", () => {
    const t = new RecordTable(NO_TRUNCATION, "rename");
    const { renames: _shared, ...opts } = t.parserOptions();
    const seen: string[] = [];
    const parser = new FastaParser("t", { ...opts, onRename: (f, to) => seen.push(`${f}->${to}`) });
    parser.push(new TextEncoder().encode(">a\nM\n>a\nK\n>a_2\nV\n"));
    parser.end();
    expect(seen).toEqual(["a->a_3"]);
    expect(t.id(1)).toBe("a_3");
  });
});

describe("readFastaInto: errors name file:line, record and a fix", () => {
  const cases: [string, string | Uint8Array, RegExp, number, string | undefined][] = [
    ["invalid character", ">a\nMKV\nLAJG\n", /invalid character 'J' at column 3/, 3, "a"],
    ["digit", ">a\nMK1\n", /digit/, 2, "a"],
    ["stop codon mid-sequence", ">a\nMK*V\n", /stop codon/, 2, "a"],
    ["stop codon then more lines", ">a\nMK*\nV\n", /stop codon '\*' before the end of the sequence at column 3/, 2, "a"],
    ["other special token", ">a\nMK<cls>\n", /'<mask>'/, 2, "a"],
    ["empty sequence (next header)", ">a\n>b\nMK\n", /empty sequence/, 1, "a"],
    ["empty sequence (end of file)", ">a\nMK\n>b\n\n", /empty sequence/, 3, "b"],
    ["only a stop codon", ">a\n*\n", /empty sequence/, 1, "a"],
    ["missing header", "MKV\n>a\nM\n", /before the first '>' header/, 1, undefined],
    ["missing header after blank lines", "\n\nMKV\n", /missing header/, 3, undefined],
    ["empty id", ">a\nM\n>\nK\n", /empty header/, 3, undefined],
    ["empty id (spaces)", ">  \r\nK\n", /empty header/, 1, undefined],
    ["duplicate id", ">a\nM\n>b\nK\n>a x\nV\n", /duplicate id "a" \(first seen at line 1\)/, 5, "a"],
    ["non-ASCII in sequence", ">a\nMKé\n", /non-ASCII/, 2, "a"],
  ];
  for (const [name, content, pattern, line, recordId] of cases) {
    test(name, async () => {
      const p = file(content);
      const e = await readError(p);
      expect(e.message).toMatch(pattern);
      expect(e.location).toEqual(recordId === undefined ? { file: p, line } : { file: p, line, recordId });
      expect(e.message.startsWith(`${p}:${line}`)).toBe(true);
      expect(e.hint?.length ?? 0).toBeGreaterThan(10);
      expect(e.exitCode).toBe(3);
    });
  }
  test("duplicate hint mentions rename", async () => {
    expect((await readError(file(">a\nM\n>a\nK\n"))).hint).toContain("rename");
  });
  test("line numbers hold across gzip and many chunks", async () => {
    const body = Array.from({ length: 50_000 }, (_, i) => `>r${i}\nMKV\n`).join("");
    const e = await readError(file(gzipSync(`${body}>bad\nMKJ\n`), "late.fa.gz"));
    expect(e.location?.line).toBe(100_002);
    expect(e.location?.recordId).toBe("bad");
  });
  test("missing file, directory", async () => {
    const missing = await readError(join(dir, "nope.fa"));
    expect(missing.message).toContain("not found");
    expect(missing.message).toContain("nope.fa");
    expect((await readError(dir)).message).toContain("directory");
  });
  test("empty file and whitespace-only file", async () => {
    expect((await readError(file(""))).message).toContain("is empty (0 bytes): no records");
    expect((await readError(file("\n \n\n"))).message).toContain("no FASTA records found (only blank lines or ';' comments)");
    expect((await readError("/dev/null")).message).toBe("/dev/null is empty (0 bytes): no records");
  });
  test("binary input (NUL bytes), plain or inside gzip", async () => {
    const bin = new Uint8Array([0x3e, 0x61, 0x0a, 0x4d, 0x00, 0x01, 0x02]);
    expect((await readError(file(bin))).message).toMatch(/binary data \(NUL byte at byte offset 4\)/);
    expect((await readError(file(gzipSync(bin), "bin.gz"))).message).toMatch(/binary/);
  });
  test("other compression formats are named", async () => {
    const bz = file(new Uint8Array([0x42, 0x5a, 0x68, 0x39, 0x31, 0x41]));
    const e = await readError(bz);
    expect(e.message).toContain("bzip2");
    expect(e.hint).toContain("bunzip2");
  });
  test("truncated and corrupt gzip say so and suggest gzip -t", async () => {
    const gz = gzipSync(Array.from({ length: 20_000 }, (_, i) => `>r${i}\nMKVLAGW\n`).join(""));
    const truncated = file(gz.subarray(0, gz.length >> 1), "trunc.fa.gz");
    const e = await readError(truncated);
    expect(e.message).toContain("truncated or corrupt");
    expect(e.hint).toContain(`gzip -t ${truncated}`);
    const bad = Buffer.from(gz);
    for (let i = 100; i < 140; i++) bad[i] = bad[i]! ^ 0x5a;
    expect((await readError(file(bad, "corrupt.fa.gz"))).message).toContain("truncated or corrupt");
  });
});

describe("readFastaInto: streaming", () => {
  test("a multi-MB file is read chunk by chunk with bounded memory", async () => {
    const records = 200_000;
    const line = "MKVLAGWSERTIDPKQNFYHC".repeat(3);
    const path = join(dir, "big.fa");
    const w = Bun.file(path).writer();
    for (let i = 0; i < records; i++) w.write(`>r${i} some description\n${line}\n`);
    await w.end();
    Bun.gc(true);
    const before = process.memoryUsage().rss;
    let count = 0;
    let residues = 0;
    // A sink that keeps nothing, so what grows is the reader's own memory (and the id index).
    const sink = {
      record(_entry: number, _tokens: Uint8Array, start: number, end: number) {
        count++;
        residues += end - start;
      },
    };
    expect(await readFastaInto(path, { sink })).toBe(records);
    Bun.gc(true);
    const grown = process.memoryUsage().rss - before;
    expect(count).toBe(records);
    expect(residues).toBe(records * line.length);
    // The file is ~17 MB; the id index needs ~10 MB for 200k ids. Holding the file (or one
    // object per record) would add far more than this bound.
    expect(grown).toBeLessThan(64 * 1024 * 1024);
  });
});

describe("readFastaInto: error order", () => {
  test("duplicate error wins over a later error in the same chunk", async () => {
    const e = await readError(file(">a\nM\n>a\nK\n>b\nJ\n"));
    expect(e.message).toContain("duplicate");
    expect(e.location?.line).toBe(3);
  });
});
