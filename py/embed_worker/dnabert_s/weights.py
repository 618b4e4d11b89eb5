"""Strict loading of DNABERT-S / DNABERT-2 Hugging Face folders into model.DNABERT.

A folder holds config.json (auto_map -> bert_layers.BertModel), tokenizer.json and the weights
as model.safetensors, pytorch_model.bin, or either one sharded with a *.index.json. The folder's
Python files are never imported or run. Two key layouts exist:

  DNABERT-S (BertModel)            embeddings.word_embeddings.weight, encoder.layer.{i}..., pooler.dense.*
  DNABERT-2-117M (BertForMaskedLM) bert.embeddings.word_embeddings.weight, ..., cls.predictions.*

Every tensor our model needs must be present with the right shape; pooler.* (and cls.* in the
masked-LM layout) are known to be unused; anything else is an error. Pickles are read with
weights_only=True; the files are read by checkpoint.py, as for ESM-2. Errors are one line naming the file.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import BadCheckpoint
from ..upload import upload
from ..checkpoint import hf_headers, hf_tensors
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

HINT = "the file is damaged or truncated; download the model folder again"


def key_map(cfg: DNABERTConfig) -> dict[str, str]:
    """our parameter name -> unprefixed checkpoint name, for every tensor of DNABERT(cfg)."""
    out = dict(TOP)
    for i in range(cfg.num_layers):
        out.update({f"layers.{i}.{ours}": f"encoder.layer.{i}.{theirs}" for ours, theirs in LAYER.items()})
    return out


# ---------------------------------------------------------------------------------------------
# reading files: {key: tensor} plus {key: file it came from}, through the ESM-2 loader's reader
# (checkpoint.hf_headers: safetensors headers checked against the file's size, shard indexes
# checked against their shards, pickles unpickled weights-only)


def read_tensors(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """All tensors of a folder's weights -> (tensors, file of each key). safetensors is preferred
    over pytorch_model.bin when both are present; a *.index.json lists shards."""
    infos = hf_headers(Path(folder), HINT)
    return hf_tensors(infos, set(infos), HINT), {k: Path(i.file) for k, i in infos.items()}


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
