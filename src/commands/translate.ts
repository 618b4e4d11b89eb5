/** `embed translate INPUT... -p OUT.faa -n OUT.fna`: VirNucPro's six-frame preparation of nucleotide FASTA. */
import { defineCommand } from "citty";
import { OptionsError } from "../errors.ts";
import { translateFasta, type TranslateSummary } from "../input/translate-fasta.ts";
import { log } from "../log.ts";
import { emit, fail } from "./report.ts";

export default defineCommand({
  meta: {
    name: "translate",
    description: `Prepare nucleotide FASTA as VirNucPro does: optionally cut records into chunks (ids ID_chunk_1, ...), translate six frames (F1-F3 on the sequence, R1-R3 on its reverse complement; codons with a base other than A/C/G/T are dropped; frames with a stop codon or no codon are dropped), and write the peptides (ids IDF1 ... IDR3, for embed run) and the matching nucleotide slices (one base longer than the codons, for DNABERT-S) as two FASTA files, record for record in the same order. Each file appears only once complete; a summary is printed as JSON on stdout (on stderr only, when an output is -).

Examples:
  embed translate reads.fa.gz -p reads.faa -n reads.fna
  embed translate contigs.fa -p pep.faa -n nuc.fna --chunk 300     VirNucPro's 300-bp model
  zcat reads.fq.fa.gz | embed translate - -p pep.faa -n nuc.fna --overwrite
  embed translate reads.fa -p - -n nuc.fna | embed run - -o out/   peptides straight into a run`,
  },
  args: {
    inputs: { type: "positional", description: "nucleotide FASTA files (.gz ok), or - for stdin", required: true, valueHint: "INPUT..." },
    peptides: { type: "string", alias: "p", description: "peptide FASTA to write (- for stdout)", required: true, valueHint: "OUT.faa" },
    nucleotides: { type: "string", alias: "n", description: "nucleotide FASTA to write: each kept frame's bases (- for stdout)", required: true, valueHint: "OUT.fna" },
    chunk: { type: "string", description: "cut records into chunks of N bases first, the overshoot spread as overlaps (VirNucPro: 300 or 500)", valueHint: "N" },
    overwrite: { type: "boolean", description: "replace existing output files (an input is never replaced)", default: false },
  },
  async run({ args }) {
    try {
      let chunk: number | undefined;
      if (args.chunk !== undefined) {
        chunk = Number(args.chunk);
        if (!/^\d+$/.test(args.chunk.trim()) || chunk < 1) throw new OptionsError(`--chunk "${args.chunk}" is not a whole number ≥ 1`, "e.g. --chunk 300 (VirNucPro's models use 300 and 500)");
      }
      const summary = await translateFasta({ inputs: args._, peptides: args.peptides, nucleotides: args.nucleotides, chunk, overwrite: args.overwrite });
      log.success(describe(summary));
      if (summary.peptides !== "-" && summary.nucleotides !== "-") emit(summary);
    } catch (e) {
      fail(e);
    }
  },
});

/** One line for stderr: records, chunks, frames kept and dropped by reason, outputs. */
function describe(s: TranslateSummary): string {
  const chunks = s.chunkSize === null ? "" : ` in ${s.sequences} chunks of ≤ ${s.chunkSize} bases`;
  const { stop, empty, total } = s.frames.dropped;
  const out = (p: string) => (p === "-" ? "stdout" : p);
  return (
    `${s.records} records${chunks}: ${s.frames.kept} frames kept, ${total} dropped (${stop} with a stop codon, ${empty} with no A/C/G/T codon)` +
    ` → ${out(s.peptides)}, ${out(s.nucleotides)} (${s.seconds.toFixed(1)} s)`
  );
}
