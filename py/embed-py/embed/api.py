"""``embed.run`` / ``embed.iter`` / ``embed.open``: the embed command line driven from Python.

Everything is computed by ``embed run`` (found as locate.py says); this module turns arguments
into its flags, its events into progress, its exit into a typed error, and its store into a
:class:`Store`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import locate, process
from .errors import InputError, OptionsError, OutputError
from .progress import ProgressArg, handler
from .store import Store

PathLike = Union[str, os.PathLike]
Records = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
Fasta = Union[PathLike, Sequence[PathLike], Records]


def _inputs(fasta: Fasta) -> Tuple[List[str], Optional[Iterable[str]]]:
    """(CLI inputs, stdin chunks): paths as they are, sequences in memory as FASTA on stdin."""
    if isinstance(fasta, (str, os.PathLike)):
        if os.fspath(fasta) == "-":
            raise OptionsError("fasta='-' (stdin) is not taken from Python",
                               "pass the records in memory instead: a dict {id: sequence} or a list of (id, sequence)")
        return [os.fspath(fasta)], None
    if isinstance(fasta, Mapping):
        return ["-"], _fasta_text(fasta.items())
    if isinstance(fasta, (list, tuple)):
        if not fasta:
            raise OptionsError("no input: the list is empty", "pass FASTA paths, a dict {id: sequence} or a list of (id, sequence)")
        if all(isinstance(f, (str, os.PathLike)) for f in fasta):
            return [os.fspath(f) for f in fasta], None
        return ["-"], _fasta_text(fasta)
    if isinstance(fasta, Iterable):
        return ["-"], _fasta_text(fasta)  # streamed: a generator is never held in memory whole
    raise OptionsError(f"cannot embed a {type(fasta).__name__}",
                       "pass a FASTA path (or a list of them), a dict {id: sequence} or an iterable of (id, sequence)")


def _fasta_text(records: Iterable[Any]) -> Iterator[str]:
    """Records as FASTA text, one record a chunk. The FASTA framing is checked here (an id with a
    space would be cut at it, a '>' or newline in a sequence would start another record); the
    sequence itself is checked by embed, whose error names the record id."""
    for n, rec in enumerate(records):
        try:
            rid, seq = rec
        except (TypeError, ValueError):
            raise InputError(f"sequences[{n}]: expected an (id, sequence) pair, got {rec!r:.60}",
                             "pass a dict {id: sequence} or a list of (id, sequence) tuples") from None
        if not isinstance(rid, str) or not rid or any(c.isspace() for c in rid):
            raise InputError(f"sequences[{n}]: id {rid!r} is not one word",
                             "ids are FASTA ids: non-empty, without spaces, tabs or newlines (replace them, e.g. with _)")
        if not isinstance(seq, str) or any(c in seq for c in ">\n\r"):
            raise InputError(f"sequences[{n}] (id {rid!r}): the sequence is not one line of letters",
                             "pass each sequence as a str without '>' or line breaks")
        yield f">{rid}\n{seq}\n"


def _env(python: Optional[PathLike]) -> Optional[Dict[str, str]]:
    if python is None:
        return None
    return {**os.environ, "EMBED_PYTHON": os.fspath(python)}


def run(fasta: Fasta, out: Optional[PathLike] = None, *, model: Optional[str] = None,
        layers: Union[int, Sequence[int], None] = None, include: Union[str, Sequence[str], None] = None,
        overwrite: bool = False, progress: ProgressArg = "auto", log: bool = True,
        home: Optional[PathLike] = None, python: Optional[PathLike] = None, **options: Any) -> Store:
    """Embed `fasta` with ``embed run`` into the store `out` and open it.

    fasta: a FASTA path (``.gz`` ok), a list of paths, or sequences in memory: a dict
        ``{id: sequence}`` or an iterable of ``(id, sequence)`` (sent to embed on stdin).
    out: the store directory (a run interrupted there resumes when called again); None: a new
        temporary directory, kept (its path is ``store.path``; delete it when done).
    model, layers (-1 = last; a list for several), include ("mean", "bos", "per-residue" or a
        list), overwrite, and any other ``embed run`` option as a keyword: ``max_tokens=4096``,
        ``devices="0,1"``, ``out_dtype="float16"``, ``dedup=True``, ``download=False`` ... (see
        ``embed run --help``; an unknown one raises OptionsError naming the nearest).
    progress: a tqdm bar if tqdm is installed (default), False for none, or a function called
        with each NDJSON event dict (start, batch, shard, worker, finish).
    log: copy embed's stderr (logs, warnings) to ``sys.stderr`` as it comes; kept on errors anyway.
    home: the embed checkout to drive; python: the workers' Python (EMBED_PYTHON). See locate.py.

    Raises an :class:`EmbedError` subclass per exit code (InputError for bad FASTA, ...), with
    ``.message``, ``.hint`` and the whole ``.stderr``.
    """
    if out is None:
        out = tempfile.mkdtemp(prefix="embed-")
    inputs, stdin = _inputs(fasta)
    argv = [*locate.command(home), "run", *inputs, "-o", os.fspath(out), "--json",
            *process.flags({"model": model, "layers": [layers] if isinstance(layers, int) else layers,
                            "include": [include] if isinstance(include, str) else include,
                            "overwrite": overwrite or None, **options})]
    on_event = handler(progress)
    summary: Dict[str, Any] = {}

    def on_line(e: Dict[str, Any]) -> None:
        if e.get("type") == "summary":
            summary.update(e)
        elif on_event is not None:
            on_event(e)

    try:
        process.run(argv, env=_env(python), stdin=stdin, on_line=on_line, echo=log)
    except InputError as e:
        if stdin is not None:  # embed names "<stdin>:LINE"; each record is 2 lines of it
            e.message = re.sub(r"<stdin>:(\d+)", lambda m: f"sequences[{(int(m.group(1)) - 1) // 2}]", e.message)
            e.args = (e.message,)
        raise
    finally:
        close = getattr(on_event, "close", None)
        if close is not None:
            close()
    store = Store(out)
    store.summary = summary
    return store


def iter(fasta: Fasta, out: Optional[PathLike] = None, *, chunk: int = 10_000, kind: str = "mean",
         layer: int = -1, **run_options: Any) -> Iterator[Tuple[List[str], Any]]:
    """``for ids, X in embed.iter(fasta, chunk=10_000): ...``: every record once, in input order,
    `chunk` records at a time (X ``[n, dim]`` in memory; for kind "residues" a list of
    ``[length, dim]`` arrays).

    The run completes into a store first (`out`, or a temporary one removed when the loop ends),
    then chunks are read from it. Committed shards are not yielded while the run goes: they hold
    records in the order their batches finished, and batches are packed longest first, so the
    first records of the input are often among the last committed; yielding in input order would
    wait for the end anyway. Takes the options of :func:`run`.
    """
    if chunk < 1:
        raise OptionsError(f"chunk={chunk}: must be at least 1", "pass the number of records per chunk, e.g. chunk=10_000")
    if kind not in ("mean", "bos", "residues", "per-residue", "per_residue"):
        raise OptionsError(f"kind={kind!r}: not an output", "pass mean, bos or residues")
    if "include" not in run_options:
        run_options["include"] = "per-residue" if kind in ("residues", "per_residue", "per-residue") else kind
    if "layers" not in run_options:
        run_options["layers"] = layer
    tmp = tempfile.mkdtemp(prefix="embed-") if out is None else None
    try:
        store = run(fasta, out if out is not None else tmp, **run_options)
        yield from store.chunks(chunk, kind, layer)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def open(path: PathLike, *, verify: bool = False, home: Optional[PathLike] = None, log: bool = False) -> Store:
    """The complete store at `path`. Checked on opening: the run completed (manifest.json), every
    listed file is there with its recorded size. ``verify=True`` also runs ``embed inspect
    --verify`` (every file read for its SHA-256; needs the embed command line): a damaged store
    raises OutputError naming the files."""
    if verify:
        text = process.run([*locate.command(home), "inspect", os.fspath(path), "--json", "--verify"], echo=log)
        info = json.loads(text)
        if info.get("state") != "complete":  # inspect exits 6 on damage; anything else it reports is not a store to read
            raise OutputError(f"{path}: embed inspect reports state {info.get('state')!r}", info.get("hint"))
    return Store(path)


def inspect(path: PathLike, *, verify: bool = False, home: Optional[PathLike] = None) -> Dict[str, Any]:
    """``embed inspect --json`` of `path`: what a store holds, or how far an unfinished run got."""
    return json.loads(process.run([*locate.command(home), "inspect", os.fspath(path), "--json",
                                   *(["--verify"] if verify else [])], echo=False))
