"""embed_worker.tools.convert on a damaged store, called directly (the CLI checks sizes and headers in
TypeScript first, so these are the converter's own checks): each damage is refused with a
ConvertError naming the file, never a crash, and the conversion leaves nothing behind; checksums
are checked over the bytes read; a store without checksums (older) still converts."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from embed_worker.tools import convert as cv
from embed_worker.tools.sources import ConvertError

from test_convert import make_store

FORMATS = ["hdf5", "parquet", "npy", "virnucpro"]


def add_checksums(root: Path) -> None:
    """Record every file's size and SHA-256 in the manifest, as `embed run` does."""
    m = json.loads((root / "manifest.json").read_text())
    names = [m["files"]["ids"], *m["files"]["arrays"]]
    m["files"]["checksums"] = {n: {"bytes": (root / n).stat().st_size, "sha256": hashlib.sha256((root / n).read_bytes()).hexdigest()}
                               for n in sorted(names)}
    (root / "manifest.json").write_text(json.dumps(m, indent=2))


def flip(path: Path, at: float = 0.75) -> None:
    b = bytearray(path.read_bytes())
    i = int(len(b) * at)
    b[i] ^= 0x10
    path.write_bytes(bytes(b))


def header(path: Path, old: bytes, new: bytes) -> None:
    b = path.read_bytes()
    assert old in b[:128] and len(old) == len(new)
    path.write_bytes(b.replace(old, new, 1))


DAMAGES = {
    "truncated array": ("mean.layer2.npy", lambda d: (d / "mean.layer2.npy").write_bytes((d / "mean.layer2.npy").read_bytes()[:-40])),
    "zero-byte array": ("residues.layer2.npy", lambda d: (d / "residues.layer2.npy").write_bytes(b"")),
    "bit flipped": ("mean.layer2.npy", lambda d: flip(d / "mean.layer2.npy")),
    "bit flipped per-residue": ("residues.layer2.npy", lambda d: flip(d / "residues.layer2.npy")),
    "bit flipped in the header": ("mean.layer2.npy", lambda d: flip(d / "mean.layer2.npy", at=0.05)),
    "header dtype": ("mean.layer2.npy", lambda d: header(d / "mean.layer2.npy", b"'<f4'", b"'<i4'")),
    "header shape": ("mean.layer2.npy", lambda d: header(d / "mean.layer2.npy", b"(5, 8)", b"(8, 5)")),
    "ids line missing": ("ids.txt", lambda d: (d / "ids.txt").write_text("".join(f"rec{i}\n" for i in range(4)))),
    "ids line extra": ("ids.txt", lambda d: (d / "ids.txt").write_text("".join(f"rec{i}\n" for i in range(6)))),
    "ids changed": ("ids.txt", lambda d: (d / "ids.txt").write_text("".join(f"rec{i}\n" for i in [0, 1, 2, 3, 9]))),
    "file missing": ("residues.offsets.npy", lambda d: (d / "residues.offsets.npy").unlink()),
}
# Conversions that never read the damaged file: virnucpro takes the mean output only.
UNREAD = {("bit flipped per-residue", "virnucpro")}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_store_is_refused_naming_the_file(tmp_path, damage, fmt):
    store = tmp_path / "store"
    make_store(store, [3, 5, 1, 7, 2])
    add_checksums(store)
    file, do = DAMAGES[damage]
    do(store)
    out = tmp_path / "out"
    if (damage, fmt) in UNREAD:
        cv.convert(store, fmt, out)
        return
    with pytest.raises(ConvertError) as e:
        cv.convert(store, fmt, out)
    assert str(store / file) in e.value.message
    assert "damaged" in e.value.hint
    left = [p for p in out.rglob("*")] if out.is_dir() else ([out] if out.exists() else [])
    assert [p for p in left if p.is_file()] == []


def test_damage_noticed_partway_removes_what_was_written(tmp_path):
    """Parquet writes one file per output, mean first: a flip in the per-residue array is noticed
    after mean.layer2.parquet was renamed into place, and that file goes too."""
    store = tmp_path / "store"
    make_store(store, [3, 5, 1, 7, 2])
    add_checksums(store)
    flip(store / "residues.layer2.npy")
    with pytest.raises(ConvertError, match="residues.layer2.npy"):
        cv.convert(store, "parquet", tmp_path / "pq")
    assert list((tmp_path / "pq").iterdir()) == []


def test_store_without_checksums_still_converts_and_sizes_are_checked(tmp_path):
    store = tmp_path / "store"
    ref = make_store(store, [3, 5, 1, 7, 2])  # no checksums: a store written before they were recorded
    s = cv.convert(store, "npy", tmp_path / "copy")
    assert s["records"] == 5
    np.testing.assert_array_equal(np.load(tmp_path / "copy" / "mean.layer2.npy"), ref["mean"])
    m = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    for name in ["ids.txt", "mean.layer2.npy", "residues.layer2.npy", "residues.offsets.npy"]:  # the copy records them
        data = (tmp_path / "copy" / name).read_bytes()
        assert m["files"]["checksums"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (store / "mean.layer2.npy").write_bytes((store / "mean.layer2.npy").read_bytes()[:-4])
    with pytest.raises(ConvertError, match="mean.layer2.npy is .* bytes; its header .* needs"):
        cv.convert(store, "hdf5", tmp_path / "x.h5")


def test_cli_exits_1_with_a_wire_error_not_a_traceback(tmp_path, capsys):
    store = tmp_path / "store"
    make_store(store, [3, 5])
    add_checksums(store)
    (store / "mean.layer2.npy").write_bytes(b"")
    assert cv.main([str(store), "--to", "hdf5", "--json"]) == 1
    wire = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert wire["name"] == "OutputError" and "mean.layer2.npy is 0 bytes" in wire["message"]
