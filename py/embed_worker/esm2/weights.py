"""Strict checkpoint loading for model.ESM2 from fair-esm .pt files or Hugging Face folders (the
files themselves are read by embed_worker.checkpoint).

Every tensor our model needs must be present with the right shape; every other
tensor in the file must be on an explicit allowlist of known-unused keys
(LM head, contact head, rotary buffers, position ids, pooler); anything else
is an error. Pickles are only ever read with ``weights_only=True``. Hugging Face folders are read
as transformers 4.x and 5.x write them (EsmModel or EsmForMaskedLM; model.safetensors, shards with
an index, or pytorch_model.bin): 5.x names LayerNorm parameters gamma/beta and stores the rotary
buffer once under a wildcard layer name, 4.x uses weight/bias and one buffer per layer.

fair-esm ``esm2_*.pt`` layout (what fair-esm's pretrained.py reads):
    {"model": {"encoder.sentence_encoder.layers.0.self_attn.q_proj.weight": ..., "encoder.lm_head.dense.weight": ...},
     "cfg": {"model": argparse.Namespace(encoder_layers=..., encoder_embed_dim=...,
                                         encoder_attention_heads=..., token_dropout=..., ...)},
     "args": None, ...}
The Namespace is the one non-container type in those files, so it is the one
class allowlisted for the weights-only unpickler.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..checkpoint import TensorInfo, hf_headers, hf_tensors, state_dict, torch_load
from ..errors import BadCheckpoint, ModelNotFound
from ..upload import upload
from .model import ESM2
from .config_rules import _REFETCH, _bad, _cannot_load, _check_geometry, _fair_esm_config, _not_fair_esm, _strip_fair, _typed
from .registry import FAIR_ESM, KNOWN, ESM2Config, Resolved, bare_name, resolve

# ---------------------------------------------------------------------------------------------
# configs (fair-esm's cfg.model and the shared field rules: config_rules.py)

# config.json fields that must hold ESM-2's token ids (the orchestrator tokenizes with that alphabet)
_HF_TOKEN_IDS = {"pad_token_id": 1, "mask_token_id": 32, "cls_token_id": 0, "bos_token_id": 0, "eos_token_id": 2}


def _hf_config(name: str, folder: Path) -> ESM2Config:
    p = folder / "config.json"
    hint = "download the model folder again"
    try:
        c = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BadCheckpoint(f"{p}: unreadable config.json ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                            hint) from None
    if not isinstance(c, dict):
        raise BadCheckpoint(f"{p}: config.json holds a JSON {type(c).__name__}, not an object of settings", hint)
    where = str(p)
    if _typed(c.get, "model_type", where, str, "esm") != "esm":
        raise BadCheckpoint(f"{p}: model_type is {c.get('model_type')!r}, not 'esm'", "pass an ESM-2 model folder")
    if _typed(c.get, "is_folding_model", where, bool, False):
        raise BadCheckpoint(f"{p}: this is an ESMFold model, not an ESM-2 encoder", "pass an ESM-2 model folder")
    pe = c.get("position_embedding_type", "absolute")
    if pe != "rotary":
        raise BadCheckpoint(f"{p}: position_embedding_type is {pe!r}; only 'rotary' (ESM-2) is supported",
                            "ESM-1/ESM-1b models are not supported; use an ESM-2 model")
    if _typed(c.get, "emb_layer_norm_before", where, bool, False):
        raise BadCheckpoint(f"{p}: emb_layer_norm_before is true; ESM-2 has no embedding LayerNorm",
                            "ESM-1b style models are not supported; use an ESM-2 model")
    for key, want in _HF_TOKEN_IDS.items():
        got = _typed(c.get, key, where, int, want)
        if got != want:
            raise BadCheckpoint(f"{p}: {key} is {got}, but ESM-2's alphabet has it at {want}",
                                "embed tokenizes with the ESM-2 alphabet; use an ESM-2 model")
    act = c.get("hidden_act", "gelu")
    if act != "gelu":
        raise BadCheckpoint(f"{p}: hidden_act {act!r}; ESM-2 uses exact gelu", "use an ESM-2 model")
    layers = _typed(c.get, "num_hidden_layers", where, int)
    dim = _typed(c.get, "hidden_size", where, int)
    heads = _typed(c.get, "num_attention_heads", where, int)
    ffn = _typed(c.get, "intermediate_size", where, int, 4 * dim)
    vocab = _typed(c.get, "vocab_size", where, int, 33)
    eps = _typed(c.get, "layer_norm_eps", where, float, 1e-5)
    if not 0 < eps < 1:
        raise BadCheckpoint(f"{p}: layer_norm_eps {eps} is outside (0, 1)", hint)
    _check_geometry(where, layers, dim, heads, ffn, vocab)
    return ESM2Config(name, layers, dim, heads, ffn_dim=ffn,
                      token_dropout=_typed(c.get, "token_dropout", where, bool, True), layer_norm_eps=eps)


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
# The rotary buffer: transformers 4.x saved it in every layer; 5.x saves it once, under a wildcard
# layer ("encoder.layer.*."), and EsmModel's own copy sits at the top.
_HF_ROTARY = re.compile(r"^(encoder\.layer\.(\d+|\*)\.attention\.self\.rotary_embeddings\.inv_freq|rotary_embeddings\.inv_freq)$")
# transformers 5.x writes the parameters of modules named LayerNorm under BERT's old names
# (gamma, beta); 4.x wrote weight, bias. Both are read as weight, bias.
_HF_LN_ALIAS = re.compile(r"(?:^|\.)LayerNorm\.(gamma|beta)$")
_HF_IGNORE = re.compile(r"^(lm_head\.|contact_head\.|pooler\.|embeddings\.position_ids$|embeddings\.position_embeddings\.weight$)")


def _strip_hf(infos: dict[str, TensorInfo], path: str) -> dict[str, TensorInfo]:
    """HF tensor names without the EsmForMaskedLM prefix ("esm.") and with transformers 5's
    LayerNorm gamma/beta read as weight/bias; one tensor stored under two such names is refused."""
    out: dict[str, TensorInfo] = {}
    for k, info in infos.items():
        k = k[4:] if k.startswith("esm.") else k
        m = _HF_LN_ALIAS.search(k)
        if m:
            k = k[:m.start(1)] + ("weight" if m.group(1) == "gamma" else "bias")
        if k in out:
            raise _bad(path, f"{out[k].key} and {info.key} are both {k}; a checkpoint holds each tensor once")
        out[k] = info
    return out


def expected_shapes(cfg: ESM2Config) -> dict[str, tuple[int, ...]]:
    """model.ESM2's state dict shapes (names ours), from the config alone: nothing is built."""
    d, f, v = cfg.embed_dim, cfg.ffn_dim, cfg.vocab_size
    layer = {"qkv.weight": (3 * d, d), "qkv.bias": (3 * d,), "out_proj.weight": (d, d), "out_proj.bias": (d,),
             "attn_norm.weight": (d,), "attn_norm.bias": (d,), "fc1.weight": (f, d), "fc1.bias": (f,),
             "fc2.weight": (d, f), "fc2.bias": (d,), "ffn_norm.weight": (d,), "ffn_norm.bias": (d,)}
    out = {"embed_tokens.weight": (v, d), "emb_layer_norm_after.weight": (d,), "emb_layer_norm_after.bias": (d,)}
    for i in range(cfg.num_layers):
        out.update({f"layers.{i}.{k}": s for k, s in layer.items()})
    return out


def _check_tensors(cfg: ESM2Config, infos: dict[str, TensorInfo], fmt: str, path: str):
    """Map source tensors to our names, checking presence, shapes, dtypes and leftovers from the
    headers alone. Returns (plan: ours -> source names, rotary source names)."""
    if fmt == FAIR_ESM:
        layer_map, top_map, layer_prefix, rot_re, ignore_re = _FAIR_LAYER, _FAIR_TOP, "layers.{i}.", _FAIR_ROTARY, _FAIR_IGNORE
    else:
        layer_map, top_map, layer_prefix, rot_re, ignore_re = _HF_LAYER, _HF_TOP, "encoder.layer.{i}.", _HF_ROTARY, _HF_IGNORE

    expected = expected_shapes(cfg)
    plan: dict[str, list[str]] = dict(top_map)
    for i in range(cfg.num_layers):
        pre = layer_prefix.format(i=i)
        for ours, theirs in layer_map.items():
            plan[f"layers.{i}.{ours}"] = [pre + t for t in theirs]
    assert set(plan) == set(expected), sorted(set(plan) ^ set(expected))

    missing, misshaped = [], []
    used: set[str] = set()
    for ours, theirs in plan.items():
        used.update(theirs)
        if any(t not in infos for t in theirs):
            missing += [t for t in theirs if t not in infos]
            continue
        want = expected[ours]
        part_want = (want[0] // len(theirs),) + want[1:]
        for t in theirs:
            if infos[t].shape != part_want:
                misshaped.append(f"{infos[t].key} has shape {list(infos[t].shape)}, expected {list(part_want)}")
            elif not infos[t].floating:
                misshaped.append(f"{infos[t].key} is not a floating-point tensor")

    rotary, unexpected = [], []
    half = cfg.head_dim // 2
    for k, info in infos.items():
        if k in used:
            continue
        if rot_re.match(k):
            rotary.append(k)
            if info.shape != (half,):
                misshaped.append(f"{info.key} has shape {list(info.shape)}, expected [{half}]")
        elif not ignore_re.match(k):
            unexpected.append(info.key)

    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if misshaped:
        problems.append("wrong shapes: " + "; ".join(misshaped[:20]) + (" ..." if len(misshaped) > 20 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(sorted(unexpected)[:20])}"
                        + (" ..." if len(unexpected) > 20 else ""))
    if problems:
        raise BadCheckpoint(f"{path}: checkpoint does not match ESM-2 "
                            f"({cfg.num_layers} layers, dim {cfg.embed_dim}, {cfg.attention_heads} heads): "
                            + " | ".join(problems), _REFETCH)
    return plan, rotary


def _assemble(plan: dict[str, list[str]], rotary: list[str], src: dict[str, torch.Tensor], path: str):
    """The checked tensors in our names -> (state, stored rotary inv_freq or None)."""
    state = {ours: src[theirs[0]] if len(theirs) == 1 else torch.cat([src[t] for t in theirs], dim=0)
             for ours, theirs in plan.items()}
    # Rotary: use the stored inverse frequencies (released checkpoints keep the values they were
    # trained with, which may differ from a fresh computation); all layers must agree.
    inv = None
    for k in rotary:
        v = src[k].float()
        if inv is None:
            inv = v
        elif not torch.equal(inv, v):
            raise BadCheckpoint(f"{path}: rotary inv_freq differs between layers ({k})",
                                "this checkpoint is not a standard ESM-2 model")
    return state, inv


# ---------------------------------------------------------------------------------------------


def load_checkpoint(resolved: Resolved, name: str | None = None) -> tuple[ESM2Config, dict, torch.Tensor | None]:
    """Read a resolved checkpoint -> (cfg, state dict in our names, stored rotary inv_freq or None).
    The model is named `name`, else `resolved.name`. The config is checked against sane bounds and
    the tensors' shapes against it from headers (safetensors) or a memory-mapped load (.pt) before
    any tensor is read or any model built; every problem is a BadCheckpoint naming the file."""
    path = resolved.path
    name = name or resolved.name
    try:
        if resolved.format == FAIR_ESM:
            data = torch_load(path)
            _not_fair_esm(path, data)
            src = _strip_fair(state_dict(data["model"], f"{path}: model", _REFETCH))
            infos = {k: TensorInfo(tuple(v.shape), v.is_floating_point(), path, k) for k, v in src.items()}
            cfg = _fair_esm_config(name, data, {k: i.shape for k, i in infos.items()}, path)
            plan, rotary = _check_tensors(cfg, infos, resolved.format, path)
        else:
            folder = Path(path)
            cfg = _hf_config(name, folder)
            infos = _strip_hf(hf_headers(folder, _REFETCH), path)
            plan, rotary = _check_tensors(cfg, infos, resolved.format, path)
            src = hf_tensors(infos, {t for ts in plan.values() for t in ts} | set(rotary), _REFETCH)
        state, inv = _assemble(plan, rotary, src, path)
    except (BadCheckpoint, ModelNotFound):
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OSError) as e:
        raise _cannot_load(path, e) from None
    return cfg, state, inv


def load_model(name_or_path: str, device, dtype: torch.dtype, allow_download: bool = False, lap=None):
    """Resolve, read and strictly load a model -> (model in eval mode on device/dtype, cfg, resolved).
    `lap(name)`, when given, is called once the checkpoint is read ("read"), before the tensors
    move to the device (the worker's start-up phases).

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
    if lap is not None:
        lap("read")
    with torch.device("meta"):
        model = ESM2(cfg)
    state = upload(state, torch.device(device), dtype)  # on a GPU: cast there, in parallel (upload.py)
    model.load_state_dict(state, strict=True, assign=True)
    if inv is not None:
        model.set_inv_freq(inv)
    model = model.to(device=torch.device(device), dtype=dtype)
    model.requires_grad_(False)
    model.eval()
    return model, cfg, resolved
