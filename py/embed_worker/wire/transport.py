"""The data plane of a worker, by transport (chosen once, `transport` in its config):

- `ShmRing`: the ring file mapped by both sides (ring.py), in /dev/shm when writable;
- `SocketRing`: the same slot layout held in a private in-memory buffer, with batch inputs and
  outputs moved as frames over one AF_UNIX socket (datasock.py), for hosts without /dev/shm.

Both give the worker the same interface: `receive_input` (before reading a batch),
`batch_input` / `output_view` (tensor views of a slot), `send_output` (after writing the
outputs, before the `result` message), `path`, `layout`, `transport`, `unlink`.
"""
from __future__ import annotations

from . import protocol as P
from .datasock import DataChannelError, DataSocket, socket_path
from .ring import Ring, RingBuffer, ring_dir

class ShmRing(Ring):
    transport = "shm"

    def receive_input(self, batch: int, slot: int, n_tokens: int, n_seqs: int) -> None:
        """The orchestrator wrote the input into the mapped slot already."""

    def send_output(self, batch: int, slot: int, nbytes: int) -> None:
        """The outputs are in the mapped slot already."""


class SocketRing(RingBuffer):
    transport = "socket"

    def __init__(self, path: str, layout: P.RingLayout) -> None:
        self._buf = bytearray(layout.total_bytes)
        self._mv = memoryview(self._buf)
        super().__init__(self._buf, layout)
        self._sock = DataSocket(path)
        self.path = path

    @staticmethod
    def create(directory: str | None, name: str, layout: P.RingLayout) -> "SocketRing":
        return SocketRing(socket_path(directory, name), layout)

    def receive_input(self, batch: int, slot: int, n_tokens: int, n_seqs: int) -> None:
        """Read this batch's `in` frame (the next one on the socket) into the private slot copy."""
        base = self.layout.slot_in(slot)
        f = self._sock.recv_frame(P.FRAME_IN, batch, slot, self._mv[base: base + self.layout.in_bytes])
        if f.offset != 0 or f.length != P.input_used(n_tokens, n_seqs, self.layout.token_bytes):
            raise DataChannelError(f"batch {batch}: in frame of {f.length} bytes at {f.offset}, expected "
                                   f"{P.input_used(n_tokens, n_seqs, self.layout.token_bytes)} at 0")

    def send_output(self, batch: int, slot: int, nbytes: int) -> None:
        """Send the first `nbytes` of the slot's output region as one `out` frame."""
        if nbytes > self.layout.out_bytes:
            raise ValueError("output exceeds the slot")
        base = self.layout.slot_out(slot)
        self._sock.send_frame(P.FRAME_OUT, batch, slot, 0, self._mv[base: base + nbytes])

    def unlink(self) -> None:
        self._sock.close()


def make_ring(transport: str, directory: str | None, name: str, layout: P.RingLayout) -> ShmRing | SocketRing:
    if transport == "shm":
        return ShmRing.create(ring_dir(directory), name, layout)
    if transport == "socket":
        return SocketRing.create(directory, name, layout)
    raise ValueError(f"unknown transport {transport!r} (one of {', '.join(P.TRANSPORTS)})")
