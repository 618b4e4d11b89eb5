/**
 * The hostile-input corpus: the real CLI (`bun src/cli.ts ...`) against input and options a
 * careless or hostile user gives, each row asserting the exit code and the words a user needs on
 * stderr (what, where, how to fix). Most rows are `--dry` (no worker); rows that need workers use
 * the fake worker (test/workers/fake_worker.py, real protocol) through `env: fakeRunEnv()`.
 *
 * To add a case, append a {@link HostileCase} to the table of its area below (`INPUT`, `OPTIONS`,
 * `OUTPUT`): files to create, the arguments (`$D` is the case's own directory), the exit code and
 * the stderr words. Use `setup` for state that files cannot express (a chmod, a damaged store, a
 * held lock), and `skip` (a reason) for a case that cannot be made here: it shows as skipped.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { PACKAGE_ROOT } from "../src/config.ts";
import { expectWords, fakeRunEnv, randomFasta } from "./helpers.ts";

setDefaultTimeout(60_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-hostile-"));
afterAll(() => {
  for (const f of readdirSync(tmp, { recursive: true }) as string[]) chmodSync(join(tmp, f), 0o755);
  rmSync(tmp, { recursive: true, force: true });
});

/** One hostile case: what the user gives, and what embed must answer. */
export interface HostileCase {
  name: string;
  /** Files created in the case's directory (`$D`) before the run: name → content. */
  files?: Record<string, string | Uint8Array>;
  /** Arguments after `embed`; `$D` stands for the case's directory. */
  args: string[];
  /** Bytes on standard input (default: none, stdin ignored). */
  stdin?: string | Uint8Array;
  /** Further state to build in the directory (a chmod, a damaged store, a held lock). */
  setup?: (dir: string) => void;
  /** Extra environment (e.g. `fakeRunEnv()` for a run that starts workers). */
  env?: Record<string, string>;
  code: number;
  /** What stderr must hold: each a substring or a pattern. */
  stderr: (string | RegExp)[];
  /** What stderr must not hold. */
  notStderr?: (string | RegExp)[];
  /** For a `--dry` run that succeeds: fields its plan's `records` must have. */
  records?: Record<string, unknown>;
  /** Why the case cannot run here (it is then skipped, visibly). */
  skip?: string;
}

const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const utf16le = (s: string, bom: boolean) => Buffer.concat([bom ? Buffer.from([0xff, 0xfe]) : Buffer.alloc(0), Buffer.from(s, "utf16le")]);
const utf16be = (s: string) => Buffer.from(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(s, "utf16le")]).swap16());
const OK = ">a\nMKV\n";
const gz = gzipSync(">a some protein\nMKVLAG\n>b\nWWW\n");

/** Whether this user can read a file with no permissions (root can): then chmod 000 proves nothing. */
const readsUnreadable = (() => {
  const p = join(tmp, "probe");
  writeFileSync(p, "x");
  chmodSync(p, 0o000);
  try {
    readFileSync(p);
    return true;
  } catch {
    return false;
  } finally {
    chmodSync(p, 0o644);
  }
})();

/** The FASTA input itself: encodings, line ends, headers, residues, ids, compression, files. */
const INPUT: HostileCase[] = [
  { name: "empty file", files: { "e.fa": "" }, args: ["run", "$D/e.fa", "--dry"], code: 3, stderr: ["e.fa is empty (0 bytes): no records", "An empty file often means the command that wrote it failed"] },
  { name: "/dev/null", args: ["run", "/dev/null", "--dry"], code: 3, stderr: ["/dev/null is empty (0 bytes): no records"], notStderr: ["EPERM", "epoll"] },
  { name: "blank lines and comments only", files: { "w.fa": "\n  \n;comment\n\n" }, args: ["run", "$D/w.fa", "--dry"], code: 3, stderr: ["no FASTA records found (only blank lines or ';' comments)"] },
  { name: "header only", files: { "h.fa": ">lonely description\n" }, args: ["run", "$D/h.fa", "--dry"], code: 3, stderr: ['h.fa:1 (record "lonely"): empty sequence', "add its sequence"] },
  { name: "header only, then another record", files: { "h2.fa": ">a\n>b\nMK\n" }, args: ["run", "$D/h2.fa", "--dry"], code: 3, stderr: ['h2.fa:1 (record "a"): empty sequence'] },
  { name: "no header", files: { "n.fa": "MKVLAG\n" }, args: ["run", "$D/n.fa", "--dry"], code: 3, stderr: ["n.fa:1: sequence data before the first '>' header", "Add a header line"] },
  { name: "an HTML error page saved as FASTA", files: { "page.fa": "<!DOCTYPE html>\n<html>404</html>\n" }, args: ["run", "$D/page.fa", "--dry"], code: 3, stderr: ["page.fa:1", "before the first '>' header", "Is this a FASTA file?"] },
  { name: "'>' alone", files: { "g.fa": ">\nMKV\n" }, args: ["run", "$D/g.fa", "--dry"], code: 3, stderr: ["g.fa:1: empty header: '>' with no id", "'>seq1 optional description'"] },
  { name: "'>' and spaces", files: { "g2.fa": ">a\nM\n>   \nMKV\n" }, args: ["run", "$D/g2.fa", "--dry"], code: 3, stderr: ["g2.fa:3: empty header"] },
  { name: "duplicate id (error mode)", files: { "d.fa": ">x\nMK\n>y\nL\n>x\nMV\n" }, args: ["run", "$D/d.fa", "--dry"], code: 3, stderr: ['d.fa:5 (record "x"): duplicate id "x" (first seen at line 1)', "--duplicate-ids rename"] },
  { name: "duplicate id across two files", files: { "d1.fa": ">x\nMK\n", "d2.fa": ">y\nL\n>x\nMV\n" }, args: ["run", "$D/d1.fa", "$D/d2.fa", "--dry"], code: 3, stderr: ["d2.fa:3", 'duplicate id "x"', "d1.fa:1"] },
  {
    name: "duplicate ids renamed: never to an id the input has",
    files: { "r.fa": ">a\nMK\n>a\nMV\n>a_2\nLL\n" },
    args: ["run", "$D/r.fa", "--dry", "--duplicate-ids", "rename"],
    code: 0,
    stderr: ["1 duplicate id(s) renamed", "a → a_3", "r.fa:3"],
    records: { records: 3, renamed: 1, renames: [{ from: "a", to: "a_3", at: "$D/r.fa:3" }] },
  },
  { name: "invalid residue letter", files: { "j.fa": ">a\nMKV\nLAJG\n" }, args: ["run", "$D/j.fa", "--dry"], code: 3, stderr: ['j.fa:3 (record "a"): invalid character \'J\' at column 3'] },
  { name: "digits in a sequence (a GenBank dump)", files: { "dg.fa": ">a\n        1 mkvlag\n" }, args: ["run", "$D/dg.fa", "--dry"], code: 3, stderr: ["dg.fa:2", 'record "a"', "digit"] },
  { name: "'*' in the middle of a sequence", files: { "s.fa": ">a\nMK*VL\n" }, args: ["run", "$D/s.fa", "--dry"], code: 3, stderr: ['s.fa:2 (record "a")', "stop codon"] },
  { name: "'*' before another line", files: { "s2.fa": ">a\nMK*\nVL\n" }, args: ["run", "$D/s2.fa", "--dry"], code: 3, stderr: ['s2.fa:2 (record "a")', "stop codon"] },
  { name: "'*' at the end is dropped", files: { "s3.fa": ">a\nMKV*\n" }, args: ["run", "$D/s3.fa", "--dry"], code: 0, stderr: [], records: { records: 1, residues: 3 } },
  { name: "lowercase residues are read as uppercase", files: { "lc.fa": ">a\nmkvlag\n" }, args: ["run", "$D/lc.fa", "--dry"], code: 0, stderr: [], records: { records: 1, residues: 6 } },
  { name: "nucleotides are not refused but counted as residues", files: { "nt.fa": ">a\nACGT\n" }, args: ["run", "$D/nt.fa", "--dry"], code: 0, stderr: [], records: { records: 1, residues: 4 } },
  {
    name: "very long line (2 MiB, one record) is truncated and said so",
    files: { "long.fa": `>long\n${"M".repeat(2 << 20)}\n` },
    args: ["run", "$D/long.fa", "--dry"],
    code: 0,
    stderr: ["1 record(s) longer than 1022 residues were truncated"],
    records: { records: 1, truncated: 1, longest: 1022 },
  },
  { name: "very long id (100 KB)", files: { "lid.fa": `>${"i".repeat(100_000)} d\nMK\n` }, args: ["run", "$D/lid.fa", "--dry"], code: 0, stderr: [], records: { records: 1 } },
  { name: "CRLF line ends are fine", files: { "crlf.fa": ">a x\r\nMKV\r\n>b\r\nLL\r\n" }, args: ["run", "$D/crlf.fa", "--dry"], code: 0, stderr: [], records: { records: 2, residues: 5 } },
  { name: "CR-only line ends (classic Mac)", files: { "mac.fa": ">a\rMKV\r>b\rLL\r" }, args: ["run", "$D/mac.fa", "--dry"], code: 3, stderr: ["mac.fa:1: CR-only line endings (classic Mac)", "tr '\\r' '\\n'"], notStderr: ["empty sequence"] },
  { name: "UTF-8 byte order mark is fine", files: { "bom.fa": "\ufeff>a\nMKV\n" }, args: ["run", "$D/bom.fa", "--dry"], code: 0, stderr: [], records: { records: 1 } },
  { name: "UTF-16 with a little-endian BOM", files: { "u16.fa": utf16le(OK, true) }, args: ["run", "$D/u16.fa", "--dry"], code: 3, stderr: ["UTF-16 (little-endian byte order mark)", "iconv -f UTF-16 -t UTF-8"], notStderr: ["binary"] },
  { name: "UTF-16 with a big-endian BOM", files: { "u16be.fa": utf16be(OK) }, args: ["run", "$D/u16be.fa", "--dry"], code: 3, stderr: ["UTF-16 (big-endian byte order mark)", "iconv -f UTF-16 -t UTF-8"] },
  { name: "UTF-16 without a BOM", files: { "u16n.fa": utf16le(OK, false) }, args: ["run", "$D/u16n.fa", "--dry"], code: 3, stderr: ["UTF-16 (little-endian, no byte order mark)", "iconv"], notStderr: ["binary"] },
  { name: "UTF-16 inside gzip", files: { "u16.fa.gz": gzipSync(utf16le(OK, true)) }, args: ["run", "$D/u16.fa.gz", "--dry"], code: 3, stderr: ["UTF-16 (little-endian byte order mark) (inside the gzip)", "gzip -dc", "iconv -f UTF-16"] },
  {
    name: "a Latin-1 byte in an id",
    files: { "l1.fa": Buffer.concat([Buffer.from(">ok\nMK\n"), latin1(">caf\xe9 x\nMKV\n>caf\xe8\nLL\n")]) },
    args: ["run", "$D/l1.fa", "--dry"],
    code: 3,
    stderr: ['l1.fa:3 (record "caf\\xE9"): id is not valid UTF-8: byte 0xE9 at column 5 (byte offset 11 of the input)', "iconv -f LATIN1 -t UTF-8"],
    notStderr: ["\uFFFD", "duplicate"],
  },
  { name: "a Latin-1 byte in a description only is fine", files: { "l1d.fa": latin1(">a caf\xe9\nMKV\n") }, args: ["run", "$D/l1d.fa", "--dry"], code: 0, stderr: [], records: { records: 1 } },
  { name: "UTF-8 ids are kept", files: { "u8.fa": ">café\nMKV\n>café_2\nL\n" }, args: ["run", "$D/u8.fa", "--dry"], code: 0, stderr: [], records: { records: 2 } },
  { name: "NUL bytes", files: { "nul.fa": Buffer.from(">a\nMK\0V\n") }, args: ["run", "$D/nul.fa", "--dry"], code: 3, stderr: ["nul.fa: binary data (NUL byte at byte offset 5)", "`file "] },
  { name: "gzip is read (magic bytes, any name)", files: { "plain.txt": gz }, args: ["run", "$D/plain.txt", "--dry"], code: 0, stderr: [], records: { records: 2, residues: 9 } },
  { name: "gzip truncated", files: { "t.fa.gz": gz.subarray(0, gz.length - 12) }, args: ["run", "$D/t.fa.gz", "--dry"], code: 3, stderr: ["t.fa.gz: gzip data is truncated or corrupt", "gzip -t"] },
  { name: "gzip of binary data", files: { "bin.gz": gzipSync(Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff)) }, args: ["run", "$D/bin.gz", "--dry"], code: 3, stderr: ["binary data (NUL byte at decompressed byte offset 0)"] },
  { name: "bzip2 is named, with the command to decompress", files: { "x.fa.bz2": Buffer.from("BZh91AY&SY") }, args: ["run", "$D/x.fa.bz2", "--dry"], code: 3, stderr: ["bzip2-compressed", "bunzip2 -c"] },
  { name: "zstd is named", files: { "x.fa.zst": Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4]) }, args: ["run", "$D/x.fa.zst", "--dry"], code: 3, stderr: ["zstd-compressed", "zstd -dc"] },
  { name: "a directory as input", setup: (d) => mkdirSync(join(d, "sub")), args: ["run", "$D/sub", "--dry"], code: 3, stderr: ["sub is a directory, not a FASTA file"] },
  { name: "missing file", args: ["run", "$D/nope.fa", "--dry"], code: 3, stderr: ["input file not found: ", "nope.fa", "Check the path"] },
  {
    name: "unreadable file (chmod 000)",
    files: { "locked.fa": OK },
    setup: (d) => chmodSync(join(d, "locked.fa"), 0o000),
    args: ["run", "$D/locked.fa", "--dry"],
    code: 3,
    stderr: ["permission denied reading", "locked.fa", "ls -l"],
    ...(readsUnreadable ? { skip: "this user (root) can read a chmod 000 file" } : {}),
  },
  { name: "stdin empty", args: ["run", "-", "--dry"], stdin: "", code: 3, stderr: ["<stdin> is empty (0 bytes): no records"] },
  { name: "stdin with a FASTA", args: ["run", "-", "--dry"], stdin: OK, code: 0, stderr: [], records: { records: 1 } },
  { name: "stdin given twice", args: ["run", "-", "-", "--dry"], stdin: OK, code: 2, stderr: ["'-' (standard input) given more than once"], notStderr: ["ReadableStream"] },
];

/** Options: bad values, typos, contradictions. */
const OPTIONS: HostileCase[] = [
  { name: "--max-tokens -1", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--max-tokens", "-1"], code: 2, stderr: ["--max-tokens", ">=3"] },
  { name: "--max-tokens abc", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--max-tokens", "abc"], code: 2, stderr: ["--max-tokens"] },
  { name: "--layers abc", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--layers", "abc"], code: 2, stderr: ['--layers: layer "abc" is not an integer'] },
  { name: "--truncate 0", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--truncate", "0"], code: 2, stderr: ["--truncate", ">=1"] },
  { name: "unknown --format", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--format", "xlsx"], code: 2, stderr: ['unknown format "xlsx"', "npy, hdf5, parquet"] },
  { name: "bad --duplicate-ids value", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--duplicate-ids", "keep"], code: 2, stderr: ["--duplicate-ids (keep)", "error, rename"] },
  { name: "bad --shard", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--shard", "3/2"], code: 2, stderr: ['--shard: "3/2" is not I/N'] },
  { name: "a misspelt option gets a suggestion", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--max-token", "512"], code: 2, stderr: ["unknown option --max-token for `embed run` (did you mean --max-tokens?)"] },
  { name: "an unknown option", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--frobnicate"], code: 2, stderr: ["unknown option --frobnicate"] },
  { name: "conflicting options: --quiet --verbose", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--quiet", "--verbose"], code: 2, stderr: ["--quiet and --verbose contradict each other"] },
  { name: "no input", args: ["run", "--dry"], code: 2, stderr: ["Missing required positional argument: INPUTS"] },
  { name: "unknown command", args: ["embedd", "x.fa"], code: 2, stderr: ["Unknown command embedd", "embed --help"] },
  { name: "no -o and no --dry", files: { "a.fa": OK }, args: ["run", "$D/a.fa"], code: 2, stderr: ["--output is required", "-o OUT_DIR"] },
  { name: "--quiet keeps an error's hint", args: ["run", "$D/nope.fa", "--dry", "--quiet"], code: 3, stderr: ["input file not found", "hint: Check the path"] },
  { name: "--quiet keeps a bad option's hint", files: { "a.fa": OK }, args: ["run", "$D/a.fa", "--dry", "--quiet", "--truncate", "0"], code: 2, stderr: ["--truncate", "hint: see `embed run --help`"] },
];

/**
 * The output directory. Damaged stores, foreign directories and the lock belong to the store's
 * area: add their rows here (with `setup` building the state).
 */
const OUTPUT: HostileCase[] = [
  { name: "-o pointing at a file", files: { "a.fa": OK, "out.txt": "not a directory\n" }, args: ["run", "$D/a.fa", "-o", "$D/out.txt", "--devices", "cpu"], env: fakeRunEnv(), code: 6, stderr: ["out.txt is a file, not a directory"] },
];

/** A copy of the bundled test model's Hugging Face folder in `dir`/m, its config.json changed by
 * `config` and its weights file cut to `keep` bytes (the real worker reads it). */
function badTiny(dir: string, config: (c: Record<string, unknown>) => unknown, keep?: number): void {
  const src = join(PACKAGE_ROOT, ".models", "test-tiny");
  mkdirSync(join(dir, "m"));
  const c = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(dir, "m", "config.json"), JSON.stringify(config(c)));
  const w = readFileSync(join(src, "model.safetensors"));
  writeFileSync(join(dir, "m", "model.safetensors"), keep === undefined ? w : w.subarray(0, keep));
}
const noTiny = existsSync(join(PACKAGE_ROOT, ".models", "test-tiny", "config.json")) ? undefined : "no .models/test-tiny (scripts/setup)";
const badModel = (name: string, config: (c: Record<string, unknown>) => unknown, stderr: string[], keep?: number): HostileCase => ({
  name, files: { "a.fa": OK }, setup: (d) => badTiny(d, config, keep), args: ["run", "$D/a.fa", "-o", "$D/out", "--model", "$D/m", "--devices", "cpu"],
  code: 5, stderr: ["$D/m/", ...stderr], ...(noTiny ? { skip: noTiny } : {}),
});

/** Bad checkpoints and models: add rows here. */
const MODEL: HostileCase[] = [
  badModel("config.json that is a list", (c) => [c], ["config.json holds a JSON list"]),
  badModel("config.json with a layer count in words", (c) => ({ ...c, num_hidden_layers: "two" }), ["num_hidden_layers is 'two' (a str); expected an integer"]),
  badModel("config.json with 100,000 layers (refused before building)", (c) => ({ ...c, num_hidden_layers: 100_000 }), ["layers 100000 is outside 1..256"]),
  badModel("config.json with a foreign <mask> id", (c) => ({ ...c, mask_token_id: 101 }), ["mask_token_id is 101"]),
  badModel("truncated model.safetensors", (c) => c, ["model.safetensors: truncated", "bytes missing"], 20_000),
];

export const CASES: HostileCase[] = [...INPUT, ...OPTIONS, ...OUTPUT, ...MODEL];

async function runCase(c: HostileCase, dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = c.args.map((a) => a.replaceAll("$D", dir));
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...args], {
    cwd: dir,
    stdin: c.stdin === undefined ? "ignore" : typeof c.stdin === "string" ? new TextEncoder().encode(c.stdin) : c.stdin,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...(c.env ?? (process.env as Record<string, string>)), NO_COLOR: "1" },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

describe("hostile input: the CLI answers with an exit code and the words a user needs", () => {
  test("the corpus is large enough to mean something", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });
  CASES.forEach((c, k) => {
    test.skipIf(c.skip !== undefined)(`${c.name}${c.skip ? ` (skipped: ${c.skip})` : ""}`, async () => {
      const dir = join(tmp, `case${k}`);
      mkdirSync(dir);
      for (const [name, content] of Object.entries(c.files ?? {})) writeFileSync(join(dir, name), content);
      c.setup?.(dir);
      const r = await runCase(c, dir);
      const show = { code: r.code, stderr: r.stderr };
      expect({ ...show, code: r.code }).toEqual({ ...show, code: c.code });
      expectWords(r.stderr, c.stderr, c.notStderr, (w) => w.replaceAll("$D", dir));
      if (c.code !== 0) expect(r.stdout).toBe("");
      if (c.records) {
        const expected = JSON.parse(JSON.stringify(c.records).replaceAll("$D", dir));
        expect(JSON.parse(r.stdout).records).toMatchObject(expected);
      }
    });
  });
});

describe("hostile runs with (fake) workers", () => {
  const FASTA = join(tmp, "many.fa");
  const args = (out: string, extra: string[] = []) => ["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", FASTA, "-o", out, "--devices", "cpu", "--max-tokens", "400", "--shard-records", "25", ...extra];

  test("SIGHUP (terminal closed) drains like SIGTERM: in-flight batches committed, exit 130, the same command resumes", async () => {
    writeFileSync(FASTA, randomFasta(300));
    const out = join(tmp, "sighup");
    const p = Bun.spawn(args(out), { stdout: "pipe", stderr: "pipe", env: fakeRunEnv({ slowMs: 80 }) });
    // Wait (bounded) for the first committed shard: the run is embedding.
    for (let i = 0; i < 1000 && !(existsSync(join(out, "shards")) && readdirSync(join(out, "shards")).some((f) => f.endsWith(".meta.json"))); i++) await Bun.sleep(10);
    p.kill("SIGHUP");
    const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    expect({ code, stderr }).toEqual({ code: 130, stderr: expect.stringContaining("SIGHUP: finishing the batches in flight") });
    expect(stderr).toContain("interrupted by SIGHUP");
    expect(stderr).toContain("rerun the same command to resume");
    expect(existsSync(join(out, "manifest.json"))).toBe(false);
    const again = Bun.spawn(args(out), { stdout: "pipe", stderr: "pipe", env: fakeRunEnv() });
    const [stdout, code2] = await Promise.all([new Response(again.stdout).text(), again.exited]);
    expect(code2).toBe(0);
    const summary = JSON.parse(stdout);
    expect(summary.resumed).toBeGreaterThan(0);
    expect(summary.records).toBe(300);
  });

  test("--duplicate-ids rename: the store's ids, summary and manifest say which id became what", async () => {
    const input = join(tmp, "dups.fa");
    writeFileSync(input, ">a\nMK\n>a\nMV\n>a_2\nLL\n>b\nW\n>b\nG\n");
    const out = join(tmp, "renamed");
    const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "run", input, "-o", out, "--devices", "cpu", "--duplicate-ids", "rename"], { stdout: "pipe", stderr: "pipe", env: fakeRunEnv() });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: expect.stringContaining("2 duplicate id(s) renamed") });
    expect(stderr).toContain("a → a_3");
    expect(readFileSync(join(out, "ids.txt"), "utf8")).toBe("a\na_3\na_2\nb\nb_2\n");
    const renames = [
      { from: "a", to: "a_3", at: `${input}:3` },
      { from: "b", to: "b_2", at: `${input}:9` },
    ];
    expect(JSON.parse(stdout).renames).toEqual(renames);
    expect(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")).counts.renames).toEqual(renames);
  });
});
