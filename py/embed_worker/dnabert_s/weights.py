"""Strict loading of DNABERT-S / DNABERT-2 Hugging Face folders into model.DNABERT.

A folder holds config.json (auto_map -> bert_layers.BertModel), tokenizer.json and the weights
as model.safetensors, pytorch_model.bin, or either one sharded with a *.index.json. The folder's
Python files are never imported or run. Two key layouts exist:

  DNABERT-S (BertModel)            embeddings.word_embeddings.weight, encoder.layer.{i}..., pooler.dense.*
  DNABERT-2-117M (BertForMaskedLM) bert.embeddings.word_embeddings.weight, ..., cls.predictions.*

Every tensor our model needs must be present with the right shape; pooler.* (and cls.* in the
masked-LM layout) are known to be unused; anything else is an error. Pickles are read with
weights_only=True (embed_worker.weights.torch_load). Errors are one line naming the file.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import BadCheckpoint
from ..upload import upload
from ..checkpoint import HF_WEIGHT_FILES, torch_load
from .config import DNABERTConfig, read_config
from .model import DNABERT

PREFIX = "bert."  # masked-LM layout (DNABERT-2-117M)

# our name -> checkpoint name (unprefixed)
TOP = {
    "word_embeddings.weight": "embeddings.word_embeddings.weight",
    "token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "emb_norm.weight": "embeddings.LayerNorm.weight",
    "emb_norm.bias": "embeddings.LayerNorm.bias",
}
LAYER = {
    "Wqkv.weight": "attention.self.Wqkv.weight", "Wqkv.bias": "attention.self.Wqkv.bias",
    "attn_out.weight": "attention.output.dense.weight", "attn_out.bias": "attention.output.dense.bias",
    "attn_norm.weight": "attention.output.LayerNorm.weight", "attn_norm.bias": "attention.output.LayerNorm.bias",
    "gated.weight": "mlp.gated_layers.weight",
    "wo.weight": "mlp.wo.weight", "wo.bias": "mlp.wo.bias",
    "mlp_norm.weight": "mlp.layernorm.weight", "mlp_norm.bias": "mlp.layernorm.bias",
}
IGNORED = re.compile(r"^pooler\.dense\.(weight|bias)$")  # BertModel's pooler: tanh(dense([CLS])), unused
IGNORED_MLM = re.compile(r"^cls\.")  # BertForMaskedLM's head, outside the "bert." prefix
# Signs of a standard Hugging Face BERT (learned positions, separate q/k/v, plain MLP).
VANILLA_BERT = re.compile(r"(embeddings\.position_embeddings\.|attention\.self\.query\.|intermediate\.dense\.)")

WEIGHT_FILES = HF_WEIGHT_FILES  # the ESM-2 loader's order too: safetensors first, one file before shards


def key_map(cfg: DNABERTConfig) -> dict[str, str]:
    """our parameter name -> unprefixed checkpoint name, for every tensor of DNABERT(cfg)."""
    out = dict(TOP)
    for i in range(cfg.num_layers):
        out.update({f"layers.{i}.{ours}": f"encoder.layer.{i}.{theirs}" for ours, theirs in LAYER.items()})
    return out


# ---------------------------------------------------------------------------------------------
# reading files: {key: tensor} plus {key: file it came from}


def _read_one(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BadCheckpoint(f"{path}: weight file not found", "download the model folder again")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise BadCheckpoint(f"{path}: cannot read safetensors: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                                "the file may be truncated; download it again") from None
    sd = torch_load(path)
    if not isinstance(sd, dict):
        raise BadCheckpoint(f"{path}: expected a state dict, found {type(sd).__name__}",
                            "re-save the weights as a plain state dict or as safetensors")
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise BadCheckpoint(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor",
                                "re-save the weights as a plain state dict or as safetensors")
    return sd


def read_tensors(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """All tensors of a folder's weights -> (tensors, file of each key). safetensors is preferred
    over pytorch_model.bin when both are present; a *.index.json lists shards."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        p = folder / name
        if not p.is_file():
            continue
        if not name.endswith(".index.json"):
            sd = _read_one(p)
            return sd, {k: p for k in sd}
        try:
            weight_map = json.loads(p.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("weight_map does not map tensor names to shard file names")
        except Exception as e:
            raise BadCheckpoint(f"{p}: unreadable shard index ({type(e).__name__}: {e})",
                                "download the model folder again") from None
        tensors: dict[str, torch.Tensor] = {}
        where: dict[str, Path] = {}
        shards = sorted(set(weight_map.values()))
        for shard in shards:  # all present before any is read: a partial download is named at once
            if Path(shard).name != shard or not (folder / shard).is_file():
                raise BadCheckpoint(f"{folder / shard}: weight file not found (a shard named in {p.name})",
                                    f"the download is incomplete; download {shard} (or the whole model folder) again")
        for shard in shards:
            sp = folder / shard
            part = _read_one(sp)
            for k, v in part.items():
                if k in tensors:
                    raise BadCheckpoint(f"{sp}: key {k} also appears in {where[k]}", "download the model folder again")
                if weight_map.get(k) != shard:
                    raise BadCheckpoint(f"{sp}: key {k} is not listed for this shard in {p.name}",
                                        "the shard index does not match the shards; download the model folder again")
                tensors[k], where[k] = v, sp
        listed_missing = sorted(k for k in weight_map if k not in tensors)
        if listed_missing:
            k = listed_missing[0]
            raise BadCheckpoint(f"{folder / weight_map[k]}: key {k} listed in {p.name} is not in the shard"
                                + (f" (and {len(listed_missing) - 1} more)" if len(listed_missing) > 1 else ""),
                                "a shard is truncated or from another download; download the model folder again")
        return tensors, where
    raise BadCheckpoint(f"{folder}: no weights ({', '.join(WEIGHT_FILES)})",
                        "download the full model folder (config.json, tokenizer.json and the weights)")


# ---------------------------------------------------------------------------------------------


def _strip_prefix(src: dict[str, torch.Tensor], where: dict[str, Path]):
    """Masked-LM layout (any key under "bert.") -> unprefixed names, cls.* dropped; a mix of
    prefixed and unprefixed encoder keys is an error."""
    if not any(k.startswith(PREFIX) for k in src):
        return src, where, False
    stray = sorted(k for k in src if not k.startswith(PREFIX) and not IGNORED_MLM.match(k))
    if stray:
        raise BadCheckpoint(f"{where[stray[0]]}: keys both with and without the '{PREFIX}' prefix "
                            f"(e.g. {stray[0]})", "the checkpoint mixes two models; download it again")
    out = {k[len(PREFIX):]: v for k, v in src.items() if k.startswith(PREFIX)}
    return out, {k[len(PREFIX):]: p for k, p in where.items() if k.startswith(PREFIX)}, True


def build_state(cfg: DNABERTConfig, src: dict[str, torch.Tensor], where: dict[str, Path],
                folder: str | Path) -> dict[str, torch.Tensor]:
    """Checkpoint tensors -> our state dict, checking every key and shape (BadCheckpoint otherwise)."""
    src, where, _mlm = _strip_prefix(src, where)
    files = sorted({str(p) for p in where.values()}) or [str(folder)]
    shown = files[0] if len(files) == 1 else f"{folder} ({len(files)} shards)"

    vanilla = sorted(k for k in src if VANILLA_BERT.search(k))
    if vanilla:
        raise BadCheckpoint(f"{where[vanilla[0]]}: {vanilla[0]} belongs to a standard BERT (learned positions, "
                            "separate query/key/value), not to MosaicBERT (DNABERT-S / DNABERT-2)",
                            "pass a DNABERT-S or DNABERT-2 model folder")

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in DNABERT(cfg).state_dict().items()}
    plan = key_map(cfg)
    assert set(plan) == set(expected), sorted(set(plan) ^ set(expected))

    missing, misshaped, state = [], [], {}
    for ours, theirs in plan.items():
        t = src.get(theirs)
        if t is None:
            missing.append(theirs)
        elif tuple(t.shape) != expected[ours]:
            misshaped.append(f"{theirs} has shape {list(t.shape)}, expected {list(expected[ours])}")
        elif not t.is_floating_point():
            misshaped.append(f"{theirs} has dtype {t.dtype}, expected a floating-point tensor")
        else:
            state[ours] = t
    used = set(plan.values())
    unexpected = sorted(k for k in src if k not in used and not IGNORED.match(k))

    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    if misshaped:
        problems.append("wrong shapes: " + "; ".join(misshaped[:10]))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:10])}" + (" ..." if len(unexpected) > 10 else ""))
    if problems:
        raise BadCheckpoint(f"{shown}: weights do not match config.json ({cfg.num_layers} layers, hidden "
                            f"{cfg.hidden_size}, {cfg.num_heads} heads, intermediate {cfg.intermediate_size}, "
                            f"vocab {cfg.vocab_size}): " + " | ".join(problems),
                            "the weights are damaged or belong to another model; download the model folder again")
    return state


def load_checkpoint(folder: str | Path, name: str | None = None) -> tuple[DNABERTConfig, dict[str, torch.Tensor]]:
    """A model folder -> (config, state dict in our names), strictly checked."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadCheckpoint(f"{folder}: not a folder", "pass a DNABERT-S / DNABERT-2 model folder")
    cfg = read_config(folder, name)
    src, where = read_tensors(folder)
    return cfg, build_state(cfg, src, where, folder)


def load_model(folder: str | Path, device="cpu", dtype: torch.dtype = torch.float32, name: str | None = None):
    """Read and strictly load a folder -> (DNABERT in eval mode on device/dtype, config)."""
    cfg, state = load_checkpoint(folder, name)
    with torch.device("meta"):
        model = DNABERT(cfg)
    state = upload(state, torch.device(device), dtype)  # on a GPU: cast there, in parallel (upload.py)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=torch.device(device), dtype=dtype)
    model.requires_grad_(False)
    model.eval()
    return model, cfg
