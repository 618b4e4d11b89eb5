/**
 * The state of one worker process as the orchestrator sees it: incoming messages parsed with zod,
 * its death (exit code or signal, with the tail of its log), and its stderr relayed line by line
 * through consola with the worker's tag. Used by worker.ts only.
 */
import { BadModelError, EmbedError, ModelNotFoundError, OptionsError, WorkerError } from "../errors.ts";
import type { workerLog } from "../log.ts";
import { FromWorker, type WireError } from "../protocol.ts";

/** Lines of worker stderr kept to explain a death. */
const LOG_TAIL = 40;

/** Process-level state shared by the spawn callbacks and the handle. */
export class HandleState {
  onMessage: (m: FromWorker) => void = () => {};
  onDeath: (e: WorkerError) => void = () => {};
  onBadMessage: ((text: string) => void) | undefined;
  afterSettle: (() => void) | undefined;
  exitCode: number | undefined;
  signal: string | null = null;
  /** Why the orchestrator killed the process (a failed health check), if it did. */
  killedBecause: string | undefined;
  readonly tail: string[] = [];
  constructor(readonly name: string) {}

  deliver(raw: unknown): void {
    const parsed = FromWorker.safeParse(raw);
    if (!parsed.success) {
      const text = `bad message from worker: ${JSON.stringify(raw).slice(0, 200)}`;
      if (this.onBadMessage) this.onBadMessage(text);
      else this.onDeath(new WorkerError(this.name, text));
      return;
    }
    this.onMessage(parsed.data);
  }

  died(code: number | null, signal: string | null): void {
    this.exitCode = code ?? -1;
    this.signal = signal;
    this.onDeath(this.deathError());
  }

  deathError(): WorkerError {
    const how = this.killedBecause
      ? `was killed: ${this.killedBecause}`
      : this.signal ? `was killed by ${this.signal}` : `exited with code ${this.exitCode}`;
    const tail = this.tail.slice(-8).join("\n");
    return new WorkerError(this.name, `process ${how}`, {
      hint: tail ? `last worker log lines:\n${tail}` : "the worker printed nothing; run `embed doctor`",
    });
  }

  relayLogs(stream: ReadableStream<Uint8Array>, logger: ReturnType<typeof workerLog>): void {
    void (async () => {
      const decoder = new TextDecoder();
      let buf = "";
      for await (const chunk of stream) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) this.logLine(line, logger);
        }
      }
      if (buf.trim()) this.logLine(buf, logger);
    })().catch(() => {});
  }

  private logLine(line: string, logger: ReturnType<typeof workerLog>): void {
    this.tail.push(line);
    if (this.tail.length > LOG_TAIL) this.tail.shift();
    let rec: { level?: string; msg?: string; [k: string]: unknown } | undefined;
    try {
      rec = line.startsWith("{") ? JSON.parse(line) : undefined;
    } catch {}
    if (!rec) return logger.debug(line);
    const { level, msg, t: _t, ...rest } = rec;
    const text = Object.keys(rest).length ? `${msg} ${JSON.stringify(rest)}` : String(msg);
    if (level === "error") logger.error(text);
    else if (level === "warn") logger.warn(text);
    else if (level === "info") logger.info(text);
    else logger.debug(text);
  }
}

/** Rebuild a typed error from a worker's `{name, message, hint}`. */
export function remoteError(worker: string, e: WireError): EmbedError {
  if (e.name === "ModelNotFound") return new ModelNotFoundError(e.message, e.hint);
  if (e.name === "BadCheckpoint") return new BadModelError(e.message, e.hint);
  if (e.name === "BadOptions") return new OptionsError(e.message, e.hint);
  return new WorkerError(worker, `${e.name}: ${e.message}`, { hint: e.hint || undefined, remoteName: e.name });
}
