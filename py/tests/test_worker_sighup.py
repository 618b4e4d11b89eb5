"""The worker ignores SIGHUP: a hung-up terminal signals the whole process group, and the
orchestrator drains on SIGHUP (finishes and commits the batches in flight), which needs its
workers alive to the end."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

PY = Path(__file__).resolve().parents[1]

# The default action first (a child may inherit SIGHUP ignored, e.g. under nohup, which would make
# the control case below survive too). A signal a process sends itself is delivered before kill()
# returns unless blocked or ignored, so the print after it runs only if it was ignored.
SCRIPT = """
import os, signal
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from embed_worker.worker import ignore_interrupts
ignore_interrupts()
os.kill(os.getpid(), signal.SIGHUP)
print("still running")
"""


def test_worker_survives_sighup():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PY, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "still running"


def test_without_it_sighup_would_stop_the_process():
    """The check above can fail: the same script without ignore_interrupts dies of the hang-up."""
    r = subprocess.run([sys.executable, "-c", SCRIPT.replace("ignore_interrupts()\n", "")], cwd=PY,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGHUP and "still running" not in r.stdout
