/**
 * How sequence lines are read for each model family, beside the protein tokenizer (tokenize.ts),
 * and the checks that keep each model from the other's alphabet. Pure: the parser
 * (fasta-parser.ts) calls these per line and per record.
 *
 * DNABERT-S (nucleotide reading): each line's letters are upper-cased (VirNucPro upper-cases every
 * record before DNABERT-S sees it; its tokenizer would make a lowercase base [UNK]) and collected
 * for the whole record, whitespace skipped, so that BPE merges span line breaks (bpe.ts). The
 * IUPAC codes A C G T U R Y S W K M B D H V N are accepted; only A/C/G/T are in the vocabulary, so
 * every other code (N above all) becomes one [UNK] each, counted, or refused under
 * `--unknown error`. A protein-only letter (E F I J L O P Q X Z) or a stop `*` is refused, naming
 * file:line:column and the record, unless `--alphabet-check off` (then it is one more [UNK]). Gaps,
 * digits and other bytes are always refused.
 *
 * ESM-2 (protein reading): every letter is a valid residue, so input that is nucleotides would be
 * embedded as a nonsense protein. The first records of each input are sampled; if at least
 * {@link NUCLEOTIDE_SHARE} of their letters are A/C/G/T/U/N, the input is refused before any
 * worker starts (`--alphabet-check off` skips the check).
 */
import { InputError, type InputLocation } from "../errors.ts";
import { IUPAC_NUCLEOTIDES, notABase } from "./nucleotide-fasta.ts";
import { BYTE_TO_ID, describeByte } from "./tokenize.ts";

/** What the reader is told, beyond the FASTA rules: the family's tokenizer and the checks. */
export interface ReadingOptions {
  /** DNABERT-S: the BPE over each record's bases (a bpe.ts tokenizer); unset: ESM-2's alphabet. */
  bpe?: { encode(seq: Uint8Array): { ids: Uint16Array; unknown: number } };
  /** Threads a reader may start for `bpe` (ingest.ts makes the pool, bpe-pool.ts); unset: none. */
  bpeThreads?: { tokenizer: string; threads: number };
  /** Refuse the other family's alphabet (`--alphabet-check on`, the default). */
  alphabetCheck?: boolean;
  /** `error`: an input character that becomes [UNK] is refused at its line and column. */
  unknown?: "count" | "error";
  /** Called once, when the first records' alphabet has been checked (or the input ended). */
  onSampled?: () => void;
}

/** Records, or letters, after which the sample is decided (whichever comes first). */
export const SAMPLE_RECORDS = 1000;
export const SAMPLE_LETTERS = 100_000;
/** Fewer letters than this decide nothing (a short peptide may be all A/C/G/T). */
export const SAMPLE_MIN_LETTERS = 50;
/** The share of A/C/G/T/U/N letters at which protein input is taken for nucleotides. */
export const NUCLEOTIDE_SHARE = 0.9;

const OFF_HINT = "pass --alphabet-check off to embed it anyway";

/** Byte classes of the nucleotide reading: 0 refused, 1 A/C/G/T, 2 other IUPAC ([UNK]), 3 protein-only or `*`, 4 whitespace. */
const NUC_CLASS = (() => {
  const t = new Uint8Array(256);
  for (const c of IUPAC_NUCLEOTIDES) t[c.charCodeAt(0)] = t[c.toLowerCase().charCodeAt(0)] = "ACGT".includes(c) ? 1 : 2;
  for (const c of "EFIJLOPQXZ") t[c.charCodeAt(0)] = t[c.toLowerCase().charCodeAt(0)] = 3;
  t[0x2a] = 3;
  for (const ws of [0x20, 0x09, 0x0d, 0x0b, 0x0c]) t[ws] = 4;
  return t;
})();

/**
 * One nucleotide line, `src[start, end)`, its letters upper-cased into `dst` from `dstPos`
 * (room for `end - start` more); returns the new end. Throws a located InputError for a byte
 * the options refuse; `where` gives file, line and record.
 */
export function readNucleotideLine(src: Uint8Array, start: number, end: number, dst: Uint8Array, dstPos: number, opts: ReadingOptions, where: () => InputLocation): number {
  const check = opts.alphabetCheck !== false;
  const unkError = opts.unknown === "error";
  let p = dstPos;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    const k = NUC_CLASS[b]!;
    if (k === 1 || (k === 2 && !unkError)) {
      dst[p++] = b & 0xdf; // upper case
      continue;
    }
    if (k === 4) continue;
    if (k === 3 && !check && !unkError) {
      dst[p++] = b === 0x2a ? b : b & 0xdf;
      continue;
    }
    throw refusedBase(b, k, i - start + 1, check, where());
  }
  return p;
}

/** Why byte `b` (class `k`) at `column` is refused. */
function refusedBase(b: number, k: number, column: number, check: boolean, at: InputLocation): InputError {
  const ch = describeByte(b);
  if (k === 3 && check) {
    return new InputError(
      `${ch} at column ${column} is a protein letter, not a nucleotide code: DNABERT-S reads DNA`,
      at,
      `Give this model nucleotide FASTA (IUPAC ${IUPAC_NUCLEOTIDES}, either case), and protein FASTA to an ESM-2 model (--model esm2_t33_650M_UR50D); to make proteins of reads, use \`embed translate\`. If the letter is meant, ${OFF_HINT} (it becomes [UNK]).`,
    );
  }
  if (k === 2 || k === 3) {
    return new InputError(
      `${ch} at column ${column} is not A/C/G/T: DNABERT-S's tokenizer makes it [UNK] (--unknown error)`,
      at,
      "Remove or split the record, or pass --unknown count (the default) to embed it with [UNK] tokens, counted in the summary and the manifest.",
    );
  }
  return notABase(b, column, at);
}

/** ESM-2 token ids that are also nucleotide letters: A C G T U N. */
const NUCLEOTIDE_IDS = (() => {
  const t = new Uint8Array(256);
  for (const c of "ACGTUN") t[BYTE_TO_ID[c.charCodeAt(0)]!] = 1;
  return t;
})();

/**
 * The first records of one input, sampled for the other family's alphabet: for ESM-2, the share
 * of A/C/G/T/U/N letters (a nucleotide FASTA given to a protein model); for DNABERT-S only the
 * count (its protein letters are refused where they stand). `onSampled` fires once decided.
 */
export class AlphabetSample {
  private records = 0;
  private letters = 0;
  private nucleotides = 0;
  private decided = false;
  /** The first record: header line and id-index entry. */
  private firstLine = 0;
  private firstEntry = -1;

  constructor(
    private readonly file: string,
    private readonly protein: boolean,
    private readonly opts: ReadingOptions,
    private readonly idOf: (entry: number) => string,
  ) {
    if (opts.alphabetCheck === false) this.decide();
  }

  /** ESM-2 tokens `ids[start, end)` of the open record. */
  count(ids: Uint8Array, start: number, end: number): void {
    if (this.decided || !this.protein) return;
    for (let i = start; i < end; i++) this.nucleotides += NUCLEOTIDE_IDS[ids[i]!]!;
    this.letters += end - start;
  }

  /** A record (header line `line`, id entry `entry`) is complete. */
  record(line: number, entry: number): void {
    if (this.decided) return;
    if (this.firstEntry < 0) [this.firstLine, this.firstEntry] = [line, entry];
    if (++this.records >= SAMPLE_RECORDS || this.letters >= SAMPLE_LETTERS) this.decide();
  }

  /** The input ended: decide on what there was. */
  end(): void {
    if (!this.decided) this.decide();
  }

  private decide(): void {
    this.decided = true;
    const share = this.letters ? this.nucleotides / this.letters : 0;
    if (this.protein && this.letters >= SAMPLE_MIN_LETTERS && share >= NUCLEOTIDE_SHARE) {
      throw new InputError(
        `this looks like nucleotide FASTA, not protein: ${(share * 100).toFixed(1)}% of the ${this.letters} letters of the first ${this.records} record(s) are A/C/G/T/U/N, and ESM-2 reads them as amino acids`,
        { file: this.file, line: this.firstLine, recordId: this.idOf(this.firstEntry) },
        `Embed DNA with a nucleotide model (--model DNABERT-S), or translate it first (\`embed translate\`, VirNucPro's six frames) and embed the peptides; if these really are proteins, ${OFF_HINT}.`,
      );
    }
    this.opts.onSampled?.();
  }
}
