#!/usr/bin/env bun
/**
 * Notebook-style example: embed a FASTA file with the TypeScript API, then print each protein's
 * nearest neighbour by cosine similarity of the mean embeddings.
 *
 *   bun examples/neighbours.ts [FASTA] [--model NAME]      (defaults: examples/example.fasta, test-tiny)
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Embedder } from "../src/index.ts";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { model: { type: "string", default: "test-tiny" } } });
const fasta = positionals[0] ?? join(import.meta.dir, "example.fasta");

await using embedder = await Embedder.create({ model: values.model });
const ids: string[] = [];
const vectors: Float32Array[] = [];
for await (const e of embedder.embed(fasta)) {
  ids[e.index] = e.id;
  vectors[e.index] = Float32Array.from(e.vector);
}

const unit = vectors.map((v) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
});
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

console.log(`${ids.length} proteins, ${embedder.info.model.name} layer ${embedder.info.layers.at(-1)}, dim ${embedder.info.model.dim}`);
for (let i = 0; i < unit.length; i++) {
  let best = -1;
  let bestCos = -Infinity;
  for (let j = 0; j < unit.length; j++) {
    if (j === i) continue;
    const c = dot(unit[i]!, unit[j]!);
    if (c > bestCos) [best, bestCos] = [j, c];
  }
  console.log(`${ids[i]}\tnearest: ${ids[best]}\tcosine ${bestCos.toFixed(4)}`);
}
