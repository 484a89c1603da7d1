/**
 * Merging one read of every partition's event log (keys.ts: several
 * partitions) into one page in id order without ever skipping an event.
 *
 * A partition can still append an event with a smaller id than one already
 * read from another partition (its clock, or its turn within a millisecond).
 * Every future id of a partition is larger than both the last id it assigned
 * and "<its clock at the read>-0", so entries are delivered only up to the
 * frontier: the smallest such bound over the partitions (for a partition
 * whose read was cut by the page size, its last entry read). Whatever lies
 * beyond it is read again from the frontier next time, so one id stays a
 * complete cursor.
 */
import type { StoredEvent } from "../store.js";
import type { UnreadableEntry } from "../unreadable.js";
import { compareEventIds } from "../event-id.js";
import { decodeStreamBatch } from "./event-codec.js";

/** One partition's read: XRANGE entries after the cursor, what was asked, the log's last id and the partition's clock. */
export interface PartitionRead {
  readonly entries: unknown;
  readonly asked: number;
  readonly lastAssigned: string;
  readonly now: number;
}

export interface MergedPage {
  /** Events up to the frontier (at most the limit), in id order. */
  readonly events: StoredEvent[];
  readonly unreadable: UnreadableEntry[];
  /** Every entry up to here was seen: where the next read starts. */
  readonly position: string;
  /** A partition had more entries than it returned, or the page was cut. */
  readonly more: boolean;
  /** Entries were held back only because a partition's clock had not passed them yet. */
  readonly withheld: boolean;
}

/** The largest sequence number a frontier names (within Lua's exact integers). */
const SEQ_MAX = "999999999999999";

export function mergePartitionReads(after: string, reads: readonly PartitionRead[], limit: number): MergedPage {
  let frontier: string | undefined;
  let more = false;
  const items: { id: string; event?: StoredEvent; unreadable?: UnreadableEntry }[] = [];
  for (const read of reads) {
    const batch = decodeStreamBatch(read.entries);
    const full = batch.size >= read.asked && batch.lastId !== undefined;
    more ||= full;
    const clock = `${Math.max(0, read.now - 1)}-${SEQ_MAX}`;
    const bound = full ? (batch.lastId as string) : maxId(read.lastAssigned, clock);
    frontier = frontier === undefined || compareEventIds(bound, frontier) < 0 ? bound : frontier;
    for (const event of batch.events) items.push({ id: event.id, event });
    for (const entry of batch.unreadable) items.push({ id: entry.id, unreadable: entry });
  }
  const limitId = maxId(frontier ?? after, after);
  items.sort((a, b) => compareEventIds(a.id, b.id));
  const events: StoredEvent[] = [];
  const unreadable: UnreadableEntry[] = [];
  let lastTaken = after;
  let cut = false;
  let withheld = false;
  for (const item of items) {
    if (compareEventIds(item.id, limitId) > 0) {
      withheld = true;
      break;
    }
    if (events.length >= limit) {
      cut = true;
      break;
    }
    lastTaken = item.id;
    if (item.event !== undefined) events.push(item.event);
    if (item.unreadable !== undefined) unreadable.push(item.unreadable);
  }
  return { events, unreadable, position: cut ? lastTaken : limitId, more: more || cut, withheld };
}

function maxId(a: string, b: string): string {
  return compareEventIds(a, b) >= 0 ? a : b;
}
