/**
 * WatchSessions, first version: the lifecycle events of THIS process, from the
 * in-process SessionEventBus. A later version rebuilds it on Redis streams so
 * that a watcher sees the writes of every process and can resume.
 *
 * Guarantees of this version:
 * - Events arrive in the order this process published them; the cursor is the
 *   bus sequence number (meaningless to another process or after a restart).
 * - With a snapshot, the subscription starts BEFORE the listing, so a change
 *   made during the listing is never missed; it may instead be seen twice (in
 *   the snapshot and again as an event). Clients should apply events by
 *   session version.
 * - Events carry the session as it is after the event, so a session whose
 *   data_source or access level is changed away from a watcher's filter is
 *   not announced to that watcher.
 * - A watcher more than `queueLimit` events behind is ended with
 *   limit_exceeded (RESOURCE_EXHAUSTED): it should re-list and watch again.
 */
import type { SessionManager } from "../session/session-manager.js";
import { SessionError } from "../session/errors.js";
import type { SessionView } from "../session/session-view.js";
import { toSessionView } from "../session/session-view.js";
import type { SessionRecord } from "../session/model.js";
import { EventQueue } from "./event-queue.js";
import type { PublishedSessionEvent, SessionEventType } from "./session-event-bus.js";

export interface WatchFilter {
  readonly userId?: string;
  readonly dataSource?: string;
  /** Lowercase session ids; absent or empty: every session. */
  readonly sessionIds?: ReadonlySet<string>;
  /** Absent or empty: every lifecycle event type. */
  readonly eventTypes?: ReadonlySet<SessionEventType>;
}

export interface WatchOptions {
  readonly sendInitialSnapshot: boolean;
  /** A heartbeat is sent after this long without any other message. */
  readonly heartbeatMs: number;
  /** Ends the watch when it aborts. */
  readonly signal: AbortSignal;
  /** Most events queued for a slow watcher before it is ended (default 1000). */
  readonly queueLimit?: number;
  /** Sessions read per store.list call of the snapshot (default 500). */
  readonly snapshotPageSize?: number;
}

export type WatchItemType = SessionEventType | "snapshot" | "heartbeat";

export interface WatchItem {
  readonly type: WatchItemType;
  /** Absent on heartbeats. */
  readonly session?: SessionView;
  readonly time: number;
  readonly cursor: string;
  readonly dataKeys: readonly string[];
}

const DEFAULT_QUEUE_LIMIT = 1000;
const DEFAULT_SNAPSHOT_PAGE = 500;

/** True when a session passes the user, data source and session id filters. */
export function sessionMatches(filter: WatchFilter, session: Pick<SessionRecord, "userId" | "dataSource" | "sessionId">): boolean {
  if (filter.userId !== undefined && session.userId !== filter.userId) return false;
  if (filter.dataSource !== undefined && session.dataSource !== filter.dataSource) return false;
  if (filter.sessionIds !== undefined && filter.sessionIds.size > 0 && !filter.sessionIds.has(session.sessionId)) return false;
  return true;
}

function eventMatches(filter: WatchFilter, tenant: string, event: PublishedSessionEvent): boolean {
  if (event.session.tenant !== tenant) return false;
  if (filter.eventTypes !== undefined && filter.eventTypes.size > 0 && !filter.eventTypes.has(event.type)) return false;
  return sessionMatches(filter, event.session);
}

/**
 * Yields the watch items for one stream until the signal aborts (then it
 * returns) or the watcher falls behind (then it throws). Unsubscribes from the
 * bus however it ends, including when the consumer stops iterating.
 */
export async function* watchSessions(
  manager: SessionManager,
  tenant: string,
  filter: WatchFilter,
  options: WatchOptions,
): AsyncGenerator<WatchItem, void, undefined> {
  const { signal, heartbeatMs } = options;
  const bus = manager.events;
  const queueLimit = options.queueLimit ?? DEFAULT_QUEUE_LIMIT;
  const queue = new EventQueue<PublishedSessionEvent>(queueLimit);
  const unsubscribe = bus.subscribe((event) => {
    // Stop collecting as soon as the watcher is known to be too slow.
    if (eventMatches(filter, tenant, event) && !queue.push(event)) unsubscribe();
  });
  // Publishing is synchronous, so nothing can be published between subscribe and this read.
  const subscribedAt = bus.lastSeq;

  /** Everything up to this cursor that matches has been sent or is queued: the cursor of "now". */
  const progressCursor = (): string => String((queue.peek()?.seq ?? bus.lastSeq + 1) - 1);
  const heartbeat = (): WatchItem => ({ type: "heartbeat", time: Date.now(), cursor: progressCursor(), dataKeys: [] });

  try {
    if (options.sendInitialSnapshot) {
      for await (const session of snapshot(manager, tenant, filter, options.snapshotPageSize ?? DEFAULT_SNAPSHOT_PAGE, signal)) {
        yield { type: "snapshot", session, time: Date.now(), cursor: String(subscribedAt), dataKeys: [] };
      }
      if (signal.aborted) return;
      yield heartbeat();
    }
    let lastSent = Date.now();
    for (;;) {
      if (signal.aborted) return;
      if (queue.overflowed) {
        throw new SessionError("limit_exceeded", `watch fell more than ${queueLimit} events behind; list the sessions and watch again`);
      }
      const event = queue.shift();
      if (event !== undefined) {
        yield {
          type: event.type,
          session: toSessionView(event.session),
          time: event.time,
          cursor: String(event.seq),
          dataKeys: event.dataKeys,
        };
        lastSent = Date.now();
        continue;
      }
      const idleMs = Date.now() - lastSent;
      if (idleMs >= heartbeatMs) {
        yield heartbeat();
        lastSent = Date.now();
        continue;
      }
      await queue.wait(heartbeatMs - idleMs, signal);
    }
  } finally {
    unsubscribe();
  }
}

/**
 * The live sessions matching the filter: read one by one when the filter
 * names sessions (cheaper than listing a whole tenant), else listed page by
 * page. Reads do not count as accesses.
 */
async function* snapshot(
  manager: SessionManager,
  tenant: string,
  filter: WatchFilter,
  pageSize: number,
  signal: AbortSignal,
): AsyncGenerator<SessionView, void, undefined> {
  if (filter.sessionIds !== undefined && filter.sessionIds.size > 0) {
    for (const id of [...filter.sessionIds].sort()) {
      if (signal.aborted) return;
      const session = await manager.lookup(tenant, id);
      if (session !== undefined && sessionMatches(filter, session)) yield session;
    }
    return;
  }
  const listFilter = {
    ...(filter.userId === undefined ? {} : { userId: filter.userId }),
    ...(filter.dataSource === undefined ? {} : { dataSource: filter.dataSource }),
  };
  let page = await manager.list(tenant, listFilter, pageSize);
  for (;;) {
    for (const session of page.sessions) yield session;
    if (page.next === undefined || signal.aborted) return;
    page = await manager.list(tenant, listFilter, pageSize, page.next);
  }
}
