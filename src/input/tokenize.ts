/**
 * Byte-level ESM-2 tokenizer for sequence text. Pure: no I/O.
 *
 * Works on `Uint8Array`s through a 256-entry lookup table, never on JS strings, because it runs
 * on every residue of every input (tens of GB for a proteome-scale run). The FASTA reader calls
 * {@link tokenizeLine} once per sequence line; {@link tokenize} is the convenient whole-sequence
 * form for library users and tests.
 *
 * Accepted, per byte of a sequence line:
 * - the 27 single-character residue tokens `LAGVSERTIDPKQNFYMHWCXBUZO.-`, in either case.
 *   fair-esm is case-sensitive (its `encode` raises `KeyError` on lowercase letters, and
 *   `get_idx` would give `<unk>`); we uppercase, because lowercase FASTA is common (soft-masked
 *   regions, some databases) and means the same residue.
 * - the literal, case-sensitive `<mask>`, the only multi-character token, giving `MASK`. It must
 *   sit within one line.
 * - whitespace (space, tab, CR, VT, FF): skipped, so CRLF files and column-formatted sequences
 *   work. fair-esm also drops whitespace around tokens.
 * - `*` as the last non-whitespace character of the record: a stop codon from translated ORFs,
 *   stripped. A `*` anywhere else is an error.
 *
 * Everything else (digits, `J`, `*` mid-sequence, other `<...>` tokens, control bytes,
 * non-ASCII) is an error that names the character, its line and its column. We never emit
 * `<unk>`: a silently unknown residue changes the embedding without telling anyone.
 *
 * Output ids are residue ids only: no BOS/EOS (the packer adds them).
 */
import { FIRST_RESIDUE_ID, MASK, RESIDUES } from "./alphabet.ts";

/** Lookup-table code for bytes that are skipped (whitespace). */
const SKIP = 0xfd;
/** Lookup-table code for `<`, which may start `<mask>`. */
const LT = 0xfc;
/** Lookup-table code for `*`, a stop codon when last in the record. */
const STAR = 0xfb;
/** Lookup-table code for bytes that are never valid in a sequence. */
const INVALID = 0xff;

/**
 * Byte to token id (values below 33), or one of the internal codes above (values ≥ 0xfb).
 * Exported for the reader's benefit and for tests; treat it as read-only.
 */
export const BYTE_TO_ID: Uint8Array = (() => {
  const table = new Uint8Array(256).fill(INVALID);
  for (let i = 0; i < RESIDUES.length; i++) {
    const id = FIRST_RESIDUE_ID + i;
    const upper = RESIDUES.charCodeAt(i);
    table[upper] = id;
    const lower = RESIDUES[i]!.toLowerCase().charCodeAt(0);
    table[lower] = id;
  }
  for (const ws of [0x20, 0x09, 0x0d, 0x0b, 0x0c]) table[ws] = SKIP;
  table[0x3c] = LT;
  table[0x2a] = STAR;
  return table;
})();

/** `<mask>` as bytes. */
const MASK_BYTES = new TextEncoder().encode("<mask>");

/** Why a byte was rejected. */
export type TokenizeErrorReason = "invalid" | "stop-not-last" | "bad-special";

/**
 * Mutable per-record state carried between lines of one record. Reuse one instance per reader
 * (call {@link LineState.reset} at each record) so the hot path allocates nothing.
 */
export class LineState {
  /** `<mask>` tokens seen so far in this record. */
  masks = 0;
  /** Line-relative byte offset of a trailing `*` on the last line that had one, else -1. */
  stopOffset = -1;
  /** After a failed call: byte offset (into the source array) of the offending byte. */
  errorOffset = -1;
  /** After a failed call: why. */
  errorReason: TokenizeErrorReason = "invalid";

  reset(): void {
    this.masks = 0;
    this.stopOffset = -1;
    this.errorOffset = -1;
  }
}

/**
 * Tokenize one sequence line, `src[start, end)` without its `\n`, appending residue ids to
 * `dst` from `dstPos`. `dst` must have room for `end - start` more ids (one id per byte at most).
 *
 * `view`, a DataView over exactly `src` (same buffer, offset and length), lets it read four bytes
 * at a time (about twice as fast on residues).
 *
 * Returns the new write position, or -1 on error, with `state.errorOffset` / `errorReason` set.
 * A `*` followed only by whitespace ends the line and sets `state.stopOffset` (line-relative);
 * the caller must reject any residue on a later line of the same record (see
 * {@link LineState.stopOffset}) because then the `*` was not the record's last residue.
 */
export function tokenizeLine(
  src: Uint8Array,
  start: number,
  end: number,
  dst: Uint8Array,
  dstPos: number,
  state: LineState,
  view?: DataView,
): number {
  const table = BYTE_TO_ID;
  let p = dstPos;
  let i = start;
  if (view !== undefined) {
    // Four bytes per load while all four are plain residues (the common case); anything else
    // (whitespace, '<', '*', an invalid byte) drops to the byte loop below at that word.
    for (; i + 4 <= end; i += 4) {
      const w = view.getUint32(i, true);
      const a = table[w & 0xff]!;
      const b = table[(w >>> 8) & 0xff]!;
      const c = table[(w >>> 16) & 0xff]!;
      const d = table[w >>> 24]!;
      if ((a | b | c | d) >= 0x40) break;
      dst[p] = a;
      dst[p + 1] = b;
      dst[p + 2] = c;
      dst[p + 3] = d;
      p += 4;
    }
  }
  for (; i < end; i++) {
    const id = table[src[i]!]!;
    if (id < 0x40) {
      dst[p++] = id;
      continue;
    }
    if (id === SKIP) continue;
    if (id === LT && isMaskAt(src, i, end)) {
      dst[p++] = MASK;
      state.masks++;
      i += MASK_BYTES.length - 1;
      continue;
    }
    if (id === STAR) {
      let j = i + 1;
      while (j < end && table[src[j]!] === SKIP) j++;
      if (j === end) {
        state.stopOffset = i - start;
        return p;
      }
      state.errorOffset = i;
      state.errorReason = "stop-not-last";
      return -1;
    }
    state.errorOffset = i;
    state.errorReason = id === LT ? "bad-special" : "invalid";
    return -1;
  }
  return p;
}

function isMaskAt(src: Uint8Array, i: number, end: number): boolean {
  if (i + MASK_BYTES.length > end) return false;
  for (let k = 1; k < MASK_BYTES.length; k++) if (src[i + k] !== MASK_BYTES[k]) return false;
  return true;
}

/** Printable description of one byte for error messages: `'J'`, `NUL byte`, `byte 0xC3`. */
export function describeByte(byte: number): string {
  if (byte === 0) return "NUL byte (0x00)";
  if (byte >= 0x21 && byte <= 0x7e) return `'${String.fromCharCode(byte)}'`;
  return `byte 0x${byte.toString(16).toUpperCase().padStart(2, "0")}`;
}

/** A one-line explanation and a fix hint for a rejected byte. */
export function explainRejected(byte: number, reason: TokenizeErrorReason): { message: string; hint: string } {
  const ch = describeByte(byte);
  if (reason === "stop-not-last") {
    return {
      message: `stop codon '*' before the end of the sequence`,
      hint: "A '*' is only accepted as the record's last residue (and is then dropped). Split the record at the stop codon, or remove the '*'.",
    };
  }
  if (reason === "bad-special") {
    return {
      message: `'<' that does not start '<mask>'`,
      hint: "The only special token accepted inside a sequence is '<mask>' (lowercase, on one line).",
    };
  }
  if (byte === 0) {
    return {
      message: `invalid character ${ch}: this looks like binary data, not FASTA`,
      hint: "Pass a FASTA text file (optionally gzip-compressed).",
    };
  }
  if (byte >= 0x80) {
    return {
      message: `invalid character ${ch} (non-ASCII)`,
      hint: "Sequences must be plain ASCII. Check the file's encoding (e.g. with `file FILE`) and remove non-ASCII characters.",
    };
  }
  if (byte === 0x4a || byte === 0x6a) {
    return {
      message: `invalid character ${ch}`,
      hint: "J (Leu/Ile) is not in the ESM alphabet. Replace it with X (or L/I if known).",
    };
  }
  if (byte >= 0x30 && byte <= 0x39) {
    return {
      message: `invalid character ${ch} (digit)`,
      hint: "Sequences must not contain digits (GenBank-style numbered lines are not FASTA). Strip them, e.g. `sed '/^>/!s/[0-9 ]//g'`.",
    };
  }
  return {
    message: `invalid character ${ch}`,
    hint: `Residues must be one of ${RESIDUES} (either case) or '<mask>'; whitespace is ignored.`,
  };
}

/** A rejected character in {@link tokenize}'s input, with a 1-based line and byte column. */
export class TokenizeError extends Error {
  override readonly name = "TokenizeError";
  constructor(
    /** The offending character as text (one byte; `\u0000` for NUL). */
    readonly char: string,
    /** 1-based line within the input (lines split at `\n`). */
    readonly line: number,
    /** 1-based byte column within that line. */
    readonly column: number,
    readonly reason: TokenizeErrorReason,
    /** How to fix it. */
    readonly hint: string,
    message: string,
  ) {
    super(message);
  }
}

/** Result of tokenizing one record's sequence. */
export interface Tokenized {
  /** Residue token ids, no BOS/EOS. */
  tokens: Uint8Array;
  /** How many of them are `<mask>`. */
  masks: number;
}

const encoder = new TextEncoder();

/**
 * Tokenize a whole sequence (one record's sequence text, possibly spanning lines). Throws
 * {@link TokenizeError} on a rejected character. Does not reject empty sequences; the reader
 * does, because only it knows the record.
 */
export function tokenize(seq: string | Uint8Array): Tokenized {
  const src = typeof seq === "string" ? encoder.encode(seq) : seq;
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const dst = new Uint8Array(src.length);
  const state = new LineState();
  let pos = 0;
  let lineStart = 0;
  let line = 1;
  let stopLine = 0;
  let stopColumn = 0;
  while (lineStart <= src.length) {
    let lineEnd = src.indexOf(0x0a, lineStart);
    if (lineEnd < 0) lineEnd = src.length;
    const before = pos;
    state.stopOffset = -1;
    pos = tokenizeLine(src, lineStart, lineEnd, dst, pos, state, view);
    if (pos < 0 || (stopLine > 0 && (pos > before || state.stopOffset >= 0))) {
      const [errLine, errColumn, reason] =
        pos < 0
          ? [line, state.errorOffset - lineStart + 1, state.errorReason]
          : [stopLine, stopColumn, "stop-not-last" as const];
      const byte = pos < 0 ? src[state.errorOffset]! : 0x2a;
      const { message, hint } = explainRejected(byte, reason);
      throw new TokenizeError(
        String.fromCharCode(byte),
        errLine,
        errColumn,
        reason,
        hint,
        `line ${errLine}, column ${errColumn}: ${message}`,
      );
    }
    if (state.stopOffset >= 0) {
      stopLine = line;
      stopColumn = state.stopOffset + 1;
    }
    lineStart = lineEnd + 1;
    line++;
  }
  return { tokens: dst.slice(0, pos), masks: state.masks };
}
