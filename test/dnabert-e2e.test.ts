/**
 * DNABERT-S end to end through the CLI, with real Python workers and a tiny random DNABERT-S folder
 * (the released tokenizer.json): `embed run` on nucleotide FASTA writes mean, bos and per-residue
 * rows for layers 0 and -1; those rows equal the reference model's (dnabert_s/model.py), run one
 * read at a time by Python on ids from Hugging Face `tokenizers` — which must equal the TS BPE's
 * ids, so the tokenizer path is checked end to end. A run killed with SIGKILL and resumed equals
 * an uninterrupted one byte for byte; --dedup and --slice 1/2 + 2/2 + merge equal a plain run;
 * the hdf5 and parquet conversions hold the store's arrays.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, PYTHON_PACKAGE_DIR } from "../src/config.ts";
import { loadBpe } from "../src/input/reading.ts";
import { DNABERT_TOKENIZER, randomReads, readsFasta, writeTinyDnabert } from "./dnabert-folder.ts";
import { realPython, runText, storeContent } from "./helpers.ts";

setDefaultTimeout(120_000);
const tmp = mkdtempSync(join(tmpdir(), "embed-dnabert-e2e-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const folder = join(tmp, "tiny-dnabert-s");
const input = join(tmp, "reads.fna");

// 300 reads of 40-300 bases (lowercase and N among them), then 30 copies of earlier reads (every
// other one lowercased: the same bases) for --dedup.
const BASE = randomReads(300, 40, 300, 17);
const READS = [...BASE, ...Array.from({ length: 30 }, (_, k) => ({ id: `copy${k}`, seq: k % 2 ? BASE[k * 7]!.seq.toLowerCase() : BASE[k * 7]!.seq }))];

/** Small batches and shards: many of each, so that a kill lands between commits. */
const runArgs = (out: string, extra: string[] = []) => [
  "run", input, "-o", out, "--model", folder, "--devices", "cpu", "--include", "mean,bos,per-residue", "--layers", "0,-1",
  "--max-tokens", "128", "--shard-records", "8", ...extra,
];

function spawn(argv: string[]) {
  return Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
}

async function embed(argv: string[]) {
  const p = spawn(argv);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

async function embedOk(argv: string[]) {
  const r = await embed(argv);
  expect(r.stderr).not.toContain("error:");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

/** Python on the store(s): max |a - b| per array between two stores, ids equal, offsets equal. */
const COMPARE = `
import json, sys, numpy as np
from pathlib import Path
a, b = Path(sys.argv[1]), Path(sys.argv[2])
names = sorted(p.name for p in a.glob("*.npy"))
assert names == sorted(p.name for p in b.glob("*.npy")), (names, sorted(p.name for p in b.glob("*.npy")))
out = {"ids": (a / "ids.txt").read_text() == (b / "ids.txt").read_text(), "diff": {}}
for n in names:
    x, y = np.load(a / n), np.load(b / n)
    out["diff"][n] = float(np.abs(x.astype(np.float64) - y).max()) if x.shape == y.shape else None
print(json.dumps(out))
`;

async function python(code: string, args: string[]) {
  const r = await runText([realPython(), "-c", code, ...args], { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR });
  expect(r.stderr).not.toContain("Traceback");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

/** Two stores hold the same ids and arrays, equal within `tol` (0: equal values). */
async function expectSameStore(a: string, b: string, tol: number) {
  const c = await python(COMPARE, [a, b]);
  expect(c.ids).toBe(true);
  expect(Object.keys(c.diff)).toEqual(["bos.layer0.npy", "bos.layer2.npy", "mean.layer0.npy", "mean.layer2.npy", "residues.layer0.npy", "residues.layer2.npy", "residues.offsets.npy"]);
  for (const [name, d] of Object.entries(c.diff)) {
    expect([name, d as number]).toEqual([name, expect.any(Number)]);
    expect(d as number).toBeLessThanOrEqual(tol);
  }
}

let plain = "";
let plainSummary: { records: number; family: string; unknown: number; formats: { format: string; files: string[] }[] };

beforeAll(async () => {
  await writeTinyDnabert(folder, 9);
  writeFileSync(input, readsFasta(READS));
  plain = join(tmp, "plain");
  plainSummary = await embedOk(runArgs(plain, ["--format", "npy,hdf5,parquet"]));
});

describe("DNABERT-S end to end (CLI, real workers)", () => {
  test("the store's rows equal the reference model's, one read at a time, on Hugging Face tokenizers' ids (= the TS BPE's)", async () => {
    expect(plainSummary.family).toBe("dnabert-s");
    expect(plainSummary.records).toBe(READS.length);
    expect(plainSummary.unknown).toBe(READS.filter((r) => r.seq.toUpperCase().includes("N")).length);
    const readsJson = join(tmp, "reads.json");
    writeFileSync(readsJson, JSON.stringify(READS));
    const REFERENCE = `
import json, sys, numpy as np, torch
from pathlib import Path
from tokenizers import Tokenizer
from embed_worker.dnabert_s.weights import load_model
from embed_worker.dnabert_s import model as M
folder, store, reads = Path(sys.argv[1]), Path(sys.argv[2]), json.load(open(sys.argv[3]))
tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
tok.no_padding(); tok.no_truncation()
ref, _ = load_model(folder)
ids_txt = (store / "ids.txt").read_text().split()
assert ids_txt == [r["id"] for r in reads], "store ids are not the input's, in order"
offsets = np.load(store / "residues.offsets.npy")
arrays = {f"{k}.layer{l}": np.load(store / f"{k}.layer{l}.npy") for k in ("mean", "bos", "residues") for l in (0, 2)}
diff = {k: 0.0 for k in arrays}
ids_out = {}
for i, r in enumerate(reads):
    ids = tok.encode(r["seq"].upper()).ids  # [CLS] ... [SEP]
    ids_out[r["id"]] = ids
    cu = torch.tensor([0, len(ids)], dtype=torch.int32)
    h = ref(torch.tensor(ids), cu, len(ids), [0, 2])
    assert offsets[i + 1] - offsets[i] == len(ids) - 2, (r["id"], offsets[i + 1] - offsets[i], len(ids))
    for l in (0, 2):
        want = {"mean": M.mean_all_tokens(h[l], cu)[0], "bos": h[l][0], "residues": h[l][1:-1]}
        for k, v in want.items():
            got = arrays[f"{k}.layer{l}"][offsets[i]:offsets[i + 1]] if k == "residues" else arrays[f"{k}.layer{l}"][i]
            diff[f"{k}.layer{l}"] = max(diff[f"{k}.layer{l}"], float(np.abs(got - v.double().numpy()).max()))
print(json.dumps({"diff": diff, "ids": ids_out}))
`;
    const r = await python(REFERENCE, [folder, plain, readsJson]);
    // Same fp32 weights and exact attention; packed batches vs one read alone: rounding only.
    for (const [name, d] of Object.entries(r.diff as Record<string, number>)) {
      expect([name, d]).toEqual([name, expect.any(Number)]);
      expect(d).toBeLessThan(1e-4);
    }
    // The TS tokenizer (which fed the run) gives Hugging Face's ids, framing included.
    const bpe = loadBpe(DNABERT_TOKENIZER);
    for (const read of READS) expect([read.id, Array.from(bpe.encode(new TextEncoder().encode(read.seq.toUpperCase())).ids)]).toEqual([read.id, r.ids[read.id]]);
  });

  test("killed with SIGKILL after its first shard and run again: the store equals the uninterrupted run's, byte for byte", async () => {
    const out = join(tmp, "killed");
    const p = spawn(runArgs(out));
    const shards = join(out, "shards");
    const started = Date.now();
    while (!(existsSync(shards) && readdirSync(shards).some((f) => f.endsWith(".meta.json")))) {
      if (p.exitCode !== null || Date.now() - started > 60_000) throw new Error(`no shard committed in ${out} (exit ${p.exitCode})`);
      await Bun.sleep(5);
    }
    p.kill("SIGKILL");
    await p.exited;
    expect(existsSync(join(out, "manifest.json"))).toBe(false); // killed mid-run, not after the end
    const again = await embedOk(runArgs(out));
    expect(again.resumed).toBeGreaterThan(0);
    expect(again.resumed).toBeLessThan(READS.length);
    expect(storeContent(out)).toEqual(storeContent(plain));
  });

  test("--dedup embeds each distinct read once and equals a plain run", async () => {
    const out = join(tmp, "dedup");
    const s = await embedOk(runArgs(out, ["--dedup"]));
    expect(s.identical).toBe(30);
    // Copies are their firsts' rows; the firsts were packed with other neighbours: fp32 rounding.
    await expectSameStore(out, plain, 1e-5);
  });

  test("--slice 1/2 and 2/2, merged, equal a plain run", async () => {
    const parts = [1, 2].map((i) => join(tmp, `part-${i}`));
    for (const [k, part] of parts.entries()) {
      const s = await embedOk(runArgs(part, ["--slice", `${k + 1}/2`]));
      expect(s.slice).toBe(`${k + 1}/2`);
      expect(s.records).toBe(k === 0 ? Math.ceil(READS.length / 2) : Math.floor(READS.length / 2));
    }
    const merged = join(tmp, "merged");
    const m = await embed(["merge", merged, ...parts]);
    expect(m.stderr).not.toContain("error:");
    expect(m.code).toBe(0);
    await expectSameStore(merged, plain, 1e-5);
  });

  test("hdf5 and parquet hold the store's arrays", async () => {
    expect(plainSummary.formats.map((f) => f.format)).toEqual(["npy", "hdf5", "parquet"]);
    const CHECK = `
import json, sys, h5py, numpy as np, pyarrow.parquet as pq
from pathlib import Path
out = Path(sys.argv[1])
f = h5py.File(out / "embeddings.h5")
ok = {}
for k in ("mean", "bos"):
    for l in (0, 2):
        x = np.load(out / f"{k}.layer{l}.npy")
        t = pq.read_table(out / f"{k}.layer{l}.parquet")
        ok[f"{k}.layer{l}"] = bool(np.array_equal(f[f"{k}/layer{l}"][:], x)) and t.num_rows == x.shape[0]
ok["residues.layer2"] = bool(np.array_equal(f["residues/layer2"][:], np.load(out / "residues.layer2.npy")))
print(json.dumps(ok))
`;
    const ok = await python(CHECK, [plain]);
    expect(ok).toEqual({ "mean.layer0": true, "mean.layer2": true, "bos.layer0": true, "bos.layer2": true, "residues.layer2": true });
  });
});
