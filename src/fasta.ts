/**
 * Streaming FASTA reader: path, path.gz (detected by magic bytes) or "-" for stdin, to
 * tokenized records. Never holds the whole file: reads chunks of a few hundred KiB, parses and
 * tokenizes them as bytes (`fasta-parser.ts`), and yields records as they complete.
 *
 * Throughput on 50-residue records is dominated by per-record costs (two header strings, one
 * record object, one duplicate-id probe), so {@link readFastaBatches} yields a chunk's records
 * as one array for callers that want to skip the per-record `await`.
 */
import { FastaParser, type FastaParserOptions, type FastaRecord } from "./fasta-parser.ts";
import { openInput } from "./input-stream.ts";

export type { DuplicateIdPolicy, FastaRecord } from "./fasta-parser.ts";

export interface ReadFastaOptions extends FastaParserOptions {}

/**
 * Records of `source` in file order, each completed record as soon as its chunk is parsed.
 * Throws `InputError` (file:line, record id, hint) on malformed or unreadable input; records
 * before the error have already been yielded.
 */
export async function* readFastaBatches(source: string, opts: ReadFastaOptions = {}): AsyncGenerator<FastaRecord[]> {
  const input = await openInput(source);
  const parser = new FastaParser(input.name, opts);
  for await (const chunk of input.chunks) {
    const records = parser.push(chunk);
    if (records.length > 0) yield records;
  }
  const last = parser.end();
  if (last.length > 0) yield last;
}

/** Records of `source` one at a time; see {@link readFastaBatches}. */
export async function* readFasta(source: string, opts: ReadFastaOptions = {}): AsyncGenerator<FastaRecord> {
  for await (const batch of readFastaBatches(source, opts)) yield* batch;
}
