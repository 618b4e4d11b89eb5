/**
 * Reading the inputs: every FASTA (path, .gz or stdin) streamed through the parser and tokenizer
 * into one RecordTable, with duplicate ids checked within and across files and truncation counted.
 */
import type { RunConfig } from "./config.ts";
import { InputError } from "./errors.ts";
import { readFastaChecked } from "./fasta.ts";
import { log } from "./log.ts";
import { RecordTable } from "./records.ts";

/** Read every input into a record table (streaming; tokens and ids kept compactly). */
export async function ingest(cfg: Pick<RunConfig, "inputs" | "truncate" | "duplicateIds">): Promise<RecordTable> {
  // The parsers hand records straight to the table and share its id index, which catches a
  // repeated id within a file and across files in one probe.
  const table = new RecordTable(cfg.truncate, cfg.duplicateIds);
  const opts = table.parserOptions();
  for (const input of cfg.inputs) table.inputs.push(await readFastaChecked(input, opts));
  if (table.size === 0) {
    throw new InputError(`no FASTA records in ${cfg.inputs.join(", ")}`, undefined, "check that the input is a FASTA file with '>' header lines");
  }
  if (table.truncated) log.warn(`${table.truncated} record(s) longer than ${cfg.truncate} residues were truncated (--truncate)`);
  if (table.renamed) log.warn(`${table.renamed} duplicate id(s) were renamed with _2, _3, ... (--duplicate-ids rename)`);
  return table.sealed();
}
