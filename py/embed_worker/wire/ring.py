"""The data ring on the worker side: create, pre-fault and map the file, and give tensor views
of slot regions. The layout itself is defined in protocol.py.

`RingBuffer` is what every transport shares: the header, the pre-fault and the slot views over a
writable buffer. `Ring` keeps that buffer in a file both processes map; transport.SocketRing
keeps it in private memory."""
from __future__ import annotations

import mmap
import os
import tempfile

import torch

from .protocol import DTYPE_BYTES, RingLayout, lens_offset

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def ring_dir(preferred: str | None) -> str:
    """/dev/shm when it exists (memory-backed), else the temp dir."""
    for d in (preferred, "/dev/shm", tempfile.gettempdir()):
        if d and os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    raise RuntimeError("no writable directory for the data ring")


class RingBuffer:
    """A ring's bytes: a zero-filled writable buffer of `layout.total_bytes`, with the header
    (zero-padded to `data_offset`) written, every page touched once, and slots read as tensors."""

    def __init__(self, buf: mmap.mmap | bytearray, layout: RingLayout) -> None:
        self.layout = layout
        buf[: layout.data_offset] = layout.pack_header().ljust(layout.data_offset, b"\x00")
        # Pre-fault every page once so that the first batches do not pay for page faults.
        self._bytes = torch.frombuffer(buf, dtype=torch.uint8)
        self._bytes[layout.data_offset:].zero_()

    def batch_input(self, slot: int, n_tokens: int, n_seqs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(token ids [n_tokens], sequence lengths i32 [n_seqs]) as views of the slot. Ids are u8
        for 1-byte rings; for 2-byte rings an int16 view of the u16 ids (ids >= 32768 read
        negative: token_ids() widens them)."""
        base = self.layout.slot_in(slot)
        width = self.layout.token_bytes
        if lens_offset(n_tokens, width) + 4 * n_seqs > self.layout.in_bytes:
            raise ValueError(f"batch of {n_tokens} tokens / {n_seqs} sequences exceeds the slot")
        tokens = self._bytes[base: base + n_tokens * width]
        if width == 2:
            tokens = tokens.view(torch.int16)
        start = base + lens_offset(n_tokens, width)
        lens = self._bytes[start: start + 4 * n_seqs].view(torch.int32)
        return tokens, lens

    @staticmethod
    def token_ids(tokens: torch.Tensor) -> torch.Tensor:
        """batch_input's ids view -> int64 ids (u16 ids restored from their int16 view); works on
        any device, so the copy to a GPU stays 1 or 2 bytes per token."""
        ids = tokens.long()
        return ids & 0xFFFF if tokens.dtype == torch.int16 else ids

    def output_view(self, slot: int, offset: int, rows: int, dim: int, dtype: str) -> torch.Tensor:
        """A [rows, dim] tensor view of a slot's output region at `offset`."""
        esize = DTYPE_BYTES[dtype]
        if offset + rows * dim * esize > self.layout.out_bytes:
            raise ValueError("output block exceeds the slot")
        start = self.layout.slot_out(slot) + offset
        return self._bytes[start: start + rows * dim * esize].view(_TORCH_DTYPES[dtype]).view(rows, dim)


class Ring(RingBuffer):
    """The ring in a file (in /dev/shm when possible) that the worker and the orchestrator both map."""

    def __init__(self, path: str, layout: RingLayout) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, layout.total_bytes)
            self._mm = mmap.mmap(fd, layout.total_bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        super().__init__(self._mm, layout)

    @classmethod
    def create(cls, directory: str, name: str, layout: RingLayout) -> "Ring":
        path = os.path.join(directory, f"embed-ring-{os.getpid()}-{name.replace(':', '_')}")
        if os.path.exists(path):
            os.unlink(path)
        return cls(path, layout)

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
