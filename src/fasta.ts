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
  const input = await openInput(source);
  const parser = new FastaParser(input.name, opts);
  for await (const chunk of input.chunks) parser.push(chunk);
  parser.end();
  return parser.recordCount;
}
