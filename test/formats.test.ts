/**
 * `embed convert` and `embed inspect` through the CLI: a real store (test-tiny, mean +
 * per-residue) converted to every format and read back from Python with the libraries users use;
 * inspect on complete, unfinished (hand-made, and killed mid-run with the fake worker) and
 * missing stores; refusals with their exit codes.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ROOT, pythonBin } from "../src/config.ts";
import { convertStore, FORMATS, inspectStore } from "../src/store/formats.ts";
import { FAKE_DIR } from "./helpers.ts";

// These tests spawn Python (torch for the run and for VirNucPro files).
setDefaultTimeout(120_000);

const tmp = mkdtempSync(join(tmpdir(), "embed-formats-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const EXAMPLE = join(PACKAGE_ROOT, "examples", "example.fasta");
const STORE = join(tmp, "store");

async function embed(args: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...(process.env as Record<string, string>), NO_COLOR: "1", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** Run a Python snippet with the worker's Python; it prints one JSON value. */
function py(code: string, ...argv: string[]): any {
  const r = Bun.spawnSync([pythonBin(), "-c", code, ...argv], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return JSON.parse(r.stdout.toString());
}

/** The store as NumPy sees it: ids, and sums to compare values against. */
const REFERENCE = `
import sys, json, numpy as np
d = sys.argv[1]
m = np.load(d + "/mean.layer2.npy"); r = np.load(d + "/residues.layer2.npy"); o = np.load(d + "/residues.offsets.npy")
print(json.dumps({"ids": open(d + "/ids.txt").read().split(), "mean": m.tolist(), "residues": r.tolist(), "offsets": o.tolist()}))`;
let ref: { ids: string[]; mean: number[][]; residues: number[][]; offsets: number[] };

beforeAll(async () => {
  const r = await embed(["run", EXAMPLE, "-o", STORE, "--model", "test-tiny", "--include", "mean,per-residue"]);
  if (r.code !== 0) throw new Error(r.stderr);
  ref = py(REFERENCE, STORE);
});

describe("embed convert", () => {
  test("hdf5: h5py reads the ids, every array and the manifest attributes", async () => {
    const r = await embed(["convert", STORE, "--to", "hdf5"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ format: "hdf5", records: 6, files: [join(STORE, "embeddings.h5")] });
    const got = py(
      `import sys, json, h5py
with h5py.File(sys.argv[1] + "/embeddings.h5", "r") as f:
    print(json.dumps({"ids": list(f["ids"].asstr()[:]), "mean": f["mean/layer2"][:].tolist(), "residues": f["residues/layer2"][:].tolist(),
                      "offsets": f["residues/offsets"][:].tolist(), "model": f.attrs["model"], "layers": f.attrs["layers"].tolist(), "dim": int(f.attrs["dim"])}))`,
      STORE,
    );
    expect(got.ids).toEqual(ref.ids);
    expect(got.mean).toEqual(ref.mean);
    expect(got.residues).toEqual(ref.residues);
    expect(got.offsets).toEqual(ref.offsets);
    expect(got).toMatchObject({ model: "test-tiny", layers: [2], dim: 64 });
  });

  test("parquet: pyarrow + pandas read one file per output, per-residue as (id, position, embedding)", async () => {
    const out = join(tmp, "pq");
    const r = await embed(["convert", STORE, "--to", "parquet", "-o", out]);
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["mean.layer2.parquet", "residues.layer2.parquet"]);
    const got = py(
      `import sys, json, numpy as np, pyarrow.parquet as pq
m = pq.read_table(sys.argv[1] + "/mean.layer2.parquet"); md = m.to_pandas()
r = pq.read_table(sys.argv[1] + "/residues.layer2.parquet").to_pandas()
print(json.dumps({"ids": md["id"].tolist(), "mean": np.stack(md["embedding"].to_numpy()).tolist(), "rid": r["id"].tolist(), "pos": r["position"].tolist(),
                  "residues": np.stack(r["embedding"].to_numpy()).tolist(), "type": str(m.schema.field("embedding").type),
                  "manifest": json.loads(m.schema.metadata[b"embed.manifest"])["model"]["name"]}))`,
      out,
    );
    expect(got.ids).toEqual(ref.ids);
    expect(got.mean).toEqual(ref.mean);
    expect(got.residues).toEqual(ref.residues);
    expect(got.type).toBe("fixed_size_list<element: float>[64]");
    expect(got.manifest).toBe("test-tiny");
    const lengths = ref.offsets.slice(1).map((x, i) => x - ref.offsets[i]!);
    expect(got.rid).toEqual(ref.ids.flatMap((id, i) => Array(lengths[i]).fill(id)));
    expect(got.pos).toEqual(lengths.flatMap((n) => Array.from({ length: n }, (_, p) => p)));
  });

  test("virnucpro: torch.load gives {'proteins': ids, 'data': [float32 Tensor(dim)]}", async () => {
    const r = await embed(["convert", STORE, "--to", "virnucpro"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).files).toEqual([join(STORE, "virnucpro", "output_1_ESM.pt")]);
    const got = py(
      `import sys, json, torch
d = torch.load(sys.argv[1] + "/virnucpro/output_1_ESM.pt")
print(json.dumps({"keys": sorted(d), "proteins": d["proteins"], "dtypes": sorted({str(t.dtype) for t in d["data"]}), "shapes": sorted({tuple(t.shape) for t in d["data"]}),
                  "data": torch.stack(d["data"]).tolist()}))`,
      STORE,
    );
    expect(got.keys).toEqual(["data", "proteins"]);
    expect(got.proteins).toEqual(ref.ids);
    expect(got.dtypes).toEqual(["torch.float32"]);
    expect(got.shapes).toEqual([[64]]);
    expect(got.data).toEqual(ref.mean);
  });

  test("npy: a store of the selected arrays only, loadable with mmap", async () => {
    const out = join(tmp, "npy");
    const r = await embed(["convert", STORE, "--to", "npy", "-o", out, "--kind", "mean", "--layer", "-1"]);
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["ids.txt", "manifest.json", "mean.layer2.npy"]);
    const got = py(`import sys, json, numpy as np; x = np.load(sys.argv[1] + "/mean.layer2.npy", mmap_mode="r"); print(json.dumps({"mm": isinstance(x, np.memmap), "mean": x.tolist()}))`, out);
    expect(got).toEqual({ mm: true, mean: ref.mean });
    expect(inspectStore(out)).toMatchObject({ state: "complete", outputs: ["mean"], records: 6 });
  });

  test("convertStore (API) returns the summary; FORMATS lists the four formats", async () => {
    expect([...FORMATS]).toEqual(["npy", "hdf5", "parquet", "virnucpro"]);
    const s = await convertStore(STORE, "hdf5", { out: join(tmp, "api.h5") });
    expect(s).toMatchObject({ format: "hdf5", records: 6, files: [join(tmp, "api.h5")] });
  });

  test("from HDF5 and Parquet: store → .h5 → Parquet → npy gives the store back; refusals keep their hints and exit codes", async () => {
    const h5 = join(tmp, "chain.h5");
    const pq = join(tmp, "chain-pq");
    const back = join(tmp, "chain-npy");
    expect((await embed(["convert", STORE, "--to", "hdf5", "-o", h5])).code).toBe(0);
    const toPq = await embed(["convert", h5, "--to", "parquet", "-o", pq]);
    expect(toPq.code).toBe(0);
    expect(JSON.parse(toPq.stdout)).toMatchObject({ format: "parquet", from: "hdf5", source: h5, records: 6, outputs: [{ kind: "mean", layer: 2 }, { kind: "residues", layer: 2 }] });
    const toNpy = await embed(["convert", pq, "--to", "npy", "-o", back]);
    expect(toNpy.code).toBe(0);
    expect(JSON.parse(toNpy.stdout)).toMatchObject({ format: "npy", from: "parquet", records: 6 });
    expect(py(REFERENCE, back)).toEqual(ref);
    expect(inspectStore(back)).toMatchObject({ state: "complete", records: 6, layers: [2], outputs: ["mean", "residues"], model: { name: "test-tiny" } });

    const layer = await embed(["convert", h5, "--to", "parquet", "-o", join(tmp, "never"), "--layer", "1"]);
    expect(layer.code).toBe(2);
    expect(layer.stderr).toContain("--layer 1: the HDF5 file holds layers 2");
    expect(existsSync(join(tmp, "never"))).toBe(false);
    const self = await embed(["convert", h5, "--to", "hdf5", "-o", h5]);
    expect(self.code).toBe(2);
    expect(self.stderr).toContain("is the source itself");
    const noOut = await embed(["convert", h5, "--to", "npy"]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toContain("needs -o");
    const vnp = join(tmp, "chain-vnp");
    expect((await embed(["convert", back, "--to", "virnucpro", "-o", vnp])).code).toBe(0);
    const fromVnp = await embed(["convert", vnp, "--to", "hdf5", "-o", join(tmp, "never.h5")]);
    expect(fromVnp.code).toBe(6);
    expect(fromVnp.stdout).toBe("");
    expect(fromVnp.stderr).toContain("VirNucPro .pt files, which embed writes but does not read");
    expect(fromVnp.stderr).toContain("hint: convert from the store, HDF5 file or Parquet directory they were written from");
    const missing = await embed(["convert", join(tmp, "nowhere.h5"), "--to", "parquet"]);
    expect(missing.code).toBe(6);
    expect(missing.stderr).toContain("does not exist");
  });

  test("refusals: unknown format, absent layer, a store that is not finished, a directory that is not a store", async () => {
    const bad = await embed(["convert", STORE, "--to", "csv"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("choose from npy, hdf5, parquet, virnucpro");
    const layer = await embed(["convert", STORE, "--to", "hdf5", "--layer", "7"]);
    expect(layer.code).toBe(2);
    expect(layer.stderr).toContain("the store holds layers 2");
    const vr = await embed(["convert", STORE, "--to", "virnucpro", "--kind", "per-residue"]);
    expect(vr.code).toBe(2);
    const unf = unfinished("unf-convert");
    const u = await embed(["convert", unf, "--to", "parquet"]);
    expect(u.code).toBe(6);
    expect(u.stderr).toContain("unfinished store: 55 of 300 records committed");
    expect(u.stderr).toContain("resume");
    expect(readdirSync(unf).filter((f) => f.endsWith(".parquet"))).toEqual([]);
    const none = await embed(["convert", tmp, "--to", "hdf5"]);
    expect(none.code).toBe(6);
    expect(none.stderr).toContain("not an embed store");
  });
});

/** An unfinished store by hand: run.json and two committed shard records (25 + 30 records). */
function unfinished(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, "shards"), { recursive: true });
  const identity = { recordsSha256: "ab", records: 300, model: { name: "fake", path: "fake", numLayers: 2, dim: 8 }, layers: [2], include: ["mean"], dtype: "float32", precision: "fp32", truncate: 1022, duplicateIds: "error" };
  writeFileSync(join(dir, "run.json"), JSON.stringify({ format: "embed-run", version: 2, createdAt: "2026-01-01T00:00:00.000Z", identity }));
  writeFileSync(join(dir, "shards", "000000.meta.json"), JSON.stringify({ shard: 0, records: 25, residues: 700, files: {} }));
  writeFileSync(join(dir, "shards", "000001.meta.json"), JSON.stringify({ shard: 1, records: 30, residues: 900, files: {} }));
  writeFileSync(join(dir, "shards", "000002.index.u32.partial"), ""); // uncommitted: not counted
  return dir;
}

describe("embed inspect", () => {
  test("a complete store: model, layers, outputs, counts, shapes, and the formats converted next to it", async () => {
    const r = await embed(["inspect", STORE]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ state: "complete", complete: true, model: { name: "test-tiny", dim: 64 }, layers: [2], outputs: ["mean", "residues"], dim: 64, dtype: "float32", records: 6, residues: ref.offsets.at(-1) });
    expect(s.arrays.map((a: { file: string; shape: number[] }) => [a.file, a.shape])).toEqual([
      ["mean.layer2.npy", [6, 64]],
      ["residues.layer2.npy", [ref.offsets.at(-1), 64]],
      ["residues.offsets.npy", [7]],
    ]);
    const formats = Object.fromEntries(s.formats.map((f: { format: string; files: string[]; stale: boolean }) => [f.format, f]));
    expect(formats.hdf5.files).toEqual(["embeddings.h5"]);
    expect(formats.virnucpro.files).toEqual(["virnucpro/output_1_ESM.pt"]);
    expect(formats.hdf5.stale).toBe(false);
    expect(s.missing).toEqual([]);
  });

  test("a hand-made unfinished store: committed records from the shard records, and the resume hint", async () => {
    const r = await embed(["inspect", unfinished("unf"), "--json"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ state: "unfinished", complete: false, records: 300, committed: 55, committedResidues: 1600, shards: 2, model: { name: "fake" } });
    expect(s.hint).toContain("rerun the same `embed run` command");
  });

  test("a run killed after its first shard: inspect counts what is committed; the rerun resumes and completes", async () => {
    const fa = join(tmp, "many.fa");
    writeFileSync(fa, Array.from({ length: 120 }, (_, i) => `>r${i}\n${"ACDEFGHIKLMNPQRSTVWY".slice(0, 5 + (i % 15))}\n`).join(""));
    const out = join(tmp, "killed");
    const env = { EMBED_PYTHON: "python3", EMBED_WORKER_MODULE: "fake_worker", EMBED_WORKER_PYTHONPATH: FAKE_DIR, EMBED_FAKE: JSON.stringify({ slowMs: 100 }) };
    const argv = ["run", fa, "-o", out, "--devices", "cpu", "--max-tokens", "200", "--shard-records", "10"];
    const proc = Bun.spawn(["bun", join(PACKAGE_ROOT, "src", "cli.ts"), ...argv], { stdout: "ignore", stderr: "ignore", env: { ...(process.env as Record<string, string>), ...env } });
    for (let i = 0; i < 600 && !(existsSync(join(out, "shards")) && readdirSync(join(out, "shards")).some((f) => f.endsWith(".meta.json"))); i++) await Bun.sleep(10);
    proc.kill(9);
    await proc.exited;
    const s = inspectStore(out);
    expect(s.state).toBe("unfinished");
    expect(s.records).toBe(120);
    expect(s.committed!).toBeGreaterThanOrEqual(10);
    expect(s.committed!).toBeLessThan(120);
    const metas = readdirSync(join(out, "shards")).filter((f) => f.endsWith(".meta.json"));
    expect(s.shards).toBe(metas.length);
    const cli = await embed(["inspect", out]);
    expect(JSON.parse(cli.stdout).committed).toBe(s.committed);

    const again = await embed(argv, env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumed).toBe(s.committed);
    expect(inspectStore(out)).toMatchObject({ state: "complete", records: 120 });
  });

  test("a directory that is not a store exits 6 with a hint", async () => {
    const r = await embed(["inspect", join(tmp, "nowhere")]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("not an embed store");
  });
});
