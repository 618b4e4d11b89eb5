/**
 * VirNucPro's preparation of nucleotide records: optional chunking, then six-frame translation.
 * Each kept frame gives a peptide (for ESM-2) and the matching nucleotide slice (for DNABERT-S,
 * tokenized by ./bpe.ts). Pure: (id, sequence) in, plain objects out.
 *
 * Facts, read in broadinstitute/virnucpro-broad `units.py` (`split_fasta_chunk`,
 * `reverse_complement`, `translate_dna`, `identify_seq`, `process_record`; the same functions as
 * the original Li-Jing-1997/VirNucPro, whose `prediction.py` calls them) and restated in
 * test/translate.test.ts's Python parity check:
 *
 * Chunking (`split_fasta_chunk(chunk_size=N)`, run before anything else, on the raw sequence):
 * - every record becomes k = ceil(L/N) chunks with ids `{id}_chunk_{i}`, i from 1 — also a record
 *   with L ≤ N (one chunk, `{id}_chunk_1`); an empty record gives none.
 * - the overshoot R = k·N − L is meant to be spread as overlaps: lower = floor(R/k),
 *   need = R − lower·(k−1); chunk i (0-based) starts at i·N − Σ_{j<i} step_j with
 *   step_j = lower + 1 for j < need, else lower, and is `seq[start, start + N)` clipped at L.
 *   The reference builds the steps as a list `[lower+1]·need + [lower]·(k−1−need) + [0]` and zips
 *   it with the k chunk starts, so when need > k − 1 the list is cut and the overlaps sum to less
 *   than R: the last chunk is then shorter than N (L = 11, N = 10 gives [0,10) and [5,11), not
 *   [1,11)). We reproduce that, because the model was trained and is run on these chunks.
 *
 * Translation (`process_record` → `identify_seq` → `translate_dna`):
 * - the sequence is upper-cased first (`str(record.seq).upper()`), so the nucleotide slices fed
 *   to DNABERT-S are upper case (DNABERT-S's tokenizer would make lowercase bases [UNK]).
 * - frames F1–F3 read codons from offsets 0, 1, 2 of the sequence, R1–R3 from offsets 0, 1, 2 of
 *   the reverse complement (A↔T, C↔G; every other character kept as is, e.g. N and R stay N and R).
 * - codons are read while i < L − 2 (complete codons only); the standard genetic code; a codon
 *   that is not three of A/C/G/T is dropped (`codon_table.get(codon, '')`), not translated as X.
 * - a frame whose peptide contains a stop (`*`) is dropped; so is an empty peptide
 *   (`prediction.py` writes only items with `protein != ''`).
 * - ids `{id}F1`…`{id}F3`, `{id}R1`…`{id}R3`, in that order.
 * - the nucleotide slice is `strand[f, f + 3·p + 1)` for frame offset f and peptide length p
 *   (clipped at L): one base more than the codons, and shorter than the codons' span when
 *   codons were dropped for non-ACGT bases (the reference counts peptide letters, not codons).
 */
import { OptionsError } from "../errors.ts";

/** One chunk of a record. */
export interface Chunk {
  id: string;
  sequence: string;
}

/** One kept reading frame: its peptide and the nucleotide slice that goes with it. */
export interface Frame {
  id: string;
  peptide: string;
  nucleotide: string;
}

/**
 * Start offsets of the chunks of a record of `length` bases cut into chunks of `size`, exactly
 * as VirNucPro's `split_fasta_chunk` computes them (see the module comment).
 */
export function chunkStarts(length: number, size: number): number[] {
  if (!Number.isInteger(size) || size < 1) throw new OptionsError(`chunk size must be a whole number ≥ 1, got ${size}`, "pass --chunk N with N ≥ 1 (VirNucPro uses 300 or 500)");
  if (length <= 0) return [];
  const k = Math.ceil(length / size);
  const overshoot = k * size - length;
  const lower = Math.floor(overshoot / k);
  const need = overshoot - lower * (k - 1);
  const starts = [0];
  let moved = 0;
  for (let i = 1; i < k; i++) {
    moved += i - 1 < need ? lower + 1 : lower;
    starts.push(i * size - moved);
  }
  return starts;
}

/** The chunks `{id}_chunk_{i}` (i from 1) of one record. */
export function chunkRecord(id: string, sequence: string, size: number): Chunk[] {
  return chunkStarts(sequence.length, size).map((start, i) => ({ id: `${id}_chunk_${i + 1}`, sequence: sequence.slice(start, start + size) }));
}

/** Base code A=0 C=1 G=2 T=3 per char code below 128; -1 for anything else. */
const BASE = (() => {
  const t = new Int8Array(128).fill(-1);
  t[65] = 0;
  t[67] = 1;
  t[71] = 2;
  t[84] = 3;
  return t;
})();

/** Standard genetic code, codon index 16·b1 + 4·b2 + b3 with bases ordered A, C, G, T. */
const CODE = "KNKNTTTTRSRSIIMI" + "QHQHPPPPRRRRLLLL" + "EDEDAAAAGGGGVVVV" + "*Y*YSSSS*CWCLFLF";
const CODE_BYTES = new TextEncoder().encode(CODE);
const STOP = 0x2a;

const COMPLEMENT: Record<string, string> = { A: "T", C: "G", G: "C", T: "A", a: "t", c: "g", g: "c", t: "a" };
/** {@link COMPLEMENT} per ASCII code (every other code maps to itself). */
const COMPLEMENT_CODES = (() => {
  const t = new Uint8Array(128).map((_, i) => i);
  for (const [from, to] of Object.entries(COMPLEMENT)) t[from.charCodeAt(0)] = to.charCodeAt(0);
  return t;
})();

const decoder = new TextDecoder("latin1");
let scratch = new Uint8Array(256);
let rcScratch = new Uint8Array(256);

/** Reverse complement; characters other than A/C/G/T (either case) are kept as they are. */
export function reverseComplement(sequence: string): string {
  // Through a byte buffer: ~8x faster than appending one character at a time (150-bp reads).
  const n = sequence.length;
  if (rcScratch.length < n) rcScratch = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = sequence.charCodeAt(n - 1 - i);
    if (c >= 128) return reverseComplementText(sequence);
    rcScratch[i] = COMPLEMENT_CODES[c]!;
  }
  return decoder.decode(rcScratch.subarray(0, n));
}

/** {@link reverseComplement} for text with non-ASCII characters, kept as they are. */
function reverseComplementText(sequence: string): string {
  let out = "";
  for (const c of [...sequence].reverse()) out += COMPLEMENT[c] ?? c;
  return out;
}

/** Peptide of one frame, or undefined when it has a stop codon (the frame is dropped then). */
function translateFrame(strand: string, offset: number): string | undefined {
  const len = strand.length;
  if (scratch.length < len / 3 + 1) scratch = new Uint8Array(len);
  let n = 0;
  for (let i = offset; i < len - 2; i += 3) {
    const a = BASE[strand.charCodeAt(i)] ?? -1;
    const b = BASE[strand.charCodeAt(i + 1)] ?? -1;
    const c = BASE[strand.charCodeAt(i + 2)] ?? -1;
    if ((a | b | c) < 0) continue; // not three of A/C/G/T: dropped, as the reference does
    const aa = CODE_BYTES[(a << 4) | (b << 2) | c]!;
    if (aa === STOP) return undefined;
    scratch[n++] = aa;
  }
  return decoder.decode(scratch.subarray(0, n));
}

/** Frames dropped, by reason: a stop codon, or no complete A/C/G/T codon at all (empty peptide). */
export interface DroppedFrames {
  stop: number;
  empty: number;
}

/**
 * The kept frames of one (already chunked) sequence, in the order F1 F2 F3 R1 R2 R3. Upper-cases
 * the sequence first, as VirNucPro does. `sequence` is the record's joined sequence (no line
 * breaks). Dropped frames are counted into `dropped` when given.
 */
export function sixFrames(id: string, sequence: string, dropped?: DroppedFrames): Frame[] {
  const upper = sequence.toUpperCase();
  const out: Frame[] = [];
  for (const [strand, tag] of [
    [upper, "F"],
    [reverseComplement(upper), "R"],
  ] as const) {
    for (let f = 0; f < 3; f++) {
      const peptide = translateFrame(strand, f);
      if (peptide === undefined || peptide.length === 0) {
        if (dropped && peptide === undefined) dropped.stop++;
        else if (dropped) dropped.empty++;
        continue;
      }
      out.push({ id: `${id}${tag}${f + 1}`, peptide, nucleotide: strand.slice(f, f + 3 * peptide.length + 1) });
    }
  }
  return out;
}

/**
 * VirNucPro's whole preparation of one record: chunks of `chunk` bases when given (ids
 * `{id}_chunk_{i}`), then the kept frames of each chunk (ids `{id}_chunk_{i}F1` …).
 */
export function translateRecord(id: string, sequence: string, chunk?: number, dropped?: DroppedFrames): Frame[] {
  if (chunk === undefined) return sixFrames(id, sequence, dropped);
  return chunkRecord(id, sequence, chunk).flatMap((c) => sixFrames(c.id, c.sequence, dropped));
}
