/**
 * The MemoryStore's event log: the same ids ("<ms>-<seq>", from the store's
 * clock, never going backwards), the same retention (the last
 * eventRetentionCount events, none older than eventRetentionMs) and the same
 * cursor rule (cursorRetained) as the Redis stream, so both stores pass the
 * same watch conformance cases. Retention is exact here; Redis trims whole
 * stream nodes, so it may keep somewhat more, never less.
 */
import { SessionError } from "../../domain/errors.js";
import type { SessionRecord } from "../../domain/model.js";
import { compareEventIds, cursorRetained, formatEventId, parseCursor, ZERO_EVENT_ID, type EventIdParts } from "../event-id.js";
import { EVENT_LOG_RESET_MESSAGE, type EventTail, type ResolvedStoreLimits, type SessionEventType, type StoredEvent } from "../store.js";

interface Entry {
  readonly event: StoredEvent;
  readonly at: EventIdParts;
}

/** Below this many dropped entries at the head the array is not compacted. */
const COMPACT_MIN = 1024;

export class MemoryEventLog {
  private entries: Entry[] = [];
  /** Index of the first retained entry (entries before it are dropped, compacted lazily). */
  private head = 0;
  private last: EventIdParts = { ms: 0, seq: 0 };
  private dropped = false;
  private closed = false;
  private readonly countLimit: number;
  private readonly ageLimitMs: number;
  /** Pending tail reads, woken by every append. */
  private readonly waiters = new Set<() => void>();

  /** The log's generation: a time before its first event, as on Redis (see generation() in lua/prelude.ts). */
  private readonly generation: EventIdParts;

  /** `now`: the store's clock when the log is made (the generation is just before it). */
  constructor(limits: Pick<ResolvedStoreLimits, "eventRetentionCount" | "eventRetentionMs">, now: number) {
    this.countLimit = limits.eventRetentionCount;
    this.ageLimitMs = limits.eventRetentionMs;
    this.generation = { ms: Math.max(0, now - 1), seq: 0 };
    this.last = this.generation;
  }

  /** Id of each tenant's newest event (kept like Redis's `P T:ev`: one per tenant, never trimmed). */
  private readonly lastByTenant = new Map<string, string>();

  lastIdOf(tenant: string): string {
    return this.lastByTenant.get(tenant) ?? formatEventId(this.generation);
  }

  get lastId(): string {
    return formatEventId(this.last);
  }

  /** Number of pending blocking reads (for leak tests). */
  get waiting(): number {
    return this.waiters.size;
  }

  append(type: SessionEventType, session: SessionRecord, dataKeys: readonly string[], now: number): void {
    const at = now > this.last.ms ? { ms: now, seq: 0 } : { ms: this.last.ms, seq: this.last.seq + 1 };
    this.last = at;
    const id = formatEventId(at);
    this.entries.push({ at, event: Object.freeze({ id, type, time: at.ms, session, dataKeys: Object.freeze([...dataKeys]) }) });
    this.lastByTenant.set(session.tenant, id);
    while (this.entries.length - this.head > this.countLimit) this.dropHead();
    this.trimByTime(now);
    for (const wake of [...this.waiters]) wake();
  }

  /** Drops the events older than the time retention. */
  trimByTime(now: number): void {
    const oldest = now - this.ageLimitMs;
    for (let first = this.first(); first !== undefined && first.at.ms < oldest; first = this.first()) this.dropHead();
  }

  read(after: string, limit: number): StoredEvent[] {
    const cursor = parseCursor(after);
    // A cursor from before this log began is of another log (another process): its events are gone.
    if (after !== ZERO_EVENT_ID && compareEventIds(after, formatEventId(this.generation)) < 0) {
      throw new SessionError("out_of_range", EVENT_LOG_RESET_MESSAGE);
    }
    const first = this.first();
    if (!cursorRetained(after, first === undefined ? undefined : first.event.id, this.lastId, this.dropped)) {
      throw new SessionError("out_of_range", "resume_cursor: the cursor is older than the retained event history; list the sessions and watch again");
    }
    return this.after(cursor, limit);
  }

  openTail(): EventTail {
    let closed = false;
    const wakes = new Set<() => void>();
    return {
      read: (after, limit, blockMs) => {
        const cursor = parseCursor(after, "after");
        const ready = this.after(cursor, limit);
        if (ready.length > 0 || closed || this.closed || blockMs <= 0) return Promise.resolve(ready);
        return new Promise<StoredEvent[]>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            this.waiters.delete(done);
            wakes.delete(done);
            resolve(closed || this.closed ? [] : this.after(cursor, limit));
          };
          const timer = setTimeout(done, blockMs);
          this.waiters.add(done);
          wakes.add(done);
        });
      },
      close: () => {
        closed = true;
        for (const wake of [...wakes]) wake();
      },
    };
  }

  /** Wakes and empties every pending read. */
  close(): void {
    this.closed = true;
    for (const wake of [...this.waiters]) wake();
  }

  private first(): Entry | undefined {
    return this.entries[this.head];
  }

  private dropHead(): void {
    this.head += 1;
    this.dropped = true;
    if (this.head >= COMPACT_MIN && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** Up to `limit` events with an id after `cursor` (binary search: ids increase along the array). */
  private after(cursor: EventIdParts, limit: number): StoredEvent[] {
    let lo = this.head;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const at = (this.entries[mid] as Entry).at;
      if (at.ms < cursor.ms || (at.ms === cursor.ms && at.seq <= cursor.seq)) lo = mid + 1;
      else hi = mid;
    }
    const out: StoredEvent[] = [];
    for (let i = lo; i < this.entries.length && out.length < limit; i++) out.push((this.entries[i] as Entry).event);
    return out;
  }
}
