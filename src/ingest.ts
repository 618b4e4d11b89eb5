/**
 * Reading the inputs: every FASTA (path, .gz or stdin) streamed through the parser and tokenizer
 * into one RecordTable, with duplicate ids checked across files and truncation counted.
 */
import type { RunConfig } from "./config.ts";
import { InputError } from "./errors.ts";
import { readFasta } from "./fasta.ts";
import { log } from "./log.ts";
import { RecordTable } from "./records.ts";

/** Read every input into a record table (streaming; tokens kept compactly). */
export async function ingest(cfg: Pick<RunConfig, "inputs" | "truncate" | "duplicateIds">): Promise<RecordTable> {
  // readFasta catches repeated ids within a file; the table checks across files only.
  const table = new RecordTable(cfg.truncate, cfg.duplicateIds, cfg.inputs.length > 1);
  for (const input of cfg.inputs) {
    const onRename = () => table.renamed++;
    for await (const r of readFasta(input, { duplicateIds: cfg.duplicateIds, onRename })) table.add(r);
  }
  if (table.size === 0) {
    throw new InputError(`no FASTA records in ${cfg.inputs.join(", ")}`, undefined, "check that the input is a FASTA file with '>' header lines");
  }
  if (table.truncated) log.warn(`${table.truncated} record(s) longer than ${cfg.truncate} residues were truncated (--truncate)`);
  if (table.renamed) log.warn(`${table.renamed} duplicate id(s) were renamed with _2, _3, ... (--duplicate-ids rename)`);
  return table.sealed();
}
