"""Strict checkpoint loading for model.ESM2 from fair-esm .pt files or Hugging Face folders.

Every tensor our model needs must be present with the right shape; every other
tensor in the file must be on an explicit allowlist of known-unused keys
(LM head, contact head, rotary buffers, position ids, pooler); anything else
is an error. Pickles are only ever read with ``weights_only=True``.

fair-esm ``esm2_*.pt`` layout (what fair-esm's pretrained.py reads):
    {"model": {"encoder.sentence_encoder.layers.0.self_attn.q_proj.weight": ..., "encoder.lm_head.dense.weight": ...},
     "cfg": {"model": argparse.Namespace(encoder_layers=..., encoder_embed_dim=...,
                                         encoder_attention_heads=..., token_dropout=..., ...)},
     "args": None, ...}
The Namespace is the one non-container type in those files, so it is the one
class allowlisted for the weights-only unpickler.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import torch

from .errors import BadCheckpoint, ModelNotFound
from .model import ESM2
from .registry import FAIR_ESM, KNOWN, ESM2Config, Resolved, bare_name, resolve

SAFE_GLOBALS = [argparse.Namespace]

# ---------------------------------------------------------------------------------------------
# reading files


def torch_load(path: str | os.PathLike, mmap: bool = True):
    """torch.load with weights_only=True (+ argparse.Namespace allowed), mmap when the format allows."""
    def _load(use_mmap: bool):
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(str(path), map_location="cpu", mmap=use_mmap, weights_only=True)
    try:
        try:
            return _load(mmap)
        except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
            if mmap and "mmap" in str(e):
                return _load(False)
            raise
    except Exception as e:
        msg = str(e)
        if "weights_only" in msg or "Unsupported global" in msg or "Weights only load failed" in msg:
            first = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln or "GLOBAL" in ln), "")
            raise BadCheckpoint(
                f"{path}: refusing to unpickle objects that are not tensors or plain containers"
                + (f" ({first})" if first else ""),
                "embed only loads checkpoints with torch.load(weights_only=True); re-save the weights "
                "as a plain state dict or as safetensors") from None
        raise BadCheckpoint(f"{path}: cannot read checkpoint: {type(e).__name__}: {msg.splitlines()[0] if msg else ''}",
                            "the file may be truncated or not a PyTorch checkpoint; download it again") from None


def _read_hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single), device="cpu")
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        out: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            out.update(load_file(str(folder / shard), device="cpu"))
        return out
    binf = folder / "pytorch_model.bin"
    if binf.is_file():
        sd = torch_load(binf)
        if not isinstance(sd, dict):
            raise BadCheckpoint(f"{binf}: expected a state dict, found {type(sd).__name__}")
        return sd
    raise BadCheckpoint(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin",
                        "download the full model folder (config.json + weights)")


# ---------------------------------------------------------------------------------------------
# configs


def _fair_esm_config(name: str, data: dict, sd: dict[str, torch.Tensor], path: str) -> ESM2Config:
    layer_ids = {int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))}
    n_layers = max(layer_ids) + 1 if layer_ids else 0
    emb = sd.get("embed_tokens.weight")
    if emb is None or emb.ndim != 2:
        raise BadCheckpoint(f"{path}: no embed_tokens.weight; this is not an ESM-2 checkpoint",
                            "pass an esm2_*.pt file from fair-esm")
    dim = int(emb.shape[1])
    mcfg = (data.get("cfg") or {}).get("model") if isinstance(data.get("cfg"), dict) else None
    if mcfg is not None:
        get = (lambda k, d=None: getattr(mcfg, k, d)) if not isinstance(mcfg, dict) else mcfg.get
        heads = get("encoder_attention_heads")
        c_layers, c_dim = get("encoder_layers"), get("encoder_embed_dim")
        if heads is None or c_layers is None or c_dim is None:
            raise BadCheckpoint(f"{path}: cfg.model lacks encoder_layers / encoder_embed_dim / "
                                "encoder_attention_heads", "pass an esm2_*.pt file from fair-esm")
        if (int(c_layers), int(c_dim)) != (n_layers, dim):
            raise BadCheckpoint(f"{path}: cfg says {c_layers} layers x {c_dim} wide but the tensors are "
                                f"{n_layers} layers x {dim} wide", "the checkpoint is inconsistent; download it again")
        ffn = get("encoder_ffn_embed_dim", 4 * dim) or 4 * dim
        token_dropout = bool(get("token_dropout", True))
        return ESM2Config(name, n_layers, dim, int(heads), ffn_dim=int(ffn), token_dropout=token_dropout)
    # No cfg: only accept shapes that match a known model (heads cannot be read off tensors).
    for km in KNOWN.values():
        if (km.cfg.num_layers, km.cfg.embed_dim) == (n_layers, dim):
            return ESM2Config(name, n_layers, dim, km.cfg.attention_heads)
    raise BadCheckpoint(f"{path}: no cfg.model in checkpoint and {n_layers} layers x {dim} matches no known "
                        "ESM-2 model, so the number of heads is unknown", "pass the original esm2_*.pt file")


def _hf_config(name: str, folder: Path) -> ESM2Config:
    p = folder / "config.json"
    try:
        c = json.loads(p.read_text())
    except Exception as e:
        raise BadCheckpoint(f"{p}: unreadable config.json ({e})", "download the model folder again") from None
    if c.get("model_type", "esm") != "esm":
        raise BadCheckpoint(f"{p}: model_type is {c.get('model_type')!r}, not 'esm'", "pass an ESM-2 model folder")
    if c.get("is_folding_model"):
        raise BadCheckpoint(f"{p}: this is an ESMFold model, not an ESM-2 encoder", "pass an ESM-2 model folder")
    pe = c.get("position_embedding_type", "absolute")
    if pe != "rotary":
        raise BadCheckpoint(f"{p}: position_embedding_type is {pe!r}; only 'rotary' (ESM-2) is supported",
                            "ESM-1/ESM-1b models are not supported; use an ESM-2 model")
    if c.get("emb_layer_norm_before"):
        raise BadCheckpoint(f"{p}: emb_layer_norm_before is true; ESM-2 has no embedding LayerNorm",
                            "ESM-1b style models are not supported; use an ESM-2 model")
    if c.get("mask_token_id", 32) != 32 or c.get("pad_token_id", 1) != 1 or c.get("vocab_size", 33) != 33:
        raise BadCheckpoint(f"{p}: vocabulary differs from the ESM-2 alphabet (33 tokens, <pad>=1, <mask>=32)",
                            "use an ESM-2 model")
    act = c.get("hidden_act", "gelu")
    if act != "gelu":
        raise BadCheckpoint(f"{p}: hidden_act {act!r}; ESM-2 uses exact gelu", "use an ESM-2 model")
    try:
        return ESM2Config(name, int(c["num_hidden_layers"]), int(c["hidden_size"]), int(c["num_attention_heads"]),
                          ffn_dim=int(c.get("intermediate_size", 4 * int(c["hidden_size"]))),
                          token_dropout=bool(c.get("token_dropout", True)),
                          layer_norm_eps=float(c.get("layer_norm_eps", 1e-5)))
    except KeyError as e:
        raise BadCheckpoint(f"{p}: missing {e.args[0]}", "download the model folder again") from None


# ---------------------------------------------------------------------------------------------
# name mapping: for each of our tensors, the source key(s) it is made of

_FAIR_LAYER = {
    "qkv.weight": ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"],
    "qkv.bias": ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"],
    "out_proj.weight": ["self_attn.out_proj.weight"], "out_proj.bias": ["self_attn.out_proj.bias"],
    "attn_norm.weight": ["self_attn_layer_norm.weight"], "attn_norm.bias": ["self_attn_layer_norm.bias"],
    "fc1.weight": ["fc1.weight"], "fc1.bias": ["fc1.bias"], "fc2.weight": ["fc2.weight"], "fc2.bias": ["fc2.bias"],
    "ffn_norm.weight": ["final_layer_norm.weight"], "ffn_norm.bias": ["final_layer_norm.bias"],
}
_FAIR_TOP = {"embed_tokens.weight": ["embed_tokens.weight"],
             "emb_layer_norm_after.weight": ["emb_layer_norm_after.weight"],
             "emb_layer_norm_after.bias": ["emb_layer_norm_after.bias"]}
_FAIR_ROTARY = re.compile(r"^layers\.(\d+)\.self_attn\.rot_emb\.inv_freq$")
_FAIR_IGNORE = re.compile(r"^(lm_head\.|contact_head\.)")

_HF_LAYER = {
    "qkv.weight": ["attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight"],
    "qkv.bias": ["attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias"],
    "out_proj.weight": ["attention.output.dense.weight"], "out_proj.bias": ["attention.output.dense.bias"],
    "attn_norm.weight": ["attention.LayerNorm.weight"], "attn_norm.bias": ["attention.LayerNorm.bias"],
    "fc1.weight": ["intermediate.dense.weight"], "fc1.bias": ["intermediate.dense.bias"],
    "fc2.weight": ["output.dense.weight"], "fc2.bias": ["output.dense.bias"],
    "ffn_norm.weight": ["LayerNorm.weight"], "ffn_norm.bias": ["LayerNorm.bias"],
}
_HF_TOP = {"embed_tokens.weight": ["embeddings.word_embeddings.weight"],
           "emb_layer_norm_after.weight": ["encoder.emb_layer_norm_after.weight"],
           "emb_layer_norm_after.bias": ["encoder.emb_layer_norm_after.bias"]}
_HF_ROTARY = re.compile(r"^(encoder\.layer\.(\d+)\.attention\.self\.rotary_embeddings\.inv_freq|rotary_embeddings\.inv_freq)$")
_HF_IGNORE = re.compile(r"^(lm_head\.|contact_head\.|pooler\.|embeddings\.position_ids$|embeddings\.position_embeddings\.weight$)")


def _strip_fair(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for p in ("encoder.sentence_encoder.", "encoder."):
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _strip_hf(sd: dict) -> dict:
    return {(k[4:] if k.startswith("esm.") else k): v for k, v in sd.items()}


def _build_state(cfg: ESM2Config, src: dict[str, torch.Tensor], fmt: str, path: str):
    """Map source tensors to our names, checking presence, shapes and leftovers. Returns (state, inv_freq)."""
    if fmt == FAIR_ESM:
        layer_map, top_map, layer_prefix, rot_re, ignore_re = _FAIR_LAYER, _FAIR_TOP, "layers.{i}.", _FAIR_ROTARY, _FAIR_IGNORE
    else:
        layer_map, top_map, layer_prefix, rot_re, ignore_re = _HF_LAYER, _HF_TOP, "encoder.layer.{i}.", _HF_ROTARY, _HF_IGNORE

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ESM2(cfg).state_dict().items()}

    plan: dict[str, list[str]] = dict(top_map)
    for i in range(cfg.num_layers):
        pre = layer_prefix.format(i=i)
        for ours, theirs in layer_map.items():
            plan[f"layers.{i}.{ours}"] = [pre + t for t in theirs]
    assert set(plan) == set(expected), sorted(set(plan) ^ set(expected))

    missing, misshaped, state = [], [], {}
    used: set[str] = set()
    for ours, theirs in plan.items():
        parts = []
        for t in theirs:
            used.add(t)
            if t not in src:
                missing.append(t)
                continue
            parts.append(src[t])
        if len(parts) != len(theirs):
            continue
        want = expected[ours]
        part_want = (want[0] // len(parts),) + want[1:]
        bad = [(t, tuple(p.shape)) for t, p in zip(theirs, parts) if tuple(p.shape) != part_want]
        if bad:
            misshaped += [f"{t} has shape {list(s)}, expected {list(part_want)}" for t, s in bad]
            continue
        state[ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    inv_freqs = []
    unexpected = []
    for k, v in src.items():
        if k in used:
            continue
        if rot_re.match(k):
            inv_freqs.append((k, v))
        elif not ignore_re.match(k):
            unexpected.append(k)

    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if misshaped:
        problems.append("wrong shapes: " + "; ".join(misshaped[:20]))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(sorted(unexpected)[:20])}"
                        + (" ..." if len(unexpected) > 20 else ""))
    if problems:
        raise BadCheckpoint(f"{path}: checkpoint does not match ESM-2 "
                            f"({cfg.num_layers} layers, dim {cfg.embed_dim}, {cfg.attention_heads} heads): "
                            + " | ".join(problems),
                            "the file is damaged or is not an ESM-2 checkpoint; download it again")

    # Rotary: use the stored inverse frequencies (released checkpoints keep the values they were
    # trained with, which may differ from a fresh computation); all layers must agree.
    inv = None
    half = cfg.head_dim // 2
    for k, v in inv_freqs:
        if tuple(v.shape) != (half,):
            raise BadCheckpoint(f"{path}: {k} has shape {list(v.shape)}, expected [{half}]",
                                "the checkpoint is inconsistent; download it again")
        if inv is None:
            inv = v.float()
        elif not torch.equal(inv, v.float()):
            raise BadCheckpoint(f"{path}: rotary inv_freq differs between layers ({k})",
                                "this checkpoint is not a standard ESM-2 model")
    return state, inv


# ---------------------------------------------------------------------------------------------


def load_checkpoint(resolved: Resolved, name: str | None = None) -> tuple[ESM2Config, dict, torch.Tensor | None]:
    """Read a resolved checkpoint -> (cfg, state dict in our names, stored rotary inv_freq or None).
    The model is named `name`, else `resolved.name`."""
    path = resolved.path
    name = name or resolved.name
    if resolved.format == FAIR_ESM:
        data = torch_load(path)
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise BadCheckpoint(f"{path}: not a fair-esm checkpoint (expected a dict with a 'model' state dict)",
                                "pass an esm2_*.pt file from fair-esm, or a Hugging Face model folder")
        src = _strip_fair(data["model"])
        cfg = _fair_esm_config(name, data, src, path)
    else:
        folder = Path(path)
        cfg = _hf_config(name, folder)
        src = _strip_hf(_read_hf_tensors(folder))
    state, inv = _build_state(cfg, src, resolved.format, path)
    return cfg, state, inv


def load_model(name_or_path: str, device, dtype: torch.dtype, allow_download: bool = False):
    """Resolve, read and strictly load a model -> (model in eval mode on device/dtype, cfg, resolved).

    With `allow_download` (embed's default; `--no-download` turns it off), a released ESM-2 name
    found in no local cache is fetched into the torch hub cache first (download.py); if that fails
    too, the error lists the paths searched and the URL tried."""
    try:
        resolved = resolve(name_or_path)
    except ModelNotFound as missing:
        name = bare_name(str(name_or_path).strip())
        if name not in KNOWN:
            raise
        if not allow_download:
            raise ModelNotFound(missing.message, f"rerun without --no-download to fetch it (needs network), or {missing.hint}") from None
        from .download import download
        try:
            download(name)
        except ModelNotFound as failed:
            raise ModelNotFound(f"{missing.message}\n{failed.message}", failed.hint) from None
        resolved = resolve(name_or_path)
    cfg, state, inv = load_checkpoint(resolved)
    with torch.device("meta"):
        model = ESM2(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    if inv is not None:
        model.set_inv_freq(inv)
    model = model.to(device=torch.device(device), dtype=dtype)
    model.requires_grad_(False)
    model.eval()
    return model, cfg, resolved
