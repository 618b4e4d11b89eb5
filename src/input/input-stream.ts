/**
 * Opens an input (a path, or "-" for stdin) as a stream of byte chunks, gunzipping on the fly.
 *
 * Compression is detected by magic bytes (1f 8b), not by extension, so `x.fa.gz` renamed to
 * `x.fa`, and gzip on stdin, both work; multi-member gzip (bgzip) works too. Decompression is
 * streaming (`DecompressionStream`), so memory stays at a few chunks whatever the file size.
 * Every failure a user can cause becomes an {@link InputError} naming the file: missing file,
 * directory, unreadable, truncated/corrupt gzip, other compression formats, UTF-16/UTF-32 text,
 * binary data. Character devices and pipes (`/dev/null`, `<(zcat x.gz)`) are read with plain
 * reads too: Bun's file stream cannot poll them (EPERM from epoll_ctl on /dev/null).
 */
import { type FileHandle, open, stat } from "node:fs/promises";
import { InputError } from "../errors.ts";

/** An opened input. */
export interface InputBytes {
  /** Name used in messages: the path as given, or `<stdin>`. */
  name: string;
  /** Whether the bytes are being gunzipped. */
  gzip: boolean;
  /**
   * Decompressed bytes, in chunks of a few hundred KiB. Iterate once. A chunk is valid until
   * the next one is asked for (a plain file is read into one reused buffer).
   */
  chunks: AsyncIterable<Uint8Array>;
}

/** Display name of standard input. */
export const STDIN_NAME = "<stdin>";

/** Bytes per read of a plain file (one buffer, reused: it stays in the CPU caches). */
const FILE_CHUNK = 1 << 20;
/** Bytes per read of a device or pipe (a fresh buffer per chunk: the stream keeps it). */
const STREAM_CHUNK = 1 << 16;

/** Magic numbers of formats we refuse with a specific hint. */
const OTHER_FORMATS: { magic: number[]; name: string; tool: string }[] = [
  { magic: [0x42, 0x5a, 0x68], name: "bzip2", tool: "bunzip2 -c FILE" },
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], name: "xz", tool: "xz -dc FILE" },
  { magic: [0x28, 0xb5, 0x2f, 0xfd], name: "zstd", tool: "zstd -dc FILE" },
  { magic: [0x50, 0x4b, 0x03, 0x04], name: "zip", tool: "unzip -p FILE" },
];

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  if (bytes.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return false;
  return true;
}

/** Open `source` ("-" for stdin). Throws {@link InputError} when it cannot be read. */
export async function openInput(source: string): Promise<InputBytes> {
  const name = source === "-" ? STDIN_NAME : source;
  let raw: ReadableStream<Uint8Array>;
  if (source === "-") {
    raw = Bun.stdin.stream();
  } else {
    const regular = await checkReadableFile(source);
    // A regular file is read with plain reads into one reused buffer (a stream allocates a
    // fresh buffer per chunk); should it turn out to be gzip, it goes through a stream anyway.
    const plain = regular ? await openPlainFile(source, name) : undefined;
    if (plain) return plain;
    raw = regular ? Bun.file(source).stream() : readStream(source, name);
  }
  const reader = raw.getReader();
  const first = await readOrThrow(reader, name, false);
  const head = first ?? new Uint8Array(0);
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  checkFormat(head, name, source);
  // Put the peeked chunk back in front of the rest.
  const replay = new ReadableStream<Uint8Array>({
    start(controller) {
      if (head.length > 0) controller.enqueue(head);
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  const stream = gzip ? replay.pipeThrough(new DecompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>) : replay;
  return { name, gzip, chunks: checkedChunks(stream, name, gzip, source) };
}

/**
 * A file that is not a regular one (a character device, a FIFO) as a stream of plain reads:
 * no seeking and no peeking (a pipe's bytes can be read once), one buffer per chunk.
 */
function readStream(source: string, name: string): ReadableStream<Uint8Array> {
  let fh: FileHandle | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        fh ??= await open(source, "r");
        const buf = new Uint8Array(STREAM_CHUNK);
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead > 0) return controller.enqueue(buf.subarray(0, bytesRead));
        await fh.close();
        controller.close();
      } catch (e) {
        await fh?.close().catch(() => {});
        controller.error(wrapReadError(e, name, false));
      }
    },
    async cancel() {
      await fh?.close().catch(() => {});
    },
  });
}

/**
 * The UTF-16 or UTF-32 encoding `head` (the first bytes of an input) is in, by its byte order
 * mark or, without one, by the NUL bytes beside ASCII ones that such text of ASCII letters
 * (`>id`, residues) has; undefined for anything else.
 */
export function wideEncoding(head: Uint8Array): string | undefined {
  const [a, b, c, d] = [head[0], head[1], head[2], head[3]];
  if (a === 0xff && b === 0xfe && c === 0 && d === 0) return "UTF-32 (little-endian byte order mark)";
  if (a === 0 && b === 0 && c === 0xfe && d === 0xff) return "UTF-32 (big-endian byte order mark)";
  if (a === 0xff && b === 0xfe) return "UTF-16 (little-endian byte order mark)";
  if (a === 0xfe && b === 0xff) return "UTF-16 (big-endian byte order mark)";
  if (head.length < 4 || a === undefined || c === undefined) return undefined;
  const ascii = (x: number | undefined) => x !== undefined && x > 0 && x < 0x80;
  if (ascii(a) && b === 0 && c === 0 && d === 0) return "UTF-32 (little-endian, no byte order mark)";
  if (a === 0 && b === 0 && c === 0 && ascii(d)) return "UTF-32 (big-endian, no byte order mark)";
  if (ascii(a) && b === 0 && ascii(c) && d === 0) return "UTF-16 (little-endian, no byte order mark)";
  if (a === 0 && ascii(b) && c === 0 && ascii(d)) return "UTF-16 (big-endian, no byte order mark)";
  return undefined;
}

function wideError(name: string, source: string, encoding: string, gzip: boolean): InputError {
  const file = source === "-" ? "FILE" : source;
  const bits = encoding.startsWith("UTF-32") ? "UTF-32" : "UTF-16";
  return new InputError(
    `${name}: the text is ${encoding}${gzip ? " (inside the gzip)" : ""}; FASTA is read as UTF-8 or ASCII`,
    undefined,
    `Convert it first: \`${gzip ? `gzip -dc ${file} | iconv -f ${bits} -t UTF-8` : `iconv -f ${bits} -t UTF-8 ${file}`} > converted.fasta\` (Windows tools such as PowerShell's \`>\` write UTF-16).`,
  );
}

function checkFormat(head: Uint8Array, name: string, source: string): void {
  const wide = wideEncoding(head);
  if (wide) throw wideError(name, source, wide, false);
  for (const f of OTHER_FORMATS) {
    if (startsWith(head, f.magic)) {
      throw new InputError(
        `${name}: input is ${f.name}-compressed; only gzip is read directly`,
        undefined,
        `Decompress it first, e.g. \`${f.tool.replace("FILE", source)} | embed ... -\`, or recompress with gzip.`,
      );
    }
  }
}

/**
 * A regular, uncompressed file as chunks read into one reused buffer; undefined when it is
 * gzip or cannot be opened here, for the stream path to handle. The file is opened again when
 * reading starts, so nothing stays open if the chunks are never read.
 */
async function openPlainFile(source: string, name: string): Promise<InputBytes | undefined> {
  let head: Uint8Array;
  try {
    const fh = await open(source, "r");
    try {
      const buf = new Uint8Array(8);
      head = buf.subarray(0, (await fh.read(buf, 0, buf.length, 0)).bytesRead);
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return undefined;
  checkFormat(head, name, source);
  return { name, gzip: false, chunks: plainChunks(source, name) };
}

async function* plainChunks(source: string, name: string): AsyncGenerator<Uint8Array> {
  let fh: FileHandle;
  try {
    fh = await open(source, "r");
  } catch (e) {
    throw wrapReadError(e, name, false);
  }
  try {
    const buf = new Uint8Array(FILE_CHUNK);
    const reader: ChunkReader = {
      async read() {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        return bytesRead === 0 ? { done: true } : { done: false, value: buf.subarray(0, bytesRead) };
      },
    };
    yield* checkedReads(reader, async () => {}, name, false, source);
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Checks that `path` is a readable file or other non-directory; true for a regular file. */
async function checkReadableFile(path: string): Promise<boolean> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new InputError(`input file not found: ${path}`, undefined, "Check the path (and the current directory); use '-' to read standard input.");
    }
    if (code === "EACCES") {
      throw new InputError(`permission denied reading ${path}`, undefined, `Check the file's permissions (ls -l ${path}).`);
    }
    throw new InputError(`cannot read ${path}: ${(e as Error).message}`, undefined, "Check that the path is a readable file.");
  }
  if (info.isDirectory()) {
    throw new InputError(`${path} is a directory, not a FASTA file`, undefined, "Pass a FASTA file (e.g. dir/*.fasta, one at a time), or '-' for standard input.");
  }
  return info.isFile();
}

/** The part of a stream reader we use (Bun's global and node:stream/web types differ). */
interface ChunkReader {
  read(): Promise<{ done: boolean; value?: Uint8Array | undefined }>;
}

async function readOrThrow(
  reader: ChunkReader,
  name: string,
  gzip: boolean,
): Promise<Uint8Array | undefined> {
  try {
    const { done, value } = await reader.read();
    return done || value === undefined ? undefined : value;
  } catch (e) {
    throw wrapReadError(e, name, gzip);
  }
}

function wrapReadError(e: unknown, name: string, gzip: boolean): InputError {
  const detail = e instanceof Error ? e.message : String(e);
  if (gzip) {
    return new InputError(
      `${name}: gzip data is truncated or corrupt (${detail})`,
      undefined,
      name === STDIN_NAME
        ? "Check the compressed input with `gzip -t`; re-download or recompress it."
        : `Check it with \`gzip -t ${name}\`; re-download or recompress the file.`,
    );
  }
  return new InputError(`${name}: read failed (${detail})`, undefined, "Check that the file is readable and not being modified.");
}

/**
 * Yields the stream's chunks, turning read errors (including zlib's) into InputErrors, and
 * rejecting binary data: any NUL byte (memchr-speed check per chunk) means this is not text.
 */
function checkedChunks(stream: ReadableStream<Uint8Array>, name: string, gzip: boolean, source: string): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  return checkedReads(
    reader,
    async () => {
      reader.releaseLock();
      await stream.cancel().catch(() => {});
    },
    name,
    gzip,
    source,
  );
}

/** {@link checkedChunks} over any reader; `close` runs once reading stops (end, error, break). */
async function* checkedReads(
  reader: ChunkReader,
  close: () => Promise<void>,
  name: string,
  gzip: boolean,
  source: string,
): AsyncGenerator<Uint8Array> {
  let offset = 0;
  try {
    for (;;) {
      const chunk = await readOrThrow(reader, name, gzip);
      if (chunk === undefined) return;
      const nul = chunk.indexOf(0);
      if (nul >= 0) {
        const wide = offset === 0 ? wideEncoding(chunk) : undefined;
        if (wide) throw wideError(name, source, wide, gzip);
        throw new InputError(
          `${name}: binary data (NUL byte at ${gzip ? "decompressed " : ""}byte offset ${offset + nul}); this is not a FASTA text file`,
          undefined,
          `Pass a FASTA text file, optionally gzip-compressed. \`file ${source === "-" ? "FILE" : source}\` tells what it is.`,
        );
      }
      offset += chunk.length;
      yield chunk;
    }
  } finally {
    await close();
  }
}
