/**
 * Push parser from nucleotide FASTA bytes to (id, sequence) records, for `embed translate`. Pure:
 * it is fed chunks (from `input-stream.ts`, like the protein reader in `fasta.ts`) and calls a
 * handler per record.
 *
 * Why not `fasta-parser.ts`: that parser tokenizes each line with the ESM-2 protein alphabet in the
 * same pass (it accepts E, F, L, P, Q, `*`, `<mask>`… and yields token ids, not letters), so
 * nucleotide text would be checked against the wrong alphabet. The line rules are the same:
 * - `>` starts a header; the id is the first whitespace-delimited word after it (leading spaces
 *   skipped); the description is ignored. Ids must be valid UTF-8.
 * - LF or CRLF line ends, blank lines anywhere, a last line without newline, a UTF-8 BOM, `;`
 *   comment lines. CR-only line ends are refused with a conversion hint.
 * - sequence lines are joined; spaces, tabs and CRs inside them are skipped (as Biopython does).
 *
 * Accepted sequence characters: the IUPAC nucleotide codes A C G T U R Y S W K M B D H V N, either
 * case (translation upper-cases them and drops every codon that is not three of A/C/G/T, as
 * VirNucPro does). Anything else is an error naming file:line:column and the record: an amino-acid
 * letter says the input looks like protein, a `-` or `.` says alignment gaps. An empty record is an
 * error too: VirNucPro would silently give it no frames.
 *
 * Lines (BOM, partial lines, CR-only check) come from `fasta-lines.ts`, as for the protein parser.
 *
 * Memory: one partial line carried between chunks and one record's bases (a buffer that grows to
 * the longest record and is reused).
 */
import { InputError, type InputLocation } from "../errors.ts";
import { FastaLines, type LineHandler } from "./fasta-lines.ts";
import { describeByte } from "./tokenize.ts";

/** Called per record: its id, its joined sequence (as written, case kept) and its header line. */
export type NucleotideRecordHandler = (id: string, sequence: string, line: number) => void;

/** The IUPAC nucleotide codes (either case is accepted). */
export const IUPAC_NUCLEOTIDES = "ACGTURYSWKMBDHVN";
/** Letters of the ESM-2 protein alphabet that are no nucleotide code, and the stop `*`. */
const PROTEIN_ONLY = "EFIJLOPQXZ*";

const CR = 0x0d;
const GT = 0x3e;
const SEMI = 0x3b;
/** Byte classes: 0 invalid, 1 a base (kept), 2 whitespace (skipped). */
const CLASS = (() => {
  const t = new Uint8Array(256);
  for (const c of IUPAC_NUCLEOTIDES) {
    t[c.charCodeAt(0)] = 1;
    t[c.toLowerCase().charCodeAt(0)] = 1;
  }
  for (const ws of [0x20, 0x09, CR, 0x0b, 0x0c]) t[ws] = 2;
  return t;
})();

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8", { fatal: true });

function isSpace(b: number): boolean {
  return CLASS[b] === 2;
}

export class NucleotideFastaParser implements LineHandler {
  private readonly lines: FastaLines;
  /** The open record: its id, header line and bases so far (`seq[0, seqLen)`). */
  private id: string | undefined;
  private idLine = 0;
  private seq = new Uint8Array(1 << 12);
  private seqLen = 0;
  private records = 0;

  constructor(
    private readonly file: string,
    private readonly onRecord: NucleotideRecordHandler,
  ) {
    this.lines = new FastaLines(file, this);
  }

  /** Number of records completed so far. */
  get recordCount(): number {
    return this.records;
  }

  /** Feed the next chunk; the records it completes go to the handler. */
  push(chunk: Uint8Array): void {
    this.lines.push(chunk);
  }

  /** Signal end of input: the last record goes to the handler. Throws if there was none. */
  end(): void {
    this.lines.end();
    this.finishRecord();
    if (this.records > 0) return;
    throw new InputError(
      this.lines.bytes === 0 ? `${this.file} is empty (0 bytes): no records` : `${this.file}: no FASTA records found (only blank lines or ';' comments)`,
      undefined,
      "Pass a nucleotide FASTA file: '>id description' lines, each followed by sequence lines.",
    );
  }

  /** One non-empty line, `buf[start, end)` without its `\n` ({@link LineHandler}: called by {@link lines} only). */
  line(buf: Uint8Array, start: number, end: number, lineNo: number): void {
    const first = buf[start]!;
    if (first === GT) return this.header(buf, start, end, lineNo);
    if (first === SEMI) return;
    if (this.id === undefined) {
      let i = start;
      while (i < end && isSpace(buf[i]!)) i++;
      if (i === end) return; // blank line before the first header
      throw new InputError(
        "sequence data before the first '>' header (missing header)",
        { file: this.file, line: lineNo },
        "Every record must start with a '>id' line. Is this a FASTA file? Add a header line above this one.",
      );
    }
    if (this.seqLen + (end - start) > this.seq.length) {
      const next = new Uint8Array(Math.max(2 * this.seq.length, this.seqLen + (end - start)));
      next.set(this.seq.subarray(0, this.seqLen));
      this.seq = next;
    }
    const seq = this.seq;
    let n = this.seqLen;
    for (let i = start; i < end; i++) {
      const b = buf[i]!;
      const k = CLASS[b]!;
      if (k === 1) seq[n++] = b;
      else if (k === 0) this.invalid(b, i - start + 1, lineNo);
    }
    this.seqLen = n;
  }

  private header(buf: Uint8Array, start: number, end: number, lineNo: number): void {
    this.finishRecord();
    let idStart = start + 1;
    while (idStart < end && isSpace(buf[idStart]!)) idStart++;
    let idEnd = idStart;
    while (idEnd < end && !isSpace(buf[idEnd]!)) idEnd++;
    if (idStart === idEnd) {
      throw new InputError("empty header: '>' with no id", { file: this.file, line: lineNo }, "Give the record an id right after '>', e.g. '>read1 optional description'.");
    }
    try {
      this.id = utf8.decode(buf.subarray(idStart, idEnd));
    } catch {
      throw new InputError(
        "id is not valid UTF-8",
        { file: this.file, line: lineNo, recordId: latin1.decode(buf.subarray(idStart, idEnd)) },
        `Ids are read as UTF-8 text. If the file is Latin-1, convert it: \`iconv -f LATIN1 -t UTF-8 ${this.file === "<stdin>" ? "FILE" : this.file} > converted.fasta\`.`,
      );
    }
    this.idLine = lineNo;
    this.seqLen = 0;
  }

  private finishRecord(): void {
    const id = this.id;
    if (id === undefined) return;
    this.id = undefined;
    if (this.seqLen === 0) {
      throw new InputError("empty sequence", { file: this.file, line: this.idLine, recordId: id }, "Every record needs at least one base. Remove the record or add its sequence.");
    }
    this.records++;
    this.onRecord(id, latin1.decode(this.seq.subarray(0, this.seqLen)), this.idLine);
  }

  /** Byte `b` at `column` of line `lineNo` is not a nucleotide: say what it looks like. */
  private invalid(b: number, column: number, lineNo: number): never {
    const where = { file: this.file, line: lineNo, recordId: this.id };
    const ch = describeByte(b);
    const upper = b >= 0x61 && b <= 0x7a ? b - 0x20 : b;
    if (PROTEIN_ONLY.includes(String.fromCharCode(upper))) {
      throw new InputError(
        `${ch} at column ${column} is not a nucleotide code but an amino-acid letter: this looks like a protein sequence`,
        where,
        `embed translate reads nucleotide FASTA (IUPAC ${IUPAC_NUCLEOTIDES}, either case). Protein FASTA goes to \`embed run\` as it is. For an unknown base, write N.`,
      );
    }
    throw notABase(b, column, where);
  }
}

/** Byte `b` at `column` is neither a base nor a letter of another alphabet: a gap, a digit or other (also alphabet-guard.ts's). */
export function notABase(b: number, column: number, at: InputLocation): InputError {
  const ch = describeByte(b);
  if (b === 0x2d || b === 0x2e) return new InputError(`alignment gap ${ch} at column ${column}`, at, "Gaps are not bases; remove them first, e.g. `sed '/^>/!s/[-.]//g' IN > OUT`.");
  if (b >= 0x30 && b <= 0x39) return new InputError(`invalid character ${ch} (digit) at column ${column}`, at, "Sequences must not contain digits (GenBank-style numbered lines are not FASTA). Strip them, e.g. `sed '/^>/!s/[0-9 ]//g'`.");
  return new InputError(`invalid character ${ch} at column ${column}`, at, `Bases must be IUPAC nucleotide codes (${IUPAC_NUCLEOTIDES}, either case); whitespace is ignored.`);
}
