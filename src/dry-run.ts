/**
 * `embed run --dry`: read the inputs and plan the batches as a run would, and describe them;
 * starts no worker and writes nothing.
 */
import type { RunOptionsInput } from "./config.ts";
import { groupIdentical } from "./input/dedup.ts";
import { ingest } from "./input/ingest.ts";
import { readingFor } from "./input/reading.ts";
import type { RecordTable } from "./input/records.ts";
import { planSummary } from "./plan.ts";
import type { Family } from "./protocol.ts";
import { resolveRunProbed } from "./resolve.ts";
import { takeSlice } from "./run.ts";
import { GPU_AUTO_MAX_TOKENS, planRecords, type Budget } from "./workers/session.ts";

export interface DryRunResult {
  dry: true;
  devices: string[];
  model: string;
  family: Family;
  /** DNABERT-S: the tokenizer.json the input was read with. */
  tokenizer: string | null;
  /** Tokens kept per record (the family's default unless --truncate was given). */
  truncate: number;
  /** Depth, width and heads when known before loading (the model table, config.json, or a .pt
   * file's probe); null: an unlisted name, which the workers describe when they start. */
  modelShape: { numLayers: number; dim: number; heads: number; source: string } | null;
  /** `--layers` as absolute layer numbers (null when the model's depth is known only at start-up). */
  layers: number[] | null;
  /** Tokens per batch the run will use; null when each GPU worker decides it at start-up. */
  budget: number | null;
  budgetSource: Budget["source"];
  /** How the budget is decided, in words. */
  budgetRule: string;
  /** The budget `plan` was packed with: `budget`, or for a GPU worker's choice the most it may
   * choose (the run's batches are then at most as large). */
  planBudget: number;
  records: ReturnType<RecordTable["summary"]>;
  /** Records that `--dedup` would write as copies of an identical earlier one (0 without it). */
  identical: number;
  plan: ReturnType<typeof planSummary>;
}

/** Plan only: read inputs, pack, and describe the batches. Starts no worker. */
export async function dryRun(options: RunOptionsInput): Promise<DryRunResult> {
  const { cfg, devices, budget, model, layers, family, tokenizer } = await resolveRunProbed({ ...options, dry: true });
  let table = await ingest(cfg, readingFor(family, tokenizer, cfg));
  if (cfg.slice) table = takeSlice(table, cfg.slice).table;
  const planBudget = budget.tokens ?? GPU_AUTO_MAX_TOKENS;
  const all = table.indices();
  const identical = cfg.dedup ? groupIdentical(table, all) : undefined;
  const plan = planRecords(table, planBudget, undefined, identical?.firsts ?? all);
  return {
    dry: true,
    devices: devices.map((d) => d.name),
    model: cfg.model,
    family,
    tokenizer: tokenizer ?? null,
    truncate: cfg.truncate,
    modelShape: model ? { numLayers: model.numLayers, dim: model.dim, heads: model.heads, source: model.source } : null,
    layers: layers ?? null,
    budget: budget.tokens,
    budgetSource: budget.source,
    budgetRule: budget.rule,
    planBudget,
    records: table.summary(),
    identical: identical?.copies ?? 0,
    plan: planSummary(plan),
  };
}
