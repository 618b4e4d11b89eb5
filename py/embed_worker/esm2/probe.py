"""The shape of a fair-esm .pt file, for the orchestrator to check options before a worker starts.

    python -m embed_worker.esm2.probe PATH
    -> {"numLayers": 6, "dim": 320, "heads": 20, "family": "esm2"}

The pickle is opened as the loader opens it (checkpoint.torch_load: weights_only=True with the one
allowlisted argparse.Namespace, memory-mapped), and the depth, width and heads are decided by the
loader's own rule (weights._fair_esm_config: cfg.model, checked against the tensors' shapes). Only
shapes are looked at; no tensor's values are read, so a 15B file costs a mapping, not 30 GB of I/O.
A file the loader would refuse is refused here with the same one line naming the file: the error
goes to stderr as one JSON line {name, message, hint}, and the exit code is 1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import BadCheckpoint, EmbedWorkerError

try:  # torch comes with these: a Python without it gets the worker's first-use message, not a traceback
    from .weights import _REFETCH, _fair_esm_config, _strip_fair
    from ..checkpoint import state_dict, torch_load
except ModuleNotFoundError as e:
    sys.stderr.write(json.dumps({
        "name": "ModuleNotFoundError",
        "message": f"{e} in {sys.executable} (Python {sys.version.split()[0]}), the Python embed's workers run",
        "hint": "run `embed setup` once (it installs torch and the worker's requirements for embed; "
                "in a checkout scripts/setup does the same), or set EMBED_PYTHON to a Python that has them"}) + "\n")
    sys.exit(1)


def probe(path: str) -> dict:
    """{numLayers, dim, heads, family} of a fair-esm checkpoint; BadCheckpoint as the loader raises it."""
    try:
        data = torch_load(path)
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise BadCheckpoint(f"{path}: not a fair-esm checkpoint (expected a dict with a 'model' state dict)",
                                "pass an esm2_*.pt file from fair-esm, or a Hugging Face model folder")
        src = _strip_fair(state_dict(data["model"], f"{path}: model", _REFETCH))
        cfg = _fair_esm_config(Path(path).stem, data, {k: tuple(v.shape) for k, v in src.items()}, path)
    except EmbedWorkerError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OSError) as e:
        # As weights.load_checkpoint: one line naming the file, not a traceback.
        raise BadCheckpoint(f"{path}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                            _REFETCH) from None
    return {"numLayers": cfg.num_layers, "dim": cfg.embed_dim, "heads": cfg.attention_heads, "family": "esm2"}


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
    sys.stdout.write(json.dumps(shape) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
