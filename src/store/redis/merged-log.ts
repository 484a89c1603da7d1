/**
 * Merging the event logs of several partitions (keys.ts) into one log in id
 * order without ever skipping an event: a k-way merge over per-partition
 * buffers that a reader keeps across its reads.
 *
 * A partition can still append an event with a smaller id than one already
 * read from another partition (its clock, or its turn within a millisecond).
 * Every future id of a partition is larger than both the last id it assigned
 * and "<its clock at the read>-0", so entries are delivered only up to the
 * frontier: the smallest such bound over the partitions (for a partition
 * whose read was cut by its count, its last entry read). The position a page
 * ends at is one complete cursor: every entry of every partition up to it was
 * delivered.
 *
 * What was read beyond the frontier (or beyond a page cut by its limit) stays
 * buffered for the next page from that position, so each entry crosses the
 * network once instead of once per page, and only partitions whose buffer ran
 * dry are read again (and a dry one only while its bound holds the frontier
 * back). Memory: at most `limit` entries per partition (a partition's read
 * count starts at a share of the page and doubles, up to `limit`, while the
 * partition keeps running dry with more to read), so partitions × limit per
 * reader.
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
  /** The id the partition's log starts at ("<generation>-0"): lastAssigned when the log holds no entry. */
  readonly start?: string;
}

/** A read the merge needs: partition, the id to read after, how many entries. */
export interface PartitionRequest {
  readonly partition: number;
  readonly after: string;
  readonly count: number;
}

export interface MergedPage {
  /** Events up to the frontier (at most the limit), in id order. */
  readonly events: StoredEvent[];
  readonly unreadable: UnreadableEntry[];
  /** Every entry up to here was seen: where the next read starts. */
  readonly position: string;
  /** A partition has more entries than were read, or the page was cut. */
  readonly more: boolean;
  /** Entries were held back only because a partition's clock had not passed them yet. */
  readonly withheld: boolean;
}

/** The largest sequence number a frontier names (within Lua's exact integers). */
const SEQ_MAX = "999999999999999";
/** The smallest read count of a partition. */
const MIN_COUNT = 16;

interface Item {
  readonly id: string;
  readonly event?: StoredEvent;
  readonly unreadable?: UnreadableEntry;
}

interface Partition {
  /** Entries after the reader's position, in id order, from `head` on. */
  items: Item[];
  head: number;
  /** Every entry of the partition up to this id is in `items` (or was delivered); undefined before its first read. */
  bound: string | undefined;
  /** The last id read (or the position the read started at): the next read continues after it. */
  readTo: string;
  /** The last read was cut by its count: entries after `readTo` exist. */
  full: boolean;
  lastAssigned: string;
  /** The last read found the log without entries. */
  empty: boolean;
  /** The last read returned entries: the log is likely to have moved again by the next. */
  found: boolean;
  count: number;
}

export class MergedLogReader {
  private readonly parts: Partition[];
  /** A partition's first read count: twice its share of a page. */
  private readonly base: number;
  private position: string | undefined;

  /** `limit`: the largest page the reader is asked for (and the largest read of one partition). */
  constructor(
    partitions: number,
    readonly limit: number,
  ) {
    this.base = Math.min(limit, Math.max(MIN_COUNT, Math.ceil((2 * limit) / partitions)));
    this.parts = Array.from({ length: partitions }, () => ({ items: [], head: 0, bound: undefined, readTo: "0-0", full: false, lastAssigned: "0-0", empty: false, found: false, count: this.base }));
  }

  /** Forgets every buffer unless the reader continues from `after`, where its last page ended. */
  seek(after: string): void {
    if (this.position === after) return;
    this.reset(after);
  }

  /** Forgets every buffer (after a failed read: the caller re-checks its position). */
  reset(after?: string): void {
    this.position = after;
    for (const part of this.parts) {
      Object.assign(part, { items: [], head: 0, bound: undefined, readTo: after ?? "0-0", full: false, empty: false, found: false, count: this.base });
    }
  }

  /** Each partition's last assigned id as of its last read (what a wake-up waits past). */
  lastIds(): string[] {
    return this.parts.map((p) => p.lastAssigned);
  }

  /**
   * The reads the next page needs: every partition before its first read;
   * then those whose buffer ran dry and that either have more to read or
   * whose bound lies before the earliest entry the page can start with (else
   * they do not hold it back; should they hold a later one back, the page
   * says withheld and the next one reads them).
   */
  requests(): PartitionRequest[] {
    const after = this.position ?? "0-0";
    // The earliest entry the next page can start with: a buffered one, or one after a dry partition's read cut by its count.
    let earliest: string | undefined;
    for (const part of this.parts) {
      const head = part.items[part.head];
      const next = head !== undefined ? head.id : part.full ? part.readTo : undefined;
      if (next !== undefined && (earliest === undefined || compareEventIds(next, earliest) < 0)) earliest = next;
    }
    const out: PartitionRequest[] = [];
    this.parts.forEach((part, partition) => {
      if (part.head < part.items.length) return;
      if (part.bound !== undefined && !part.full && earliest !== undefined && compareEventIds(part.bound, earliest) >= 0) return;
      out.push({ partition, after: maxId(part.readTo, after), count: part.count });
    });
    return out;
  }

  /**
   * For a request of a partition whose last read reached its log's end and
   * found nothing new (one that did is read at once, as it is likely to have
   * moved again, instead of being checked first): the
   * id that was then the log's last. While the log's last entry is still that
   * id, the partition has nothing to read, and its clock alone moves its
   * bound (addClock), which a plain TIME answers without running the read
   * script ("": the log had no entry and must still have none). undefined:
   * the partition must be read.
   */
  quietSince(request: PartitionRequest): string | undefined {
    const part = this.parts[request.partition] as Partition;
    if (part.bound === undefined || part.full || part.found || compareEventIds(request.after, part.lastAssigned) < 0) return undefined;
    return part.empty ? "" : part.lastAssigned;
  }

  /**
   * A partition found quiet (quietSince): its log's last entry was still the
   * one named then, at a moment after its clock read `now`; every later entry
   * of it comes after "<now - 1>-*".
   */
  addClock(request: PartitionRequest, now: number): void {
    const part = this.parts[request.partition] as Partition;
    part.bound = maxId(part.bound ?? request.after, maxId(part.lastAssigned, `${Math.max(0, now - 1)}-${SEQ_MAX}`));
  }

  /** Adds one partition's read, made for `request`. */
  add(request: PartitionRequest, read: PartitionRead): void {
    const part = this.parts[request.partition] as Partition;
    const batch = decodeStreamBatch(read.entries);
    const full = batch.size >= read.asked && batch.lastId !== undefined;
    const items: Item[] = [];
    for (const event of batch.events) items.push({ id: event.id, event });
    for (const entry of batch.unreadable) items.push({ id: entry.id, unreadable: entry });
    items.sort((a, b) => compareEventIds(a.id, b.id));
    // A partition that ran dry with more to read was too small a share of the page.
    part.count = full && part.full ? Math.min(this.limit, part.count * 2) : full ? part.count : this.base;
    // Reads are made only for a dry buffer (requests), so this is the whole buffer: at most `count` entries.
    part.items = items;
    part.head = 0;
    part.full = full;
    part.readTo = batch.lastId ?? request.after;
    part.lastAssigned = read.lastAssigned;
    part.empty = read.start !== undefined && read.lastAssigned === read.start;
    part.found = batch.size > 0;
    const clock = `${Math.max(0, read.now - 1)}-${SEQ_MAX}`;
    part.bound = full ? (batch.lastId as string) : maxId(read.lastAssigned, clock);
  }

  /** Delivers, in id order, what lies up to the frontier (at most `limit` events), from the position `seek` set. */
  take(limit: number): MergedPage {
    const after = this.position ?? "0-0";
    let frontier: string | undefined;
    let more = false;
    for (const part of this.parts) {
      const bound = part.bound ?? after;
      frontier = frontier === undefined || compareEventIds(bound, frontier) < 0 ? bound : frontier;
      more ||= part.full;
    }
    const limitId = maxId(frontier ?? after, after);
    const events: StoredEvent[] = [];
    const unreadable: UnreadableEntry[] = [];
    let lastTaken = after;
    let cut = false;
    let withheld = false;
    for (;;) {
      let next: Partition | undefined;
      for (const part of this.parts) {
        const head = part.items[part.head];
        if (head !== undefined && (next === undefined || compareEventIds(head.id, (next.items[next.head] as Item).id) < 0)) next = part;
      }
      if (next === undefined) break;
      const item = next.items[next.head] as Item;
      if (compareEventIds(item.id, limitId) > 0) {
        withheld = true;
        break;
      }
      if (events.length >= limit) {
        cut = true;
        break;
      }
      next.head++;
      lastTaken = item.id;
      if (item.event !== undefined) events.push(item.event);
      if (item.unreadable !== undefined) unreadable.push(item.unreadable);
    }
    for (const part of this.parts) {
      if (part.head === part.items.length) {
        part.items = [];
        part.head = 0;
      }
    }
    this.position = cut ? lastTaken : limitId;
    return { events, unreadable, position: this.position, more: more || cut, withheld };
  }
}

function maxId(a: string, b: string): string {
  return compareEventIds(a, b) >= 0 ? a : b;
}
