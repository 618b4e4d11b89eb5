/**
 * A thread of the BPE pool (bpe-pool.ts): loads the tokenizer.json it is told, then encodes each
 * block of records it is sent (bases concatenated, record offsets) and sends back their ids
 * ([CLS] … [SEP] framed, concatenated), id offsets and [UNK] counts, the buffers transferred.
 */
import { loadBpe } from "./reading.ts";
import type { BpeBlock, BpeBlockResult, BpeWorkerInit } from "./bpe-pool.ts";
import type { DnaBpeTokenizer } from "./bpe.ts";

declare const self: Worker;
let tokenizer: DnaBpeTokenizer | undefined;

self.onmessage = (e: MessageEvent<BpeWorkerInit | BpeBlock>) => {
  const m = e.data;
  if ("tokenizer" in m) {
    tokenizer = loadBpe(m.tokenizer);
    return;
  }
  const { bases, offsets, count, seq } = m;
  let ids = new Uint16Array(bases.length + 2 * count);
  const idOffsets = new Uint32Array(count + 1);
  const unknown = new Uint32Array(count);
  let at = 0;
  for (let r = 0; r < count; r++) {
    const enc = tokenizer!.encode(bases.subarray(offsets[r]!, offsets[r + 1]!));
    if (at + enc.ids.length > ids.length) {
      const next = new Uint16Array(2 * (at + enc.ids.length));
      next.set(ids.subarray(0, at));
      ids = next;
    }
    ids.set(enc.ids, at);
    at += enc.ids.length;
    idOffsets[r + 1] = at;
    unknown[r] = enc.unknown;
  }
  const out: BpeBlockResult = { seq, ids, idOffsets, unknown };
  self.postMessage(out, [ids.buffer, idOffsets.buffer, unknown.buffer]);
};
