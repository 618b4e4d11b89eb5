"""Write small random-weight DNABERT-S / DNABERT-2 folders in the real on-disk layouts, for tests.

    write_folder(out, cfg, layout="dnabert-s" | "dnabert-2", fmt="safetensors" | "bin" | "both",
                 shards=1, tokenizer=path/to/tokenizer.json, seed=0)

writes out/config.json (the real file's fields, with cfg's sizes), the weights and, when given, a
copy of a tokenizer.json. "dnabert-s" is BertModel's unprefixed layout with the pooler;
"dnabert-2" is BertForMaskedLM's: every encoder key under "bert.", plus the cls.* head and no
pooler. The weights are scaled so that wrong arithmetic shows in parity tests (the models'
std-0.02 init makes every layer close to an identity and hides mistakes): matrices ~ N(0, 1/fan_in)
x `scale`, LayerNorm weights 1 + N(0, 0.3^2), biases N(0, 0.1^2).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .config import DNABERTConfig

# The real config.json (zhihan1996/DNABERT-S), minus the sizes that write_folder fills in.
CONFIG_TEMPLATE = {
    "_name_or_path": "zhihan1996/DNABERT-2-117M",
    "alibi_starting_size": 512,
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_bert.BertConfig",
        "AutoModel": "bert_layers.BertModel",
        "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
        "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
    },
    "classifier_dropout": None,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "transformers_version": "4.28.0",
    "use_cache": True,
}


def config_json(cfg: DNABERTConfig, layout: str = "dnabert-s") -> dict:
    c = dict(CONFIG_TEMPLATE)
    c.update(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
             intermediate_size=cfg.intermediate_size, vocab_size=cfg.vocab_size,
             type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps)
    if layout == "dnabert-2":
        c["architectures"] = ["BertForMaskedLM"]
    return c


def make_weights(cfg: DNABERTConfig, seed: int = 0, scale: float = 1.5,
                 dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random tensors under DNABERT-S's (unprefixed) checkpoint names, pooler included."""
    g = torch.Generator().manual_seed(seed)
    D, F = cfg.hidden_size, cfg.intermediate_size

    def mat(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=g, dtype=torch.float64) * (scale / cols ** 0.5)

    def vec(n: int, std: float = 0.1, mean: float = 0.0) -> torch.Tensor:
        return mean + torch.randn(n, generator=g, dtype=torch.float64) * std

    def ln(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": vec(D, 0.3, 1.0), f"{prefix}.bias": vec(D, 0.1)}

    w = {"embeddings.word_embeddings.weight": torch.randn(cfg.vocab_size, D, generator=g, dtype=torch.float64),
         "embeddings.token_type_embeddings.weight": torch.randn(cfg.type_vocab_size, D, generator=g,
                                                                dtype=torch.float64)}
    w.update(ln("embeddings.LayerNorm"))
    for i in range(cfg.num_layers):
        p = f"encoder.layer.{i}."
        w[p + "attention.self.Wqkv.weight"] = mat(3 * D, D)
        w[p + "attention.self.Wqkv.bias"] = vec(3 * D)
        w[p + "attention.output.dense.weight"] = mat(D, D)
        w[p + "attention.output.dense.bias"] = vec(D)
        w.update(ln(p + "attention.output.LayerNorm"))
        w[p + "mlp.gated_layers.weight"] = mat(2 * F, D)
        w[p + "mlp.wo.weight"] = mat(D, F)
        w[p + "mlp.wo.bias"] = vec(D)
        w.update(ln(p + "mlp.layernorm"))
    w["pooler.dense.weight"] = mat(D, D)
    w["pooler.dense.bias"] = vec(D)
    return {k: v.to(dtype) for k, v in w.items()}


def to_layout(w: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """DNABERT-S names -> the given layout's names ("dnabert-s" unchanged; "dnabert-2": bert.* + cls.*, no pooler)."""
    if layout == "dnabert-s":
        return dict(w)
    if layout != "dnabert-2":
        raise ValueError(f"layout must be dnabert-s or dnabert-2, got {layout!r}")
    out = {"bert." + k: v for k, v in w.items() if not k.startswith("pooler.")}
    emb = w["embeddings.word_embeddings.weight"]
    D = emb.shape[1]
    g = torch.Generator().manual_seed(1234)
    out["cls.predictions.transform.dense.weight"] = torch.randn(D, D, generator=g).to(emb.dtype) * D ** -0.5
    out["cls.predictions.transform.dense.bias"] = torch.zeros(D, dtype=emb.dtype)
    out["cls.predictions.transform.LayerNorm.weight"] = torch.ones(D, dtype=emb.dtype)
    out["cls.predictions.transform.LayerNorm.bias"] = torch.zeros(D, dtype=emb.dtype)
    out["cls.predictions.decoder.weight"] = emb.clone()  # tied to the word embeddings in the model
    out["cls.predictions.decoder.bias"] = torch.zeros(emb.shape[0], dtype=emb.dtype)
    return out


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(tensors, str(path), metadata={"format": "pt"})
    else:
        torch.save(tensors, str(path))


def write_weights(folder: Path, tensors: dict[str, torch.Tensor], fmt: str, shards: int = 1) -> None:
    """tensors -> folder/model.safetensors and/or folder/pytorch_model.bin (sharded with an index if shards > 1)."""
    kinds = {"safetensors": ["safetensors"], "bin": ["bin"], "both": ["safetensors", "bin"]}[fmt]
    keys = list(tensors)
    for kind in kinds:
        stem, ext = ("model", "safetensors") if kind == "safetensors" else ("pytorch_model", "bin")
        if shards <= 1:
            _save(tensors, folder / f"{stem}.{ext}")
            continue
        weight_map = {}
        for s in range(shards):
            name = f"{stem}-{s + 1:05d}-of-{shards:05d}.{ext}"
            part = {k: tensors[k] for k in keys[s::shards]}
            _save(part, folder / name)
            weight_map.update({k: name for k in part})
        (folder / f"{stem}.{ext}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))


def write_folder(out: str | Path, cfg: DNABERTConfig, layout: str = "dnabert-s", fmt: str = "safetensors",
                 shards: int = 1, tokenizer: str | Path | None = None, seed: int = 0,
                 weights: dict[str, torch.Tensor] | None = None) -> Path:
    """A model folder at `out` (created) -> `out`. `weights` (DNABERT-S names) default to make_weights(cfg, seed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_json(cfg, layout), indent=4))
    if tokenizer is not None:
        shutil.copyfile(tokenizer, out / "tokenizer.json")
    w = weights if weights is not None else make_weights(cfg, seed)
    write_weights(out, to_layout(w, layout), fmt, shards)
    return out
