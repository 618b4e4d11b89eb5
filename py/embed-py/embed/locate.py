"""Finding the embed command line to drive: this package computes nothing itself.

The order, first found wins (each step is listed in the error when none is found):

1. ``home=`` (an argument of run/iter/open) or ``EMBED_HOME``: an embed checkout or installed npm
   package, the directory holding ``src/cli.ts``; run as ``bun HOME/src/cli.ts``.
2. The embed tree this package was installed from (pip records a local path install's source in
   ``direct_url.json``), or the tree it is imported from: the nearest directory above holding
   ``src/cli.ts`` and a ``package.json`` named "embed".
3. An ``embed`` launcher on PATH (``bun link`` / a global npm install of embed), run as it is.

Bun, for 1 and 2: ``EMBED_BUN``, else ``bun`` on PATH, else ``HOME/.tools/node_modules/.bin/bun``
(where ``scripts/setup`` puts it), else ``~/.bun/bin/bun`` (Bun's own installer).
The workers' Python is the orchestrator's choice: ``EMBED_PYTHON``, else ``HOME/.venv/bin/python``
(made by ``scripts/setup``), else ``python3`` on PATH; ``python=`` sets ``EMBED_PYTHON``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import List, Optional, Union
from urllib.parse import unquote, urlparse

from .errors import OrchestratorNotFound

DIST = "embed-fasta"


def _is_home(d: Path) -> bool:
    """Whether `d` is an embed tree: src/cli.ts beside a package.json whose name is "embed"."""
    try:
        return (d / "src" / "cli.ts").is_file() and json.loads((d / "package.json").read_text()).get("name") in ("embed-fasta", "embed")  # npm name; "embed" before the rename
    except (OSError, ValueError):
        return False


def _home_above(start: Path) -> Optional[Path]:
    for d in [start, *start.parents]:
        if _is_home(d):
            return d
    return None


def _installed_from() -> Optional[Path]:
    """The local directory pip installed this distribution from (PEP 610 direct_url.json), if any."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        text = distribution(DIST).read_text("direct_url.json")
    except (ImportError, PackageNotFoundError, OSError):
        return None
    if not text:
        return None
    try:
        url = urlparse(json.loads(text).get("url", ""))
    except ValueError:
        return None
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _bun(home: Path, tried: List[str]) -> Optional[str]:
    env = os.environ.get("EMBED_BUN")
    if env:
        if shutil.which(env):
            return shutil.which(env)
        tried.append(f"EMBED_BUN={env}: not an executable")
        return None
    for cand, why in ((shutil.which("bun"), "bun on PATH"),
                      (str(home / ".tools" / "node_modules" / ".bin" / "bun"), "HOME/.tools/node_modules/.bin/bun"),
                      (str(Path.home() / ".bun" / "bin" / "bun"), "~/.bun/bin/bun")):
        if cand and os.access(cand, os.X_OK) and Path(cand).is_file():
            return cand
        tried.append(f"{why}: not found" + (f" ({cand})" if cand else ""))
    return None


def command(home: Union[str, os.PathLike, None] = None) -> List[str]:
    """The argv prefix that runs the embed CLI (``[bun, HOME/src/cli.ts]`` or ``[embed]``)."""
    tried: List[str] = []
    homes = []
    if home is not None:
        homes.append((Path(home), "home= argument"))
    elif os.environ.get("EMBED_HOME"):
        homes.append((Path(os.environ["EMBED_HOME"]), "EMBED_HOME"))
    else:
        src = _installed_from()
        if src is not None:
            homes.append((_home_above(src.resolve()) or src, f"the tree this package was installed from ({src})"))
        here = _home_above(Path(__file__).resolve().parent)
        if here is not None:
            homes.append((here, "the tree this package is imported from"))
    for h, why in homes:
        if not _is_home(h):
            tried.append(f"{why}: {h} holds no src/cli.ts with a package.json named \"embed\"")
            continue
        bun = _bun(h, tried)
        if bun:
            return [bun, str(h / "src" / "cli.ts")]
        if home is not None or os.environ.get("EMBED_HOME"):
            break  # an explicit home without Bun: do not fall back to another embed behind the user's back
    if home is None and not os.environ.get("EMBED_HOME"):
        if not homes:
            tried.append("the tree this package was installed from: not a local path install (pip install PATH records it)")
        launcher = shutil.which("embed")
        if launcher:
            return [launcher]
        tried.append("an `embed` launcher on PATH: not found")
    raise OrchestratorNotFound(
        "cannot find the embed command line to run; tried: " + "; ".join(tried),
        "set EMBED_HOME (or pass home=) to the embed checkout, the directory holding src/cli.ts, "
        "with Bun on PATH or EMBED_BUN set (scripts/setup installs it under .tools/); "
        "or put the `embed` launcher on PATH (bun link in the checkout)")
