"""DNABERT-S / DNABERT-2 config.json -> DNABERTConfig. Torch-free.

The real folders (zhihan1996/DNABERT-S, zhihan1996/DNABERT-2-117M) ship a Hugging Face "bert"
config whose auto_map points at the folder's own bert_layers.py (MosaicBERT). Only the sizes are
read from it; the architecture itself (ALiBi instead of position embeddings, GeGLU MLP with erf
GELU, post-LayerNorm, no final LayerNorm) is fixed by that code, not by config fields, so fields
such as position_embedding_type ("absolute") and hidden_act (used only by the MLM head) are
ignored on purpose.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadCheckpoint

# Released sizes (both models): 117M parameters.
DNABERT_S = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, vocab_size=4096)

# Special-token ids of the released tokenizer.json ([UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4).
CLS_ID = 1
SEP_ID = 2


@dataclass(frozen=True)
class DNABERTConfig:
    hidden_size: int = 768          # D
    num_layers: int = 12
    num_heads: int = 12             # H; head_dim = D / H = 64
    intermediate_size: int = 3072   # F; gated_layers is D -> 2F
    vocab_size: int = 4096
    type_vocab_size: int = 2        # only row 0 is ever used (no segment B when embedding)
    layer_norm_eps: float = 1e-12
    name: str = "dnabert-s"

    def __post_init__(self) -> None:
        checks = [
            (self.hidden_size > 0, f"hidden_size {self.hidden_size} must be positive"),
            (self.num_layers > 0, f"num_hidden_layers {self.num_layers} must be positive"),
            (self.num_heads > 0, f"num_attention_heads {self.num_heads} must be positive"),
            (self.num_heads > 0 and self.hidden_size % self.num_heads == 0,
             f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_heads}"),
            (self.intermediate_size > 0, f"intermediate_size {self.intermediate_size} must be positive"),
            (self.vocab_size > SEP_ID, f"vocab_size {self.vocab_size} is too small to hold [CLS]=1 and [SEP]=2"),
            (self.type_vocab_size >= 1, f"type_vocab_size {self.type_vocab_size} must be at least 1"),
            (0.0 < self.layer_norm_eps < 1e-2, f"layer_norm_eps {self.layer_norm_eps} is outside (0, 0.01)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _int(c: dict, key: str, p: Path, default: int | None = None) -> int:
    v = c.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        if v is None:
            raise BadCheckpoint(f"{p}: missing {key}", "download the model folder again (config.json is incomplete)")
        raise BadCheckpoint(f"{p}: {key} is {v!r}, expected an integer", "download the model folder again")
    return v


def read_config(folder: str | Path, name: str | None = None) -> DNABERTConfig:
    """folder/config.json -> DNABERTConfig; BadCheckpoint naming the file and field otherwise."""
    p = Path(folder) / "config.json"
    try:
        c = json.loads(p.read_text())
    except FileNotFoundError:
        raise BadCheckpoint(f"{p}: not found", "pass a DNABERT-S / DNABERT-2 model folder "
                            "(config.json, tokenizer.json and the weights)") from None
    except Exception as e:
        raise BadCheckpoint(f"{p}: unreadable config.json ({type(e).__name__}: {e})",
                            "download the model folder again") from None
    if not isinstance(c, dict):
        raise BadCheckpoint(f"{p}: expected a JSON object", "download the model folder again")
    if c.get("model_type", "bert") != "bert":
        raise BadCheckpoint(f"{p}: model_type is {c.get('model_type')!r}, not 'bert'",
                            "pass a DNABERT-S or DNABERT-2 model folder")
    auto = (c.get("auto_map") or {}).get("AutoModel", "")
    if auto and not str(auto).endswith("bert_layers.BertModel"):
        raise BadCheckpoint(f"{p}: auto_map.AutoModel is {auto!r}, not the MosaicBERT bert_layers.BertModel",
                            "pass a DNABERT-S or DNABERT-2 model folder")
    eps = c.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise BadCheckpoint(f"{p}: layer_norm_eps is {eps!r}, expected a number", "download the model folder again")
    try:
        return DNABERTConfig(
            hidden_size=_int(c, "hidden_size", p), num_layers=_int(c, "num_hidden_layers", p),
            num_heads=_int(c, "num_attention_heads", p), intermediate_size=_int(c, "intermediate_size", p),
            vocab_size=_int(c, "vocab_size", p), type_vocab_size=_int(c, "type_vocab_size", p, 2),
            layer_norm_eps=float(eps), name=name or Path(folder).name)
    except ValueError as e:
        raise BadCheckpoint(f"{p}: {e}", "the config.json is damaged; download the model folder again") from None
