/**
 * Push parser from FASTA bytes to tokenized records. Pure: it is fed chunks and hands records to
 * a {@link RecordSink}, so it can be tested without files and driven by any byte source
 * (see `fasta.ts` for the streaming reader).
 *
 * Format accepted (Pearson FASTA, as written by UniProt, NCBI, Ensembl, seqkit...):
 * - `>` starts a header; the id is the first whitespace-delimited word after it (leading
 *   spaces skipped, as Biopython does); the rest of the line (the description) is ignored.
 * - Sequence lines follow, any number, any width; tokenized byte by byte as they arrive
 *   (rules in `tokenize.ts`), or, for a nucleotide model (`reading.bpe`), collected as upper-case
 *   bases and BPE-tokenized once the record is complete, so merges span line breaks (rules and
 *   the alphabet checks in `alphabet-guard.ts`).
 * - LF or CRLF line ends; blank lines anywhere; a last line without newline; a UTF-8 BOM.
 *   CR-only line ends (classic Mac) are refused with a conversion hint: they make one line of
 *   the whole file.
 * - Ids must be valid UTF-8 (they are written to ids.txt as text): a header whose id holds any
 *   other byte (Latin-1 `é` is the usual one) is refused, naming the byte and its offset.
 * - Lines starting with `;` are comments (old Pearson convention) and are skipped wherever
 *   they appear. `;` can never be a residue, so skipping loses nothing.
 *
 * Errors are {@link InputError}s with file:line and, when known, the record id (worded in
 * fasta-errors.ts).
 *
 * Memory: one partial line is carried between chunks; tokens are written into the sink's own
 * buffer (or a reused 256 KiB slab), with no per-record buffer allocation.
 *
 * Records go to the sink as an id-index entry and a token range, with no per-record object or
 * string at all. Ids are checked for repeats in an {@link IdIndex}, which can be shared by the
 * parsers of several inputs so one index catches repeats within and across inputs.
 */
import { InputError } from "../errors.ts";
import { duplicateId, emptyHeader, emptySequence, invalidUtf8Id, missingHeader, noRecords } from "./fasta-errors.ts";
import { FastaLines, type LineHandler } from "./fasta-lines.ts";
import { isSpace } from "./id-bytes.ts";
import { IdIndex } from "./id-index.ts";
import { type OnRename, PendingRenames } from "./renames.ts";
import { AlphabetSample, readNucleotideLine, type ReadingOptions } from "./alphabet-guard.ts";
import { LineState, explainRejected, tokenizeLine } from "./tokenize.ts";
import { BpeBlocks, type BpePool } from "./bpe-pool.ts";

/** What to do when an id repeats. */
export type DuplicateIdPolicy = "error" | "rename";

export interface FastaParserOptions {
  /**
   * `error` (default): throw, naming both lines. `rename`: give a repeat `ID_2`, `ID_3`, ...,
   * the first that no record of the input has (see `renames.ts`).
   */
  duplicateIds?: DuplicateIdPolicy;
  /**
   * Called for each renamed record (for a log line or a count); `entry` is its id-index entry.
   * Only for the parser's own {@link renames}: the owner of shared ones passes it to `apply`.
   */
  onRename?: OnRename;
  /**
   * Repeats waiting for a new id under `rename`. Shared with the parsers of the other inputs
   * (like {@link ids}), they are renamed by their owner once every input is read, so a new id
   * is checked against the whole input. Default: the parser's own, renamed at {@link FastaParser.end}.
   */
  renames?: PendingRenames;
  /**
   * Id index to check and store ids in (default: a new one). Shared with the parsers of earlier
   * inputs, it also catches an id repeated from one of them, named through `inputOf`.
   */
  ids?: IdIndex;
  /** Name of the input that entry `entry` of `ids` (from an earlier input) was read from. */
  inputOf?: (entry: number) => string;
  /** Where the records go. */
  sink: RecordSink;
  /** The model family's reading: ESM-2's protein tokens (default) or DNABERT-S's BPE, and checks. */
  reading?: ReadingOptions;
  /** DNABERT-S on more threads: `reading.bpe`'s tokenizer in a pool (bpe-pool.ts); records reach
   * the sink when the reader settles the parser. Unset: each record is tokenized in line. */
  bpePool?: BpePool;
}

/** Receives records as they complete, without a record object or id string per record. */
export interface RecordSink {
  /**
   * One record: its id is entry `entry` of the parser's id index (checked for repeats, and
   * renamed there, only when the chunk's ids are committed, after this call); its residue
   * tokens are `tokens[start, end)` (one byte each for ESM-2, two for DNABERT-S's BPE ids; no
   * framing), valid during the call only; `unknown` of them are the tokenizer's [UNK].
   */
  record(entry: number, tokens: Uint8Array | Uint16Array, start: number, end: number, unknown?: number): void;
  /** A parser for input `file` was made: its records follow. */
  begin?(file: string): void;
  /**
   * The sink's own buffer, free from {@link spaceAt} on: the parser tokenizes the next record
   * straight into it (so `record` gets `tokens === space`, `start === spaceAt`, and need copy
   * nothing) while it fits, else into a slab of its own. Read at each header.
   */
  readonly space?: Uint8Array;
  readonly spaceAt?: number;
}

const GT = 0x3e;
const SEMI = 0x3b;
const SLAB = 1 << 18;

export class FastaParser implements LineHandler {
  private readonly file: string;
  private readonly duplicateIds: DuplicateIdPolicy;
  private readonly onRename: FastaParserOptions["onRename"];
  private readonly ids: IdIndex;
  /** First id-index entry of this input (entries below are earlier inputs'). */
  private readonly base: number;
  private readonly inputOf: FastaParserOptions["inputOf"];
  private readonly sink: RecordSink;
  private readonly renames: PendingRenames;
  /** Whether {@link renames} is this parser's own (renamed at end) rather than shared. */
  private readonly ownRenames: boolean;
  private readonly state = new LineState();
  private readonly reading: ReadingOptions;
  /** The first records' alphabet check (alphabet-guard.ts). */
  private readonly sample: AlphabetSample;
  /** DNABERT-S with a tokenizer pool: records on their way to the sink (bpe-pool.ts). */
  private readonly blocks: BpeBlocks | undefined;

  /** Chunks to lines (BOM, partial lines, CR-only line ends). */
  private readonly lines: FastaLines;

  /** Token slab; the current record's tokens are slab[recStart, slabPos). */
  private slab: Uint8Array = new Uint8Array(SLAB);
  private slabPos = 0;
  private recStart = 0;

  /** Whether a record is open; its id-index entry and header line. */
  private inRecord = false;
  private curEntry = 0;
  private curLine = 0;
  /** Line and 1-based column of a trailing `*` in the current record, 0 if none. */
  private stopLine = 0;
  private stopColumn = 0;
  private records = 0;
  /** A DataView of the chunk being parsed, for the tokenizer's 4-byte reads. */
  private view: DataView = new DataView(new ArrayBuffer(0));
  private viewSource: Uint8Array | undefined;

  constructor(file: string, opts: FastaParserOptions) {
    this.file = file;
    this.lines = new FastaLines(file, this);
    this.duplicateIds = opts.duplicateIds ?? "error";
    this.onRename = opts.onRename;
    this.ids = opts.ids ?? new IdIndex();
    this.ownRenames = opts.renames === undefined;
    this.renames = opts.renames ?? new PendingRenames();
    this.base = this.ids.entries;
    this.inputOf = opts.inputOf;
    this.sink = opts.sink;
    this.reading = opts.reading ?? {};
    this.sample = new AlphabetSample(file, !this.reading.bpe, this.reading, (e) => this.ids.idString(e));
    this.blocks = this.reading.bpe && opts.bpePool ? new BpeBlocks(opts.bpePool, this.sink, this.reading.bpe) : undefined;
    this.sink.begin?.(file);
  }

  /**
   * Records tokenized on other threads (`bpePool`) reach the sink here, in order: call
   * after each {@link push} (it waits only while too many blocks are out) and, with `all`, after
   * {@link end}. Without a pool there is nothing to wait for.
   */
  async settle(all = false): Promise<void> {
    if (this.blocks) await this.blocks.settle(all ? 0 : undefined);
  }

  /** Number of records completed so far. */
  get recordCount(): number {
    return this.records;
  }

  /** Feed the next chunk; the records it completes go to the sink. */
  push(chunk: Uint8Array): void {
    try {
      this.lines.push(chunk);
    } catch (e) {
      // A duplicate id on an earlier line is the first error; report it instead.
      this.commitIds();
      throw e;
    }
    this.commitIds();
  }

  /** Signal end of input (the last record goes to the sink). Throws if the input held no record. */
  end(): void {
    try {
      this.lines.end();
      this.finishRecord();
    } catch (e) {
      this.commitIds();
      throw e;
    }
    this.commitIds();
    if (this.ownRenames) this.renames.apply(this.ids, this.onRename);
    if (this.records === 0) throw noRecords(this.file, this.lines.bytes);
    this.sample.end();
  }

  /** One non-empty line, `buf[start, end)` without its `\n` ({@link LineHandler}: called by {@link lines} only). */
  line(buf: Uint8Array, start: number, end: number, lineNo: number): void {
    const first = buf[start]!;
    if (first === GT) return this.header(buf, start, end, lineNo);
    if (first === SEMI) return;
    if (!this.inRecord) {
      let i = start;
      while (i < end && isSpace(buf[i]!)) i++;
      if (i === end) return; // blank line before the first header
      throw missingHeader(this.file, lineNo);
    }
    this.sequence(buf, start, end, lineNo);
  }

  private sequence(buf: Uint8Array, start: number, end: number, lineNo: number): void {
    const len = end - start;
    if (this.slabPos + len > this.slab.length) this.growSlab(len);
    const before = this.slabPos;
    if (this.reading.bpe) {
      this.slabPos = readNucleotideLine(buf, start, end, this.slab, before, this.reading, () => ({ file: this.file, line: lineNo, recordId: this.curId() }));
      return;
    }
    const state = this.state;
    state.stopOffset = -1;
    const pos = tokenizeLine(buf, start, end, this.slab, before, state, this.viewOf(buf));
    if (pos < 0) {
      const offset = state.errorOffset;
      const { message, hint } = explainRejected(buf[offset]!, state.errorReason);
      throw new InputError(
        `${message} at column ${offset - start + 1}`,
        { file: this.file, line: lineNo, recordId: this.curId() },
        hint,
      );
    }
    if (this.stopLine !== 0 && (pos > before || state.stopOffset >= 0)) {
      const { message, hint } = explainRejected(0x2a, "stop-not-last");
      throw new InputError(
        `${message} at column ${this.stopColumn}`,
        { file: this.file, line: this.stopLine, recordId: this.curId() },
        hint,
      );
    }
    if (state.stopOffset >= 0) {
      this.stopLine = lineNo;
      this.stopColumn = state.stopOffset + 1;
    }
    this.sample.count(this.slab, before, pos);
    this.slabPos = pos;
  }

  /** Make room for `len` more tokens, moving the current record's tokens to a fresh slab. */
  private growSlab(len: number): void {
    const partial = this.slabPos - this.recStart;
    const next = new Uint8Array(Math.max(SLAB, 2 * (partial + len)));
    next.set(this.slab.subarray(this.recStart, this.slabPos));
    this.slab = next;
    this.recStart = 0;
    this.slabPos = partial;
  }

  /** A header line: the previous record ends; only the new id's bytes go into the id index. */
  private header(buf: Uint8Array, start: number, end: number, lineNo: number): void {
    this.finishRecord();
    let idStart = start + 1;
    while (idStart < end && isSpace(buf[idStart]!)) idStart++;
    if (idStart === end) throw emptyHeader(this.file, lineNo);
    this.curEntry = this.ids.stageWord(buf, idStart, end, lineNo, this.viewOf(buf));
    if (this.ids.invalid.entry === this.curEntry) this.invalidId(buf, start, idStart, end, lineNo);
    this.curLine = lineNo;
    this.inRecord = true;
    const space = this.reading.bpe ? undefined : this.sink.space; // bases are not tokens: own slab
    if (space !== undefined) {
      this.slab = space;
      this.recStart = this.slabPos = this.sink.spaceAt!;
    } else {
      // The sink copies each record's tokens, so the slab is reused from its start.
      this.recStart = this.slabPos = 0;
    }
    this.stopLine = 0;
    this.state.reset();
  }

  /** The id at `buf[idStart...]` (header line `buf[start, end)`) is not valid UTF-8: refuse it. */
  private invalidId(buf: Uint8Array, start: number, idStart: number, end: number, lineNo: number): never {
    const { offset, byte } = this.ids.invalid;
    let id = "";
    for (let i = idStart; i < end && !isSpace(buf[i]!); i++) {
      const b = buf[i]!;
      id += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).toUpperCase().padStart(2, "0")}`;
    }
    const column = idStart - start + offset + 1;
    throw invalidUtf8Id(this.file, lineNo, id, byte, column, this.lines.lineAt + column - 1);
  }

  /** A DataView of `buf` (cached for the current chunk). */
  private viewOf(buf: Uint8Array): DataView {
    if (buf !== this.viewSource) {
      this.viewSource = buf;
      this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    return this.view;
  }

  /** The current record's id (for messages). */
  private curId(): string {
    return this.ids.idString(this.curEntry);
  }

  /** Check the staged ids for duplicates (error, or rename in place). */
  private commitIds(): void {
    if (this.ids.pending === 0) return;
    this.ids.commit((_k, firstLine, entry, firstEntry) => {
      this.duplicate(this.ids.idString(entry), firstLine, this.ids.line(entry), entry, firstEntry);
    });
  }

  /** Entry `entry` (id `id`, line `lineNo`) repeats `firstEntry`: throw, or rename it. */
  private duplicate(id: string, firstLine: number, lineNo: number, entry: number, firstEntry: number): void {
    if (this.duplicateIds === "error") {
      const earlier = firstEntry < this.base ? (this.inputOf?.(firstEntry) ?? "an earlier input") : undefined;
      throw duplicateId(this.file, lineNo, id, firstLine, earlier);
    }
    this.renames.add(entry);
  }

  private finishRecord(): void {
    if (!this.inRecord) return;
    this.inRecord = false;
    if (this.slabPos === this.recStart) throw emptySequence(this.file, this.curLine, this.curId());
    this.records++;
    const bpe = this.reading.bpe;
    if (bpe) {
      // The whole record's bases at once ([CLS] … [SEP] framing dropped: the wire adds it).
      const bases = this.slab.subarray(this.recStart, this.slabPos);
      if (this.blocks) {
        this.blocks.add(this.curEntry, bases); // to the sink, tokenized, from settle()
      } else {
        const { ids, unknown } = bpe.encode(bases);
        this.sink.record(this.curEntry, ids, 1, ids.length - 1, unknown);
      }
    } else {
      this.sink.record(this.curEntry, this.slab, this.recStart, this.slabPos);
    }
    this.sample.record(this.curLine, this.curEntry);
  }
}
