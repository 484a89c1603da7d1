/**
 * WatchSessions: the lifecycle events of every process, read from the store's
 * event log by this process's EventHub, for one watcher.
 *
 * Guarantees (as etcd's and Kubernetes' watches):
 * - Ordered and unique: events arrive in log order; the cursor of an event is
 *   its log id. Every item is deduplicated against the last cursor delivered.
 * - Resumable: with resume_cursor the watch first replays (cursor, P] from the
 *   log, where P is the hub's position at the moment the watch registered, then
 *   continues with the live events after P from its queue: no gap, no
 *   duplicate. A cursor older than the retention answers OUT_OF_RANGE.
 * - Snapshot: the log position S0 is read first, then the matching live
 *   sessions are listed (SNAPSHOT items, cursor ""), then a HEARTBEAT with
 *   cursor S0, then events after S0 except those whose session version is not
 *   newer than the version the snapshot sent (versions grow on every write), so
 *   the snapshot and the events neither overlap nor leave a gap.
 * - Heartbeats carry the position up to which everything matching was sent
 *   (the hub's position when the queue is empty), so an idle watcher can
 *   resume cheaply even when every event was filtered out.
 * - Bounded: a watcher more than `queueLimit` events behind is ended with
 *   RESOURCE_EXHAUSTED carrying its cursor; on shutdown it is ended with
 *   UNAVAILABLE carrying its cursor (WatchInterrupted.cursor).
 *
 * Events carry the session as it is after the event, decoded by the session
 * layer (source.view); a session whose data source or user is changed away
 * from a watcher's filter is not announced to that watcher from then on.
 */
import type { SessionManager, SessionView } from "../session/session-manager.js";
import { SessionError, type SessionErrorKind } from "../domain/errors.js";
import { unreadableEventError } from "./poison.js";
import type { SessionRecord } from "../domain/model.js";
import { compareEventIds, maxEventId, parseCursor } from "../store/event-id.js";
import type { SessionEventType, StoredEvent } from "../store/store.js";
import type { EventHub, HubSubscription } from "./event-hub.js";

export interface WatchFilter {
  readonly userId?: string;
  readonly dataSource?: string;
  /** Lowercase session ids; absent or empty: every session. */
  readonly sessionIds?: ReadonlySet<string>;
  /** Absent or empty: every lifecycle event type. */
  readonly eventTypes?: ReadonlySet<SessionEventType>;
  /**
   * Matches no session: a caller acting for one user asked for another
   * user's sessions (see session/access-policy.ts). The watch still runs and
   * sends heartbeats, exactly like a watch whose filter nothing passes.
   */
  readonly nobody?: boolean;
}

export interface WatchOptions {
  readonly sendInitialSnapshot: boolean;
  /** Resume after this cursor; "" for none. */
  readonly resumeCursor: string;
  /** A heartbeat is sent after this long without any other message. */
  readonly heartbeatMs: number;
  /** Ends the watch when it aborts. */
  readonly signal: AbortSignal;
  /** Most events queued for a slow watcher before it is ended (default 1000). */
  readonly queueLimit?: number;
  /** Sessions read per store.list call of the snapshot, events per replay read (default 500). */
  readonly pageSize?: number;
  /**
   * Takes live events straight to the transport when it can (see
   * src/api/watch-direct.ts); what it refuses is yielded as usual.
   */
  readonly sink?: WatchSink;
  /** Runs the store reads of the watch's start (snapshot, replay); shared by every watch of a process. */
  readonly readGate?: ReadGate;
}

/**
 * Admits store reads: a process's watches that start at once (every client
 * reconnecting after a deploy) would otherwise send thousands of snapshot
 * listings and replays to the store together, and most would pass the
 * command timeout waiting behind each other. Behind a gate with a fixed
 * number of reads in flight they wait their turn instead, in order.
 */
export type ReadGate = <T>(read: () => Promise<T>) => Promise<T>;

/** What a watch needs of the session layer (SessionManager): decoded reads and the event log. */
export type WatchSource = Pick<SessionManager, "view" | "lookup" | "list" | "lastEventId" | "readEvents">;

/** A watch cancelled while its read waited at the gate: the read is skipped and the watch ends as on any abort. */
class CancelledAtGate extends Error {}

/** A synchronous way out for live events and heartbeats that skips the consumer of the generator. */
export interface WatchSink {
  /**
   * Sends the item now and returns true, or returns false when it cannot send
   * it at this moment (the item is then yielded). Called only while the
   * generator runs, i.e. while its consumer waits for the next item, so its
   * writes and the consumer's never interleave.
   */
  write(item: WatchItem): boolean;
}

export type WatchItemType = SessionEventType | "snapshot" | "heartbeat";

export interface WatchItem {
  readonly type: WatchItemType;
  /** Absent on heartbeats. */
  readonly session?: SessionView;
  readonly time: number;
  /** "" on snapshot items: resume only from the heartbeat that ends the snapshot, or later. */
  readonly cursor: string;
  readonly dataKeys: readonly string[];
}

/** A watch that ended early; `cursor` is the last one delivered ("" if none), to resume from. */
export class WatchInterrupted extends SessionError {
  constructor(
    kind: SessionErrorKind,
    message: string,
    readonly cursor: string,
  ) {
    super(kind, message);
  }
}

const DEFAULT_QUEUE_LIMIT = 1000;
/** Watch items by the logged event they were made from (see toItem), null for one that cannot be read; entries go with their events. */
const ITEMS = new WeakMap<StoredEvent, WatchItem | null>();
const DEFAULT_PAGE = 500;

/** True when a session passes the user, data source and session id filters. */
export function sessionMatches(filter: WatchFilter, session: Pick<SessionRecord, "userId" | "dataSource" | "sessionId">): boolean {
  if (filter.nobody === true) return false;
  if (filter.userId !== undefined && session.userId !== filter.userId) return false;
  if (filter.dataSource !== undefined && session.dataSource !== filter.dataSource) return false;
  if (filter.sessionIds !== undefined && filter.sessionIds.size > 0 && !filter.sessionIds.has(session.sessionId)) return false;
  return true;
}

/**
 * A text that two filters share exactly when they accept the same sessions and
 * event types: the hub matches an event once for all the watchers of a key.
 */
export function filterKey(filter: WatchFilter): string {
  if (filter.nobody === true) return "nobody";
  const types = filter.eventTypes === undefined ? [] : [...filter.eventTypes].sort();
  const ids = filter.sessionIds === undefined ? [] : [...filter.sessionIds].sort();
  return JSON.stringify([filter.userId ?? null, filter.dataSource ?? null, types, ids]);
}

/** True when an event of the watcher's tenant passes its filters. */
export function eventMatches(filter: WatchFilter, tenant: string, event: StoredEvent): boolean {
  if (event.session.tenant !== tenant) return false;
  if (filter.eventTypes !== undefined && filter.eventTypes.size > 0 && !filter.eventTypes.has(event.type)) return false;
  return sessionMatches(filter, event.session);
}

/**
 * Yields the watch items for one stream until the signal aborts (then it
 * returns) or the watch is ended early (then it throws WatchInterrupted, or
 * SessionError for a bad request). Releases its hub registration however it
 * ends, including when the consumer stops iterating.
 */
export async function* watchSessions(
  source: WatchSource,
  hub: EventHub,
  tenant: string,
  filter: WatchFilter,
  options: WatchOptions,
): AsyncGenerator<WatchItem, void, undefined> {
  const { signal, heartbeatMs } = options;
  const queueLimit = options.queueLimit ?? DEFAULT_QUEUE_LIMIT;
  const pageSize = options.pageSize ?? DEFAULT_PAGE;
  const gated = <T>(read: () => Promise<T>): Promise<T> => {
    const run = (): Promise<T> => (signal.aborted ? Promise.reject(new CancelledAtGate()) : read());
    return options.readGate === undefined ? run() : options.readGate(run);
  };
  if (options.resumeCursor !== "") {
    parseCursor(options.resumeCursor);
    if (options.sendInitialSnapshot) {
      throw new SessionError("invalid_argument", "resume_cursor: cannot be combined with send_initial_snapshot (a resumed watch continues where it stopped)", "resume_cursor");
    }
  }

  /** Everything matching up to this cursor has been yielded (or was filtered out). */
  let cursor = "";
  /**
   * The cursor the client is shown (heartbeats, the cursor of an early end):
   * never `cursor` itself, a position in the log of every tenant, whose moves
   * would tell this tenant when others write. It is the last event sent, or a
   * position of this tenant's own events, or where the client resumed; "" when
   * none is known yet. Resuming from it may replay events this watch filtered
   * out; they are filtered again.
   */
  let shown = "";
  /** Snapshot versions by session id, until the replay passes the log position read after the listing. */
  let snapshotVersions: Map<string, number> | undefined;
  let snapshotEnd = "";
  let sub: HubSubscription | undefined;

  const concerns = (sessionId: string): boolean => filter.sessionIds?.has(sessionId) === true;
  /**
   * The item to send, or undefined for an event whose session cannot be read
   * (metadata that does not decrypt): skipped, unless this watch asked for
   * that very session and meets it live, which then ends with INTERNAL and a
   * cursor past it (see poison.ts). A replay skips it, so a resume gets past.
   */
  const toItem = (event: StoredEvent, live = true): WatchItem | undefined => {
    // The hub hands the same event object to every watcher of the process: decode (and decrypt) it once.
    let item = ITEMS.get(event);
    if (item === undefined) {
      try {
        item = Object.freeze({ type: event.type, session: source.view(event.session), time: event.time, cursor: event.id, dataKeys: event.dataKeys });
      } catch {
        item = null;
        hub.unreadable.report("event_metadata", { id: event.id, tenant: event.session.tenant, sessionId: event.session.sessionId, problem: "metadata does not decrypt or decode" });
      }
      ITEMS.set(event, item);
    }
    if (item === null && live && concerns(event.session.sessionId)) {
      shown = event.id;
      const error = unreadableEventError(event.session.sessionId);
      throw interrupted(error.kind, error.message);
    }
    return item ?? undefined;
  };
  /**
   * Live events come from the hub in log order, each after the registration's
   * position: only those up to a cursor ahead of that position (a snapshot's
   * or a resume's, read from the store before the hub got there) can repeat
   * one already sent. Once one passes it, none can: the live path skips the
   * comparison, which would otherwise run once per event and watcher.
   */
  let aheadOfHub: string | undefined;
  /** Whether to send a logged event, given what was already sent; `matched` (live) when the hub applied the filter already. */
  const wanted = (event: StoredEvent, matched: boolean): boolean => {
    if (matched) {
      if (aheadOfHub !== undefined) {
        if (compareEventIds(event.id, aheadOfHub) <= 0) return false;
        aheadOfHub = undefined;
      }
    } else {
      if (cursor !== "" && compareEventIds(event.id, cursor) <= 0) return false;
      if (!eventMatches(filter, tenant, event)) return false;
    }
    if (snapshotVersions !== undefined) {
      if (compareEventIds(event.id, snapshotEnd) > 0) {
        snapshotVersions = undefined;
      } else {
        const sent = snapshotVersions.get(event.session.sessionId);
        if (sent !== undefined && event.session.version <= sent) return false;
      }
    }
    return true;
  };
  const interrupted = (kind: SessionErrorKind, why: string): WatchInterrupted =>
    new WatchInterrupted(kind, shown === "" ? `${why}, list the sessions and watch again` : `${why}, resume with resume_cursor ${shown}`, shown);

  try {
    if (options.sendInitialSnapshot) {
      // The tenant's position first (the hub's when it knows one: no store read): a tenant event between the two
      // reads is in the snapshot and replayed on resume.
      const tenantS0 = hub.tenantPosition(tenant) ?? (await gated(() => source.lastEventId(tenant)));
      const s0 = await gated(() => source.lastEventId());
      const versions = new Map<string, number>();
      for await (const session of snapshot(source, tenant, filter, pageSize, signal, gated)) {
        versions.set(session.sessionId, session.version);
        yield { type: "snapshot", session, time: Date.now(), cursor: "", dataKeys: [] };
      }
      if (signal.aborted) return;
      snapshotEnd = await gated(() => source.lastEventId());
      snapshotVersions = versions;
      cursor = s0;
      shown = tenantS0;
      yield heartbeat(shown);
    } else if (options.resumeCursor !== "") {
      cursor = options.resumeCursor;
      shown = cursor;
    }

    // Register first, then replay the log up to where the registration starts:
    // events after that point arrive in the queue, so nothing falls in between.
    // A paused hub first moves to the log's end, so the registration starts now. A running one needs no
    // store read, so the watch does not queue at the start gate for it.
    if (hub.paused) await gated(() => hub.awake());
    const registration = hub.subscribe(tenant, (event) => eventMatches(filter, tenant, event), queueLimit, concerns, filterKey(filter));
    sub = registration;
    const attachedAt = hub.position;
    if (cursor === "") {
      cursor = attachedAt;
      const known = hub.tenantPosition(tenant);
      if (known !== undefined) {
        shown = known;
      } else {
        // Nothing of the tenant since the hub started: its newest event is in the store, and safe to show once dispatched.
        const stored = await gated(() => source.lastEventId(tenant));
        if (compareEventIds(stored, attachedAt) <= 0) shown = stored;
      }
    } else {
      let last = cursor;
      for (;;) {
        // At least one read even when there is nothing to replay: it validates the cursor (OUT_OF_RANGE).
        const page = await gated(() => source.readEvents(last, pageSize));
        let passed = false;
        for (const event of page) {
          if (compareEventIds(event.id, attachedAt) > 0) {
            passed = true;
            break;
          }
          last = event.id;
          if (!wanted(event, false)) continue;
          const item = toItem(event, false);
          if (item !== undefined) yield item;
          cursor = event.id;
          if (item !== undefined) shown = event.id;
          if (signal.aborted) return;
        }
        if (passed || page.length < pageSize || compareEventIds(last, attachedAt) >= 0) break;
      }
      if (compareEventIds(cursor, attachedAt) > 0) aheadOfHub = cursor;
      cursor = maxEventId(cursor, attachedAt);
    }

    const queue = registration.queue;
    let lastSent = Date.now();
    const sink = options.sink;
    /**
     * While this watch is parked below with an empty queue, the hub hands it
     * live events here instead of queueing them and waking the generator: one
     * synchronous step per delivery instead of a queue, a promise, a timer and
     * a generator resumption. Nothing else writes to the stream then (connect
     * waits for our next item), so order holds; what the sink refuses goes to
     * the queue and takes the generator's path.
     */
    const direct =
      sink === undefined
        ? undefined
        : (event: StoredEvent): boolean => {
            if (!wanted(event, true)) return true;
            const item = toItem(event);
            if (item !== undefined && !sink.write(item)) return false;
            cursor = event.id;
            if (item !== undefined) shown = event.id;
            lastSent = Date.now();
            return true;
          };
    for (;;) {
      if (signal.aborted) return;
      const event = queue.shift();
      if (event !== undefined) {
        // The hub queues only events that passed this watcher's filter.
        if (!wanted(event, true)) continue;
        const item = toItem(event);
        if (item !== undefined && sink?.write(item) !== true) yield item;
        cursor = event.id;
        if (item !== undefined) shown = event.id;
        lastSent = Date.now();
        continue;
      }
      if (queue.overflowed) {
        throw interrupted("limit_exceeded", `watch fell more than ${queueLimit} events behind`);
      }
      const ended = queue.ended;
      if (ended !== undefined) {
        throw interrupted(ended instanceof SessionError ? ended.kind : "unavailable", ended.message);
      }
      const idleMs = Date.now() - lastSent;
      if (idleMs >= heartbeatMs) {
        // The queue is empty: every event up to the hub's position was offered to this watcher.
        cursor = maxEventId(cursor, hub.position);
        const own = hub.tenantPosition(tenant);
        if (own !== undefined) shown = shown === "" ? own : maxEventId(shown, own);
        // Through the sink too: 10k idle watchers beat every interval.
        const beat = heartbeat(shown);
        if (sink?.write(beat) !== true) yield beat;
        lastSent = Date.now();
        continue;
      }
      registration.deliverDirectly(direct);
      try {
        await queue.wait(heartbeatMs - idleMs, signal);
      } finally {
        registration.deliverDirectly(undefined);
      }
    }
  } catch (error) {
    if (error instanceof CancelledAtGate) return;
    if (error instanceof WatchInterrupted || !(error instanceof SessionError) || error.kind !== "unavailable") throw error;
    // A store outage mid-watch: still hand the client its cursor.
    throw interrupted("unavailable", error.message);
  } finally {
    sub?.close();
  }
}

function heartbeat(cursor: string): WatchItem {
  return { type: "heartbeat", time: Date.now(), cursor, dataKeys: [] };
}

/**
 * The live sessions matching the filter: read one by one when the filter
 * names sessions (cheaper than listing a whole tenant), else listed page by
 * page. Reads do not count as accesses.
 */
async function* snapshot(
  source: WatchSource,
  tenant: string,
  filter: WatchFilter,
  pageSize: number,
  signal: AbortSignal,
  gated: ReadGate,
): AsyncGenerator<SessionView, void, undefined> {
  if (filter.nobody === true) return;
  if (filter.sessionIds !== undefined && filter.sessionIds.size > 0) {
    for (const id of [...filter.sessionIds].sort()) {
      if (signal.aborted) return;
      const session = await gated(() => source.lookup(tenant, id));
      if (session !== undefined && sessionMatches(filter, session)) yield session;
    }
    return;
  }
  const listFilter = {
    ...(filter.userId === undefined ? {} : { userId: filter.userId }),
    ...(filter.dataSource === undefined ? {} : { dataSource: filter.dataSource }),
  };
  let page = await gated(() => source.list(tenant, listFilter, pageSize));
  for (;;) {
    for (const session of page.sessions) yield session;
    if (page.next === undefined || signal.aborted) return;
    const after = page.next;
    page = await gated(() => source.list(tenant, listFilter, pageSize, after));
  }
}
