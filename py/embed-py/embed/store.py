"""A complete embed store, read in place: ids, the manifest, and memory-mapped arrays.

Layout (embed's README, "Output store"): ``manifest.json`` (written last: its presence means the
run completed), ``ids.txt`` (one id a line, input order), ``{kind}.layer{L}.npy`` for kind mean and
bos ``[records, dim]`` and residues ``[residues, dim]``, with ``residues.offsets.npy``
``[records + 1]``: the rows of record i are ``offsets[i]:offsets[i+1]``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from .errors import OutputError

KINDS = {"mean": "mean", "bos": "bos", "residues": "residues", "per-residue": "residues", "per_residue": "residues"}


class Store:
    """A complete store at `path`. Opening checks that the run completed and that every file the
    manifest lists is there with its recorded size; :func:`embed.open` with ``verify=True`` also
    has ``embed inspect --verify`` read every file for its SHA-256."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            if (self.path / "shards").is_dir():
                raise OutputError(f"{self.path} is an unfinished store (no manifest.json; its committed shards are kept)",
                                  "rerun the same embed.run (same input, out= and options) to resume and complete it; "
                                  f"`embed inspect {self.path}` says how many records are committed")
            raise OutputError(f"{self.path} is not an embed store (no manifest.json)",
                              "pass the out= directory of embed.run, or the -o directory of `embed run`")
        try:
            self.manifest: Dict[str, Any] = json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise OutputError(f"{manifest}: cannot read the manifest: {e}",
                              "the store is damaged: run embed again with overwrite=True") from None
        if self.manifest.get("format") != "embed-store" or self.manifest.get("complete") is not True:
            raise OutputError(f"{manifest} is not a complete embed store manifest",
                              f"check with `embed inspect {self.path}`")
        self._check_sizes()
        #: the run's summary (records, seconds, tokens/s, devices ...) when embed.run opened it, else {}
        self.summary: Dict[str, Any] = {}
        self._ids: Optional[List[str]] = None
        self._index: Optional[Dict[str, int]] = None
        self._offsets: Optional[np.ndarray] = None

    def _check_sizes(self) -> None:
        """Each file the manifest lists is present with its recorded size (no reading: cheap)."""
        files = self.manifest.get("files", {})
        sums = files.get("checksums") or {}
        names = set(sums) or {files.get("ids", "ids.txt"), *files.get("arrays", [])}
        damaged = []
        for name in sorted(names):
            f = self.path / name
            if not f.is_file():
                damaged.append(f"{name} missing")
            elif name in sums and f.stat().st_size != sums[name].get("bytes"):
                damaged.append(f"{name} is {f.stat().st_size} bytes, the manifest says {sums[name].get('bytes')}")
        if damaged:
            raise OutputError(f"damaged store {self.path}: " + "; ".join(damaged),
                              "rerun embed with overwrite=True to write it again, or copy the files again; "
                              f"`embed inspect {self.path} --verify` checks every file")

    # --- what the store holds -------------------------------------------------------------------
    @property
    def ids(self) -> List[str]:
        """Record ids in input order (read from ids.txt at first use)."""
        if self._ids is None:
            text = (self.path / self.manifest.get("files", {}).get("ids", "ids.txt")).read_text(encoding="utf-8")
            self._ids = text.split("\n")[:-1] if text.endswith("\n") else (text.split("\n") if text else [])
        return self._ids

    def __len__(self) -> int:
        return int(self.manifest["counts"]["records"])

    @property
    def layers(self) -> List[int]:
        return list(self.manifest["layers"])

    @property
    def kinds(self) -> List[str]:
        """Outputs held: some of mean, bos, residues."""
        return list(self.manifest["include"])

    @property
    def dim(self) -> Optional[int]:
        return self.manifest.get("model", {}).get("dim")

    def layer(self, layer: int) -> int:
        """A layer as stored: negatives count from the model's last layer (-1 = last, fair-esm style)."""
        n = self.manifest.get("model", {}).get("numLayers")
        held = self.layers
        resolved = layer if layer >= 0 else ((n + 1 + layer) if n is not None else (max(held) if layer == -1 else None))
        if resolved not in held:
            raise KeyError(f"layer {layer} is not in {self.path} (layers held: {', '.join(map(str, held))}); "
                           "embed again with layers= naming it")
        return resolved

    def _kind(self, kind: str) -> str:
        k = KINDS.get(kind)
        if k is None or k not in self.kinds:
            raise KeyError(f"output {kind!r} is not in {self.path} (held: {', '.join(self.kinds)}); "
                           "embed again with include= naming it")
        return k

    # --- arrays ---------------------------------------------------------------------------------
    def array(self, kind: str = "mean", layer: int = -1) -> np.ndarray:
        """``{kind}.layer{L}.npy`` memory-mapped read-only: ``[records, dim]`` for mean and bos,
        ``[residues, dim]`` for residues (rows of record i: :meth:`per_residue`)."""
        return np.load(self.path / f"{self._kind(kind)}.layer{self.layer(layer)}.npy", mmap_mode="r")

    @property
    def offsets(self) -> np.ndarray:
        """``[records + 1]``: record i's residue rows are ``offsets[i]:offsets[i+1]``."""
        if self._offsets is None:
            self._kind("residues")
            self._offsets = np.load(self.path / "residues.offsets.npy", mmap_mode="r")
        return self._offsets

    def index(self, record_id: str) -> int:
        """The row of `record_id`."""
        if self._index is None:
            self._index = {r: i for i, r in enumerate(self.ids)}
        try:
            return self._index[record_id]
        except KeyError:
            raise KeyError(f"no record {record_id!r} in {self.path}") from None

    def per_residue(self, i: Union[int, str], layer: int = -1) -> np.ndarray:
        """Record `i`'s (a row number or an id) residue embeddings ``[length, dim]``, memory-mapped."""
        row = self.index(i) if isinstance(i, str) else int(i)
        if not -len(self) <= row < len(self):
            raise IndexError(f"record {i} is out of range: the store holds {len(self)}")
        row %= len(self)
        off = self.offsets
        return self.array("residues", layer)[int(off[row]):int(off[row + 1])]

    def chunks(self, size: int, kind: str = "mean", layer: int = -1) -> Iterator[tuple]:
        """``(ids, X)`` for consecutive records, `size` at a time, in input order. X is a copy in
        memory (``[n, dim]``), or for residues a list of ``[length, dim]`` arrays."""
        ids = self.ids
        for a in range(0, len(self), size):
            b = min(a + size, len(self))
            if self._kind(kind) == "residues":
                yield ids[a:b], [np.array(self.per_residue(i, layer)) for i in range(a, b)]
            else:
                yield ids[a:b], np.array(self.array(kind, layer)[a:b])

    def to_dict(self, kind: str = "mean", layer: int = -1) -> Dict[str, np.ndarray]:
        """``{id: embedding}`` (for residues ``{id: [length, dim]}``), views of the memory-mapped array."""
        if self._kind(kind) == "residues":
            return {r: self.per_residue(i, layer) for i, r in enumerate(self.ids)}
        X = self.array(kind, layer)
        return {r: X[i] for i, r in enumerate(self.ids)}

    def __repr__(self) -> str:
        return (f"Store({str(self.path)!r}: {len(self)} records, model {self.manifest.get('model', {}).get('name')}, "
                f"layers {self.layers}, outputs {self.kinds}, {self.manifest.get('dtype')})")
