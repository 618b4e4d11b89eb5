/**
 * FASTA bytes to lines, for both parsers (`fasta-parser.ts`: protein tokens or DNABERT-S bases;
 * `nucleotide-fasta.ts`: `embed translate`). Pure: it is fed chunks and hands each non-empty line
 * to a {@link LineHandler}.
 *
 * Line rules shared by every FASTA input: LF or CRLF line ends (a CRLF line's CR is left for the
 * handler, whose whitespace rules skip it), a last line without newline, a UTF-8 BOM skipped.
 * CR-only line ends (classic Mac) are refused: they make one line of the whole file, so line 1 is
 * checked for a CR with more after it, and so is a first line still without a newline after
 * {@link CR_CHECK} bytes, rather than holding the file in memory.
 *
 * Memory: one partial line carried between chunks (a buffer that grows to the longest line split
 * across chunks and is reused).
 */
import { crOnlyLineEnds } from "./fasta-errors.ts";

/** Receives the lines; empty lines are skipped (their numbers still count). */
export interface LineHandler {
  /** Line `lineNo` (1-based) is `buf[start, end)`, without its `\n`; valid during the call only. */
  line(buf: Uint8Array, start: number, end: number, lineNo: number): void;
}

const NL = 0x0a;
const CR = 0x0d;
/** Bytes of a first line without a newline after which it is checked for CR-only line ends. */
const CR_CHECK = 1 << 16;

export class FastaLines {
  /** Line number of the next line (1-based). */
  private lineNo = 1;
  /** Byte offset in the input of the next line. */
  private nextLineAt = 0;
  /** Byte offset in the input of the line being handled (for error offsets). */
  lineAt = 0;
  /** Bytes pushed so far. */
  bytes = 0;
  /** Partial line carried over from the previous chunk: `carry[0, carryLen)`. */
  private carry = new Uint8Array(1 << 12);
  private carryLen = 0;
  private atStart = true;

  constructor(
    private readonly file: string,
    private readonly handler: LineHandler,
  ) {}

  /** Feed the next chunk: its complete lines go to the handler, the rest is carried. */
  push(chunk: Uint8Array): void {
    let pos = 0;
    this.bytes += chunk.length;
    if (this.atStart && chunk.length > 0) {
      this.atStart = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) pos = this.nextLineAt = 3;
    }
    if (this.carryLen > 0) {
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) {
        this.appendCarry(chunk, pos, chunk.length);
        if (this.lineNo === 1 && this.carryLen >= CR_CHECK) this.checkCrOnly(this.carry, 0, this.carryLen);
        return;
      }
      this.appendCarry(chunk, pos, nl);
      this.line(this.carry, 0, this.carryLen);
      this.carryLen = 0;
      pos = nl + 1;
    }
    for (;;) {
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) break;
      this.line(chunk, pos, nl);
      pos = nl + 1;
    }
    if (pos < chunk.length) this.appendCarry(chunk, pos, chunk.length);
  }

  /** End of input: a last line without newline goes to the handler. */
  end(): void {
    if (this.carryLen === 0) return;
    const len = this.carryLen;
    this.carryLen = 0;
    this.line(this.carry, 0, len);
  }

  private line(buf: Uint8Array, start: number, end: number): void {
    const lineNo = this.lineNo++;
    this.lineAt = this.nextLineAt;
    this.nextLineAt += end - start + 1;
    if (start === end) return;
    if (lineNo === 1) this.checkCrOnly(buf, start, end);
    this.handler.line(buf, start, end, lineNo);
  }

  private appendCarry(src: Uint8Array, start: number, end: number): void {
    const need = this.carryLen + (end - start);
    if (need > this.carry.length) {
      const next = new Uint8Array(Math.max(need, this.carry.length * 2));
      next.set(this.carry.subarray(0, this.carryLen));
      this.carry = next;
    }
    this.carry.set(src.subarray(start, end), this.carryLen);
    this.carryLen = need;
  }

  /** Line 1 `buf[start, end)` holds a CR with more after it: the lines end in CR alone. */
  private checkCrOnly(buf: Uint8Array, start: number, end: number): void {
    const cr = buf.subarray(start, end).indexOf(CR);
    if (cr < 0 || start + cr >= end - 1) return;
    throw crOnlyLineEnds(this.file);
  }
}
