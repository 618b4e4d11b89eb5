/**
 * One worker process: spawn, READY handshake, embed(batch), ping, stop. This module owns the
 * lifecycle; nothing else spawns or kills workers.
 *
 * Control goes over Bun's `ipc` (JSON lines); batches and embeddings go through the worker's
 * `DataPlane` (data-plane.ts), chosen once from its READY: the ring file both sides map
 * (shm-ring.ts) or frames on a unix socket into a private copy of it (socket-ring.ts).
 * A dead worker is noticed through `proc.exited` at once: every pending call is rejected with a
 * WorkerError carrying the tail of its log; so is a broken data socket.
 */
import type { Subprocess } from "bun";
import { EmbedError, WorkerError } from "../errors.ts";
import { log, workerLog } from "../log.ts";
import { FromWorker, type ReadyMsg, type ResultMsg, type BatchInput, type BatchResult, type WorkerWireConfig, type ToWorker, type Transport } from "../protocol.ts";
import type { DataPlane } from "./data-plane.ts";
import { ShmRing } from "./shm-ring.ts";
import { SocketRing } from "./socket-ring.ts";
import { HandleState, remoteError } from "./state.ts";

/** How long a worker may take to load its model and say READY. */
export const READY_TIMEOUT_MS = 10 * 60_000;
/** After `shutdown`, how long a worker may take to exit before SIGTERM. */
export const SHUTDOWN_GRACE_MS = 5_000;
/** After SIGTERM, how long before SIGKILL. */
export const KILL_AFTER_MS = 3_000;
/** How long a ping may go unanswered. */
export const PING_TIMEOUT_MS = 5_000;
/** After the data socket breaks, how long to wait for the process exit that usually explains it. */
const SOCKET_DEATH_GRACE_MS = 300;

export interface WorkerSpec {
  python: string;
  /** Directory holding the `embed_worker` package (and, in tests, fake workers). */
  pythonPath: string;
  /** Module run with `python -m`. */
  module: string;
  config: WorkerWireConfig;
  /** The whole environment of the worker (from config's `childEnv`, plus CUDA_VISIBLE_DEVICES). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

interface Pending {
  resolve: (r: BatchResult) => void;
  reject: (e: Error) => void;
  consume: (r: BatchResult) => void;
  slot: number;
}

export class WorkerHandle implements AsyncDisposable {
  readonly name: string;
  readonly ready: ReadyMsg;
  /** Seconds from spawning the process to its READY. */
  readonly readySeconds: number;
  private readonly proc: Subprocess;
  /** Where batches and results travel: the mapped ring or the socket frames, chosen at READY. */
  private readonly plane: DataPlane;
  private readonly freeSlots: number[];
  private readonly pending = new Map<number, Pending>();
  private readonly pongs = new Map<number, (m: FromWorker) => void>();
  private readonly state: HandleState;
  /** Set once the data socket broke: every later call fails with it. */
  private broken: WorkerError | undefined;
  private pingSeq = 0;

  private constructor(name: string, proc: Subprocess, ready: ReadyMsg, state: HandleState, readySeconds: number) {
    this.name = name;
    this.proc = proc;
    this.ready = ready;
    this.readySeconds = readySeconds;
    this.state = state;
    this.plane = ready.ring.transport === "shm" ? new ShmRing(ready.ring, ready.family) : new SocketRing(ready.ring, ready.family, (err) => this.dataBroken(err));
    this.freeSlots = Array.from({ length: this.plane.header.slots }, (_, i) => i);
    state.onMessage = (m) => this.onMessage(m);
    state.onDeath = (err) => this.failAll(err);
    state.onBadMessage = (text) => this.protocolError(text);
  }

  /** Where a worker's start-up went, in seconds: "python" (from spawn to its first phase:
   * the interpreter and the worker's own modules), then the worker's phases in order. */
  startup(): Record<string, number> {
    const phases = Object.entries(this.ready.startupMs).map(([k, ms]) => [k, ms / 1000] as const);
    const inWorker = phases.reduce((sum, [, s]) => sum + s, 0);
    const round = (s: number) => Math.round(s * 100) / 100;
    return Object.fromEntries([["python", round(Math.max(0, this.readySeconds - inWorker))], ...phases.map(([k, s]) => [k, round(s)])]);
  }

  /** Spawn a worker and wait for READY. Rejects with a typed error if it fails or dies first. */
  static async start(spec: WorkerSpec): Promise<WorkerHandle> {
    const name = spec.config.name;
    const logger = workerLog(name);
    const state = new HandleState(name);
    const t0 = performance.now();
    const proc = Bun.spawn([spec.python, "-m", spec.module], {
      env: {
        ...spec.env,
        PYTHONPATH: [spec.pythonPath, spec.env?.PYTHONPATH].filter(Boolean).join(":"),
        PYTHONUNBUFFERED: "1",
        EMBED_WORKER_CONFIG: JSON.stringify(spec.config),
        // the worker exits if its parent is no longer this process (py lifeline.py)
        EMBED_PARENT_PID: String(process.pid),
      },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      serialization: "json",
      ipc: (message) => state.deliver(message),
    });
    state.relayLogs(proc.stderr as ReadableStream<Uint8Array>, logger);
    void proc.exited.then((code) => state.died(code, proc.signalCode === null ? null : String(proc.signalCode)));

    const ready = await new Promise<ReadyMsg>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new WorkerError(name, `not ready after ${(spec.readyTimeoutMs ?? READY_TIMEOUT_MS) / 1000} s`, {
          hint: "the model may be too large to load on this device; see the worker log above",
        }));
        proc.kill("SIGKILL");
      }, spec.readyTimeoutMs ?? READY_TIMEOUT_MS);
      state.onMessage = (m) => {
        if (m.type === "ready") resolve(m);
        else if (m.type === "error") reject(remoteError(name, m.error));
      };
      state.onDeath = reject;
      state.afterSettle = () => clearTimeout(timer);
    }).finally(() => state.afterSettle?.());
    const handle = new WorkerHandle(name, proc, ready, state, (performance.now() - t0) / 1000);
    try {
      await handle.plane.open(); // (only a socket can fail to open: the ring is mapped already)
    } catch (e) {
      await handle.stop();
      throw new WorkerError(name, `cannot connect to the data socket ${ready.ring.path}: ${(e as Error).message}`, {
        hint: "the worker's temp dir must allow unix sockets; set EMBED_RING_DIR to another directory",
      });
    }
    return handle;
  }

  /** The transport this worker's data goes through. */
  get transport(): Transport {
    return this.plane.transport;
  }

  /** Number of batches this worker can hold at once (one computing, the rest waiting). */
  get slots(): number {
    return this.plane.header.slots;
  }

  get pid(): number {
    return this.proc.pid;
  }

  get alive(): boolean {
    return this.state.exitCode === undefined;
  }

  /**
   * Send one batch. `consume` runs with views into the ring once the result is in, before the
   * slot is reused; copy what you need inside it.
   */
  embed(batch: BatchInput, consume: (r: BatchResult) => void): Promise<BatchResult> {
    if (!this.alive) return Promise.reject(this.state.deathError());
    if (this.broken) return Promise.reject(this.broken);
    if (this.plane.closed) return Promise.reject(new WorkerError(this.name, "data socket closed"));
    const slot = this.freeSlots.pop();
    if (slot === undefined) throw new EmbedError(`worker ${this.name}: no free slot (caller sent too many batches)`);
    const seqs = batch.seqs;
    let nTokens = 0;
    let maxLen = 0;
    for (const s of seqs) {
      nTokens += s.length + 2;
      maxLen = Math.max(maxLen, s.length + 2);
    }
    if (nTokens > this.ready.maxTokens || seqs.length > this.ready.maxSeqs) {
      this.freeSlots.push(slot);
      throw new EmbedError(`batch ${batch.id} (${nTokens} tokens) exceeds worker ${this.name} budget ${this.ready.maxTokens}`);
    }
    return new Promise<BatchResult>((resolve, reject) => {
      this.pending.set(batch.id, { resolve, reject, consume, slot });
      // The input bytes first (socket: one `in` frame); the worker reads them when it takes this
      // `embed` message (frames and messages are both in embed order).
      this.plane.sendBatch(batch.id, slot, seqs, nTokens);
      this.send({ type: "embed", batch: batch.id, slot, seqs: seqs.length, tokens: nTokens, maxLen });
    });
  }

  /** Round trip to the worker's reader thread; answered even while a batch computes. */
  async ping(timeoutMs = PING_TIMEOUT_MS): Promise<{ batches: number; tokens: number }> {
    const seq = ++this.pingSeq;
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pongs.delete(seq);
        reject(new WorkerError(this.name, `no answer to ping within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pongs.set(seq, (m) => {
        clearTimeout(timer);
        resolve({ batches: Number((m as { batches?: number }).batches ?? 0), tokens: Number((m as { tokens?: number }).tokens ?? 0) });
      });
      this.send({ type: "ping", seq });
    });
  }

  /** Graceful stop: `shutdown`, then SIGTERM after SHUTDOWN_GRACE_MS, SIGKILL after KILL_AFTER_MS. */
  async stop(): Promise<void> {
    this.plane.close();
    if (this.alive) {
      try {
        this.send({ type: "shutdown" });
      } catch {}
      if (!(await this.waitExit(SHUTDOWN_GRACE_MS))) {
        log.warn(`${this.name}: still running ${SHUTDOWN_GRACE_MS / 1000} s after shutdown; sending SIGTERM`);
        this.proc.kill("SIGTERM");
        if (!(await this.waitExit(KILL_AFTER_MS))) {
          log.warn(`${this.name}: still running ${KILL_AFTER_MS / 1000} s after SIGTERM; sending SIGKILL`);
          this.proc.kill("SIGKILL");
          await this.proc.exited;
        }
      }
    }
    this.failAll(new WorkerError(this.name, "stopped"));
  }

  /** Kill at once (the run is failing or interrupted, or the worker is hung: `why` then names it
   * in the death error). */
  kill(why?: string): void {
    if (!this.alive) return;
    if (why) this.state.killedBecause = why;
    this.proc.kill("SIGKILL");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Whether the process exits within `ms` (true at once if it already has). */
  exitsWithin(ms: number): Promise<boolean> {
    return this.alive ? this.waitExit(ms) : Promise.resolve(true);
  }

  private async waitExit(ms: number): Promise<boolean> {
    let timer: Timer | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    const done = await Promise.race([this.proc.exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return done;
  }

  private send(msg: ToWorker): void {
    this.proc.send(msg satisfies ToWorker);
  }

  private onMessage(m: FromWorker): void {
    if (m.type === "pong") {
      this.pongs.get(m.seq)?.(m);
      this.pongs.delete(m.seq);
      return;
    }
    if (m.type === "result") {
      const p = this.pending.get(m.batch);
      if (!p) return this.protocolError(`result for unknown batch ${m.batch}`);
      this.plane.onResult(m, p.slot, (problem) => (problem ? this.protocolError(problem) : this.finish(m, p)));
      return;
    }
    if (m.type === "error") {
      const err = remoteError(this.name, m.error);
      if (m.batch !== undefined && this.pending.has(m.batch)) {
        const p = this.pending.get(m.batch)!;
        this.pending.delete(m.batch);
        this.plane.forget(m.batch);
        this.freeSlots.push(p.slot);
        p.reject(err);
      } else this.failAll(err);
      return;
    }
    this.protocolError(`unexpected ${m.type} message`);
  }

  /** The result and its output bytes are in: hand views to the consumer. */
  private finish(m: ResultMsg, p: Pending): void {
    this.pending.delete(m.batch);
    const outputs = m.outputs.map((b) => ({ ...b, data: this.plane.outputView(p.slot, b) }));
    const result: BatchResult = { batch: m.batch, ms: m.ms, nonFinite: m.nonFinite, outputs };
    try {
      p.consume(result);
      p.resolve(result);
    } catch (e) {
      p.reject(e as Error);
    } finally {
      this.freeSlots.push(p.slot);
    }
  }

  /**
   * The data socket broke. A dying worker closes it too, so wait a moment for the exit that
   * explains it; either way pending and later calls fail with a WorkerError, and the worker
   * (useless without its data plane) is killed.
   */
  private dataBroken(err: Error): void {
    void Promise.race([this.proc.exited, Bun.sleep(SOCKET_DEATH_GRACE_MS)]).then(() => {
      this.broken = this.alive
        ? new WorkerError(this.name, `data socket broken: ${err.message}`, { hint: "the worker's data channel failed; see the worker log above" })
        : this.state.deathError();
      this.failAll(this.broken);
      this.kill();
    });
  }

  private protocolError(msg: string): void {
    this.failAll(new WorkerError(this.name, msg.startsWith("bad message") ? msg : `protocol error: ${msg}`, { hint: "orchestrator and worker versions differ?" }));
    this.kill();
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      this.plane.forget(id);
      p.reject(err);
    }
  }
}
