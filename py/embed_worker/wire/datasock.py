"""The worker's end of the socket transport: one AF_UNIX stream socket, frames as defined in
protocol.py. Standard library only (the fake worker uses it too).

The worker binds and listens before READY and accepts in a background thread, so the
orchestrator can connect as soon as it reads READY; the socket file is unlinked right after the
connection is accepted (or when the worker ends), so nothing is left behind. Reads go straight
into the caller's buffer (`recv_into`), writes straight from it (`sendall` of a memoryview).
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading

from . import protocol as P
from ..errors import EmbedWorkerError

ACCEPT_TIMEOUT_S = 60.0
"""How long the first batch waits for the orchestrator's connection (it connects right after READY)."""
SNDBUF_BYTES = 4 << 20
"""Socket buffer asked for on each side of the worker's end; larger buffers mean fewer wake-ups."""


class DataChannelError(EmbedWorkerError):
    """The data socket broke or carried a frame that does not fit: fatal for the worker."""

    default_name = "DataChannelError"


def default_transport(shm_dir: str = "/dev/shm") -> str:
    """'shm' when /dev/shm is a writable directory, else 'socket' (same rule as src/transport.ts)."""
    return "shm" if os.path.isdir(shm_dir) and os.access(shm_dir, os.W_OK) else "socket"


def socket_path(directory: str | None, name: str) -> str:
    """A socket path in `directory` (else the temp dir), short enough for AF_UNIX (< 108 bytes)."""
    base = f"embed-data-{os.getpid()}-{name.replace(':', '_').replace('/', '_')}.sock"
    for d in (directory, tempfile.gettempdir(), "/tmp"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK) and len(os.path.join(d, base)) < 100:
            return os.path.join(d, base)
    raise DataChannelError("no writable directory with a short enough path for the data socket",
                           "set EMBED_RING_DIR (or TMPDIR) to a short writable directory")


class DataSocket:
    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o600)
        self._listener.listen(1)
        self._conn: socket.socket | None = None
        self._accept_error: BaseException | None = None
        self._accepted = threading.Event()
        self._hdr = bytearray(P.FRAME_BYTES)
        self._hdr_view = memoryview(self._hdr)
        self._out_hdr = bytearray(P.FRAME_BYTES)
        threading.Thread(target=self._accept, name="embed-data-accept", daemon=True).start()

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    conn.setsockopt(socket.SOL_SOCKET, opt, SNDBUF_BYTES)
                except OSError:
                    pass
            self._conn = conn
        except OSError as e:
            self._accept_error = e
        finally:
            self._unlink()
            try:
                self._listener.close()
            except OSError:
                pass
            self._accepted.set()

    def _connection(self) -> socket.socket:
        if not self._accepted.wait(ACCEPT_TIMEOUT_S):
            raise DataChannelError(f"the orchestrator did not connect to {self.path} within {ACCEPT_TIMEOUT_S:.0f} s")
        if self._conn is None:
            raise DataChannelError(f"data socket accept failed: {self._accept_error!r}")
        return self._conn

    def _recv_exact(self, conn: socket.socket, view: memoryview) -> None:
        got, n = 0, len(view)
        while got < n:
            try:
                k = conn.recv_into(view[got:], n - got)
            except OSError as e:
                raise DataChannelError(f"data socket read failed: {e}") from e
            if k == 0:
                raise DataChannelError("data socket closed by the orchestrator")
            got += k

    def recv_frame(self, kind: int, batch: int, slot: int, region: memoryview) -> P.Frame:
        """Read the next frame, which must be `kind` for (batch, slot), into `region` at its offset."""
        conn = self._connection()
        self._recv_exact(conn, self._hdr_view)
        try:
            f = P.Frame.unpack(self._hdr)
        except ValueError as e:
            raise DataChannelError(f"bad data frame: {e}") from e
        if (f.kind, f.batch, f.slot) != (kind, batch, slot):
            raise DataChannelError(f"expected {P.FRAME_KINDS[kind]} frame for batch {batch} slot {slot}, got "
                                   f"{P.FRAME_KINDS[f.kind]} frame for batch {f.batch} slot {f.slot}",
                                   "frames must arrive in embed order; this is a bug")
        if f.offset + f.length > len(region):
            raise DataChannelError(f"frame of {f.length} bytes at {f.offset} exceeds the slot region ({len(region)})")
        self._recv_exact(conn, region[f.offset: f.offset + f.length])
        return f

    def send_frame(self, kind: int, batch: int, slot: int, offset: int, data: memoryview) -> None:
        conn = self._connection()
        P.Frame(kind, batch, slot, offset, len(data)).pack_into(self._out_hdr)
        try:
            conn.sendall(self._out_hdr)
            conn.sendall(data)
        except OSError as e:
            raise DataChannelError(f"data socket write failed: {e}") from e

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self._unlink()
        if not self._accepted.is_set():
            try:  # wakes the accept thread
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for s in (self._conn, self._listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
