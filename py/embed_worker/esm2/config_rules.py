"""The torch-free rules of an ESM-2 checkpoint's config: typed config fields, sane geometry, and
fair-esm's cfg.model checked against the tensors' shapes (`_fair_esm_config`). weights.py loads
with them; probe.py applies them to shapes read without torch, so both decide alike.
"""
from __future__ import annotations

import argparse
import re

from ..errors import BadCheckpoint
from .registry import KNOWN, ESM2Config, geometry_problems

_REFETCH = "the file is damaged or is not an ESM-2 checkpoint; download it again"
_CONFIG_HINT = "fix that field, or download the model again (released ESM-2 models come with a valid config)"


def _bad(where: str, what: str, hint: str = _REFETCH) -> BadCheckpoint:
    return BadCheckpoint(f"{where}: {what}", hint)


def _typed(get, key: str, where: str, kind: type, default=None):
    """A config field of type `kind` (int: not bool; float: int or float), else BadCheckpoint
    naming the field, its value and the type it has. `default` where absent (None: required)."""
    v = get(key, None)
    if v is None:
        if default is None:
            raise _bad(where, f"{key} is missing", _CONFIG_HINT)
        return default
    ok = (isinstance(v, kind) and not isinstance(v, bool)) if kind in (int, float) else isinstance(v, kind)
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        ok, v = True, float(v)
    if not ok:
        raise _bad(where, f"{key} is {v!r} (a {type(v).__name__}); expected a{'n' if kind is int else ''} "
                          f"{ {int: 'integer', float: 'number', bool: 'true/false', str: 'string'}[kind] }", _CONFIG_HINT)
    return v


def _not_fair_esm(path: str, data) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise BadCheckpoint(f"{path}: not a fair-esm checkpoint (expected a dict with a 'model' state dict)",
                            "pass an esm2_*.pt file from fair-esm, or a Hugging Face model folder")


def _cannot_load(path: str, e: Exception) -> BadCheckpoint:
    """A shape of file no check foresaw: still one line naming the file, not a traceback."""
    return BadCheckpoint(f"{path}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                         _REFETCH)


def _check_geometry(where: str, layers: int, dim: int, heads: int, ffn: int, vocab: int = 33) -> None:
    problems = geometry_problems(layers, dim, heads, ffn, vocab)
    if problems:
        raise _bad(where, "not a usable ESM-2 shape: " + "; ".join(problems), _CONFIG_HINT)


def _fair_esm_config(name: str, data: dict, shapes: dict[str, tuple], path: str) -> ESM2Config:
    layer_ids = {int(m.group(1)) for k in shapes if (m := re.match(r"layers\.(\d+)\.", k))}
    n_layers = max(layer_ids) + 1 if layer_ids else 0
    emb = shapes.get("embed_tokens.weight")
    if emb is None or len(emb) != 2:
        raise BadCheckpoint(f"{path}: no embed_tokens.weight; this is not an ESM-2 checkpoint",
                            "pass an esm2_*.pt file from fair-esm")
    dim = int(emb[1])
    cfg = data.get("cfg")
    if cfg is not None and not isinstance(cfg, dict):
        raise _bad(path, f"'cfg' is a {type(cfg).__name__}, expected a dict holding 'model'")
    mcfg = cfg.get("model") if cfg else None
    if mcfg is not None:
        if isinstance(mcfg, dict):
            get = mcfg.get
        elif isinstance(mcfg, argparse.Namespace):
            get = lambda k, d=None: getattr(mcfg, k, d)  # noqa: E731
        else:
            raise _bad(path, f"cfg.model is a {type(mcfg).__name__}, expected a Namespace or dict")
        where = f"{path}: cfg.model"
        c_layers = _typed(get, "encoder_layers", where, int)
        c_dim = _typed(get, "encoder_embed_dim", where, int)
        heads = _typed(get, "encoder_attention_heads", where, int)
        ffn = _typed(get, "encoder_ffn_embed_dim", where, int, 4 * c_dim)
        token_dropout = _typed(get, "token_dropout", where, bool, True)
        _check_geometry(where, c_layers, c_dim, heads, ffn)
        if (c_layers, c_dim) != (n_layers, dim):
            raise BadCheckpoint(f"{path}: cfg says {c_layers} layers x {c_dim} wide but the tensors are "
                                f"{n_layers} layers x {dim} wide", "the checkpoint is inconsistent; download it again")
        return ESM2Config(name, n_layers, dim, heads, ffn_dim=ffn, token_dropout=token_dropout)
    # No cfg: only accept shapes that match a known model (heads cannot be read off tensors).
    for km in KNOWN.values():
        if (km.cfg.num_layers, km.cfg.embed_dim) == (n_layers, dim):
            return ESM2Config(name, n_layers, dim, km.cfg.attention_heads)
    raise BadCheckpoint(f"{path}: no cfg.model in checkpoint and {n_layers} layers x {dim} matches no known "
                        "ESM-2 model, so the number of heads is unknown", "pass the original esm2_*.pt file")


def _strip_fair(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for p in ("encoder.sentence_encoder.", "encoder."):
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out
