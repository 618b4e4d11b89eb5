"""The wire layout, pinned by the golden fixture that test/protocol.test.ts also reads."""
import json
from pathlib import Path

import pytest

from embed_worker.wire import protocol as P

FIXTURE = json.loads((Path(__file__).parents[2] / "test" / "fixtures" / "ring-v1.json").read_text())


def layout() -> P.RingLayout:
    lim = FIXTURE["limits"]
    return P.RingLayout(slots=FIXTURE["layout"]["slots"], in_bytes=P.input_bytes(lim["maxTokens"], lim["maxSeqs"]),
                        out_bytes=P.output_bytes(lim["maxTokens"], lim["maxSeqs"], lim["layers"], lim["include"],
                                                 lim["dim"], lim["dtype"]))


def test_layout_sizes_match_fixture():
    L = layout()
    assert (L.slots, L.in_bytes, L.out_bytes, L.data_offset) == tuple(FIXTURE["layout"].values())
    assert [L.slot_in(0), L.slot_in(1)] == FIXTURE["slotIn"]
    assert [L.slot_out(0), L.slot_out(1)] == FIXTURE["slotOut"]


def test_header_bytes_match_fixture_and_round_trip():
    L = layout()
    assert L.pack_header().hex() == FIXTURE["headerHex"]
    assert P.RingLayout.unpack_header(bytes.fromhex(FIXTURE["headerHex"])) == L


def test_header_rejects_wrong_magic_and_version():
    raw = bytearray.fromhex(FIXTURE["headerHex"])
    bad = bytes(b"XXXXXXXX" + raw[8:])
    with pytest.raises(ValueError, match="not an embed ring"):
        P.RingLayout.unpack_header(bad)
    raw[8] = 9
    with pytest.raises(ValueError, match="version 9"):
        P.RingLayout.unpack_header(bytes(raw))


def test_output_blocks_match_fixture_and_fit_the_slot():
    lim, b = FIXTURE["limits"], FIXTURE["batch"]
    blocks = P.output_blocks(b["seqs"], b["tokens"], lim["layers"], lim["include"], lim["dim"], lim["dtype"])
    assert blocks == FIXTURE["blocks"]
    last = blocks[-1]
    assert last["offset"] + last["rows"] * last["dim"] * 2 <= FIXTURE["layout"]["outBytes"]
    assert all(x["offset"] % 64 == 0 for x in blocks)


def test_lens_offset_is_8_aligned():
    for n, off in FIXTURE["lensOffset"].items():
        assert P.lens_offset(int(n)) == off


def test_worst_case_batch_fits():
    lim = FIXTURE["limits"]
    L = layout()
    # The largest batch allowed (max tokens, max sequences) fits both regions.
    assert P.lens_offset(lim["maxTokens"]) + 4 * lim["maxSeqs"] <= L.in_bytes
    blocks = P.output_blocks(lim["maxSeqs"], lim["maxTokens"], lim["layers"], lim["include"], lim["dim"], lim["dtype"])
    end = max(x["offset"] + x["rows"] * x["dim"] * 2 for x in blocks)
    assert end <= L.out_bytes


FRAMES = json.loads((Path(__file__).parents[2] / "test" / "fixtures" / "socket-frame-v1.json").read_text())
_KIND = {"in": P.FRAME_IN, "out": P.FRAME_OUT}


def test_frame_header_matches_fixture_and_round_trips():
    assert P.FRAME_BYTES == FRAMES["frameBytes"]
    assert P.FRAME_MAGIC == FRAMES["magic"].encode()
    assert P.FRAME_VERSION == FRAMES["version"]
    assert {"in": P.FRAME_IN, "out": P.FRAME_OUT} == FRAMES["kinds"]
    for f in FRAMES["frames"]:
        frame = P.Frame(_KIND[f["kind"]], f["batch"], f["slot"], f["offset"], f["length"])
        assert frame.pack().hex() == f["hex"]
        buf = bytearray(P.FRAME_BYTES)
        frame.pack_into(buf)
        assert buf.hex() == f["hex"]
        assert P.Frame.unpack(bytes.fromhex(f["hex"])) == frame


def test_frame_lengths_match_fixture():
    u = FRAMES["inputUsed"]
    assert P.input_used(u["tokens"], u["seqs"]) == u["bytes"]
    assert P.output_used(FIXTURE["blocks"]) == FRAMES["frames"][1]["length"]


def test_frame_rejects_wrong_magic_version_and_kind():
    raw = bytearray.fromhex(FRAMES["frames"][0]["hex"])
    with pytest.raises(ValueError, match="not an embed frame"):
        P.Frame.unpack(b"XXXXXXXX" + bytes(raw[8:]))
    v9 = bytearray(raw)
    v9[8] = 9
    with pytest.raises(ValueError, match="frame version 9"):
        P.Frame.unpack(bytes(v9))
    k7 = bytearray(raw)
    k7[10] = 7
    with pytest.raises(ValueError, match="unknown frame kind 7"):
        P.Frame.unpack(bytes(k7))
