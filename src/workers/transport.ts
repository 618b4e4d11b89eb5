/**
 * The data plane between the orchestrator and a worker, chosen once per run:
 * - "shm": the worker's ring file, mapped by both sides (in /dev/shm);
 * - "socket": where /dev/shm is missing, each side keeps a private copy of the same slot layout
 *   and the bytes travel as frames (protocol.ts `packFrame`) over one unix socket the worker
 *   listens on. `DataSocket` is the orchestrator's end of it.
 *
 * config.ts `chooseTransport` is the one place the choice is made (fed by the option or EMBED_TRANSPORT).
 */
import type { Socket } from "bun";
import { FRAME_BYTES, TRANSPORTS, packFrame, unpackFrame, type FrameHeader, type Transport } from "../protocol.ts";

export { TRANSPORTS, type Transport };

/** Where incoming frames go; implemented by socket-ring.ts. */
export interface FrameSink {
  /** The destination of frame `h`'s body: a view exactly `h.length` long. Throw to refuse it. */
  begin(h: FrameHeader): Uint8Array;
  /** Frame `h`'s body is complete. */
  end(h: FrameHeader): void;
  /** The socket closed or failed (or a frame was refused) while not closed by us. Called once. */
  broken(err: Error): void;
}

/**
 * The orchestrator's end of the socket transport. Incoming frames are parsed as bytes arrive
 * and copied straight into the sink's destination views; outgoing buffers are written without
 * copying, the unwritten rest kept (by reference) until the socket drains. Callers must not
 * change a buffer they sent until the worker has answered for it (slots guarantee that).
 */
export class DataSocket {
  private socket: Socket<undefined> | undefined;
  private readonly queue: Uint8Array[] = [];
  private readonly hdr = new Uint8Array(FRAME_BYTES);
  private hdrFill = 0;
  private cur: { h: FrameHeader; dest: Uint8Array; fill: number } | undefined;
  private done = false;

  private constructor(private readonly sink: FrameSink) {}

  static async connect(path: string, sink: FrameSink): Promise<DataSocket> {
    const ds = new DataSocket(sink);
    ds.socket = await Bun.connect({
      unix: path,
      socket: {
        binaryType: "uint8array",
        data: (_s, chunk) => ds.onData(chunk),
        drain: () => ds.flush(),
        end: () => ds.fail(new Error("data socket closed by the worker")),
        close: (_s, err) => ds.fail(err ?? new Error("data socket closed by the worker")),
        error: (_s, err) => ds.fail(err),
      },
    });
    return ds;
  }

  get closed(): boolean {
    return this.done;
  }

  /** Send one frame: header then body, in order, after anything still queued. */
  sendFrame(h: FrameHeader, body: Uint8Array): void {
    if (this.done) throw new Error("data socket is closed");
    this.write(packFrame(h));
    if (body.length) this.write(body);
  }

  /** Close our end; no `broken` after this. */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.queue.length = 0;
    this.socket?.terminate();
  }

  private write(buf: Uint8Array): void {
    if (this.queue.length) {
      this.queue.push(buf);
      return;
    }
    const n = this.socket!.write(buf);
    if (n < 0) return this.fail(new Error("data socket write failed (closed)"));
    if (n < buf.length) this.queue.push(buf.subarray(n));
  }

  private flush(): void {
    while (this.queue.length && !this.done) {
      const buf = this.queue[0]!;
      const n = this.socket!.write(buf);
      if (n < 0) return this.fail(new Error("data socket write failed (closed)"));
      if (n < buf.length) {
        this.queue[0] = buf.subarray(n);
        return;
      }
      this.queue.shift();
    }
  }

  private onData(chunk: Uint8Array): void {
    if (this.done) return;
    try {
      let p = 0;
      while (p < chunk.length) {
        if (!this.cur) {
          const n = Math.min(FRAME_BYTES - this.hdrFill, chunk.length - p);
          this.hdr.set(chunk.subarray(p, p + n), this.hdrFill);
          this.hdrFill += n;
          p += n;
          if (this.hdrFill < FRAME_BYTES) return;
          this.hdrFill = 0;
          const h = unpackFrame(this.hdr);
          const dest = this.sink.begin(h);
          if (dest.length !== h.length) throw new Error(`frame destination is ${dest.length} bytes, frame ${h.length}`);
          this.cur = { h, dest, fill: 0 };
        }
        const cur = this.cur;
        const n = Math.min(cur.dest.length - cur.fill, chunk.length - p);
        if (n > 0) cur.dest.set(chunk.subarray(p, p + n), cur.fill);
        cur.fill += n;
        p += n;
        if (cur.fill === cur.dest.length) {
          this.cur = undefined;
          this.sink.end(cur.h);
        }
      }
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private fail(err: Error): void {
    if (this.done) return;
    this.close();
    this.sink.broken(err);
  }
}
