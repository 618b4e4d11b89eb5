/**
 * `embed validate` for DNABERT-S on CPU, with a tiny random DNABERT-S folder and real workers:
 * nucleotide FASTA read with the folder's tokenizer.json, records binned by BPE token count, the
 * report naming the family and its pooling; fp32 packed vs the fp32 reference model passes, and a
 * production worker with a planted DNABERT-S fault (EMBED_FAULT, dnabert_run.FAULTS) fails with
 * exit 7: a mean that leaves out [CLS]/[SEP], and attention that leaks across packed sequences
 * (caught by the contamination check, alone vs packed, too).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/config.ts";
import { loadBpe } from "../src/input/reading.ts";
import { binIn, TOKEN_BINS } from "../src/validate/metrics.ts";
import { DNABERT_TOKENIZER, randomReads, readsFasta, writeTinyDnabert } from "./dnabert-folder.ts";

// Each validate run starts two CPU workers one after the other; torch takes seconds to import on 2 cores.
setDefaultTimeout(180_000);

const tmp = mkdtempSync(join(tmpdir(), "embed-validate-dna-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const folder = join(tmp, "tiny-dnabert-s");
const input = join(tmp, "reads.fna");
// 20 to 2,000 bases (≈ 5.5 bases per BPE token for these reads): every token bin gets records.
const READS = [[6, 20, 150], [3, 200, 330], [3, 400, 650], [3, 800, 1300], [2, 1600, 2000]]
  .flatMap(([n, lo, hi], k) => randomReads(n!, lo!, hi!, 5 + k))
  .map((r, i) => ({ ...r, id: `r${i}` }));
/** BPE tokens per read ([CLS]/[SEP] not counted), by the TS tokenizer. */
const bpe = loadBpe(DNABERT_TOKENIZER);
const tokens = new Map(READS.map((r) => [r.id, bpe.encode(new TextEncoder().encode(r.seq.toUpperCase())).ids.length - 2]));

beforeAll(async () => {
  await writeTinyDnabert(folder);
  writeFileSync(input, readsFasta(READS));
});

async function validate(args: string[], env: Record<string, string> = {}, file = input) {
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), "validate", file, "--model", folder, "--devices", "cpu", "--precision", "fp32", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stderr, report: stdout ? JSON.parse(stdout) : null };
}

describe("embed validate, DNABERT-S", () => {
  test("fp32 packed vs the fp32 reference model: equal to 1e-6 per token bin; the report names the family, its pooling and its bins", async () => {
    const html = join(tmp, "dna.html");
    const r = await validate(["--per-residue", "--max-rel-l2", "1e-6", "--contamination", "5", "--html", html], {});
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    const rep = r.report;
    expect(rep.ok).toBe(true);
    expect(rep.family).toBe("dnabert-s");
    expect(rep.lengthUnit).toBe("tokens");
    expect(rep.pooling.mean).toContain("[CLS] and [SEP] included");
    expect(rep.pooling.residues).toContain("[CLS] and [SEP] excluded");
    expect(rep.reference).toContain("reference model");
    expect(rep.records).toEqual({ input: READS.length, validated: READS.length });
    expect(Object.keys(rep.bins)).toEqual(TOKEN_BINS.map((b) => b.name));
    // Lengths are the TS tokenizer's BPE counts, each record in its token bin, and every bin used.
    for (const x of rep.perRecord) {
      expect(x.residues).toBe(tokens.get(x.id)!);
      expect(x.bin).toBe(binIn(x.residues, TOKEN_BINS));
    }
    for (const b of TOKEN_BINS) expect(rep.bins[b.name]?.n).toBeGreaterThan(0);
    expect(rep.overall.relL2.max).toBeLessThan(1e-6);
    expect(rep.overall.residueCosine.min).toBeGreaterThan(0.99999);
    expect(rep.contamination.n).toBe(5);
    expect(rep.contamination.minCosine).toBeGreaterThan(0.999999);
    expect(r.stderr).toContain("(dnabert-s)");
    expect(r.stderr).toContain("per length bin (tokens)");
    expect(r.stderr).toContain("PASS");
    // The HTML page: one point and tooltip per read in tokens, one box per token bin.
    const page = readFileSync(html, "utf8");
    expect(page).toContain(`<span class="verdict pass"`);
    expect([...page.matchAll(/<circle class="pt/g)].length).toBe(READS.length);
    expect([...page.matchAll(/<g class="box"/g)].length).toBe(TOKEN_BINS.length);
    expect(page).toContain("length (tokens, log scale)");
    expect(page).toContain("bin (tokens)");
    for (const x of rep.perRecord) expect(page).toContain(`${x.id}: ${x.residues} tokens`);
  });

  // Leaving 2 of L tokens out of the mean moves the tiny model's pooled vectors by a relative 1e-3
  // to 5e-2 (short reads most), yet their cosine stays above 0.999: its hidden states share a
  // large common direction. fp32's relative-error threshold catches it, as for ESM-2's tanh-gelu.
  test("a production mean that leaves out [CLS]/[SEP] fails fp32's relative-error threshold (exit 7)", async () => {
    const r = await validate(["--max-rel-l2", "1e-5"], { EMBED_FAULT: "specials-out-of-mean" });
    expect(r.code).toBe(7);
    expect(r.report.ok).toBe(false);
    expect(r.report.failures.join(" ")).toContain("max relative L2 error");
    expect(r.report.bins["≤32"].relL2.max).toBeGreaterThan(1e-3); // short reads: 2 of ≤ 34 tokens
    expect(r.report.contamination.minCosine).toBeGreaterThan(0.999999); // pooling, not packing
    expect(r.stderr).toContain("FAIL");
  });

  test("attention that leaks across packed sequences fails (exit 7), the contamination check among the reasons", async () => {
    const r = await validate([], { EMBED_FAULT: "attention-across-sequences" });
    expect(r.code).toBe(7);
    expect(r.report.ok).toBe(false);
    expect(r.report.failures.join(" ")).toContain("min pooled cosine");
    expect(r.report.failures.join(" ")).toContain("(cross-sequence contamination)");
    expect(r.report.contamination.minCosine).toBeLessThan(0.999);
  });

  test("protein FASTA is refused at the letter (exit 3) before any worker starts", async () => {
    const prot = join(tmp, "prot.fa");
    writeFileSync(prot, ">ok\nACGTACGT\n>p1\nMKVLAAGIEF\n");
    const r = await validate([], {}, prot);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`${prot}:4 (record "p1"): 'L' at column 4 is a protein letter`);
    expect(r.stderr).not.toContain("validating");
  });
});
