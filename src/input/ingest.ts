/**
 * Reading the inputs: every FASTA (path, .gz or stdin) streamed through the parser and tokenizer
 * into one RecordTable, with duplicate ids checked within and across files and truncation counted.
 */
import type { RunConfig } from "../config.ts";
import { InputError } from "../errors.ts";
import { readFastaChecked } from "./fasta.ts";
import { FastaParser } from "./fasta-parser.ts";
import { log } from "../log.ts";
import { RecordTable } from "./records.ts";

/** Read every input into a record table (streaming; tokens and ids kept compactly). */
export async function ingest(cfg: Pick<RunConfig, "inputs" | "truncate" | "duplicateIds">): Promise<RecordTable> {
  // The parsers hand records straight to the table and share its id index, which catches a
  // repeated id within a file and across files in one probe.
  const table = new RecordTable(cfg.truncate, cfg.duplicateIds);
  const opts = table.parserOptions();
  for (const input of cfg.inputs) table.inputs.push(await readFastaChecked(input, opts));
  return finish(table, cfg.inputs.join(", "), cfg.truncate);
}

/** FASTA text held in memory (the API's string input), read by the same parser as files; errors
 * name `name` and the line. */
export function ingestText(text: string, cfg: Pick<RunConfig, "truncate" | "duplicateIds">, name = "<text>"): RecordTable {
  const table = new RecordTable(cfg.truncate, cfg.duplicateIds);
  const parser = new FastaParser(name, table.parserOptions());
  parser.push(new TextEncoder().encode(text));
  parser.end();
  return finish(table, name, cfg.truncate);
}

/** The checks and notices after every input is read: none empty, truncation, renames. */
function finish(table: RecordTable, what: string, truncate: number): RecordTable {
  if (table.size === 0) {
    throw new InputError(`no FASTA records in ${what}`, undefined, "check that the input is a FASTA file with '>' header lines");
  }
  if (table.truncated) log.warn(`${table.truncated} record(s) longer than ${truncate} residues were truncated (--truncate)`);
  table.renameDuplicates();
  if (table.renamed) {
    const listed = table.summary().renames ?? [];
    const shown = listed.slice(0, 5).map((r) => `${r.from} → ${r.to} (${r.at})`).join(", ");
    const more = table.renamed > 5 ? `, and ${table.renamed - 5} more (the first ${listed.length} are listed in the summary and the manifest)` : "";
    log.warn(`${table.renamed} duplicate id(s) renamed (--duplicate-ids rename; a new id is never one the input has): ${shown}${more}`);
  }
  return table.sealed();
}
