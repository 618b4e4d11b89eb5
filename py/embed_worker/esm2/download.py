"""Fetch a released ESM-2 model that no local cache holds (embed.hub does the transfer).

On by default, as fair-esm and Hugging Face do (`embed run --no-download` forbids it). The source
is the Hugging Face repository facebook/<name> (safetensors; HF_ENDPOINT names a mirror), which
lands in the Hugging Face cache. With EMBED_MODEL_URL set, `<EMBED_MODEL_URL>/<name>.pt` is fetched
instead, a fair-esm checkpoint (https://dl.fbaipublicfiles.com/fair-esm/models is fair-esm's own
location), into the torch hub cache where fair-esm keeps them.
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import hub
from ..errors import ModelNotFound
from .registry import HF_ORG, KNOWN, download_to

FAIR_ESM_BASE = "https://dl.fbaipublicfiles.com/fair-esm/models"


def source_url(name: str) -> str:
    """Where `name` is downloaded from: the .pt file under EMBED_MODEL_URL, else its hub repository."""
    base = os.environ.get("EMBED_MODEL_URL")
    return f"{base.rstrip('/')}/{name}.pt" if base else f"{hub.hf_endpoint()}/{HF_ORG}/{name}"


def download(name: str) -> Path:
    """Download `name` (a released ESM-2 model); returns the .pt file or the snapshot folder."""
    if name not in KNOWN:
        raise ModelNotFound(f"cannot download {name!r}: not a released ESM-2 model",
                            f"known: {', '.join(KNOWN)}; or pass a path")
    if not os.environ.get("EMBED_MODEL_URL"):
        return hub.hf_download(f"{HF_ORG}/{name}")
    dest = download_to(name)
    return hub.fetch_url(name, source_url(name), dest,
                         f"download it yourself into {dest.parent}/, set EMBED_MODEL_URL to another mirror "
                         f"(fair-esm's: {FAIR_ESM_BASE}), or pass a path to the checkpoint")
