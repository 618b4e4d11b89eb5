"""A fake worker that speaks the real protocol (control channel + ring), standard library only.

Its embeddings are a deterministic function of the input, so the orchestrator's plumbing can be
tested without torch. Behaviour is set by EMBED_FAKE (JSON):
  dim (8), numLayers (4), crashAfter (die with exit 70 when batch N arrives; with crashOnce=PATH
  only the first worker that gets there), oomAbove (report OutOfMemoryError for batches of more
  tokens than this), slowMs (sleep per
  batch), raiseOn (report an error for batch N; with raiseOnce=PATH only the first worker that gets
  there), badFrame (send a malformed message for batch N),
  failStart ("model-not-found" | "exit"), nonFinite (report NaN count for batch N),
  fill ("exact" default | "fast": each block is one row pattern repeated with a single bytes
  multiplication, for throughput benchmarks | "none": outputs are left as they are in the slot),
  dropSocketOn (socket transport: close the data socket when batch N arrives, without exiting),
  hangOn (when batch N arrives, stop computing for good but stay alive and keep answering pings;
  with hangOnce=PATH only the first worker that gets there), deafAfter (after N batches, stop
  reading the control channel: no pong, no batch taken; with deafOnce=PATH only the first worker
  that gets there), stubborn (ignore `shutdown` and SIGTERM),
  wrongRows (batch N reports one row too many in its first output), readyAfterMs (load this long
  before READY).
Like the real worker, it ignores SIGINT (the orchestrator owns interruption).

The data plane follows `transport` in the worker config ("shm": the mapped ring file; "socket":
a private copy of the ring plus frames on a unix socket, see embed_worker/wire/datasock.py).

Values: mean[j] = mean residue token id + j/1000; bos[j] = j/1000; residues[r][j] = id + j/1000.
Token ids are read as the worker config's `family` sends them (protocol FRAMING: u8 for esm2, u16
for dnabert-s); a sequence whose first or last id is not the family's BOS/EOS is refused (BadFrame).
"""
from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "py"))
from embed_worker.wire import protocol as P  # noqa: E402
from embed_worker.wire.channel import Channel  # noqa: E402
from embed_worker.wire.datasock import DataSocket, default_transport, socket_path  # noqa: E402


def first(once: str | None) -> bool:
    """True for every worker when `once` is None; else only for the first to get here (a file marks
    that it has happened)."""
    if once is None:
        return True
    if os.path.exists(once):
        return False
    open(once, "w").close()
    return True


def main() -> int:
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = json.loads(os.environ["EMBED_WORKER_CONFIG"])
    fake = json.loads(os.environ.get("EMBED_FAKE", "{}"))
    if fake.get("stubborn"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    dim, n_layers = fake.get("dim", 8), fake.get("numLayers", 4)
    ch = Channel()
    done = {"batches": 0}

    def pong(m):
        if fake.get("deafAfter") is not None and done["batches"] >= fake["deafAfter"] and first(fake.get("deafOnce")):
            threading.Event().wait()  # the reader thread wedges: no pong, no message read again
        return P.pong(int(m.get("seq", 0)), done)
    ch.start(pong)
    if fake.get("failStart") == "model-not-found":
        ch.send(P.error({"name": "ModelNotFound", "message": f"model {cfg['model']!r} not found; searched: /nowhere",
                         "hint": "pass a path"}))
        return 1
    if fake.get("failStart") == "hang":  # never says READY
        time.sleep(3600)
    if fake.get("readyAfterMs"):  # a slow model load; ends with its orchestrator, as a real worker does
        until = time.monotonic() + fake["readyAfterMs"] / 1000
        parent = int(os.environ.get("EMBED_PARENT_PID", "0"))
        while time.monotonic() < until:
            if parent and os.getppid() != parent:
                sys.exit(0)
            time.sleep(0.05)
    if fake.get("failStart") == "exit":
        sys.stderr.write("fake worker: exiting before ready\n")
        return 3
    layers = [l + n_layers + 1 if l < 0 else l for l in cfg["layers"]]
    max_tokens = cfg["maxTokens"] or 4096
    max_seqs = max_tokens // 3
    family = cfg.get("family", "esm2")
    width = P.FRAMING[family]["bytes"]
    layout = P.RingLayout(cfg["slots"], P.input_bytes(max_tokens, max_seqs, width),
                          P.output_bytes(max_tokens, max_seqs, layers, cfg["include"], dim, cfg["outDtype"]),
                          token_bytes=width)
    transport = cfg.get("transport") or default_transport()
    sock = None
    if transport == "socket":
        path = socket_path(cfg.get("ringDir"), "fake")
        mm = bytearray(layout.total_bytes)
        sock = DataSocket(path)
    else:
        path = os.path.join(cfg.get("ringDir") or "/dev/shm", f"embed-ring-fake-{os.getpid()}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, layout.total_bytes)
        mm = mmap.mmap(fd, layout.total_bytes)
        os.close(fd)
    mm[: len(layout.pack_header())] = layout.pack_header()
    view = memoryview(mm)
    ch.send(P.ready(pid=os.getpid(), device="fake", backend="fake", precision=cfg["precision"],
                    model={"name": "fake", "path": "/fake", "format": "fake", "numLayers": n_layers, "dim": dim,
                           "heads": 1},
                    layers=layers, include=cfg["include"], out_dtype=cfg["outDtype"], max_tokens=max_tokens,
                    max_seqs=max_seqs, ring_path=path, ring=layout, versions={"python": sys.version.split()[0]},
                    load_ms=0.0, transport=transport, family=family))
    fmt = "f" if cfg["outDtype"] == "float32" else "e"
    fill = fake.get("fill", "exact")
    try:
        return serve(ch, fake, cfg, layout, layers, dim, fmt, fill, done, mm, view, sock)
    finally:
        if sock is not None:
            sock.close()
        # As the real worker does: no ring file is left behind if the orchestrator never mapped it.
        if transport == "shm" and os.path.exists(path):
            os.unlink(path)


def serve(ch, fake, cfg, layout, layers, dim, fmt, fill, done, mm, view, sock) -> int:
    while True:
        msg = ch.recv()
        if msg["type"] == "shutdown":
            if fake.get("stubborn"):
                time.sleep(3600)
            return 0
        b = msg["batch"]
        if fake.get("hangOn") == b and first(fake.get("hangOnce")):
            time.sleep(3600)
        t0 = time.perf_counter()
        if sock is not None:
            if fake.get("dropSocketOn") == b:
                sock.close()
                time.sleep(3600)
            base = layout.slot_in(msg["slot"])
            sock.recv_frame(P.FRAME_IN, b, msg["slot"], view[base: base + layout.in_bytes])
        if fake.get("crashAfter") is not None and done["batches"] >= fake["crashAfter"]:
            once = fake.get("crashOnce")  # a file: only the first worker to get here crashes
            if once is None or not os.path.exists(once):
                if once is not None:
                    open(once, "w").close()
                os._exit(70)
        if fake.get("oomAbove") is not None and msg["tokens"] > fake["oomAbove"]:
            ch.send(P.error({"name": "OutOfMemoryError", "message": "CUDA out of memory (fake)", "hint": "lower --max-tokens"},
                            batch=msg["batch"]))
            continue
        if fake.get("slowMs"):
            time.sleep(fake["slowMs"] / 1000)
        if fake.get("raiseOn") == b and first(fake.get("raiseOnce")):
            ch.send(P.error({"name": "ValueError", "message": "fake failure", "hint": "none"}, batch=b))
            continue
        if fake.get("badFrame") == b:
            ch.send({"type": "result", "batch": "not-a-number"})
            continue
        base = layout.slot_in(msg["slot"])
        n_tok, n_seq = msg["tokens"], msg["seqs"]
        width = layout.token_bytes
        toks = struct.unpack_from(f"<{n_tok}{'B' if width == 1 else 'H'}", mm, base)
        lo = base + P.lens_offset(n_tok, width)
        lens = struct.unpack_from(f"<{n_seq}i", mm, lo)
        framing = P.FRAMING[cfg.get("family", "esm2")]
        starts = [sum(lens[:i]) for i in range(n_seq)]
        if any(toks[s] != framing["bos"] or toks[s + n - 1] != framing["eos"] for s, n in zip(starts, lens)):
            ch.send(P.error({"name": "BadFrame", "message": f"batch {b}: a sequence is not framed by BOS/EOS",
                             "hint": "packBatch framing"}, batch=b))
            continue
        blocks = P.output_blocks(n_seq, n_tok, layers, cfg["include"], dim, cfg["outDtype"])
        out = layout.slot_out(msg["slot"])
        for blk in blocks if fill == "exact" else ():
            rows = []
            start = 0
            for n in lens:
                res = toks[start + 1: start + n - 1]
                if blk["kind"] == "mean":
                    rows.append([sum(res) / max(1, len(res)) + j / 1000 for j in range(dim)])
                elif blk["kind"] == "bos":
                    rows.append([j / 1000 for j in range(dim)])
                else:
                    rows.extend([t + j / 1000 for j in range(dim)] for t in res)
                start += n
            flat = [v for row in rows for v in row]
            struct.pack_into(f"<{len(flat)}{fmt}", mm, out + blk["offset"], *flat)
            assert len(rows) == blk["rows"]
        if fill == "fast":
            for blk in blocks:
                row = struct.pack(f"<{dim}{fmt}", *[j / 1000 for j in range(dim)])
                at = out + blk["offset"]
                mm[at: at + len(row) * blk["rows"]] = row * blk["rows"]
        if sock is not None:
            sock.send_frame(P.FRAME_OUT, b, msg["slot"], 0, view[out: out + P.output_used(blocks)])
        if fake.get("wrongRows") == b:
            blocks[0]["rows"] += 1
        done["batches"] += 1
        ch.send(P.result(batch=b, slot=msg["slot"], outputs=blocks, ms=(time.perf_counter() - t0) * 1000,
                         non_finite=1 if fake.get("nonFinite") == b else 0))


if __name__ == "__main__":
    sys.exit(main())
