"""The ESM-2 family and where to find its checkpoints. Torch-free.

``resolve(name_or_path)`` turns what the user typed into a file or folder on
disk and the name the model is shown by; ``describe_all()`` lists the known models for
``embed models``.

Search order for a bare name (first hit wins; ``.pt`` before a folder at each place):
  1. ``$EMBED_MODEL_DIR/<name>.pt`` and ``$EMBED_MODEL_DIR/<name>/``   (if the variable is set)
  2. ``<repo>/.models/<name>.pt`` and ``<repo>/.models/<name>/``     (test models live here)
  3. ``$TORCH_HOME/hub/checkpoints/<name>.pt``                       (where fair-esm downloads)
  4. ``$HF_HUB_CACHE/models--facebook--<name>/snapshots/<rev>/``      (where transformers downloads;
     the snapshot refs/main names, found by huggingface_hub, with config.json and a weights file)
A released name found nowhere is downloaded by esm2/download.py (unless --no-download).

``python -m embed_worker.registry --json`` prints these rows with DNABERT's (``embed models``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelNotFound
from ..hub import cached_snapshot, hf_hub_cache, repo_folder, repo_id_of_folder, torch_hub_checkpoints

FAIR_ESM = "fair-esm"
HF = "hf"
HF_ORG = "facebook"  # the Hugging Face organisation of the released ESM-2 models

REPO_ROOT = Path(__file__).resolve().parents[3]  # py/embed_worker/esm2/registry.py -> repo
REPO_MODELS = REPO_ROOT / ".models"


def absolute_layer(layer: int, num_layers: int) -> int:
    """fair-esm's layer numbering: i < 0 means num_layers + 1 + i (-1 = the last layer); 0 is the
    embedding output. The result may be out of 0..num_layers; callers say what that means."""
    return layer + num_layers + 1 if layer < 0 else layer

@dataclass(frozen=True)
class ESM2Config:
    name: str
    num_layers: int
    embed_dim: int
    attention_heads: int
    ffn_dim: int = 0  # 0 -> 4 * embed_dim (every ESM-2 model)
    vocab_size: int = 33
    token_dropout: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.ffn_dim == 0:
            object.__setattr__(self, "ffn_dim", 4 * self.embed_dim)
        if self.embed_dim % self.attention_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {self.attention_heads} heads")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.attention_heads

    @property
    def num_params(self) -> int:
        """Parameters of the encoder (embeddings + blocks + final LN), without LM/contact heads."""
        d, f = self.embed_dim, self.ffn_dim
        block = 4 * (d * d + d) + 2 * (2 * d) + (d * f + f) + (f * d + d)
        return self.vocab_size * d + self.num_layers * block + 2 * d


# Sane bounds on a checkpoint's declared geometry, checked before anything is allocated: the
# largest released ESM-2 (15B) is 48 layers x 5120 wide with 40 heads (FFN 4x). These leave room
# for bigger fine-tunes while refusing a corrupt or hostile config (100,000 layers took 89 s to
# fail, building the model) at once.
MAX_LAYERS = 256
MAX_EMBED_DIM = 16384
MAX_HEADS = 256
MAX_FFN_DIM = 8 * MAX_EMBED_DIM
VOCAB_SIZE = 33  # the ESM-1b/ESM-2 alphabet, which the orchestrator's tokenizer writes


def geometry_problems(num_layers: int, embed_dim: int, heads: int, ffn_dim: int, vocab_size: int = VOCAB_SIZE) -> list[str]:
    """What is wrong with a declared model shape, as phrases ([] if nothing): out of bounds, heads
    not dividing the width, an odd head size (rotary pairs dimensions) or a foreign vocabulary."""
    out = []
    for what, v, hi in [("layers", num_layers, MAX_LAYERS), ("width", embed_dim, MAX_EMBED_DIM),
                        ("attention heads", heads, MAX_HEADS), ("FFN width", ffn_dim, MAX_FFN_DIM)]:
        if not 1 <= v <= hi:
            out.append(f"{what} {v} is outside 1..{hi}")
    if not out and embed_dim % heads:
        out.append(f"{heads} attention heads do not divide width {embed_dim}")
    elif not out and (embed_dim // heads) % 2:
        out.append(f"head size {embed_dim // heads} (width {embed_dim} / {heads} heads) is odd; rotary needs it even")
    if vocab_size != VOCAB_SIZE:
        out.append(f"vocabulary of {vocab_size} tokens, not ESM-2's {VOCAB_SIZE}")
    return out


@dataclass(frozen=True)
class KnownModel:
    cfg: ESM2Config
    nominal: str  # the size in the model's name, e.g. "650M"


def _km(name: str, layers: int, dim: int, heads: int, nominal: str) -> KnownModel:
    return KnownModel(ESM2Config(name, layers, dim, heads), nominal)


KNOWN: dict[str, KnownModel] = {k.cfg.name: k for k in [
    _km("esm2_t6_8M_UR50D", 6, 320, 20, "8M"),
    _km("esm2_t12_35M_UR50D", 12, 480, 20, "35M"),
    _km("esm2_t30_150M_UR50D", 30, 640, 20, "150M"),
    _km("esm2_t33_650M_UR50D", 33, 1280, 20, "650M"),
    _km("esm2_t36_3B_UR50D", 36, 2560, 40, "3B"),
    _km("esm2_t48_15B_UR50D", 48, 5120, 40, "15B"),
]}

# The random-weight model written by `python -m embed_worker.tools.testmodel` (defaults there come from here).
TEST_TINY = KnownModel(ESM2Config("test-tiny", 2, 64, 4), "test")


@dataclass(frozen=True)
class Resolved:
    path: str
    format: str  # "fair-esm" | "hf"
    searched: list[str] = field(default_factory=list)
    name: str = ""  # what the model is shown by (run.json, `embed models`); "" -> named after its path

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", name_from_path(self.path, self.format))


def bare_name(name: str) -> str:
    """A model name without its Hugging Face organisation: facebook/esm2_t6_8M_UR50D -> esm2_t6_8M_UR50D."""
    prefix = f"{HF_ORG}/"
    return name[len(prefix):] if name.startswith(prefix) else name


def typed_name(name_or_path: str) -> str:
    """The name a model is shown by when the argument is not written as a file: the argument as
    typed, less its organisation. "" for an argument with a path separator or a .pt suffix, whose
    model is then named after its path. (A bare existing path such as `.` or `model.pth` keeps the
    name as typed: run.json records it, and resuming compares it.)"""
    name = bare_name(str(name_or_path))
    return "" if os.sep in name or name.endswith(".pt") else name


def name_from_path(path: str, fmt: str) -> str:
    """A checkpoint named by where it lies: a .pt file's stem, a folder's name, or the model's name
    for a Hugging Face cache snapshot (models--facebook--<name>/snapshots/<rev>)."""
    p = Path(path)
    if fmt == FAIR_ESM:
        return p.stem
    return p.parent.parent.name.split("--")[-1] if p.parent.name == "snapshots" else p.name


# ---------------------------------------------------------------------------------------------
# search locations


def _is_hf_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def hf_cache_snapshot(repo_dir: Path) -> Path | None:
    """A cache folder models--<org>--<name> -> its snapshot (hub.cached_snapshot), else None."""
    repo_id = repo_id_of_folder(repo_dir.name)
    return cached_snapshot(repo_id, repo_dir.parent) if repo_id and repo_dir.is_dir() else None


def download_to(name: str) -> Path:
    """Where a download of released `name` lands (esm2/download.py): the .pt file in the torch hub
    cache when EMBED_MODEL_URL names a fair-esm mirror, else its folder in the Hugging Face cache."""
    if os.environ.get("EMBED_MODEL_URL"):
        return torch_hub_checkpoints() / f"{name}.pt"
    return hf_hub_cache() / repo_folder(f"{HF_ORG}/{name}")


def _candidates(name: str) -> list[tuple[str, Path, str]]:
    """(kind, path, format) in search order. kind 'file' = .pt, 'dir' = HF folder, 'hfcache' = HF repo cache."""
    out: list[tuple[str, Path, str]] = []
    env_dir = os.environ.get("EMBED_MODEL_DIR")
    for base in ([Path(os.path.expanduser(env_dir))] if env_dir else []) + [REPO_MODELS]:
        out.append(("file", base / f"{name}.pt", FAIR_ESM))
        out.append(("dir", base / name, HF))
    out.append(("file", torch_hub_checkpoints() / f"{name}.pt", FAIR_ESM))
    out.append(("hfcache", hf_hub_cache() / repo_folder(f"{HF_ORG}/{name}"), HF))
    return out


def _looks_like_path(s: str) -> bool:
    if s.startswith(f"{HF_ORG}/") and s.count("/") == 1:
        return False  # a Hugging Face repo id
    seps = ("/", os.sep) + ((os.altsep,) if os.altsep else ())
    return s.endswith((".pt", ".pth")) or s.startswith((".", "~")) or any(c in s for c in seps)


def resolve(name_or_path: str) -> Resolved:
    """Find the checkpoint for a model name or a path. Raises ModelNotFound listing every place searched."""
    s = str(name_or_path).strip()
    shown = typed_name(name_or_path)
    searched: list[str] = []

    # 1. an existing path wins
    p = Path(os.path.expanduser(s))
    if p.is_file():
        return Resolved(str(p.resolve()), FAIR_ESM, [str(p)], shown)
    if _is_hf_dir(p):
        return Resolved(str(p.resolve()), HF, [str(p)], shown)
    if p.is_dir() and p.name.startswith("models--"):  # an HF cache repo folder given directly
        snap = hf_cache_snapshot(p)
        if snap is not None:
            return Resolved(str(snap.resolve()), HF, [str(p)], shown)
    if _looks_like_path(s):
        searched.append(str(p.absolute()))
        what = "folder has no config.json" if p.is_dir() else "file does not exist"
        raise ModelNotFound(
            f"model path {s!r} cannot be loaded ({what}). Searched:\n  " + "\n  ".join(searched),
            "pass a fair-esm .pt file or a Hugging Face folder containing config.json")

    # 2. a name
    name = bare_name(s)
    for kind, cand, fmt in _candidates(name):
        if kind == "file":
            searched.append(str(cand))
            if cand.is_file():
                return Resolved(str(cand), fmt, searched, shown)
        elif kind == "dir":
            searched.append(str(cand) + os.sep)
            if _is_hf_dir(cand):
                return Resolved(str(cand), fmt, searched, shown)
        else:
            searched.append(str(cand / "snapshots" / "<rev>") + os.sep)
            snap = hf_cache_snapshot(cand)
            if snap is not None:
                return Resolved(str(snap), fmt, searched, shown)

    hub = torch_hub_checkpoints()
    local = f"pass a path to a .pt file or Hugging Face folder, or set EMBED_MODEL_DIR to a folder holding {name}.pt or {name}/"
    if name in KNOWN:
        hint = (f"fetch it with `hf download {HF_ORG}/{name} config.json model.safetensors` (into {hf_hub_cache()}), "
                f"or download https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt into {hub}/, or {local}")
    elif name == TEST_TINY.cfg.name:
        hint = f"create it with: python -m embed_worker.tools.testmodel --out {REPO_MODELS}"
    else:
        hint = f"{local} (known ESM-2 models: {', '.join(KNOWN)})"
    raise ModelNotFound(f"model {s!r} not found. Searched:\n  " + "\n  ".join(searched), hint)


def describe_all() -> list[dict]:
    """Known models (+ test-tiny) with their shape and the path each would load from (or None),
    and for one not found, where a download would put it (`download_to`; test-tiny: where
    `python -m embed_worker.tools.testmodel` writes it)."""
    rows = []
    for km in list(KNOWN.values()) + [TEST_TINY]:
        c = km.cfg
        try:
            r = resolve(c.name)
            path, fmt = r.path, r.format
        except ModelNotFound:
            path, fmt = None, None
        rows.append({
            "name": c.name, "layers": c.num_layers, "dim": c.embed_dim, "heads": c.attention_heads,
            "params": c.num_params, "nominal": km.nominal, "path": path, "format": fmt,
            "downloadable": c.name in KNOWN,  # released: fetched on first use; else (test-tiny) made by setup
            "download_to": None if path else (str(download_to(c.name)) if c.name in KNOWN else f"{REPO_MODELS}/{c.name}.pt"),
        })
    return rows

