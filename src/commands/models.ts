/** `embed models`: every family's known models (ESM-2, DNABERT-S), and where each would be loaded from on this machine. */
import { defineCommand } from "citty";
import { EmbedError, ExitCode } from "../errors.ts";
import { log } from "../log.ts";
import { pythonJson } from "../workers/python.ts";
import { emit, fail } from "./report.ts";

interface ModelRow {
  name: string;
  family: string;
  layers: number;
  dim: number;
  heads: number;
  params: number | string;
  path: string | null;
  /** A released model (fetched on first use), or test-tiny (made by scripts/setup). */
  downloadable: boolean;
  /** Where a model that is not found is downloaded to on first use (test-tiny: made). */
  download_to: string | null;
  /** For a model not downloaded automatically (DNABERT-S): the command that fetches it. */
  how?: string | null;
  [k: string]: unknown;
}

export default defineCommand({
  meta: { name: "models", description: "List the known models (ESM-2, DNABERT-S) and where each would be loaded from.\n\nExample:\n  embed models --json | jq '.[] | select(.path)'" },
  args: { json: { type: "boolean", description: "print JSON (default when stdout is not a terminal)", default: false } },
  async run({ args }) {
    try {
      const r = await pythonJson<ModelRow[]>("embed_worker.registry", ["--json"]);
      if (!r.ok || !r.value) throw new EmbedError(`cannot list models: ${r.error}`, { hint: "run `embed doctor`", exitCode: ExitCode.internal });
      if (args.json || !process.stdout.isTTY) return emit(r.value);
      const rows = r.value.map((m) => ({ name: m.name, family: m.family, layers: m.layers, dim: m.dim, heads: m.heads, params: m.params, found: m.path ?? m.how ?? (m.downloadable ? `not found; downloaded on first use to ${m.download_to}` : `not found; scripts/setup makes it at ${m.download_to}`) }));
      console.table(rows);
      log.info("set EMBED_MODEL_DIR, or put fair-esm .pt files in the torch hub cache (DNABERT-S: the Hugging Face cache), or pass --model PATH");
    } catch (e) {
      fail(e);
    }
  },
});
