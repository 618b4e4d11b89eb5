"""The socket transport on the worker side: frames into and out of the private slot copy, the
socket file gone once accepted, and a broken or out-of-step stream as a DataChannelError."""
import os
import socket
import struct
import time

import pytest
import torch

from embed_worker.wire import protocol as P
from embed_worker.wire.datasock import DataChannelError, default_transport
from embed_worker.wire.transport import ShmRing, SocketRing, make_ring

LAYOUT = P.RingLayout(slots=2, in_bytes=P.input_bytes(64, 21), out_bytes=P.output_bytes(64, 21, [1], ["mean"], 8, "float32"))


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "closed early"
        out += chunk
    return out


@pytest.fixture
def pair(tmp_path):
    ring = make_ring("socket", str(tmp_path), "t", LAYOUT)
    assert isinstance(ring, SocketRing) and ring.transport == "socket"
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(ring.path)
    yield ring, client
    client.close()
    ring.unlink()


def in_frame(batch: int, slot: int, seqs: list[bytes]) -> bytes:
    toks = b"".join(seqs)
    body = toks.ljust(P.lens_offset(len(toks)), b"\0") + struct.pack(f"<{len(seqs)}i", *map(len, seqs))
    return P.Frame(P.FRAME_IN, batch, slot, 0, len(body)).pack() + body


def test_frames_round_trip_through_the_private_slot(pair):
    ring, client = pair
    client.sendall(in_frame(5, 1, [b"\0\5\6\2", b"\0\7\2"]))
    ring.receive_input(5, 1, 7, 2)
    tokens, lens = ring.batch_input(1, 7, 2)
    assert tokens.tolist() == [0, 5, 6, 2, 0, 7, 2] and lens.tolist() == [4, 3]
    out = ring.output_view(1, 0, 2, 8, "float32")
    out.copy_(torch.arange(16, dtype=torch.float32).view(2, 8))
    ring.send_output(5, 1, 64)
    head = P.Frame.unpack(recv_exact(client, P.FRAME_BYTES))
    assert head == P.Frame(P.FRAME_OUT, 5, 1, 0, 64)
    assert struct.unpack("<16f", recv_exact(client, 64)) == tuple(float(i) for i in range(16))


def test_socket_file_is_gone_once_accepted(pair):
    ring, client = pair
    for _ in range(100):
        if not os.path.exists(ring.path):
            break
        time.sleep(0.01)
    assert not os.path.exists(ring.path)


def test_out_of_step_frame_is_a_data_channel_error(pair):
    ring, client = pair
    client.sendall(in_frame(6, 0, [b"\0\5\2"]))
    with pytest.raises(DataChannelError, match="expected in frame for batch 5"):
        ring.receive_input(5, 0, 3, 1)


def test_oversized_frame_is_refused(pair):
    ring, client = pair
    client.sendall(P.Frame(P.FRAME_IN, 1, 0, 0, LAYOUT.in_bytes + 1).pack())
    with pytest.raises(DataChannelError, match="exceeds the slot region"):
        ring.receive_input(1, 0, 3, 1)


def test_closed_socket_is_a_data_channel_error(pair):
    ring, client = pair
    client.close()
    with pytest.raises(DataChannelError, match="closed by the orchestrator"):
        ring.receive_input(1, 0, 3, 1)


def test_shm_ring_keeps_the_same_interface(tmp_path):
    ring = make_ring("shm", str(tmp_path), "s", LAYOUT)
    try:
        assert isinstance(ring, ShmRing) and ring.transport == "shm"
        ring.receive_input(0, 0, 3, 1)  # no-ops: the bytes are in the mapped file
        ring.send_output(0, 0, 64)
        assert ring.batch_input(0, 3, 1)[0].numel() == 3
    finally:
        ring.unlink()
    with pytest.raises(ValueError, match="unknown transport"):
        make_ring("pigeon", str(tmp_path), "x", LAYOUT)


def test_default_transport(tmp_path):
    assert default_transport(str(tmp_path)) == "shm"
    assert default_transport(str(tmp_path / "missing")) == "socket"
