"""Every model family's checkpoints: which family a model is, where it lies, what `embed models`
lists. Torch-free (`embed models` and the orchestrator's checks run it without loading torch).

ESM-2 keeps its own search (esm2/registry.py: fair-esm .pt files, facebook/ Hugging Face folders).
DNABERT-S and DNABERT-2-117M (family "dnabert-s") are Hugging Face folders only, found as:
  1. an existing folder whose config.json is MosaicBERT's (model_type "bert", auto_map.AutoModel
     "bert_layers.BertModel"); its code files are never imported or run (dnabert_s/weights.py);
  2. a name, `DNABERT-S` or `zhihan1996/DNABERT-S` (same for DNABERT-2-117M), looked up in
     $EMBED_MODEL_DIR/<name>/, <repo>/.models/<name>/, then the Hugging Face cache
     ($HF_HUB_CACHE or $HF_HOME/hub)/models--zhihan1996--<name>/snapshots/<rev>/ (huggingface_hub's
     lookup: the snapshot refs/main names, with config.json and a weights file).
`download(name)` (or `python -m embed_worker.registry --download NAME [--json]`) fetches a released
model of either family; for DNABERT only config.json, the weights and tokenizer.json, never its .py
files. The orchestrator needs a DNABERT model's tokenizer.json before a worker starts, so it runs
that command itself for a missing one (unless --no-download, which gets the command to run).

Run ``python -m embed_worker.registry --json`` to print ``describe_all()``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import hub
from .errors import ModelNotFound
from .esm2 import registry as esm2
from .dnabert_s.config import DNABERT_S

DNABERT_ORG = "zhihan1996"
DNABERT_FORMAT = "hf-mosaicbert"
DNABERT_KNOWN = ("DNABERT-S", "DNABERT-2-117M")
"""Released names (117M parameters each, the sizes of dnabert_s.config.DNABERT_S)."""
FAMILIES = ("esm2", "dnabert-s")


def dnabert_name(s: str) -> str | None:
    """`DNABERT-S` / `zhihan1996/DNABERT-S` -> "DNABERT-S" (same for DNABERT-2-117M); else None."""
    name = s[len(DNABERT_ORG) + 1:] if s.startswith(f"{DNABERT_ORG}/") else s
    return name if name in DNABERT_KNOWN else None


def is_dnabert_folder(p: Path) -> bool:
    """A folder whose config.json is MosaicBERT's (DNABERT-S / DNABERT-2); read, never executed."""
    try:
        c = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(c, dict) or c.get("model_type") != "bert":
        return False
    auto = c.get("auto_map") if isinstance(c.get("auto_map"), dict) else {}
    return str(auto.get("AutoModel", "")).endswith("bert_layers.BertModel")


def _dnabert_candidates(name: str) -> list[Path]:
    env_dir = os.environ.get("EMBED_MODEL_DIR")
    bases = ([Path(os.path.expanduser(env_dir))] if env_dir else []) + [esm2.REPO_MODELS]
    return [b / name for b in bases] + [hub.hf_hub_cache() / hub.repo_folder(f"{DNABERT_ORG}/{name}")]


def _find_dnabert(name: str) -> tuple[Path | None, list[str]]:
    searched: list[str] = []
    for cand in _dnabert_candidates(name):
        if cand.name.startswith("models--"):
            searched.append(str(cand / "snapshots" / "<rev>") + os.sep)
            snap = esm2.hf_cache_snapshot(cand)
            if snap is not None and is_dnabert_folder(snap):
                return snap, searched
        else:
            searched.append(str(cand) + os.sep)
            if is_dnabert_folder(cand):
                return cand, searched
    return None, searched


def family_of(name_or_path: str) -> str:
    """The family a model name or path belongs to, by its name or its folder's config.json."""
    s = str(name_or_path).strip()
    if dnabert_name(s):
        return "dnabert-s"
    p = Path(os.path.expanduser(s))
    if p.is_dir() and p.name.startswith("models--"):
        p = esm2.hf_cache_snapshot(p) or p
    return "dnabert-s" if p.is_dir() and is_dnabert_folder(p) else "esm2"


def download_hint(name: str) -> str:
    return (f"download it with `hf download {DNABERT_ORG}/{name} --include config.json tokenizer.json "
            f"'*.safetensors' 'pytorch_model*.bin*'` (Hugging Face CLI; it lands in {hub.hf_hub_cache()}) or "
            f"`python -m embed_worker.registry --download {name}`, or pass the model folder's path")


def resolve_dnabert(name_or_path: str) -> esm2.Resolved:
    """A DNABERT-S / DNABERT-2 folder for a name or path; ModelNotFound listing where it looked."""
    s = str(name_or_path).strip()
    p = Path(os.path.expanduser(s))
    if p.is_dir() and p.name.startswith("models--"):
        p = esm2.hf_cache_snapshot(p) or p
    if p.is_dir() and is_dnabert_folder(p):
        shown = esm2.typed_name(s) or esm2.name_from_path(str(p.resolve()), esm2.HF)
        return esm2.Resolved(str(p.resolve()), DNABERT_FORMAT, [str(p)], shown)
    name = dnabert_name(s)
    if name is None:
        raise ModelNotFound(f"{s!r} is not a DNABERT-S / DNABERT-2 model folder or name",
                            f"pass a folder with MosaicBERT's config.json, or one of {', '.join(DNABERT_KNOWN)}")
    found, searched = _find_dnabert(name)
    if found is None:
        raise ModelNotFound(f"model {s!r} not found. Searched:\n  " + "\n  ".join(searched), download_hint(name))
    return esm2.Resolved(str(found), DNABERT_FORMAT, searched, name)


def _dnabert_rows() -> list[dict]:
    d, f, v, n = DNABERT_S["hidden_size"], DNABERT_S["intermediate_size"], DNABERT_S["vocab_size"], DNABERT_S["num_layers"]
    # word + token-type embeddings and their LN; per layer Wqkv, dense, 2 LNs, gated (no bias), wo
    params = v * d + 2 * d + 2 * d + n * (3 * d * d + 3 * d + d * d + d + 4 * d + 2 * f * d + f * d + d)
    rows = []
    for name in DNABERT_KNOWN:
        found, _ = _find_dnabert(name)
        rows.append({"name": name, "family": "dnabert-s", "layers": n, "dim": d, "heads": DNABERT_S["num_heads"],
                     "params": params, "nominal": "117M", "path": str(found) if found else None,
                     "format": DNABERT_FORMAT if found else None, "downloadable": False,
                     "download_to": None if found else str(hub.hf_hub_cache() / hub.repo_folder(f"{DNABERT_ORG}/{name}")),
                     "how": None if found else download_hint(name)})
    return rows


def describe_all() -> list[dict]:
    """`embed models`: ESM-2's rows (esm2/registry.py) then DNABERT's, each with its family."""
    return [{**r, "family": "esm2"} for r in esm2.describe_all()] + _dnabert_rows()


def download(name_or_repo: str) -> Path:
    """Fetch a released model of either family into its cache (esm2/download.py for ESM-2; the
    Hugging Face repository for DNABERT: config.json, weights, tokenizer.json) -> where it lies."""
    name = dnabert_name(name_or_repo)
    if name is not None:
        return hub.hf_download(f"{DNABERT_ORG}/{name}", also=("tokenizer.json",))
    from .esm2.download import download as esm2_download
    return esm2_download(esm2.bare_name(name_or_repo))


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--download"] and len(argv) in (2, 3) and argv[2:] in ([], ["--json"]):
        try:
            print(json.dumps({"path": str(download(argv[1]))}))
        except ModelNotFound as e:
            # --json (the orchestrator's one-shot call, src/resolve.ts): the error as {name, message,
            # hint} on stderr's last line, so that a message of several lines arrives whole.
            print(json.dumps(e.to_wire()) if "--json" in argv[2:] else f"error: {e.message}\nhint: {e.hint}", file=sys.stderr)
            return 5
        return 0
    rows = describe_all()
    if "--json" in argv:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        where = r["path"] or r.get("how") or (f"not found (downloaded on first use to {r['download_to']})" if r["downloadable"]
                                              else f"not found (scripts/setup makes it at {r['download_to']})")
        print(f"{r['name']:<22} {r['family']:<10} {r['layers']:>3} layers  dim {r['dim']:>5}  "
              f"{r['params'] / 1e6:>9.1f}M  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
