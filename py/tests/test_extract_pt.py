"""`embed extract` writes what fair-esm's scripts/extract.py writes: the same file names (whole
header lines, '/' making subdirectories), keys, layer keys, dtypes and shapes, and values within
fp32 tolerance, on one random-weight checkpoint. The reference is extract.py's loop run here with
fair-esm's own model, FastaBatchedDataset and batch converter.

Tolerance: atol = rtol = 1e-4. Both sides compute in fp32 on the CPU; embed's packed attention
and fused layer order differ from fair-esm's padded batches only by float rounding (observed
differences are around 1e-6 on outputs of unit scale after LayerNorm).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOL = dict(atol=1e-4, rtol=1e-4)

FASTA = """>sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens
MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSHGSAQVKGHGKKVADALTNAVAHV
DDMPNALSALSDLHAHKLRVDPVNFKLLSHCLLVTLAAHLPAEFTPAVHASLDKFLASVSTVLTSKYR
>sp|P69905|HBA_HUMAN second copy, same first word
MKTAYIAKQRQISFVKSHFSRQ
>clone/7 a label with a slash
ACDEFGHIKLMNPQRSTVWY
>  padded   header  
MK
"""


def reference_extract(model, alphabet, fasta: Path, out: Path, repr_layers, include, toks_per_batch, trunc):
    """fair-esm scripts/extract.py's run(), on CPU, with its model and data classes."""
    from esm import FastaBatchedDataset

    dataset = FastaBatchedDataset.from_file(fasta)
    batches = dataset.get_batch_indices(toks_per_batch, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(trunc), batch_sampler=batches)
    n = model.num_layers
    layers = [(i + n + 1) % (n + 1) for i in repr_layers]
    with torch.no_grad():
        for labels, strs, toks in loader:
            reps = model(toks, repr_layers=layers)["representations"]
            for i, label in enumerate(labels):
                path = out / f"{label}.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                result = {"label": label}
                k = min(trunc, len(strs[i]))
                if "per_tok" in include:
                    result["representations"] = {l: t[i, 1:k + 1].clone() for l, t in reps.items()}
                if "mean" in include:
                    result["mean_representations"] = {l: t[i, 1:k + 1].mean(0).clone() for l, t in reps.items()}
                if "bos" in include:
                    result["bos_representations"] = {l: t[i, 0].clone() for l, t in reps.items()}
                torch.save(result, path)


def files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*.pt"))


@pytest.mark.skipif(shutil.which("bun") is None, reason="needs Bun on PATH (scripts/test puts it there)")
def test_embed_extract_matches_fair_esm_extract(tiny, fair, tmp_path):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(FASTA)
    include = ["mean", "per_tok", "bos"]
    ref, got = tmp_path / "ref", tmp_path / "got"
    reference_extract(*fair, fasta, ref, [0, -1, 2], include, toks_per_batch=300, trunc=60)
    run = subprocess.run(
        ["bun", str(ROOT / "src" / "cli.ts"), "extract", str(tiny["fair-esm"]), str(fasta), str(got),
         "--repr_layers", "0", "-1", "2", "--include", *include, "--toks_per_batch", "300",
         "--truncation_seq_length", "60", "--nogpu"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert files(got) == files(ref)
    assert "clone/7 a label with a slash.pt" in files(got)
    assert "padded   header.pt" in files(got)
    assert not (got / ".embed-store").exists()  # removed once the files are written
    for name in files(ref):
        want = torch.load(ref / name, weights_only=True)
        have = torch.load(got / name, weights_only=True)
        assert list(have) == list(want), name
        assert have["label"] == want["label"]
        for key in list(want)[1:]:
            assert list(have[key]) == list(want[key]) == [0, 2, 3], (name, key)
            for layer, w in want[key].items():
                h = have[key][layer]
                assert h.dtype == w.dtype == torch.float32
                assert h.shape == w.shape, (name, key, layer)
                assert h.untyped_storage().nbytes() == h.numel() * 4  # its own rows only (cloned)
                torch.testing.assert_close(h, w, **TOL, msg=lambda m: f"{name} {key}[{layer}]: {m}")
    # The long record was cut at 60 residues, as extract.py's truncation_seq_length cuts it.
    alpha = torch.load(got / "sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens.pt", weights_only=True)
    assert alpha["representations"][3].shape == (60, 64)

    # Rerun: every file exists, so nothing is embedded and nothing rewritten (extract.py's resume rule).
    before = {n: (got / n).stat().st_mtime_ns for n in files(got)}
    again = subprocess.run(["bun", str(ROOT / "src" / "cli.ts"), "extract", str(tiny["fair-esm"]), str(fasta), str(got),
                            "--include", "mean", "--nogpu", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert '"written":0' in again.stdout.replace(" ", "") and '"skipped":4' in again.stdout.replace(" ", "")
    assert {n: (got / n).stat().st_mtime_ns for n in files(got)} == before
