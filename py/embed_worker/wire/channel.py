"""The control channel: JSON lines over the socket Bun's `ipc` option hands the child in
NODE_CHANNEL_FD (`serialization: "json"`). Standard library only.

A reader thread parses incoming lines so that `ping` is answered even while a batch computes;
everything else is queued for the worker loop. When the orchestrator goes away (EOF), the queue
yields a `shutdown` so the worker exits instead of lingering.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import threading
from typing import Callable


class Channel:
    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            raw = os.environ.get("NODE_CHANNEL_FD")
            if raw is None:
                raise RuntimeError("NODE_CHANNEL_FD is not set: the worker must be started by the embed orchestrator")
            fd = int(raw)
        self._sock = socket.socket(fileno=fd)
        self._wlock = threading.Lock()
        self._inbox: "queue.Queue[dict]" = queue.Queue()
        self._on_ping: Callable[[dict], dict] | None = None
        self._thread = threading.Thread(target=self._read_loop, name="embed-channel", daemon=True)

    def start(self, on_ping: Callable[[dict], dict]) -> None:
        """Start reading; `on_ping(msg)` builds the reply to a ping, from the reader thread."""
        self._on_ping = on_ping
        self._thread.start()

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with self._wlock:
            self._sock.sendall(data)

    def recv(self, timeout: float | None = None) -> dict:
        """The next non-ping message; `{"type": "shutdown"}` once the orchestrator is gone."""
        return self._inbox.get(timeout=timeout)

    def _read_loop(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if msg.get("type") == "ping" and self._on_ping is not None:
                        self.send(self._on_ping(msg))
                    else:
                        self._inbox.put(msg)
        except OSError:
            pass
        finally:
            self._inbox.put({"type": "shutdown", "reason": "channel closed"})
