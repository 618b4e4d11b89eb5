/**
 * VirNucPro's chunking and six-frame translation (src/input/translate.ts): hand-computed edge
 * cases, and a parity check against a small Python restatement of the reference rules (written
 * here from the facts in the module comment, a separate code path) on a few thousand random reads.
 */
import { describe, expect, test } from "bun:test";
import { pythonBin } from "../src/config.ts";
import { OptionsError } from "../src/errors.ts";
import { chunkRecord, chunkStarts, reverseComplement, sixFrames, translateRecord } from "../src/input/translate.ts";

const frames = (seq: string) => Object.fromEntries(sixFrames("r", seq).map((f) => [f.id, [f.peptide, f.nucleotide]]));

describe("chunking", () => {
  const N = 10;
  const seq = (L: number) => Array.from({ length: L }, (_, i) => "ACGT"[i % 4]).join("");
  test("L = N: one chunk, still suffixed _chunk_1", () => {
    expect(chunkRecord("x", seq(10), N)).toEqual([{ id: "x_chunk_1", sequence: seq(10) }]);
  });
  test("L < N: one short chunk", () => {
    expect(chunkRecord("x", "ACG", N)).toEqual([{ id: "x_chunk_1", sequence: "ACG" }]);
  });
  test("empty record: no chunk", () => expect(chunkRecord("x", "", N)).toEqual([]));
  test("L = N + 1: R = 9, lower 4, need 5 > k − 1 = 1, so the one step is 5: [0,10) and [5,11)", () => {
    expect(chunkStarts(11, N)).toEqual([0, 5]);
    expect(chunkRecord("x", seq(11), N).map((c) => c.sequence.length)).toEqual([10, 6]);
  });
  test("L = 2N − 1: R = 1, step 1: [0,10) and [9,19)", () => {
    expect(chunkStarts(19, N)).toEqual([0, 9]);
    expect(chunkRecord("x", seq(19), N).map((c) => c.sequence.length)).toEqual([10, 10]);
  });
  test("L = 3N + 7: k = 4, R = 3, steps 1,1,1: starts 0, 9, 18, 27, all of N bases", () => {
    expect(chunkStarts(37, N)).toEqual([0, 9, 18, 27]);
    const chunks = chunkRecord("x", seq(37), N);
    expect(chunks.map((c) => c.id)).toEqual(["x_chunk_1", "x_chunk_2", "x_chunk_3", "x_chunk_4"]);
    expect(chunks.map((c) => c.sequence.length)).toEqual([10, 10, 10, 10]);
    expect(chunks[3]!.sequence).toBe(seq(37).slice(27));
  });
  test("L = 150, N = 100 (the reference's cut step list): second chunk starts at 74, 76 bases", () => {
    expect(chunkStarts(150, 100)).toEqual([0, 74]);
  });
  test("L = 250, N = 100: steps 17,17 → starts 0, 83, 166", () => {
    expect(chunkStarts(250, 100)).toEqual([0, 83, 166]);
  });
  test("chunk size 1: one chunk per base", () => {
    expect(chunkRecord("x", "ACG", 1).map((c) => c.sequence)).toEqual(["A", "C", "G"]);
  });
  test("a chunk size below 1 is an options error", () => {
    expect(() => chunkStarts(10, 0)).toThrow(OptionsError);
    expect(() => chunkStarts(10, 2.5)).toThrow(/whole number/);
  });
});

describe("six frames", () => {
  test("reverse complement keeps non-ACGT characters", () => {
    expect(reverseComplement("AACGTNR")).toBe("RNACGTT");
  });
  test("L mod 3 = 0: ATGAAACCC", () => {
    // F1 ATG AAA CCC = MKP; F2 TGA… stop; F3 GAA ACC = ET.
    // RC GGGTTTCAT: R1 GGG TTT CAT = GFH; R2 GGT TTC = GF; R3 GTT TCA = VS.
    expect(frames("ATGAAACCC")).toEqual({
      rF1: ["MKP", "ATGAAACCC"],
      rF3: ["ET", "GAAACCC"],
      rR1: ["GFH", "GGGTTTCAT"],
      rR2: ["GF", "GGTTTCA"],
      rR3: ["VS", "GTTTCAT"],
    });
  });
  test("L mod 3 = 1: ATGAAACCCG — the slice takes one base past the codons", () => {
    // F1 MKP + slice ATGAAACCCG (10 = 3·3 + 1); F2 TGA stop; F3 GAA ACC = ET, slice GAAACCC.
    // RC CGGGTTTCAT: R1 CGG GTT TCA = RVS, slice CGGGTTTCAT; R2 GGG TTT CAT = GFH, slice GGGTTTCAT; R3 GGT TTC = GF, slice GGTTTCA.
    expect(frames("ATGAAACCCG")).toEqual({
      rF1: ["MKP", "ATGAAACCCG"],
      rF3: ["ET", "GAAACCC"],
      rR1: ["RVS", "CGGGTTTCAT"],
      rR2: ["GFH", "GGGTTTCAT"],
      rR3: ["GF", "GGTTTCA"],
    });
  });
  test("L mod 3 = 2: ATGAAACCCGT", () => {
    // F1 ATG AAA CCC = MKP (GT left over), slice ATGAAACCCG; F2 TGA stop; F3 GAA ACC CGT = ETR, slice GAAACCCGT (9 + 1 clipped at L).
    // RC ACGGGTTTCAT: R1 ACG GGT TTC = TGF, slice ACGGGTTTCA; R2 CGG GTT TCA = RVS, slice CGGGTTTCAT; R3 GGG TTT CAT = GFH, slice GGGTTTCAT.
    expect(frames("ATGAAACCCGT")).toEqual({
      rF1: ["MKP", "ATGAAACCCG"],
      rF3: ["ETR", "GAAACCCGT"],
      rR1: ["TGF", "ACGGGTTTCA"],
      rR2: ["RVS", "CGGGTTTCAT"],
      rR3: ["GFH", "GGGTTTCAT"],
    });
  });
  test("short reads: < 3 bases give nothing; 3 bases give one codon per strand; 4 bases two frames per strand", () => {
    expect(sixFrames("r", "")).toEqual([]);
    expect(sixFrames("r", "AT")).toEqual([]);
    expect(frames("ATG")).toEqual({ rF1: ["M", "ATG"], rR1: ["H", "CAT"] });
    // ATGC: F1 ATG = M (slice ATGC), F2 TGC = C (slice TGC); RC GCAT: R1 GCA = A (slice GCAT), R2 CAT = H (slice CAT).
    expect(frames("ATGC")).toEqual({ rF1: ["M", "ATGC"], rF2: ["C", "TGC"], rR1: ["A", "GCAT"], rR2: ["H", "CAT"] });
  });
  test("a stop in a frame drops that frame only", () => {
    // F1 TAA TAG TGA: stops, dropped. F2 AAT AGT = NS, slice [1,8) AATAGTG. F3 ATA GTG = IV, slice ATAGTGA.
    // RC TCACTATTA: R1 TCA CTA TTA = SLL; R2 CAC TAT = HY, slice CACTATT; R3 ACT ATT = TI, slice ACTATTA.
    expect(frames("TAATAGTGA")).toEqual({
      rF2: ["NS", "AATAGTG"],
      rF3: ["IV", "ATAGTGA"],
      rR1: ["SLL", "TCACTATTA"],
      rR2: ["HY", "CACTATT"],
      rR3: ["TI", "ACTATTA"],
    });
    // A stop in the last codon of F1 only: ATG AAA TAG.
    expect(frames("ATGAAATAG").rF1).toBeUndefined();
  });
  test("codons with N or IUPAC codes are dropped, not X; the slice counts peptide letters", () => {
    // F1 ATG NNN ATG → MM; slice [0, 7) = ATGNNNA (the reference counts 2 letters, not 3 codons).
    const f = frames("ATGNNNATG");
    expect(f.rF1).toEqual(["MM", "ATGNNNA"]);
    // RC CATNNNCAT: R1 CAT NNN CAT → HH, slice CATNNNC.
    expect(f.rR1).toEqual(["HH", "CATNNNC"]);
    // Frames of only unknown codons are empty and dropped.
    expect(sixFrames("r", "NNNNNN")).toEqual([]);
    // ATGRATG: F1 ATG RAT G → M, slice ATGR; F2 TGR ATG → M, slice TGRA; F3 GRA → nothing.
    // RC CATRCAT (R is not complemented): R1 CAT RCA T → H, slice CATR; R2 ATR CAT → H, slice ATRC; R3 TRC → nothing.
    expect(frames("ATGRATG")).toEqual({ rF1: ["M", "ATGR"], rF2: ["M", "TGRA"], rR1: ["H", "CATR"], rR2: ["H", "ATRC"] });
  });
  test("lowercase input is upper-cased first, slices included", () => {
    expect(sixFrames("r", "atgaaaccc")).toEqual(sixFrames("r", "ATGAAACCC"));
    expect(frames("atgaaaccc").rF1).toEqual(["MKP", "ATGAAACCC"]);
  });
  test("translateRecord chunks first, then names frames after the chunk", () => {
    const out = translateRecord("seq1", "ATGAAACCCG", 10);
    expect(out.map((f) => f.id)).toEqual(["seq1_chunk_1F1", "seq1_chunk_1F3", "seq1_chunk_1R1", "seq1_chunk_1R2", "seq1_chunk_1R3"]);
    expect(translateRecord("seq1", "ATGAAACCCG").map((f) => f.id)).toEqual(["seq1F1", "seq1F3", "seq1R1", "seq1R2", "seq1R3"]);
  });
});

/**
 * The reference rules restated in Python from the facts (not VirNucPro's code): chunking with the
 * step list cut by zip, the NCBI table-1 code in TCAG order, dict.get(codon, '') for codons that
 * are not A/C/G/T, frames with '*' or empty dropped, slice [f, f + 3·len(peptide) + 1).
 */
const PY_REFERENCE = `
import json, sys
CODE = dict(zip([a + b + c for a in "TCAG" for b in "TCAG" for c in "TCAG"],
                "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"))
def chunks(rid, seq, n):
    L = len(seq)
    k = -(-L // n)
    over = k * n - L
    lo = int(over / k) if k else 0
    need = over - lo * (k - 1)
    steps = [lo + 1] * need + [lo] * (k - 1 - need) + [0]
    out, moved = [], 0
    for a, step in zip(range(0, L, n), steps):
        out.append((f"{rid}_chunk_{a // n + 1}", seq[a - moved:a - moved + n]))
        moved += step
    return out
def rc(s):
    return s.translate(str.maketrans("ACGTacgt", "TGCAtgca"))[::-1]
def frames(rid, seq):
    seq = seq.upper()
    out = []
    for strand, tag in ((seq, "F"), (rc(seq), "R")):
        for f in range(3):
            pep = "".join(CODE.get(strand[i:i + 3], "") for i in range(f, len(strand) - 2, 3))
            if pep and "*" not in pep:
                out.append({"id": f"{rid}{tag}{f + 1}", "peptide": pep, "nucleotide": strand[f:f + 3 * len(pep) + 1]})
    return out
res = []
for r in json.load(sys.stdin):
    parts = chunks(r["id"], r["seq"], r["chunk"]) if r["chunk"] else [(r["id"], r["seq"])]
    res.append([fr for cid, s in parts for fr in frames(cid, s)])
json.dump(res, sys.stdout)
`;

describe("parity with a Python restatement of the reference rules", () => {
  test("4,000 random reads (ACGT, N, IUPAC, lowercase; lengths 0–700; chunk sizes 1–500 or none)", () => {
    let state = 12345;
    const r = () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 4294967296;
    };
    const alphabets = ["ACGT", "ACGT", "ACGTACGTACGTN", "ACGTACGTRYSWKMBDHVN", "ACGTacgtn"];
    const chunks = [undefined, undefined, 1, 2, 3, 7, 50, 100, 150, 300, 500];
    const cases = Array.from({ length: 4000 }, (_, k) => {
      const alphabet = alphabets[k % alphabets.length]!;
      const len = Math.floor(r() * r() * 700);
      let seq = "";
      for (let i = 0; i < len; i++) seq += alphabet[Math.floor(r() * alphabet.length)];
      return { id: `read${k}`, seq, chunk: chunks[Math.floor(r() * chunks.length)] ?? null };
    });
    const py = Bun.spawnSync([pythonBin(), "-c", PY_REFERENCE], { stdin: new TextEncoder().encode(JSON.stringify(cases)), stderr: "pipe" });
    expect({ code: py.exitCode, stderr: py.stderr.toString() }).toEqual({ code: 0, stderr: "" });
    const want = JSON.parse(py.stdout.toString()) as unknown[];
    const got = cases.map((c) => translateRecord(c.id, c.seq, c.chunk ?? undefined));
    const mismatch = cases.findIndex((_, i) => !Bun.deepEquals(got[i], want[i]));
    expect(mismatch === -1 ? null : { case: cases[mismatch], got: got[mismatch], want: want[mismatch] }).toBeNull();
    // The comparison covered kept frames, chunked records and dropped codons.
    expect(got.flat().length).toBeGreaterThan(5000);
    expect(got.flat().some((f) => f.id.includes("_chunk_3"))).toBe(true);
  }, 30_000);
});
