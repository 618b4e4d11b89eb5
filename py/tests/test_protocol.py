"""The wire layout, pinned by the golden fixture that test/protocol.test.ts also reads."""
import json
import struct
from pathlib import Path

import pytest

from embed_worker.wire import protocol as P

FIXTURE = json.loads((Path(__file__).parents[2] / "test" / "fixtures" / "ring-v2.json").read_text())
RINGS = {r["family"]: r for r in FIXTURE["rings"]}


def test_the_fixture_covers_every_family_and_its_token_width():
    assert set(RINGS) == set(P.FAMILIES)
    assert {f: r["layout"]["tokenBytes"] for f, r in RINGS.items()} == {f: P.FRAMING[f]["bytes"] for f in P.FAMILIES}
    assert P.FRAMING["esm2"] == {"bytes": 1, "bos": 0, "eos": 2}
    assert P.FRAMING["dnabert-s"] == {"bytes": 2, "bos": 1, "eos": 2}  # [CLS] 1, [SEP] 2


def layout(ring: dict) -> P.RingLayout:
    lim, width = ring["limits"], ring["layout"]["tokenBytes"]
    return P.RingLayout(slots=ring["layout"]["slots"], in_bytes=P.input_bytes(lim["maxTokens"], lim["maxSeqs"], width),
                        out_bytes=P.output_bytes(lim["maxTokens"], lim["maxSeqs"], lim["layers"], lim["include"],
                                                 lim["dim"], lim["dtype"]), token_bytes=width)


families = pytest.mark.parametrize("family", sorted(RINGS))


@families
def test_layout_sizes_match_fixture(family):
    ring = RINGS[family]
    L = layout(ring)
    assert (L.slots, L.in_bytes, L.out_bytes, L.data_offset, L.token_bytes) == tuple(ring["layout"].values())
    assert [L.slot_in(0), L.slot_in(1)] == ring["slotIn"]
    assert [L.slot_out(0), L.slot_out(1)] == ring["slotOut"]


@families
def test_header_bytes_match_fixture_and_round_trip(family):
    L = layout(RINGS[family])
    assert L.pack_header().hex() == RINGS[family]["headerHex"]
    assert P.RingLayout.unpack_header(bytes.fromhex(RINGS[family]["headerHex"])) == L


def test_header_rejects_wrong_magic_version_and_token_width():
    raw = bytearray.fromhex(RINGS["esm2"]["headerHex"])
    bad = bytes(b"XXXXXXXX" + raw[8:])
    with pytest.raises(ValueError, match="not an embed ring"):
        P.RingLayout.unpack_header(bad)
    v1 = bytearray(raw)
    v1[8] = 1  # a ring of the previous layout (no token width) is refused, not misread
    with pytest.raises(ValueError, match="version 1, expected 2"):
        P.RingLayout.unpack_header(bytes(v1))
    w3 = bytearray(raw)
    w3[40] = 3
    with pytest.raises(ValueError, match="token_bytes 3"):
        P.RingLayout.unpack_header(bytes(w3))


@families
def test_input_bytes_of_the_fixture_batch(family):
    """The framed ids `token_bytes` wide, zero padding to 8 bytes, then the i32 lengths: the bytes
    test/protocol.test.ts checks packBatch writes."""
    ring, fr = RINGS[family], P.FRAMING[family]
    b, width = ring["batch"], ring["layout"]["tokenBytes"]
    raw = bytes.fromhex(b["inputHex"])
    assert len(raw) == P.input_used(b["tokens"], len(b["seqs"]), width)
    ids = struct.unpack_from(f"<{b['tokens']}{'B' if width == 1 else 'H'}", raw)
    assert list(ids) == [t for s in b["seqs"] for t in (fr["bos"], *s, fr["eos"])]
    lens = struct.unpack_from(f"<{len(b['seqs'])}i", raw, P.lens_offset(b["tokens"], width))
    assert list(lens) == [len(s) + 2 for s in b["seqs"]]


@families
def test_output_blocks_match_fixture_and_fit_the_slot(family):
    ring = RINGS[family]
    lim, b = ring["limits"], ring["batch"]
    blocks = P.output_blocks(len(b["seqs"]), b["tokens"], lim["layers"], lim["include"], lim["dim"], lim["dtype"])
    assert blocks == ring["blocks"]
    assert [x["rows"] for x in blocks if x["kind"] == "residues"][0] == sum(len(s) for s in b["seqs"])
    last = blocks[-1]
    assert last["offset"] + last["rows"] * last["dim"] * 2 <= ring["layout"]["outBytes"]
    assert all(x["offset"] % 64 == 0 for x in blocks)


@families
def test_lens_offset_is_8_aligned(family):
    width = RINGS[family]["layout"]["tokenBytes"]
    for n, off in RINGS[family]["lensOffset"].items():
        assert P.lens_offset(int(n), width) == off and off % 8 == 0 and off >= int(n) * width


@families
def test_worst_case_batch_fits(family):
    ring = RINGS[family]
    lim, width = ring["limits"], ring["layout"]["tokenBytes"]
    L = layout(ring)
    # The largest batch allowed (max tokens, max sequences) fits both regions.
    assert P.lens_offset(lim["maxTokens"], width) + 4 * lim["maxSeqs"] <= L.in_bytes
    blocks = P.output_blocks(lim["maxSeqs"], lim["maxTokens"], lim["layers"], lim["include"], lim["dim"], lim["dtype"])
    end = max(x["offset"] + x["rows"] * x["dim"] * 2 for x in blocks)
    assert end <= L.out_bytes


def test_ready_names_the_family_and_refuses_a_ring_of_the_wrong_width():
    kw = dict(pid=1, device="cpu", backend="x", precision="fp32", model={}, layers=[1], include=["mean"],
              out_dtype="float32", max_tokens=64, max_seqs=21, ring_path="/r", versions={}, load_ms=0.0)
    wide = layout(RINGS["dnabert-s"])
    msg = P.ready(ring=wide, family="dnabert-s", **kw)
    assert (msg["protocol"], msg["family"], msg["ring"]["tokenBytes"]) == (3, "dnabert-s", 2)
    with pytest.raises(ValueError, match="esm2 ids are 1 byte"):
        P.ready(ring=wide, family="esm2", **kw)


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
    assert P.output_used(RINGS["esm2"]["blocks"]) == FRAMES["frames"][1]["length"]


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
