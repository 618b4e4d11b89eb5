/**
 * Streaming FASTA reader: path, path.gz (detected by magic bytes) or "-" for stdin, to
 * tokenized records. Never holds the whole file: reads chunks of a few hundred KiB, parses and
 * tokenizes them as bytes (`fasta-parser.ts`), and hands each record to a sink as it completes.
 */
import { FastaParser, type FastaParserOptions } from "./fasta-parser.ts";
import { openInput } from "./input-stream.ts";

/**
 * Read `source` into `opts.sink` (e.g. a RecordTable's parserOptions()): no record objects or
 * id strings are made. Returns the number of records read. Throws `InputError` (file:line,
 * record id, hint) on malformed or unreadable input; records from chunks before the failing one
 * have already reached the sink.
 */
export async function readFastaInto(source: string, opts: FastaParserOptions): Promise<number> {
  return (await readFastaChecked(source, opts)).records;
}

/** What was read from one input: for the manifest's input checksums. */
export interface InputDigest {
  /** The path as given, or `<stdin>`. */
  input: string;
  gzip: boolean;
  records: number;
  /** Bytes of FASTA text (after gunzip). */
  bytes: number;
  /** CRC-32 of those bytes, 8 hex digits (`gzip -dc FILE | crc32 /dev/stdin` gives the same). */
  crc32: string;
}

/** {@link readFastaInto}, also returning the input's size and CRC-32 (chained over the chunks:
 * ~1 ms per 6 MiB, against ~5 ms for sha256 on one core). */
export async function readFastaChecked(source: string, opts: FastaParserOptions): Promise<InputDigest> {
  const input = await openInput(source);
  const parser = new FastaParser(input.name, opts);
  let crc = 0;
  let bytes = 0;
  for await (const chunk of input.chunks) {
    crc = Bun.hash.crc32(chunk, crc);
    bytes += chunk.length;
    parser.push(chunk);
    await parser.settle();
  }
  parser.end();
  await parser.settle(true);
  return { input: input.name, gzip: input.gzip, records: parser.recordCount, bytes, crc32: (crc >>> 0).toString(16).padStart(8, "0") };
}
