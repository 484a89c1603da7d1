/**
 * GetSession's short-lived copies of live sessions in this process
 * (READ_CACHE_MAX_AGE; off by default). A get answered from a copy costs no
 * Redis round trip: with copies on, a process answers repeated gets of a
 * session at about the cost of a Health/Check (README, "Reading from a copy").
 *
 * What a copy may show, and why it is bounded:
 * - A write through this process (update, extend, close, data) drops the copy
 *   before it is sent and again when it is answered, so a caller of this
 *   process reads its own writes.
 * - A write through any other process reaches this one through the event log
 *   (every write to a session logs an event; the process's one event reader,
 *   src/streaming/event-hub.ts, hears each head and the copy is dropped): a
 *   get on this process may show the session as it was before that write
 *   while the event is on its way.
 * - While the event reader is not reading (Redis away, the reader behind or
 *   restarting), no copy answers and every copy is dropped: a write it did
 *   not hear of cannot hide behind a copy.
 * - Whatever happens, a copy answers for at most maxAgeMs after it was read,
 *   and never past its session's expire time (by this process's clock; the
 *   EXPIRED event drops it too).
 * - A get answered from a copy does not write the access time: last access is
 *   recorded when a get reads Redis, so at most maxAgeMs late.
 *
 * A read that was in flight when a write to its session was heard leaves no
 * copy (it may have read Redis before the write): each read holds a ticket in
 * the copy's place, and a drop takes the ticket away.
 *
 * A call acting for a user (a guard) is answered from a copy only when the
 * copy passes the guard's own check (the caller's session, a level that allows
 * the get; SessionManager.get); otherwise it reads Redis, where the guard is
 * checked as without copies.
 *
 * Copies are keyed by session id alone (random UUIDs) and carry their tenant:
 * a get of another tenant never sees them, and a drop drops whatever tenant's
 * copy the id names. At `entries` copies the oldest is dropped.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { EventHead } from "../store/store.js";
import type { SessionView } from "./session-view.js";

/** What tells the cache of writes: the process's event reader (EventHub). */
export interface WriteSource {
  addListener(listener: (event: EventHead) => void): () => void;
  /** True while the reader follows the log. */
  readonly reading: boolean;
  watchReading(listener: (reading: boolean) => void): () => void;
  onReset(listener: () => void): () => void;
}

export interface ReadCacheOptions {
  /** Longest a copy answers (> 0). */
  readonly maxAgeMs: number;
  /** Most copies kept. */
  readonly entries: number;
  /** Local clock, ms (tests). */
  readonly now?: () => number;
}

/** A read of Redis in flight: its place until it lands or a write drops it. */
interface Ticket {
  readonly tenant: string;
}

interface Copy {
  readonly tenant: string;
  /** Frozen, metadata and all: every hit hands out this same object. */
  readonly view: SessionView;
  /** Local time after which the copy no longer answers. */
  readonly until: number;
}

export type ReadCacheOutcome = "hit" | "miss" | "bypass";

export class ReadCache {
  private readonly maxAgeMs: number;
  private readonly limit: number;
  private readonly now: () => number;
  /** By session id: a copy, or the ticket of a read in flight. */
  private readonly places = new Map<string, Copy | Ticket>();
  private source: WriteSource | undefined;
  private readonly stops: (() => void)[] = [];
  private readonly counts: Record<ReadCacheOutcome, number> = { hit: 0, miss: 0, bypass: 0 };

  constructor(options: ReadCacheOptions) {
    if (!(options.maxAgeMs > 0) || !Number.isInteger(options.entries) || options.entries < 1) throw new Error("a ReadCache needs a positive max age and at least one entry");
    this.maxAgeMs = options.maxAgeMs;
    this.limit = options.entries;
    this.now = options.now ?? Date.now;
  }

  /** Starts hearing of writes from `source`; until then no copy answers. */
  follow(source: WriteSource): void {
    if (this.source !== undefined) throw new Error("a ReadCache follows one source");
    this.source = source;
    this.stops.push(
      source.addListener((event) => this.drop(event.sessionId)),
      source.watchReading((reading) => {
        if (!reading) this.clear();
      }),
      source.onReset(() => this.clear()),
    );
  }

  /** Stops following (shutdown); every copy is dropped. */
  close(): void {
    for (const stop of this.stops.splice(0)) stop();
    this.source = undefined;
    this.clear();
  }

  /** The copy of a live session of `tenant`, if one may answer now and `accepts` it (a guard's check). */
  lookup(tenant: string, sessionId: string, accepts?: (view: SessionView) => boolean): SessionView | undefined {
    if (this.source?.reading !== true) {
      this.counts.bypass += 1;
      return undefined;
    }
    const place = this.places.get(sessionId);
    if (place !== undefined && "view" in place && place.tenant === tenant) {
      if (this.answers(place)) {
        if (accepts === undefined || accepts(place.view)) {
          this.counts.hit += 1;
          return place.view;
        }
      } else {
        this.places.delete(sessionId);
      }
    }
    this.counts.miss += 1;
    return undefined;
  }

  /**
   * Before reading Redis for a lookup that missed: the ticket to hand to
   * land(). None while a copy that lookup refused (a guard's check) still
   * answers: a caller probing another user's session id does not evict it.
   */
  reserve(tenant: string, sessionId: string): Ticket | undefined {
    if (this.source?.reading !== true) return undefined;
    const place = this.places.get(sessionId);
    if (place !== undefined && "view" in place && place.tenant === tenant && this.answers(place)) return undefined;
    const ticket: Ticket = { tenant };
    this.place(sessionId, ticket);
    return ticket;
  }

  /**
   * After the read: keeps `view` (frozen, as the caller may no longer change
   * it) as the copy when nothing dropped the ticket meanwhile and the session
   * is live.
   */
  land(ticket: Ticket | undefined, view: SessionView): void {
    if (ticket === undefined) return;
    const { sessionId } = view;
    if (this.places.get(sessionId) !== ticket) return;
    if (view.endTime !== 0 || view.tenant !== ticket.tenant || this.source?.reading !== true) {
      this.places.delete(sessionId);
      return;
    }
    deepFreeze(view.metadata);
    this.places.set(sessionId, { tenant: ticket.tenant, view: Object.freeze(view), until: this.now() + this.maxAgeMs });
  }

  /** Forgets a read that failed. */
  abandon(ticket: Ticket | undefined, sessionId: string): void {
    if (ticket !== undefined && this.places.get(sessionId) === ticket) this.places.delete(sessionId);
  }

  /** A write to the session (here or heard of): its copy and any read in flight are dropped. */
  drop(sessionId: string): void {
    this.places.delete(sessionId);
  }

  /** Copies and reads in flight held now. */
  get size(): number {
    return this.places.size;
  }

  /** Lookups so far by outcome (metrics). */
  get outcomes(): Readonly<Record<ReadCacheOutcome, number>> {
    return this.counts;
  }

  /** Whether the copy is young enough and its session not yet due. */
  private answers(copy: Copy): boolean {
    const now = this.now();
    return now < copy.until && now < copy.view.expireTime;
  }

  private place(sessionId: string, entry: Copy | Ticket): void {
    // Re-inserting moves the id to the end: the oldest place is the first.
    this.places.delete(sessionId);
    if (this.places.size >= this.limit) {
      const oldest = this.places.keys().next();
      if (oldest.done !== true) this.places.delete(oldest.value);
    }
    this.places.set(sessionId, entry);
  }

  private clear(): void {
    this.places.clear();
  }
}

function deepFreeze(value: JsonValue): void {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const inner of Array.isArray(value) ? value : Object.values(value)) deepFreeze(inner);
}
