"""The wire protocol between the orchestrator and a worker, version 3. Standard library only.

Two channels:
- control: JSON objects, one per line, on the Bun `ipc` socket (fd in NODE_CHANNEL_FD);
- data: a ring file (in /dev/shm when present) created and pre-faulted by the worker, mapped once
  by both sides. It holds `slots` slots; each slot has an input region (the packed batch) and an
  output region (the embeddings), so a worker can compute one batch while the orchestrator fills
  the next.

Ring layout v2 (little-endian), mirrored in src/protocol.ts and pinned by test/fixtures/ring-v2.json:

    offset 0   8s   magic b"EMBRING\\0"
    offset 8   u32  version (2)
    offset 12  u32  slots
    offset 16  u64  in_bytes   (per slot)
    offset 24  u64  out_bytes  (per slot)
    offset 32  u64  data_offset (HEADER_BYTES)
    offset 40  u32  token_bytes: width of one token id, 1 (u8, ESM-2) or 2 (u16, DNABERT-S BPE)
    slot k starts at data_offset + k * (in_bytes + out_bytes)
    input:  token ids [n_tokens], `token_bytes` wide, each sequence framed by its family's
            BOS/EOS (FRAMING), zero-padded to 8 bytes,
            then i32 sequence lengths [n_seqs] (BOS/EOS included)
    output: blocks at 64-byte aligned offsets, listed in the `result` message

Transport (chosen once per worker, `transport` in its config): "shm" maps the ring file as above;
"socket" (used where /dev/shm is missing) keeps the same layout, but each side holds a private
in-memory copy of it and the bytes travel as frames on one AF_UNIX stream socket that the worker
listens on (path in READY `ring.path`, `ring.transport` = "socket"). Frame v1, pinned by
test/fixtures/socket-frame-v1.json: a 40-byte little-endian header, then `length` raw bytes.

    offset 0   8s   magic b"EMBFRAME"
    offset 8   u16  version (1)
    offset 10  u16  kind: 1 = in (orchestrator -> worker), 2 = out (worker -> orchestrator)
    offset 12  u32  slot
    offset 16  u64  batch id
    offset 24  u64  offset of the bytes inside the slot's input (in) or output (out) region
    offset 32  u64  length of the bytes that follow

An `in` frame (tokens + lengths, exactly the slot's input bytes) precedes each `embed` message;
an `out` frame (output region start .. end of the last block) precedes each `result` message.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 3
"""2: READY names the compute precision `precision` (was `dtype`). 3: model families: the worker's
config and READY name the `family`; token ids travel `token_bytes` wide (ring v2)."""
RING_MAGIC = b"EMBRING\x00"
RING_VERSION = 2
HEADER_BYTES = 4096
_HEADER = struct.Struct("<8sIIQQQI")
OUTPUT_KINDS = ("mean", "bos", "residues")
FAMILIES = ("esm2", "dnabert-s")
FRAMING = {"esm2": {"bytes": 1, "bos": 0, "eos": 2}, "dnabert-s": {"bytes": 2, "bos": 1, "eos": 2}}
"""Per family: token id width on the wire and the ids framing each sequence (src/protocol.ts FRAMING)."""
TRANSPORTS = ("shm", "socket")
FRAME_MAGIC = b"EMBFRAME"
FRAME_VERSION = 1
FRAME_IN, FRAME_OUT = 1, 2
FRAME_KINDS = {FRAME_IN: "in", FRAME_OUT: "out"}
_FRAME = struct.Struct("<8sHHIQQQ")
FRAME_BYTES = _FRAME.size  # 40
DTYPE_BYTES = {"float32": 4, "float16": 2}


def align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class RingLayout:
    slots: int
    in_bytes: int
    out_bytes: int
    data_offset: int = HEADER_BYTES
    token_bytes: int = 1  # 1 (u8 ids) or 2 (u16 ids)

    def __post_init__(self) -> None:
        if self.token_bytes not in (1, 2):
            raise ValueError(f"token_bytes {self.token_bytes}, expected 1 or 2")

    @property
    def total_bytes(self) -> int:
        return self.data_offset + self.slots * (self.in_bytes + self.out_bytes)

    def slot_in(self, slot: int) -> int:
        """Byte offset of a slot's input region."""
        self._check(slot)
        return self.data_offset + slot * (self.in_bytes + self.out_bytes)

    def slot_out(self, slot: int) -> int:
        """Byte offset of a slot's output region."""
        return self.slot_in(slot) + self.in_bytes

    def _check(self, slot: int) -> None:
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} out of range 0..{self.slots - 1}")

    def pack_header(self) -> bytes:
        return _HEADER.pack(RING_MAGIC, RING_VERSION, self.slots, self.in_bytes, self.out_bytes, self.data_offset,
                            self.token_bytes)

    @staticmethod
    def unpack_header(buf: bytes) -> "RingLayout":
        magic, version, slots, in_bytes, out_bytes, data_offset, token_bytes = _HEADER.unpack_from(buf, 0)
        if magic != RING_MAGIC:
            raise ValueError(f"not an embed ring (magic {magic!r})")
        if version != RING_VERSION:
            raise ValueError(f"ring version {version}, expected {RING_VERSION}")
        return RingLayout(slots, in_bytes, out_bytes, data_offset, token_bytes)

    def to_wire(self) -> dict:
        return {"version": RING_VERSION, "slots": self.slots, "inBytes": self.in_bytes,
                "outBytes": self.out_bytes, "dataOffset": self.data_offset, "tokenBytes": self.token_bytes}


@dataclass(frozen=True)
class Frame:
    """The header of one data frame on the socket transport."""
    kind: int    # FRAME_IN | FRAME_OUT
    batch: int
    slot: int
    offset: int  # inside the slot's input (in) or output (out) region
    length: int  # bytes following the header

    def pack(self) -> bytes:
        return _FRAME.pack(FRAME_MAGIC, FRAME_VERSION, self.kind, self.slot, self.batch, self.offset, self.length)

    def pack_into(self, buf, at: int = 0) -> None:
        _FRAME.pack_into(buf, at, FRAME_MAGIC, FRAME_VERSION, self.kind, self.slot, self.batch, self.offset,
                         self.length)

    @staticmethod
    def unpack(buf, at: int = 0) -> "Frame":
        magic, version, kind, slot, batch, offset, length = _FRAME.unpack_from(buf, at)
        if magic != FRAME_MAGIC:
            raise ValueError(f"not an embed frame (magic {bytes(magic)!r})")
        if version != FRAME_VERSION:
            raise ValueError(f"frame version {version}, expected {FRAME_VERSION}")
        if kind not in FRAME_KINDS:
            raise ValueError(f"unknown frame kind {kind}")
        return Frame(kind, batch, slot, offset, length)


def input_bytes(max_tokens: int, max_seqs: int, token_bytes: int = 1) -> int:
    """Bytes a slot's input region needs for a batch of at most these sizes."""
    return align(lens_offset(max_tokens, token_bytes) + 4 * max_seqs, 4096)


def lens_offset(n_tokens: int, token_bytes: int = 1) -> int:
    """Offset of the i32 sequence lengths inside an input region: after the ids, 8-byte aligned."""
    return align(n_tokens * token_bytes, 8)


def input_used(n_tokens: int, n_seqs: int, token_bytes: int = 1) -> int:
    """Bytes of a slot's input region a batch uses (tokens, padding, lengths): an `in` frame's length."""
    return lens_offset(n_tokens, token_bytes) + 4 * n_seqs


def output_used(blocks: list[dict]) -> int:
    """Bytes of a slot's output region from its start to the end of the last block: an `out` frame's length."""
    return max((b["offset"] + b["rows"] * b["dim"] * DTYPE_BYTES[b["dtype"]] for b in blocks), default=0)


def output_blocks(n_seqs: int, n_tokens: int, layers: list[int], include: list[str], dim: int,
                  dtype: str) -> list[dict]:
    """The output blocks of one batch, in order: for each layer, for each kind in `include`.

    `residues` rows exclude BOS and EOS: n_tokens - 2 * n_seqs rows."""
    esize = DTYPE_BYTES[dtype]
    blocks, offset = [], 0
    for layer in layers:
        for kind in include:
            if kind not in OUTPUT_KINDS:
                raise ValueError(f"unknown output kind {kind!r}")
            rows = n_tokens - 2 * n_seqs if kind == "residues" else n_seqs
            blocks.append({"kind": kind, "layer": layer, "offset": offset, "rows": rows, "dim": dim,
                           "dtype": dtype})
            offset = align(offset + rows * dim * esize, 64)
    return blocks


def output_bytes(max_tokens: int, max_seqs: int, layers: list[int], include: list[str], dim: int,
                 dtype: str) -> int:
    """Bytes a slot's output region needs, for the worst case of a batch within these limits."""
    worst = 0
    for kind in include:
        rows = max_tokens if kind == "residues" else max_seqs
        worst += align(rows * dim * DTYPE_BYTES[dtype], 64)
    return align(worst * len(layers), 4096)


# --- control messages (worker -> orchestrator) -------------------------------------------------

def ready(*, pid: int, device: str, backend: str, precision: str, model: dict, layers: list[int],
          include: list[str], out_dtype: str, max_tokens: int, max_seqs: int, ring_path: str,
          ring: RingLayout, versions: dict, load_ms: float, transport: str = "shm",
          kernels: str = "eager", startup_ms: dict[str, float] | None = None, family: str = "esm2") -> dict:
    if FRAMING[family]["bytes"] != ring.token_bytes:
        raise ValueError(f"{family} ids are {FRAMING[family]['bytes']} byte(s) wide, the ring holds {ring.token_bytes}")
    return {"type": "ready", "protocol": PROTOCOL_VERSION, "family": family, "pid": pid, "device": device,
            "backend": backend, "kernels": kernels, "precision": precision, "model": model, "layers": layers, "include": include,
            "outDtype": out_dtype, "maxTokens": max_tokens, "maxSeqs": max_seqs,
            "ring": {"path": ring_path, "transport": transport, **ring.to_wire()}, "versions": versions, "loadMs": load_ms,
            "startupMs": startup_ms or {}}


def result(*, batch: int, slot: int, outputs: list[dict], ms: float, non_finite: int) -> dict:
    return {"type": "result", "batch": batch, "slot": slot, "outputs": outputs, "ms": ms,
            "nonFinite": non_finite}


def error(err: dict, batch: int | None = None) -> dict:
    msg = {"type": "error", "error": err}
    if batch is not None:
        msg["batch"] = batch
    return msg


def pong(seq: int, stats: dict) -> dict:
    return {"type": "pong", "seq": seq, **stats}
