/**
 * A headless Chromium driven over the DevTools protocol (a WebSocket; no npm dependency), for
 * tests that must see a page as a browser draws it: console messages, page errors, network
 * requests, the DOM after layout, a screenshot. `browserPath()` is undefined when no Chromium is
 * installed (tests skip visibly); .ci/run installs Debian's `chromium`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function browserPath(): string | undefined {
  for (const name of ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]) {
    const p = Bun.which(name);
    if (p) return p;
  }
  return undefined;
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, any>;
  result?: Record<string, any>;
  error?: { message: string };
  sessionId?: string;
}

export interface Page extends AsyncDisposable {
  /** Console errors/warnings, uncaught exceptions and browser log entries of level error, as text. */
  errors: string[];
  /** Every URL the page requested (the page itself included). */
  requests: string[];
  /** Evaluate `expression` in the page; its value, JSON-serialisable. */
  evaluate<T>(expression: string): Promise<T>;
  /** PNG of the whole page. */
  screenshot(): Promise<Uint8Array>;
}

/** Open `url` in a fresh headless Chromium and wait for its load event. */
export async function openPage(url: string, width = 1000, height = 800): Promise<Page> {
  const profile = mkdtempSync(join(tmpdir(), "embed-chromium-"));
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; the page is our own file.
  const proc = Bun.spawn([browserPath()!, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0", `--user-data-dir=${profile}`, `--window-size=${width},${height}`, "about:blank"], {
    stdout: "ignore",
    stderr: "pipe",
  });
  const cleanup = () => {
    proc.kill();
    return proc.exited.then(() => rmSync(profile, { recursive: true, force: true }));
  };
  try {
    const ws = new WebSocket(await devtoolsUrl(proc.stderr));
    await new Promise((ok, bad) => ((ws.onopen = ok), (ws.onerror = bad)));
    let next = 0;
    const pending = new Map<number, { ok: (m: CdpMessage) => void; bad: (e: Error) => void }>();
    const listeners: ((m: CdpMessage) => void)[] = [];
    ws.onmessage = (e) => {
      const m: CdpMessage = JSON.parse(String(e.data));
      if (m.id === undefined) return listeners.forEach((l) => l(m));
      const p = pending.get(m.id)!;
      pending.delete(m.id);
      if (m.error) p.bad(new Error(m.error.message));
      else p.ok(m);
    };
    let session: string | undefined;
    const send = (method: string, params: object = {}): Promise<Record<string, any>> =>
      new Promise((ok, bad) => {
        const id = ++next;
        pending.set(id, { ok: (m) => ok(m.result ?? {}), bad });
        ws.send(JSON.stringify({ id, method, params, sessionId: session }));
      });

    const errors: string[] = [];
    const requests: string[] = [];
    let loaded!: () => void;
    const load = new Promise<void>((ok) => (loaded = ok));
    listeners.push((m) => {
      const p = m.params ?? {};
      if (m.method === "Runtime.consoleAPICalled" && ["error", "warning", "assert"].includes(p.type)) errors.push(`console.${p.type}: ${p.args.map((a: any) => a.value ?? a.description).join(" ")}`);
      if (m.method === "Runtime.exceptionThrown") errors.push(`exception: ${p.exceptionDetails.exception?.description ?? p.exceptionDetails.text}`);
      if (m.method === "Log.entryAdded" && p.entry.level === "error") errors.push(`log: ${p.entry.text}`);
      if (m.method === "Network.requestWillBeSent") requests.push(p.request.url);
      if (m.method === "Page.loadEventFired") loaded();
    });
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    session = (await send("Target.attachToTarget", { targetId, flatten: true })).sessionId;
    for (const domain of ["Runtime", "Log", "Page", "Network"]) await send(`${domain}.enable`);
    await send("Page.navigate", { url });
    await load;
    return {
      errors,
      requests,
      async evaluate<T>(expression: string): Promise<T> {
        const r = await send("Runtime.evaluate", { expression, returnByValue: true });
        if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      async screenshot(): Promise<Uint8Array> {
        const r = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
        return Buffer.from(r.data, "base64");
      },
      async [Symbol.asyncDispose]() {
        ws.close();
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** The DevTools WebSocket URL Chromium prints on stderr once it listens. */
async function devtoolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stderr.getReader();
  const text = new TextDecoder();
  let seen = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`chromium exited before listening for DevTools:\n${seen}`);
    seen += text.decode(value, { stream: true });
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(seen);
    if (m) {
      // Keep draining stderr so that Chromium never blocks on a full pipe.
      void (async () => {
        while (!(await reader.read()).done);
      })();
      return m[1]!;
    }
  }
}
