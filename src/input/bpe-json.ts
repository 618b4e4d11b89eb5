/**
 * Reading a DNABERT-S `tokenizer.json` (parsed JSON) for bpe.ts: the vocab, merges and special
 * ids, after checking the file is one that bpe.ts tokenizes exactly as Hugging Face does (a BPE
 * model over A/C/G/T, no normalizer, the Whitespace pre-tokenizer, a `[CLS] $A [SEP]`
 * template). Anything else is refused with a ModelNotFoundError (exit 5) naming the file.
 * Pure: no I/O.
 */
import { ModelNotFoundError } from "../errors.ts";

/** What bpe.ts builds its tables from. */
export interface TokenizerFile {
  vocab: Map<string, number>;
  /** Merge pairs in rank order. */
  merges: [string, string][];
  unk: number;
  cls: number;
  sep: number;
  /** Added tokens matched literally in the input before BPE. */
  added: { content: string; id: number }[];
}

/** Refuse `source` as not a DNABERT-S-style tokenizer, saying `what` is wrong. */
export function bad(source: string, what: string): never {
  throw new ModelNotFoundError(
    `${source}: not a DNABERT-S-style BPE tokenizer: ${what}`,
    "Point the model at the DNABERT-S folder (zhihan1996/DNABERT-S) whose tokenizer.json has a BPE model over A/C/G/T, the Whitespace pre-tokenizer and the [CLS] $A [SEP] template.",
  );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Check and read the parsed `tokenizer.json` object `json`; `source` names the file in errors. */
export function readTokenizerJson(json: unknown, source: string): TokenizerFile {
  if (!isRecord(json)) bad(source, "the top level is not an object");
  const model = json.model;
  if (!isRecord(model) || model.type !== "BPE") bad(source, `model.type is ${isRecord(model) ? JSON.stringify(model.type) : "missing"}, expected "BPE"`);
  if (model.dropout !== null && model.dropout !== undefined) bad(source, "model.dropout is set (sampling tokenizer)");
  if (model.fuse_unk === true) bad(source, "model.fuse_unk is true");
  if (model.byte_fallback === true) bad(source, "model.byte_fallback is true");
  if (model.continuing_subword_prefix || model.end_of_word_suffix) bad(source, "model has a subword prefix or suffix");
  if (json.normalizer !== null && json.normalizer !== undefined) bad(source, `normalizer ${JSON.stringify(json.normalizer)} is not supported (expected none)`);
  const pre = json.pre_tokenizer;
  if (!isRecord(pre) || pre.type !== "Whitespace") bad(source, `pre_tokenizer is ${JSON.stringify(pre)}, expected {"type":"Whitespace"}`);
  if (!isRecord(model.vocab)) bad(source, "model.vocab is not an object");
  const vocab = new Map<string, number>();
  for (const [t, id] of Object.entries(model.vocab)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 0xffff) bad(source, `vocab id ${JSON.stringify(id)} of "${t}" does not fit 16 bits`);
    vocab.set(t, id);
  }
  if (!Array.isArray(model.merges)) bad(source, "model.merges is not a list");
  const merges: [string, string][] = model.merges.map((m: unknown, i: number): [string, string] => {
    if (typeof m === "string") {
      const parts = m.split(" ");
      if (parts.length === 2) return [parts[0]!, parts[1]!];
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
      return [m[0], m[1]];
    }
    return bad(source, `merge ${i} ${JSON.stringify(m)} is not a pair`);
  });
  const unkName = model.unk_token;
  const unk = typeof unkName === "string" ? vocab.get(unkName) : undefined;
  if (unk === undefined) bad(source, `unk_token ${JSON.stringify(unkName)} is not in the vocab`);

  const post = json.post_processor;
  if (!isRecord(post) || post.type !== "TemplateProcessing" || !Array.isArray(post.single)) bad(source, "post_processor is not a TemplateProcessing");
  const single = post.single as unknown[];
  const shape = single.map((p) => (isRecord(p) && isRecord(p.SpecialToken) ? `S:${String(p.SpecialToken.id)}` : isRecord(p) && isRecord(p.Sequence) ? `$${String(p.Sequence.id)}` : "?"));
  if (shape.length !== 3 || shape[1] !== "$A" || !shape[0]!.startsWith("S:") || !shape[2]!.startsWith("S:")) bad(source, `post_processor template ${shape.join(" ")} is not "[CLS] $A [SEP]"-shaped`);
  const specialId = (name: string): number => {
    const st = isRecord(post.special_tokens) ? post.special_tokens[name] : undefined;
    const ids = isRecord(st) && Array.isArray(st.ids) ? st.ids : undefined;
    if (ids?.length !== 1 || typeof ids[0] !== "number") bad(source, `post_processor special token ${name} must have exactly one id`);
    return ids[0];
  };
  const cls = specialId(shape[0]!.slice(2));
  const sep = specialId(shape[2]!.slice(2));

  const added: { content: string; id: number }[] = [];
  for (const a of Array.isArray(json.added_tokens) ? json.added_tokens : []) {
    if (!isRecord(a) || typeof a.content !== "string" || typeof a.id !== "number") bad(source, `added token ${JSON.stringify(a)} lacks content or id`);
    if (a.normalized === true && json.normalizer) bad(source, "normalized added tokens are not supported");
    if (a.single_word === true || a.lstrip === true || a.rstrip === true) bad(source, `added token ${a.content} uses single_word/lstrip/rstrip`);
    added.push({ content: a.content, id: a.id });
  }
  return { vocab, merges, unk, cls, sep, added };
}
