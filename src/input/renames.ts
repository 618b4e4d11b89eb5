/**
 * `--duplicate-ids rename`: new ids for repeated ones, chosen once every input has been read.
 * Pure: works on an {@link IdIndex}.
 *
 * Why at the end and not as each repeat is read: a repeat renamed on the spot could take an id
 * that a later record has. With ids `a, a, a_2` the second `a` would become `a_2`, the real
 * `a_2` would then be renamed in turn, and the row labelled `a_2` would hold another record's
 * embedding. Once the whole input is in the index, `ID_k` with the smallest free k ≥ 2 is
 * checked against every input id and every earlier rename, so a new id never names another
 * record of the input.
 */
import type { IdIndex } from "./id-index.ts";

/** One renamed record, for the log and the manifest. */
export interface Rename {
  from: string;
  to: string;
  /** `file:line` of the record's header. */
  at: string;
}

/** Called for each rename: the old and new id, the header line and id-index entry. */
export type OnRename = (from: string, to: string, line: number, entry: number) => void;

/** Repeats waiting for a new id (id-index entries, in reading order). */
export class PendingRenames {
  private entries: number[] = [];

  get size(): number {
    return this.entries.length;
  }

  /** Entry `entry` repeats an earlier id: rename it at {@link apply}. */
  add(entry: number): void {
    this.entries.push(entry);
  }

  /**
   * Give every waiting repeat the id `ID_k`, k the smallest from 2 up that no entry of `ids`
   * has (input ids and renames so far). Call when every input is read, before
   * `ids.dropLookup()`; `onRename` hears of each one (while line numbers are still known).
   */
  apply(ids: IdIndex, onRename?: OnRename): void {
    const next = new Map<string, number>();
    for (const entry of this.entries) {
      const from = ids.idString(entry);
      let k = next.get(from) ?? 2;
      while (!ids.rename(entry, `${from}_${k}`)) k++;
      next.set(from, k + 1);
      onRename?.(from, `${from}_${k}`, ids.line(entry), entry);
    }
    this.entries = [];
  }
}
