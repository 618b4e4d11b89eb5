"""A worker never outlives its orchestrator. Standard library only.

Killed with SIGKILL, the orchestrator cannot stop its workers, and a worker busy loading a model
or computing a batch does not read its control channel's EOF until it is done (minutes, for a
large model). So, at the very start of a worker:
  1. Linux's PR_SET_PDEATHSIG asks the kernel for SIGKILL the moment the parent exits;
  2. the parent may have died before that call: the orchestrator passes its pid in
     EMBED_PARENT_PID, and a different os.getppid() means we are already orphaned;
  3. a daemon thread polls os.getppid() every POLL_S (other systems, or a kernel that lost the
     signal), and exits the process when the parent changes. Torch releases the GIL in its
     kernels, so the poll runs even mid-batch.
A worker killed this way leaves its ring file behind; the next run sweeps rings of dead owners.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.2
"""Seconds between parent checks: a worker outlives its orchestrator by at most about this."""
ORPHANED_EXIT = 1


def expected_parent(env: dict | os._Environ = os.environ) -> int:
    """The orchestrator's pid: EMBED_PARENT_PID if it is a number, else the parent we have now."""
    try:
        pid = int(env.get("EMBED_PARENT_PID", ""))
    except ValueError:
        pid = 0
    return pid if pid > 1 else os.getppid()


def set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send `sig` when the parent exits; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _orphaned(parent: int) -> None:
    try:
        sys.stderr.write(f'{{"level":"error","msg":"orchestrator (pid {parent}) is gone; worker exits"}}\n')
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # its stderr pipe died with it
    os._exit(ORPHANED_EXIT)


def watch_parent(parent: int, poll_s: float = POLL_S) -> threading.Thread:
    def loop() -> None:
        while True:
            if os.getppid() != parent:
                _orphaned(parent)
            time.sleep(poll_s)

    t = threading.Thread(target=loop, name="embed-parent-watch", daemon=True)
    t.start()
    return t


def bind_to_parent(env: dict | os._Environ = os.environ) -> int:
    """All three steps; returns the parent pid watched. Exits at once if already orphaned."""
    parent = expected_parent(env)
    set_pdeathsig()
    if os.getppid() != parent:  # died before the prctl took effect
        _orphaned(parent)
    watch_parent(parent)
    return parent
