"""How a tool's ``main`` ends (convert.py, virnucpro.py): the summary as JSON on stdout with
``--json``, else one line on stderr; a failure as ``error:``/``hint:`` lines, then its wire form
(``{name, message, hint}``) as the last stderr line, which the orchestrator reads, and exit 1."""
from __future__ import annotations

import json
import sys
from typing import Callable

from ..errors import EmbedWorkerError
from .sources import ConvertError


def run_tool(work: Callable[[], dict], *, as_json: bool, human: Callable[[dict], str], output: str | None = None) -> int:
    """Run ``work`` and report its summary. With ``output`` (the path being written), an OSError
    (disk full, permissions) is reported as a ConvertError naming it rather than a traceback."""
    try:
        summary = work()
    except EmbedWorkerError as e:
        return _failed(e)
    except OSError as e:
        if output is None:
            raise
        return _failed(ConvertError(f"writing {output} failed: {e}", "check free space and permissions of the output path"))
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(human(summary), file=sys.stderr)
    return 0


def _failed(e: EmbedWorkerError) -> int:
    print(f"error: {e.message}\nhint: {e.hint}", file=sys.stderr)
    print(json.dumps(e.to_wire()), file=sys.stderr)
    return 1
