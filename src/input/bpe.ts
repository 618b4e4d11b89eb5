/**
 * DNABERT-S tokenizer: byte-pair encoding over A/C/G/T, equal to Hugging Face `tokenizers` on the
 * model's own `tokenizer.json`. Pure: the caller reads the file and passes the parsed JSON.
 *
 * Facts about the file (checked against zhihan1996/DNABERT-S `tokenizer.json`, 4,096 entries,
 * and against `tokenizers` 0.23 `Tokenizer.from_file` by test/bpe.test.ts):
 * - model BPE, `unk_token` "[UNK]", `fuse_unk` false, no dropout, no byte fallback, no subword
 *   prefix/suffix; vocab = 5 specials ([UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4), the four bases
 *   A=5 C=6 G=7 T=8, and 4,087 merged tokens (longest 32 bases), one per line of `merges`.
 * - normalizer null: no case folding. A lowercase base is not in the vocab, so `acgt` is four
 *   [UNK]. VirNucPro upper-cases each record before translating it and feeds the upper-cased
 *   nucleotide slice to DNABERT-S (broadinstitute/virnucpro-broad `units.py` `process_record`,
 *   Li-Jing-1997/VirNucPro `prediction.py` `process_record`), so upper-casing belongs to that
 *   preparation step (src/input/translate.ts), not here: this module stays equal to the
 *   reference tokenizer.
 * - pre_tokenizer Whitespace (`\w+|[^\w\s]+`): whitespace separates words and is dropped. Every
 *   other character that is not A/C/G/T (N, IUPAC codes, lowercase, digits, `-`, `*`, non-ASCII)
 *   becomes one [UNK] per character (per Unicode code point), and no merge crosses an [UNK]:
 *   merges are keyed by token pairs and no merge involves [UNK], so splitting at punctuation
 *   changes nothing further.
 * - added tokens: the literal texts `[UNK]` `[CLS]` `[SEP]` `[PAD]` `[MASK]` in the input are
 *   matched before BPE and give their ids (so `ACG[MASK]T` has a mask token), as HF does.
 * - post_processor TemplateProcessing `[CLS] $A [SEP]`: ids are framed by 1 … 2.
 * - padding (Fixed 2,000, [PAD]) and truncation (2,000) are stored from training. Both are
 *   ignored here: transformers' tokenizer call overrides them (no padding, no truncation unless
 *   asked), which is how VirNucPro calls it (`tokenizer(seq, return_tensors='pt')`).
 *
 * Where line breaks go: this tokenizes one record's whole sequence. ASCII whitespace (line
 * breaks, CR, spaces, tabs) and Unicode spaces inside it are skipped and merges span them,
 * because VirNucPro tokenizes the line-joined sequence that Biopython's FASTA reader returns.
 * (HF on raw text containing a line break would split the word there instead.) A literal
 * `[MASK]` etc. must sit on one line to be matched.
 *
 * Speed: BPE per run of bases with a rank table in an open-addressed hash (pair → rank), a linked
 * list over the run's symbols and a bucket queue by rank with a bitmap of non-empty ranks — HF's
 * own order: lowest rank first, leftmost first among equal ranks. Scratch arrays are reused; one call allocates only
 * its result. Measured with dev/bench-bpe.ts on one core of a shared 2-core machine: 1M random
 * 150-bp reads at about 125,000 reads/s (18.7M bases/s, 4.3M tokens/s, 34.6 tokens per read);
 * a binary heap in place of the bucket queue gave about 60,000 reads/s.
 */
import { bad, readTokenizerJson } from "./bpe-json.ts";

/** One record's token ids, framed by [CLS] … [SEP], and how many of them are [UNK]. */
export interface BpeEncoding {
  ids: Uint16Array;
  unknown: number;
}

/** Byte class codes for the first pass (values ≥ 0 are base token ids). */
const SKIP = -1;
const UNKNOWN = -2;
const SPECIAL_START = -3;

/** Unicode White_Space code points above ASCII (what the Whitespace pre-tokenizer drops). */
const UNICODE_SPACES = new Set([0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

const encoder = new TextEncoder();

export class DnaBpeTokenizer {
  readonly vocabSize: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  /** Token string per id (for tests and debugging). */
  readonly tokens: readonly string[];

  /** ASCII byte → base token id, or SKIP / UNKNOWN / SPECIAL_START. */
  private readonly byteClass = new Int32Array(128);
  /** Added tokens (`[CLS]` …) as bytes with their ids, tried where SPECIAL_START bytes occur. */
  private readonly specials: { bytes: Uint8Array; id: number }[] = [];
  /** Open-addressed pair table: key (left << 16 | right) + 1, 0 = empty; value = rank. */
  private readonly hashKeys: Int32Array;
  private readonly hashRanks: Int32Array;
  private readonly hashShift: number;
  /** Merge rank → its left and right token ids and the merged id. */
  private readonly mergeLeft: Int32Array;
  private readonly mergeRight: Int32Array;
  private readonly rankToId: Uint16Array;
  /** Bucket queue by rank: first/last entry per rank (-1 = empty) and a bitmap of non-empty ranks. */
  private readonly bucketHead: Int32Array;
  private readonly bucketTail: Int32Array;
  private readonly bucketBits: Uint32Array;

  // Scratch, grown on demand and reused across calls.
  private sym = new Int32Array(1024);
  private nxt = new Int32Array(1024);
  private prv = new Int32Array(1024);
  /** Up to 3 entries per symbol: the first pairs plus two pushes per merge. */
  /** Queue entries (a pair's left position + next entry in its bucket): up to 3 per symbol, the first pairs plus two per merge. */
  private entPos = new Int32Array(3 * 1024);
  private entNext = new Int32Array(3 * 1024);
  private batch = new Int32Array(3 * 1024);
  private out = new Uint16Array(1024);
  private bytes = new Uint8Array(4096);

  private constructor(source: string, vocab: Map<string, number>, merges: [string, string][], unk: number, cls: number, sep: number, specials: { content: string; id: number }[]) {
    this.unkId = unk;
    this.clsId = cls;
    this.sepId = sep;
    let maxId = 0;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const tokens: string[] = new Array<string>(this.vocabSize).fill("");
    for (const [t, id] of vocab) tokens[id] = t;
    this.tokens = tokens;

    this.byteClass.fill(UNKNOWN);
    for (const ws of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20]) this.byteClass[ws] = SKIP;
    for (const [t, id] of vocab) {
      const c = t.charCodeAt(0);
      if (t.length === 1 && c < 128 && c > 0x20) this.byteClass[c] = id;
    }
    for (const s of specials) {
      const c = s.content.charCodeAt(0);
      if (s.content.length < 2 || c >= 128 || this.byteClass[c] === SKIP) continue;
      if (this.byteClass[c] !== UNKNOWN && this.byteClass[c] !== SPECIAL_START) continue; // never shadow a base
      this.byteClass[c] = SPECIAL_START;
      this.specials.push({ bytes: encoder.encode(s.content), id: s.id });
    }
    // Longest first, as HF's leftmost-longest match.
    this.specials.sort((a, b) => b.bytes.length - a.bytes.length);

    let bits = 4;
    while (1 << bits < merges.length * 4) bits++;
    this.hashKeys = new Int32Array(1 << bits);
    this.hashRanks = new Int32Array(1 << bits);
    this.hashShift = 32 - bits;
    const count = merges.length;
    this.rankToId = new Uint16Array(count);
    this.mergeLeft = new Int32Array(count);
    this.mergeRight = new Int32Array(count);
    this.bucketHead = new Int32Array(count).fill(-1);
    this.bucketTail = new Int32Array(count);
    this.bucketBits = new Uint32Array((count + 31) >>> 5);
    merges.forEach(([a, b], rank) => {
      const ia = vocab.get(a);
      const ib = vocab.get(b);
      const merged = vocab.get(a + b);
      if (ia === undefined || ib === undefined || merged === undefined) bad(source, `merge ${rank} "${a} ${b}" uses a token missing from the vocab`);
      this.rankToId[rank] = merged;
      this.mergeLeft[rank] = ia;
      this.mergeRight[rank] = ib;
      this.insert(ia, ib, rank); // a repeated pair keeps its last rank, as HF's map does
    });
    // The bucket queue visits ranks in increasing order once per run. That equals HF's heap
    // order only if a merge never creates a pair of a lower rank, i.e. both parts of every merge
    // are made by earlier merges (true of any merge list in training order).
    const lastMadeAt = new Int32Array(this.vocabSize).fill(-1);
    for (let r = 0; r < count; r++) lastMadeAt[this.rankToId[r]!] = r;
    for (let r = 0; r < count; r++) {
      if (lastMadeAt[this.mergeLeft[r]!]! >= r || lastMadeAt[this.mergeRight[r]!]! >= r) bad(source, `merge ${r} "${merges[r]!.join(" ")}" uses a token made by a later merge (merges not in training order)`);
    }
  }

  /**
   * Build from the parsed `tokenizer.json` object. `source` names the file in error messages.
   * Rejects files this module would not tokenize like HF does (other models, normalizers,
   * pre-tokenizers or templates) with a ModelNotFoundError (exit 5).
   */
  static fromJson(json: unknown, source = "tokenizer.json"): DnaBpeTokenizer {
    const f = readTokenizerJson(json, source);
    return new DnaBpeTokenizer(source, f.vocab, f.merges, f.unk, f.cls, f.sep, f.added);
  }

  private slot(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.hashShift;
  }

  private insert(a: number, b: number, rank: number): void {
    const key = ((a << 16) | b) + 1;
    const mask = this.hashKeys.length - 1;
    let s = this.slot(key);
    while (this.hashKeys[s] !== 0 && this.hashKeys[s] !== key) s = (s + 1) & mask;
    this.hashKeys[s] = key;
    this.hashRanks[s] = rank;
  }

  /** Merge rank of the pair (a, b), or -1 when no merge joins them. */
  private rank(a: number, b: number): number {
    const key = ((a << 16) | b) + 1;
    const keys = this.hashKeys;
    const mask = keys.length - 1;
    let s = Math.imul(key, 0x9e3779b1) >>> this.hashShift;
    for (;;) {
      const k = keys[s]!;
      if (k === key) return this.hashRanks[s]!;
      if (k === 0) return -1;
      s = (s + 1) & mask;
    }
  }

  /**
   * Token ids of one record's sequence, `[CLS] … [SEP]`. `seq` is the record's sequence text
   * (a string, or UTF-8 bytes as read from the file); line breaks inside it are skipped.
   */
  encode(seq: string | Uint8Array): BpeEncoding {
    let src: Uint8Array;
    let len: number;
    if (typeof seq === "string") {
      if (this.bytes.length < seq.length * 3) this.bytes = new Uint8Array(seq.length * 3 + 64);
      len = encoder.encodeInto(seq, this.bytes).written;
      src = this.bytes;
    } else {
      src = seq;
      len = seq.length;
    }
    // A record's token count is at most its byte count (+2 for [CLS]/[SEP]).
    if (this.out.length < len + 2) this.out = new Uint16Array(len + 64);
    if (this.sym.length < len) this.grow(len);
    const out = this.out;
    const sym = this.sym;
    const cls = this.byteClass;
    let n = 0;
    out[n++] = this.clsId;
    let m = 0; // bases collected in the current run
    let unknown = 0;
    for (let i = 0; i < len; i++) {
      const b = src[i]!;
      const c = b < 128 ? cls[b]! : UNKNOWN;
      if (c >= 0) {
        sym[m++] = c;
        continue;
      }
      if (c === SKIP) continue;
      if (b >= 0x80) {
        // One code point, one [UNK] (a Unicode space is skipped like ASCII whitespace).
        // Invalid UTF-8: one [UNK] per stray byte.
        const extra = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : 0;
        let cp = extra === 3 ? b & 0x07 : extra === 2 ? b & 0x0f : b & 0x1f;
        let k = 0;
        while (k < extra && i + 1 < len && (src[i + 1]! & 0xc0) === 0x80) {
          cp = (cp << 6) | (src[++i]! & 0x3f);
          k++;
        }
        if (k === extra && extra > 0 && UNICODE_SPACES.has(cp)) continue;
      }
      if (m > 0) {
        n = this.mergeRun(m, n);
        m = 0;
      }
      if (c === SPECIAL_START) {
        const hit = this.specialAt(src, i, len);
        if (hit !== undefined) {
          out[n++] = hit.id;
          if (hit.id === this.unkId) unknown++;
          i += hit.bytes.length - 1;
          continue;
        }
      }
      out[n++] = this.unkId;
      unknown++;
    }
    if (m > 0) n = this.mergeRun(m, n);
    out[n++] = this.sepId;
    return { ids: out.slice(0, n), unknown };
  }

  private specialAt(src: Uint8Array, i: number, len: number): { bytes: Uint8Array; id: number } | undefined {
    outer: for (const s of this.specials) {
      const t = s.bytes;
      if (i + t.length > len) continue;
      for (let k = 0; k < t.length; k++) if (src[i + k] !== t[k]) continue outer;
      return s;
    }
    return undefined;
  }

  private grow(len: number): void {
    const cap = Math.max(len, this.sym.length * 2);
    this.sym = new Int32Array(cap);
    this.nxt = new Int32Array(cap);
    this.prv = new Int32Array(cap);
    this.entPos = new Int32Array(3 * cap);
    this.entNext = new Int32Array(3 * cap);
    this.batch = new Int32Array(3 * cap);
  }

  /** Queue entries used in the current run, and the lowest rank queued before the scan. */
  private entries = 0;
  private lowest = 0;

  /** Queue the pair at `pos` (its left position) under rank `r`. */
  private queue(r: number, pos: number): void {
    const e = this.entries++;
    this.entPos[e] = pos;
    this.entNext[e] = -1;
    const head = this.bucketHead;
    if (head[r]! < 0) {
      head[r] = e;
      this.bucketBits[r >>> 5]! |= 1 << (r & 31);
      if (r < this.lowest) this.lowest = r;
    } else {
      this.entNext[this.bucketTail[r]!] = e;
    }
    this.bucketTail[r] = e;
  }

  /** Link `sym[0, m)` as one list of symbols and queue every pair that has a merge. */
  private link(m: number): void {
    const sym = this.sym;
    const nxt = this.nxt;
    const prv = this.prv;
    this.entries = 0;
    this.lowest = this.bucketHead.length;
    for (let i = 0; i < m; i++) {
      nxt[i] = i + 1;
      prv[i] = i - 1;
    }
    for (let i = 0; i + 1 < m; i++) {
      const r = this.rank(sym[i]!, sym[i + 1]!);
      if (r >= 0) this.queue(r, i);
    }
  }

  /** Move rank `r`'s queued positions into `batch`, leftmost first, and empty its bucket; returns how
   * many (queued in order unless one token is made by two merges of different ranks, e.g. AA+A and A+AA). */
  private take(r: number): number {
    const batch = this.batch;
    const entPos = this.entPos;
    const entNext = this.entNext;
    let k = 0;
    let sorted = true;
    for (let e = this.bucketHead[r]!; e >= 0; e = entNext[e]!) {
      const pos = entPos[e]!;
      if (k > 0 && pos < batch[k - 1]!) sorted = false;
      batch[k++] = pos;
    }
    this.bucketHead[r] = -1;
    if (!sorted) batch.subarray(0, k).sort();
    return k;
  }

  /**
   * BPE over the run of base ids `sym[0, m)`, appended to `out` from `n`; returns the new end. HF
   * `Word::merge_all` pops the lowest (rank, position) from a heap; here the ranks are visited in
   * increasing order (a merge only creates pairs of higher rank, checked at load), each rank's
   * bucket of left positions leftmost first, skipping entries whose pair changed since queued.
   */
  private mergeRun(m: number, n: number): number {
    const sym = this.sym;
    const out = this.out;
    if (m === 1) {
      out[n] = sym[0]!;
      return n + 1;
    }
    const nxt = this.nxt;
    const prv = this.prv;
    const bits = this.bucketBits;
    const batch = this.batch;
    this.link(m);
    const lowest = this.lowest;
    const words = bits.length;
    let word = lowest >>> 5;
    let mask = lowest < this.bucketHead.length ? -1 << (lowest & 31) : 0;
    while (word < words) {
      const w = bits[word]! & mask;
      if (w === 0) {
        word++;
        mask = -1;
        continue;
      }
      const bit = 31 - Math.clz32(w & -w);
      const r = (word << 5) | bit;
      bits[word] = bits[word]! & ~(1 << bit);
      const k = this.take(r);
      const a = this.mergeLeft[r]!;
      const b = this.mergeRight[r]!;
      const merged = this.rankToId[r]!;
      for (let t = 0; t < k; t++) {
        const i = batch[t]!;
        if (sym[i] !== a) continue; // absorbed or grown since queued
        const j = nxt[i]!;
        if (j >= m || sym[j] !== b) continue;
        sym[i] = merged;
        sym[j] = -1;
        const q = nxt[j]!;
        nxt[i] = q;
        if (q < m) {
          prv[q] = i;
          const rr = this.rank(merged, sym[q]!);
          if (rr >= 0) this.queue(rr, i);
        }
        const p = prv[i]!;
        if (p >= 0) {
          const rl = this.rank(sym[p]!, merged);
          if (rl >= 0) this.queue(rl, p);
        }
      }
      // New pairs rank above r; continue the scan just after it.
      mask = bit === 31 ? 0 : -1 << (bit + 1);
      if (mask === 0) {
        word++;
        mask = -1;
      }
    }
    for (let i = 0; i < m; i = nxt[i]!) out[n++] = sym[i]!;
    return n;
  }
}
