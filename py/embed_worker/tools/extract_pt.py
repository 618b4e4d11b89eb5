"""`embed extract`'s files: a finished store as fair-esm extract.py's per-sequence `.pt` files.

    python -m embed_worker.tools.extract_pt plan FASTA OUT_DIR          labels checked, files missing
    python -m embed_worker.tools.extract_pt write STORE FASTA OUT_DIR --include mean per_tok bos

Each record becomes OUT_DIR/{label}.pt, where the label is the whole header line after '>'
(stripped; an empty header is `seqnum{line index:09d}`), as esm.FastaBatchedDataset builds it;
a '/' in a label makes subdirectories, as extract.py's `output_dir / f"{label}.pt"` does. The
file holds {"label", "representations": {layer: [L, D]}, "mean_representations": {layer: [D]},
"bos_representations": {layer: [D]}} (those asked for), float32, layers as absolute ints, each
tensor its own storage (cloned), so a file holds only its record's rows.

A file that exists is kept (extract.py's resume rule), and each is written under a temporary
name and renamed, so an interrupted write leaves no half file that a rerun would keep. The store
is read front to back through store_source.Store (sizes, headers and checksums checked).
Output: JSON on stdout; a failure exits 1 with `{name, message, hint}` as the last stderr line.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import EmbedWorkerError
from .store_source import Store

#: The hidden store `embed extract` embeds into, inside OUT_DIR (a label may not write into it).
STORE_DIR = ".embed-store"
#: Residue rows read at once, in bytes over all layers (bounds memory whatever the input).
CHUNK_BYTES = 256 << 20
KIND_KEYS = (("per_tok", "residues", "representations"), ("mean", "mean", "mean_representations"),
             ("bos", "bos", "bos_representations"))


class LabelError(EmbedWorkerError):
    default_name = "InputError"


class WriteError(EmbedWorkerError):
    default_name = "OutputError"


def read_labels(fasta: Path) -> list[tuple[str, int]]:
    """(label, 1-based header line) per record, as esm.FastaBatchedDataset.from_file labels them."""
    opener = gzip.open if fasta.read_bytes()[:2] == b"\x1f\x8b" else open
    labels: list[tuple[str, int]] = []
    with opener(fasta, "rt", encoding="utf-8", errors="surrogateescape") as f:
        for idx, line in enumerate(f):
            if line.startswith(">"):
                text = line[1:].strip()
                labels.append((text or f"seqnum{idx:09d}", idx + 1))
    seen: dict[str, int] = {}
    for label, at in labels:
        if label in seen:
            raise LabelError(f"{fasta}:{at}: label {label!r} repeats line {seen[label]} (each record is written to "
                             f"{{label}}.pt, the whole header line)", "make the header lines unique")
        seen[label] = at
        parts = PurePosixPath(label + ".pt").parts
        if label.startswith("/") or ".." in parts or parts[0] == STORE_DIR or "\0" in label:
            raise LabelError(f"{fasta}:{at}: label {label!r} would write outside OUT_DIR/ (or into its {STORE_DIR}/)",
                             "edit that header line: no leading '/', no '..' path parts")
    return labels


def target(out_dir: Path, label: str) -> Path:
    return out_dir / f"{label}.pt"


def plan(fasta: Path, out_dir: Path) -> dict:
    labels = read_labels(fasta)
    missing = sum(not target(out_dir, l).exists() for l, _ in labels)
    return {"records": len(labels), "missing": missing}


def _chunks(offsets: np.ndarray, row_bytes: int):
    """[a, b) record ranges whose residue rows fit CHUNK_BYTES (at least one record each)."""
    n, a = len(offsets) - 1, 0
    while a < n:
        b = a + 1
        while b < n and (offsets[b + 1] - offsets[a]) * row_bytes <= CHUNK_BYTES:
            b += 1
        yield a, b
        a = b


def write(store_dir: Path, fasta: Path, out_dir: Path, include: list[str]) -> dict:
    import torch

    labels = read_labels(fasta)
    with Store(store_dir) as store:
        if store.records != len(labels):
            raise LabelError(f"{fasta} has {len(labels)} header lines; the store {store_dir} holds {store.records} records",
                             "a record without sequence lines, or an input changed since the store was written: "
                             "rerun `embed extract` with a fresh OUT_DIR")
        ids = [i for chunk in store.id_chunks() for i in chunk]
        for (label, at), sid in zip(labels, ids):
            word = label.split()[0] if label.split() else label
            if sid != word and not sid.startswith(word + "_"):  # `_2`: a repeated id, renamed
                raise LabelError(f"{fasta}:{at}: header {label!r} is record {sid!r} in the store {store_dir}",
                                 "the input changed since the store was written: rerun with a fresh OUT_DIR")
        layers = sorted(store.layers)
        wanted = [(kind, key) for opt, kind, key in KIND_KEYS if opt in include]
        arrays = {(kind, l): store.array(kind, l) for kind, _ in wanted for l in layers}
        offsets = store.offsets() if any(k == "residues" for k, _ in wanted) else np.arange(store.records + 1)
        written = skipped = 0
        for a, b in _chunks(offsets, 4 * store.dim * len(layers)):
            block = {}
            for (kind, l), arr in arrays.items():
                rows = (offsets[a], offsets[b]) if kind == "residues" else (a, b)
                block[kind, l] = np.asarray(arr[int(rows[0]):int(rows[1])], dtype=np.float32)
            for r in range(a, b):
                label = labels[r][0]
                path = target(out_dir, label)
                if path.exists():
                    skipped += 1
                    continue
                result: dict = {"label": label}
                for kind, key in wanted:
                    if kind == "residues":
                        s, e = int(offsets[r] - offsets[a]), int(offsets[r + 1] - offsets[a])
                        result[key] = {l: torch.from_numpy(block[kind, l][s:e].copy()) for l in layers}
                    else:
                        result[key] = {l: torch.from_numpy(block[kind, l][r - a].copy()) for l in layers}
                _save(torch, result, path)
                written += 1
    return {"records": len(labels), "written": written, "skipped": skipped, "layers": layers, "outDir": str(out_dir)}


def _save(torch, result: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result, tmp)
        os.replace(tmp, path)
    except BaseException as e:  # an interrupt (Ctrl-C reaches this process too) leaves no half file either
        tmp.unlink(missing_ok=True)
        if not isinstance(e, OSError):
            raise
        raise WriteError(f"cannot write {path} (record {result['label']!r}): {e.strerror or e}",
                         "check free space and permissions of OUT_DIR; a label over 250 bytes is too long for a file name")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embed_worker.tools.extract_pt", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("plan")
    pp.add_argument("fasta", type=Path)
    pp.add_argument("out_dir", type=Path)
    pw = sub.add_parser("write")
    pw.add_argument("store", type=Path)
    pw.add_argument("fasta", type=Path)
    pw.add_argument("out_dir", type=Path)
    pw.add_argument("--include", nargs="+", required=True, choices=[k for k, _, _ in KIND_KEYS])
    a = p.parse_args(argv)
    try:
        out = plan(a.fasta, a.out_dir) if a.cmd == "plan" else write(a.store, a.fasta, a.out_dir, a.include)
    except EmbedWorkerError as e:
        print(f"error: {e.message}\nhint: {e.hint}", file=sys.stderr)
        print(json.dumps(e.to_wire()), file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
