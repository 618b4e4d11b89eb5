"""Worker logs: JSON lines on stderr, which the orchestrator relays with the worker's tag.

stdout is pointed at stderr at start-up (`redirect_stdout`) so a stray print from any library
can never be mistaken for data.
"""
from __future__ import annotations

import json
import os
import sys
import time


def redirect_stdout() -> None:
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def log(level: str, msg: str, **fields: object) -> None:
    rec = {"t": round(time.time(), 3), "level": level, "msg": msg, **fields}
    sys.stderr.write(json.dumps(rec, default=str) + "\n")
    sys.stderr.flush()


def info(msg: str, **fields: object) -> None:
    log("info", msg, **fields)


def warn(msg: str, **fields: object) -> None:
    log("warn", msg, **fields)


def debug(msg: str, **fields: object) -> None:
    log("debug", msg, **fields)


def notes(found: list[tuple[str, str, str]]) -> None:
    """(level, message, hint) findings, each as one line (gpu.arrange.gpu_kernels returns them)."""
    for level, msg, hint in found:
        log(level, msg, hint=hint)
