"""The shape of a fair-esm .pt file, for the orchestrator to check options before a worker starts.

    python -m embed_worker.esm2.probe PATH
    -> {"numLayers": 6, "dim": 320, "heads": 20, "family": "esm2"}

The depth, width and heads are decided by the loader's own rule (config_rules._fair_esm_config:
cfg.model, checked against the tensors' shapes). Only shapes are looked at; no tensor's values are
read, so a 15B file costs a look at its index, not 30 GB of I/O.

A zip-format file (what torch.save writes since 1.6, and every released esm2_*.pt) is read
without torch by pt_shapes.py, which vouches only for the structure torch.load(weights_only=True)
reads alike; the run's start-up then pays no torch import (1-3 s). Any other file, or one that
reader does not recognise, is opened as the loader opens it (checkpoint.torch_load: weights_only
with the one allowlisted argparse.Namespace, memory-mapped). A file the loader would refuse is
refused here with the same one line naming the file: the error goes to stderr as one JSON line
{name, message, hint}, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EmbedWorkerError
from . import pt_shapes
from .config_rules import _REFETCH, _cannot_load, _fair_esm_config, _not_fair_esm, _strip_fair


def probe(path: str) -> dict:
    """{numLayers, dim, heads, family} of a fair-esm checkpoint; BadCheckpoint as the loader raises it."""
    data = pt_shapes.read(path)
    shapes = _read_shapes(path, data) if data is not None else None
    if shapes is None:
        data, shapes = _torch_shapes(path)
    try:
        cfg = _fair_esm_config(Path(path).stem, data, shapes, path)
    except EmbedWorkerError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OSError) as e:
        raise _cannot_load(path, e) from None
    return {"numLayers": cfg.num_layers, "dim": cfg.embed_dim, "heads": cfg.attention_heads, "family": "esm2"}


def _read_shapes(path: str, data) -> dict[str, tuple] | None:
    """Tensor shapes (prefixes stripped) from pt_shapes' reading, or None where the loader's own
    messages name a value torch would show (a non-tensor state dict entry, a tensor in cfg)."""
    _not_fair_esm(path, data)
    model = data["model"]
    if not all(isinstance(k, str) and isinstance(v, pt_shapes.Shape) for k, v in model.items()):
        return None
    todo, seen = [data.get("cfg")], 0
    while todo and seen < 100_000:  # a cfg is a few hundred values; a bigger one goes to torch
        v, seen = todo.pop(), seen + 1
        if isinstance(v, pt_shapes.Shape):
            return None
        if isinstance(v, argparse.Namespace):
            v = vars(v)
        if isinstance(v, dict):
            todo += [*v.keys(), *v.values()]
        elif isinstance(v, (list, tuple)):
            todo += v
    if todo:
        return None
    return {k: v.shape for k, v in _strip_fair(model).items()}


def _torch_shapes(path: str) -> tuple[object, dict[str, tuple]]:
    """The file as the loader reads it (torch), and its tensors' shapes (prefixes stripped)."""
    from ..checkpoint import state_dict, torch_load  # torch: 1-3 s, paid only for files pt_shapes leaves

    try:
        data = torch_load(path)
        _not_fair_esm(path, data)
        src = _strip_fair(state_dict(data["model"], f"{path}: model", _REFETCH))
        return data, {k: tuple(v.shape) for k, v in src.items()}
    except EmbedWorkerError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OSError) as e:
        raise _cannot_load(path, e) from None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write(json.dumps({"name": "UsageError", "message": "usage: python -m embed_worker.esm2.probe PATH",
                                     "hint": "pass one fair-esm .pt file"}) + "\n")
        return 2
    try:
        shape = probe(argv[0])
    except EmbedWorkerError as e:
        sys.stderr.write(json.dumps(e.to_wire()) + "\n")
        return 1
    except ModuleNotFoundError as e:  # no torch for a file only torch reads: the worker's first-use message
        sys.stderr.write(json.dumps({
            "name": "ModuleNotFoundError",
            "message": f"{e} in {sys.executable} (Python {sys.version.split()[0]}), the Python embed's workers run",
            "hint": "run `embed setup` once (it installs torch and the worker's requirements for embed; "
                    "in a checkout scripts/setup does the same), or set EMBED_PYTHON to a Python that has them"}) + "\n")
        return 1
    sys.stdout.write(json.dumps(shape) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
