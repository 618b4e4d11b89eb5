/**
 * Reading the inputs: every FASTA (path, .gz or stdin) streamed through the parser and tokenizer
 * into one RecordTable, with duplicate ids checked within and across files and truncation counted.
 * `reading` says the model family's tokenizer (ESM-2's alphabet, or DNABERT-S's BPE) and its
 * checks (alphabet-guard.ts); `reading.onSampled` fires once the first input's first records
 * passed the alphabet check, so that a run starts its workers only then.
 */
import type { RunConfig } from "../config.ts";
import type { ReadingOptions } from "./alphabet-guard.ts";
import { InputError } from "../errors.ts";
import { readFastaChecked } from "./fasta.ts";
import { FastaParser } from "./fasta-parser.ts";
import { log } from "../log.ts";
import { RecordTable } from "./records.ts";
import { BpePool } from "./bpe-pool.ts";

/** Read every input into a record table (streaming; tokens and ids kept compactly). */
export async function ingest(cfg: Pick<RunConfig, "inputs" | "truncate" | "duplicateIds">, reading: ReadingOptions = {}): Promise<RecordTable> {
  // The parsers hand records straight to the table and share its id index, which catches a
  // repeated id within a file and across files in one probe.
  const table = new RecordTable(cfg.truncate, cfg.duplicateIds, true, reading.bpe ? 2 : 1);
  const opts = table.parserOptions();
  // DNABERT-S's BPE on more threads (started only once an input fills a block: bpe-pool.ts).
  const pool = reading.bpe && reading.bpeThreads ? new BpePool(reading.bpeThreads.tokenizer, reading.bpeThreads.threads) : undefined;
  try {
    for (const [k, input] of cfg.inputs.entries()) {
      // Every input is checked; the first one's sample is what a run waits for.
      const r = k === 0 ? reading : { ...reading, onSampled: undefined };
      table.inputs.push(await readFastaChecked(input, { ...opts, reading: r, bpePool: pool }));
    }
  } finally {
    pool?.close();
  }
  return finish(table, cfg.inputs.join(", "), cfg.truncate);
}

/** FASTA text held in memory (the API's string input), read by the same parser as files; errors
 * name `name` and the line. */
export function ingestText(text: string, cfg: Pick<RunConfig, "truncate" | "duplicateIds">, name = "<text>", reading: ReadingOptions = {}): RecordTable {
  const table = new RecordTable(cfg.truncate, cfg.duplicateIds, true, reading.bpe ? 2 : 1);
  const parser = new FastaParser(name, { ...table.parserOptions(), reading });
  parser.push(new TextEncoder().encode(text));
  parser.end();
  return finish(table, name, cfg.truncate);
}

/** The checks and notices after every input is read: none empty, truncation, renames. */
function finish(table: RecordTable, what: string, truncate: number): RecordTable {
  if (table.size === 0) {
    throw new InputError(`no FASTA records in ${what}`, undefined, "check that the input is a FASTA file with '>' header lines");
  }
  const unit = table.width === 2 ? "tokens" : "residues";
  if (table.truncated) log.warn(`${table.truncated} record(s) longer than ${truncate} ${unit} were truncated (--truncate)`);
  if (table.unknown) log.warn(`${table.unknown} [UNK] token(s) in the input: letters other than A/C/G/T (N, other IUPAC codes) that DNABERT-S's tokenizer cannot read (--unknown error refuses them)`);
  table.renameDuplicates();
  if (table.renamed) {
    const listed = table.summary().renames ?? [];
    const shown = listed.slice(0, 5).map((r) => `${r.from} → ${r.to} (${r.at})`).join(", ");
    const more = table.renamed > 5 ? `, and ${table.renamed - 5} more (the first ${listed.length} are listed in the summary and the manifest)` : "";
    log.warn(`${table.renamed} duplicate id(s) renamed (--duplicate-ids rename; a new id is never one the input has): ${shown}${more}`);
  }
  return table.sealed();
}
