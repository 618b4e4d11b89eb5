/**
 * What the FASTA parser (fasta-parser.ts) says when it refuses input: each error names what is
 * wrong, where (file:line, record id, column or byte offset) and how to fix it. Pure: builds
 * {@link InputError}s, reads nothing.
 */
import { InputError } from "../errors.ts";

/** `FILE` in a suggested shell command when the input is stdin. */
const shellName = (file: string) => (file === "<stdin>" ? "FILE" : file);

/** The input ended without a record: empty (0 bytes) or only blank lines and comments. */
export function noRecords(file: string, bytes: number): InputError {
  if (bytes === 0) {
    return new InputError(
      `${file} is empty (0 bytes): no records`,
      undefined,
      "Pass a FASTA file: '>id description' lines, each followed by sequence lines. An empty file often means the command that wrote it failed.",
    );
  }
  return new InputError(
    `${file}: no FASTA records found (only blank lines or ';' comments)`,
    undefined,
    "A FASTA file has one or more records, each a '>id description' line followed by sequence lines.",
  );
}

export function missingHeader(file: string, line: number): InputError {
  return new InputError(
    "sequence data before the first '>' header (missing header)",
    { file, line },
    "Every record must start with a '>id' line. Is this a FASTA file? Add a header line above this one.",
  );
}

export function crOnlyLineEnds(file: string): InputError {
  return new InputError(
    "CR-only line endings (classic Mac): the whole file reads as one line",
    { file, line: 1 },
    `Convert the line endings first: \`tr '\\r' '\\n' < ${shellName(file)} > converted.fasta\` (or \`mac2unix FILE\`).`,
  );
}

export function emptyHeader(file: string, line: number): InputError {
  return new InputError("empty header: '>' with no id", { file, line }, "Give the record an id right after '>', e.g. '>seq1 optional description'.");
}

export function emptySequence(file: string, line: number, recordId: string): InputError {
  return new InputError(
    "empty sequence",
    { file, line, recordId },
    "Every record needs at least one residue. Remove the record or add its sequence.",
  );
}

/**
 * The id `rawId` (its bytes as read, non-printable ones escaped) of header line `line` holds a
 * byte that is not UTF-8: `byte` at 1-based `column` of the line, `offset` bytes into the input.
 */
export function invalidUtf8Id(file: string, line: number, rawId: string, byte: number, column: number, offset: number): InputError {
  const hex = `0x${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  return new InputError(
    `id is not valid UTF-8: byte ${hex} at column ${column} (byte offset ${offset} of the input)`,
    { file, line, recordId: rawId },
    "Ids are read as UTF-8 text (ids.txt is UTF-8). If the file is Latin-1 or Windows-1252, convert it: " +
      `\`iconv -f LATIN1 -t UTF-8 ${shellName(file)} > converted.fasta\`.`,
  );
}

/** Id `id` on line `line` was first seen at `firstLine`, of input `earlierInput` when not this one. */
export function duplicateId(file: string, line: number, id: string, firstLine: number, earlierInput?: string): InputError {
  if (earlierInput !== undefined) {
    return new InputError(
      `duplicate id "${id}" (first seen at ${earlierInput}:${firstLine})`,
      { file, line, recordId: id },
      "make ids unique, or pass --duplicate-ids rename to keep both as ID, ID_2, ...",
    );
  }
  return new InputError(
    `duplicate id "${id}" (first seen at line ${firstLine})`,
    { file, line, recordId: id },
    "Ids must be unique: they key the output. Fix the input, or pass --duplicate-ids rename to append _2, _3, ...",
  );
}
