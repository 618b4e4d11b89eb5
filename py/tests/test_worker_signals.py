"""The worker ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and the
orchestrator, not the worker, decides what an interrupt does (finish the batches in flight)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PY = Path(__file__).resolve().parents[1]

# Python's own Ctrl-C handler first: a child of a shell's background job inherits SIGINT ignored,
# and Python then never installs it, which would make the control case below survive too.
SCRIPT = """
import os, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from embed_worker.worker import ignore_interrupts
ignore_interrupts()
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.2)
print("still running")
"""


def test_worker_survives_sigint():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PY, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "still running"


def test_without_it_sigint_would_stop_the_process():
    """The check above can fail: the same script without ignore_interrupts dies of the interrupt."""
    r = subprocess.run([sys.executable, "-c", SCRIPT.replace("ignore_interrupts()\n", "")], cwd=PY,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "still running" not in r.stdout
    assert "KeyboardInterrupt" in r.stderr
