/**
 * The bridge with a real Python worker and a tiny random DNABERT-S folder (dnabert_s/testmodel.py),
 * over both data transports: hand-made u16 BPE ids (ids above 255 need both bytes) go out framed
 * by [CLS]/[SEP], and the pooled outputs that come back equal the reference model's, computed by
 * Python on the same packed batch (mean over all tokens incl. [CLS]/[SEP], bos = [CLS], residues
 * without them). A run told the wrong family is refused at start-up with a model error.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PYTHON_PACKAGE_DIR } from "../src/config.ts";
import { BadModelError } from "../src/errors.ts";
import type { WorkerWireConfig } from "../src/protocol.ts";
import { WorkerHandle } from "../src/workers/handle.ts";
import { TRANSPORTS, type Transport } from "../src/workers/transport.ts";
import { realPython, runText } from "./helpers.ts";

// Each test starts a torch worker: seconds on 2 shared cores.
setDefaultTimeout(180_000);

/** Token ids without framing, as the DNABERT-S tokenizer would hand them over. */
const SEQS = [[4095, 256, 7], [1000], [5, 6, 7, 8, 9, 3000]];

const REFERENCE = `
import json, sys, torch
from embed_worker.dnabert_s.config import DNABERTConfig
from embed_worker.dnabert_s.testmodel import write_folder
from embed_worker.dnabert_s import model as M
from embed_worker.dnabert_s.weights import load_model
folder = write_folder(sys.argv[1], DNABERTConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48, vocab_size=4096), seed=5)
seqs = json.loads(sys.argv[2])
framed = [[1, *s, 2] for s in seqs]
tokens = torch.tensor([t for s in framed for t in s])
cu = torch.tensor([0] + [sum(map(len, framed[:i + 1])) for i in range(len(framed))], dtype=torch.int32)
ref, _ = load_model(folder)
h = ref(tokens, cu, max(map(len, framed)), [2])[2]
print(json.dumps({"mean": M.mean_all_tokens(h, cu).tolist(), "bos": h[cu[:-1].long()].tolist(),
                  "residues": M.token_rows(h, cu, specials=False).tolist()}))
`;

let dir = "";
let folder = "";
let want: Record<"mean" | "bos" | "residues", number[][]>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "embed-dnabert-"));
  folder = join(dir, "tiny-dnabert-s");
  const r = await runText([realPython(), "-c", REFERENCE, folder, JSON.stringify(SEQS)], { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR });
  expect(r.stderr).not.toContain("Traceback");
  expect(r.code).toBe(0);
  want = JSON.parse(r.stdout);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const start = (transport: Transport, over: Partial<WorkerWireConfig> = {}) =>
  WorkerHandle.start({
    python: realPython(),
    pythonPath: PYTHON_PACKAGE_DIR,
    module: "embed_worker",
    readyTimeoutMs: 150_000,
    env: { ...(process.env as Record<string, string>), CUDA_VISIBLE_DEVICES: "" },
    config: {
      name: `dnabert-${transport}`, model: folder, family: "dnabert-s", device: "cpu", precision: "fp32", layers: [-1],
      include: ["mean", "bos", "residues"], outDtype: "float32", maxTokens: 256, slots: 2, transport, threads: 1, ...over,
    },
  });

describe.each(TRANSPORTS.map((t) => [t]))("DNABERT-S worker (%s)", (transport: Transport) => {
  test("u16 ids out, the reference model's pooled rows back", async () => {
    await using w = await start(transport);
    expect(w.ready.family).toBe("dnabert-s");
    expect(w.ready.ring.tokenBytes).toBe(2);
    expect([w.ready.model.numLayers, w.ready.model.dim, w.ready.layers]).toEqual([2, 32, [2]]);
    const got: Record<string, number[]> = {};
    const r = await w.embed({ id: 0, seqs: SEQS.map((s) => Uint16Array.from(s)) }, (res) => {
      for (const o of res.outputs) got[o.kind] = Array.from(o.data);
    });
    expect(r.nonFinite).toBe(0);
    expect(r.outputs.map((o) => [o.kind, o.rows])).toEqual([["mean", 3], ["bos", 3], ["residues", 10]]);
    for (const kind of ["mean", "bos", "residues"] as const) {
      const flat = want[kind].flat();
      expect(got[kind]!.length).toBe(flat.length);
      const worst = Math.max(...flat.map((v, i) => Math.abs(v - got[kind]![i]!)));
      expect(worst).toBeLessThan(1e-5); // same fp32 model and batch; only summation order may differ
    }
  });
});

test("a worker told the ESM-2 family refuses the DNABERT-S folder with a model error", async () => {
  const err = await start("shm", { family: "esm2" }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BadModelError);
  expect((err as Error).message).toContain("is a dnabert-s checkpoint, but this run embeds with the esm2 family");
});
