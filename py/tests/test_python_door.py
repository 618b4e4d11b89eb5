"""The Python door (py/embed-py: distribution embed-fasta, import name `embed`), installed with pip
into a fresh venv (no system site-packages, nothing of this repo on its path), driving this
checkout's `embed` command line on the random-weight test model.

What the door needs is given explicitly, through its documented discovery (embed/locate.py):
EMBED_HOME = this checkout, EMBED_BUN = the Bun that scripts/setup installed, and python= (the
workers' EMBED_PYTHON) = the Python running these tests, which has torch. One test drops
EMBED_HOME to check the second step of discovery: the tree pip installed the package from.

Embeddings are compared bit for bit with a store written by `bun src/cli.ts run`: the same
records, model and options give the same batches, and the CPU worker computes in fp32.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "py" / "embed-py"
MODEL = ROOT / ".models" / "test-tiny"
BUN = shutil.which("bun") or str(ROOT / ".tools" / "node_modules" / ".bin" / "bun")
WORKER_PYTHON = os.environ.get("EMBED_PYTHON") or sys.executable

pytestmark = pytest.mark.skipif(not (MODEL.is_dir() and os.access(BUN, os.X_OK)),
                                reason="needs scripts/setup: .models/test-tiny and Bun under .tools/")

RECORDS = [("p1", "MKTAYIAKQRQISFVKSHFSRQ"), ("p2", "MK"), ("p3", "MLSDEDFKAVFGMTRSAFANLPLWKQQNLKKEKGLF"),
           ("p4", "ACDEFGHIKLMNPQRSTVWY"), ("p5", "M"), ("p6", "GSHMKV"), ("p7", "MKVLAAGIVGLLLAS")]
IDS = [r for r, _ in RECORDS]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("door")
    (d / "in.fa").write_text("".join(f">{r} some description\n{s[:10]}\n{s[10:]}\n" if len(s) > 10 else f">{r}\n{s}\n"
                                     for r, s in RECORDS))
    (d / "bad.fa").write_text(">p1\nMKTAY\n>p2\nMK1V\n")
    return d


@pytest.fixture(scope="module")
def venv(work) -> Path:
    """A clean venv with the package pip-installed from its directory (numpy comes from the index)."""
    v = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(v)], check=True)
    r = subprocess.run([str(v / "bin" / "python"), "-m", "pip", "install", "-q", str(PKG)], capture_output=True, text=True)
    assert r.returncode == 0, f"pip install {PKG} failed:\n{r.stdout}\n{r.stderr}"
    return v


@pytest.fixture(scope="module")
def reference(work) -> Path:
    """The store of the command line itself, for the same records and options."""
    out = work / "ref"
    r = subprocess.run([BUN, "src/cli.ts", "run", str(work / "in.fa"), "-o", str(out), "--model", str(MODEL),
                        "--layers", "0,-1", "--include", "mean,bos,per-residue", "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "EMBED_PYTHON": WORKER_PYTHON})
    assert r.returncode == 0, r.stderr
    return out


def door(venv: Path, code: str, *, home: bool = True, tmp: Path | None = None, **params) -> dict:
    """Run `code` in the venv's Python (P = params); its last stdout line is JSON, returned."""
    env = {k: v for k, v in os.environ.items() if k not in ("EMBED_HOME", "EMBED_PYTHON", "PYTHONPATH")}
    env.update(EMBED_BUN=BUN, PYTHONNOUSERSITE="1")
    if home:
        env["EMBED_HOME"] = str(ROOT)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    params = {"model": str(MODEL), "python": WORKER_PYTHON, **params}
    prog = "import json, sys\nimport numpy as np\nimport embed\nP = json.loads(sys.argv[1])\n" + textwrap.dedent(code)
    r = subprocess.run([str(venv / "bin" / "python"), "-c", prog, json.dumps(params)], cwd=venv.parent,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def load(store: Path, name: str) -> np.ndarray:
    return np.load(store / name)


def test_run_gives_the_command_lines_store(venv, work, reference):
    res = door(venv, """
        events = []
        s = embed.run(P["fasta"], out=P["out"], model=P["model"], layers=[0, -1], include=["mean", "bos", "per-residue"],
                      python=P["python"], progress=events.append, log=False)
        d = s.to_dict()
        np.savez(P["npz"], mean0=s.array("mean", 0), mean=s.array("mean", -1), bos=s.array("bos"),
                 res=s.array("residues"), p3_0=s.per_residue("p3", 0), p3=s.per_residue(2), p2=d["p2"])
        print(json.dumps({"ids": s.ids, "len": len(s), "layers": s.layers, "events": [e["type"] for e in events],
                          "mmap": isinstance(s.array(), np.memmap), "file": embed.__file__, "keys": list(d)}))
    """, fasta=str(work / "in.fa"), out=str(work / "door"), npz=str(work / "run.npz"))
    assert Path(res["file"]).is_relative_to(venv), "the installed package ran, not the source tree"
    assert res["ids"] == IDS == (reference / "ids.txt").read_text().split()
    assert res["len"] == len(IDS) and res["keys"] == IDS
    assert res["layers"] == [0, 2]  # test-tiny has 2 layers: -1 is stored as 2
    assert res["events"][0] == "start" and res["events"][-1] == "finish" and "batch" in res["events"]
    assert res["mmap"] is True
    got = np.load(work / "run.npz")
    np.testing.assert_array_equal(got["mean0"], load(reference, "mean.layer0.npy"))
    np.testing.assert_array_equal(got["mean"], load(reference, "mean.layer2.npy"))
    np.testing.assert_array_equal(got["bos"], load(reference, "bos.layer2.npy"))
    np.testing.assert_array_equal(got["res"], load(reference, "residues.layer2.npy"))
    off = load(reference, "residues.offsets.npy")
    np.testing.assert_array_equal(got["p3_0"], load(reference, "residues.layer0.npy")[off[2]:off[3]])
    np.testing.assert_array_equal(got["p3"], load(reference, "residues.layer2.npy")[off[2]:off[3]])
    assert got["p3"].shape == (len(RECORDS[2][1]), load(reference, "mean.layer2.npy").shape[1])
    np.testing.assert_array_equal(got["p2"], load(reference, "mean.layer2.npy")[1])


def test_iter_yields_every_record_once_in_order(venv, work, reference):
    tmp = work / "iter-tmp"
    tmp.mkdir()
    res = door(venv, """
        ids, xs = [], []
        for chunk_ids, X in embed.iter([tuple(r) for r in P["records"]], chunk=3, model=P["model"], python=P["python"],
                                       progress=False, log=False):
            ids.append(chunk_ids)
            xs.append(X)
        np.save(P["npy"], np.concatenate(xs))
        print(json.dumps({"chunks": ids, "types": sorted({type(x).__name__ for x in xs})}))
    """, tmp=tmp, records=RECORDS, npy=str(work / "iter.npy"))
    assert res["chunks"] == [IDS[0:3], IDS[3:6], IDS[6:7]]
    assert res["types"] == ["ndarray"]  # copies in memory: the temporary store is gone after the loop
    np.testing.assert_array_equal(np.load(work / "iter.npy"), load(reference, "mean.layer2.npy"))
    assert list(tmp.iterdir()) == [], "the temporary store is removed when the loop ends"


def test_errors_are_typed_with_message_and_hint(venv, work):
    res = door(venv, """
        out = {}
        def catch(name, f):
            try:
                f()
                out[name] = None
            except embed.EmbedError as e:
                out[name] = {"type": type(e).__name__, "value_error": isinstance(e, ValueError), "code": e.exit_code,
                             "message": e.message, "hint": e.hint, "stderr": e.stderr, "str": str(e)}
        run = lambda fasta, **kw: embed.run(fasta, **{"model": P["model"], "python": P["python"], "progress": False, "log": False, **kw})
        catch("bad_file", lambda: run(P["bad"]))
        catch("bad_memory", lambda: run([("a", "MK"), ("b", "M1K")]))
        catch("bad_id", lambda: run({"a": "MK", "x y": "MK"}))
        catch("bad_option", lambda: run(P["fasta"], max_token=64))
        catch("bad_model", lambda: run(P["fasta"], model=P["missing"], download=False))
        print(json.dumps(out))
    """, bad=str(work / "bad.fa"), fasta=str(work / "in.fa"), missing=str(work / "no-such-model"))
    bad = res["bad_file"]
    assert bad["type"] == "InputError" and bad["value_error"] and bad["code"] == 3
    assert f"{work / 'bad.fa'}:4" in bad["message"] and 'record "p2"' in bad["message"] and "digit" in bad["message"]
    assert bad["hint"] and "digits" in bad["hint"] and "hint: " + bad["hint"] in bad["str"]
    assert bad["message"].split(":")[-1].strip() in bad["stderr"]  # the whole stderr travels with the error
    mem = res["bad_memory"]
    assert mem["type"] == "InputError" and mem["message"].startswith("sequences[1]") and 'record "b"' in mem["message"]
    assert res["bad_id"]["type"] == "InputError" and "sequences[1]" in res["bad_id"]["message"]
    assert res["bad_id"]["stderr"] == "" and "spaces" in res["bad_id"]["hint"]  # refused before embed ran
    opt = res["bad_option"]
    assert opt["type"] == "OptionsError" and opt["code"] == 2 and "--max-token" in opt["message"] and "--max-tokens" in opt["message"]
    model = res["bad_model"]
    assert model["type"] == "ModelError" and model["code"] == 5 and model["hint"]


def test_discovery_from_the_install_path_and_a_clear_error_without_it(venv, work):
    res = door(venv, """
        import os
        found = embed.locate.command()
        os.environ["EMBED_HOME"] = P["empty"]
        try:
            embed.locate.command()
            err = None
        except embed.OrchestratorNotFound as e:
            err = {"message": e.message, "hint": e.hint}
        print(json.dumps({"found": found, "err": err}))
    """, home=False, empty=str(work))
    assert res["found"] == [BUN, str(ROOT / "src" / "cli.ts")]  # from pip's record of the source path
    assert f"EMBED_HOME: {work} holds no src/cli.ts" in res["err"]["message"]
    assert "EMBED_HOME" in res["err"]["hint"] and "EMBED_BUN" in res["err"]["hint"]


def test_open_checks_the_store_and_verify_asks_embed_inspect(venv, work, reference):
    sizes = work / "damaged-size"
    shutil.copytree(reference, sizes)
    with open(sizes / "mean.layer0.npy", "r+b") as f:
        f.truncate(200)
    flipped = work / "damaged-bytes"
    shutil.copytree(reference, flipped)
    data = bytearray((flipped / "bos.layer2.npy").read_bytes())
    data[-1] ^= 0xFF  # same size: only reading the file for its SHA-256 tells
    (flipped / "bos.layer2.npy").write_bytes(bytes(data))
    unfinished = work / "unfinished"
    (unfinished / "shards").mkdir(parents=True)
    res = door(venv, """
        out = {}
        def attempt(name, f):
            try:
                out[name] = repr(f())
            except embed.EmbedError as e:
                out[name] = {"type": type(e).__name__, "message": e.message, "hint": e.hint}
        attempt("good", lambda: embed.open(P["good"], verify=True))
        attempt("sizes", lambda: embed.open(P["sizes"]))
        attempt("flipped_plain", lambda: embed.open(P["flipped"]))
        attempt("flipped_verify", lambda: embed.open(P["flipped"], verify=True))
        attempt("unfinished", lambda: embed.open(P["unfinished"]))
        print(json.dumps(out))
    """, good=str(reference), sizes=str(sizes), flipped=str(flipped), unfinished=str(unfinished))
    assert res["good"].startswith("Store(") and "7 records" in res["good"]
    assert res["sizes"]["type"] == "OutputError" and "mean.layer0.npy" in res["sizes"]["message"]
    assert res["flipped_plain"].startswith("Store(")  # sizes agree: only --verify reads the bytes
    assert res["flipped_verify"]["type"] == "OutputError" and "bos.layer2.npy" in res["flipped_verify"]["message"]
    assert res["unfinished"]["type"] == "OutputError" and "resume" in res["unfinished"]["hint"]
