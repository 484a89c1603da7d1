/**
 * Prometheus metrics of the process, with prom-client, served at GET /metrics.
 *
 * One registry per process, because Prometheus scrapes a process: the
 * process metrics (`collectDefaultMetrics`) can only be registered once, and
 * code in any module (the RPC interceptor, watch streams, the expiry scheduler,
 * Redis connections) records into the same series without being handed an
 * object. The registry is our own rather than prom-client's global one, so a
 * library that registers on the global registry cannot clash with it.
 *
 * Label values are bounded: methods come from the routed services (an unknown
 * method never reaches an interceptor), codes from the gRPC code list, tenants
 * and connection names from the configuration. Never put a session id or a
 * user id in a label.
 *
 * API for other modules:
 * - `trackWatcher()` when a watch stream starts; call the returned function
 *   when it ends (idempotent), so the active watchers gauge cannot drift.
 * - `observeExpiryLag(ms)` when a session is archived as expired: how long
 *   after its expire_time that happened.
 * - `instrumentRedis(client, name)` on every ioredis client, to count its
 *   `error` and `reconnecting` events.
 * - `addActiveSessionsSource(tenant, read)` (app.ts): read at scrape time.
 * - `countUnreadable(kind)` when an event-log entry or record is skipped as unreadable.
 * - `addWatchStartGateSource(waiting)` (app.ts): watch-start reads waiting at
 *   the read gate, read at scrape time.
 * - `archiveMetrics` (app.ts): what the archive sink (src/archive) reports.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Seconds; from well under a Redis round trip to the 10 s bound a deadline usually has. */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const rpcHandled = new Counter({
  name: "sessiond_rpc_handled_total",
  help: "RPCs completed, by service, method and status code (streams count when they end)",
  labelNames: ["service", "method", "code"] as const,
  registers: [registry],
});

const rpcDuration = new Histogram({
  name: "sessiond_rpc_duration_seconds",
  help: "Time from the start of an RPC to its end (for streams, the stream's lifetime), by service, method and status code",
  labelNames: ["service", "method", "code"] as const,
  buckets: RPC_BUCKETS,
  registers: [registry],
});

const activeWatchers = new Gauge({
  name: "sessiond_active_watchers",
  help: "WatchSessions streams open on this process",
  registers: [registry],
});

/** Seconds; the expiry scheduler wakes at each due time (a late one: a process was down, or a backlog), so most lags are small. */
const expiryLag = new Histogram({
  name: "sessiond_expiry_lag_seconds",
  help:
    "Expiry lag of the sessions this process expired (by its scheduler, or lazily by a call that met a due session): " +
    "time from a session's expire_time to the moment its archive and EXPIRED event were written, on the store's clock. " +
    "Watchers receive the event shortly after (one event-log read)",
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  registers: [registry],
});

const redisErrors = new Counter({
  name: "sessiond_redis_errors_total",
  help: "Error events of Redis connections (failed connects and dropped connections), by connection",
  labelNames: ["connection"] as const,
  registers: [registry],
});

const redisReconnects = new Counter({
  name: "sessiond_redis_reconnects_total",
  help: "Reconnection attempts of Redis connections, by connection",
  labelNames: ["connection"] as const,
  registers: [registry],
});

const storeProblem = new Gauge({
  name: "sessiond_store_problem",
  help:
    "1 while the store has the problem, else 0, as of the last health check: eviction_policy (Redis maxmemory-policy is " +
    "not noeviction, so Redis may delete sessions on its own), memory_full (Redis refuses writes)",
  labelNames: ["problem"] as const,
  registers: [registry],
});

const archivesShortened = new Counter({
  name: "sessiond_archives_shortened_total",
  help: "Sessions closed while Redis was out of memory, whose archive was kept without metadata so that the close could succeed",
  registers: [registry],
});

const dataLosses = new Counter({
  name: "sessiond_store_data_loss_total",
  help: "Times this process found that Redis lost data (the event log's generation changed): watchers were ended with OUT_OF_RANGE",
  registers: [registry],
});

/** Records the store's problems as of one health check (a problem absent from the list is 0). */
export function setStoreProblems(problems: readonly string[]): void {
  for (const problem of ["eviction_policy", "memory_full"]) storeProblem.set({ problem }, problems.includes(problem) ? 1 : 0);
}

export function countArchiveShortened(): void {
  archivesShortened.inc();
}

export function countDataLoss(): void {
  dataLosses.inc();
}

/** Reads the live session count of one tenant; may reject (store unreachable). */
export type ActiveSessionsReader = () => Promise<number>;

const sessionSources = new Map<object, { readonly tenant: string; readonly read: ActiveSessionsReader }>();

new Gauge({
  name: "sessiond_active_sessions",
  help: "Live sessions, by tenant, from the store's counters at scrape time (absent while the store is unreachable)",
  labelNames: ["tenant"] as const,
  registers: [registry],
  // Every worker reads the same store counters: across workers (WORKERS > 1) the value is one worker's, not their sum.
  aggregator: "max",
  async collect() {
    // Read at scrape time from counters the store keeps on every write: no scan, and the value agrees across replicas.
    this.reset();
    const readings = await Promise.allSettled([...sessionSources.values()].map(async (s) => ({ tenant: s.tenant, n: await s.read() })));
    for (const reading of readings) {
      // An unreachable store leaves the series absent: a stale or zero value would be a lie.
      if (reading.status === "fulfilled") this.set({ tenant: reading.value.tenant }, reading.value.n);
    }
  },
});

const startGates = new Map<object, () => number>();

new Gauge({
  name: "sessiond_watch_start_reads_waiting",
  help: "Store reads of starting watches (snapshots, replays) waiting for a place under WATCH_START_CONCURRENCY",
  registers: [registry],
  collect() {
    let waiting = 0;
    for (const read of startGates.values()) waiting += read();
    this.set(waiting);
  },
});

const archiveRows = new Counter({
  name: "sessiond_archive_rows_total",
  help: "Ended sessions the archive sink of this process wrote to the archive database (result: inserted, or duplicate when already there)",
  labelNames: ["result"] as const,
  registers: [registry],
});

/** Seconds; the sink reads as events come, so most lags are one read and one INSERT; an outage shows in the tail. */
const archiveLag = new Histogram({
  name: "sessiond_archive_lag_seconds",
  help: "Archive sink lag: time from an ended session's event in the event log to its row being written to the archive database",
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
  registers: [registry],
});

const archiveBacklog = new Gauge({
  name: "sessiond_archive_backlog_events",
  help: "Event log entries the archive consumer group has not acknowledged yet (pending with a replica, or not yet delivered), as of the last check",
  registers: [registry],
});

const archiveLost = new Counter({
  name: "sessiond_archive_lost_events_total",
  help: "Event log entries the archive sink could not archive: trimmed (the sink fell behind WATCH_RETENTION*), malformed, or rejected by the database",
  labelNames: ["reason"] as const,
  registers: [registry],
});

const archiveDatabaseUp = new Gauge({
  name: "sessiond_archive_database_up",
  help: "1 while the archive database takes this process's writes, 0 while it does not",
  registers: [registry],
});

const archiveDeleted = new Counter({
  name: "sessiond_archive_deleted_rows_total",
  help: "Archived sessions deleted past ARCHIVE_DB_RETENTION by this process",
  registers: [registry],
});

/** What the archive sink and its retention report (they take this object as their observer). */
export const archiveMetrics = {
  written(inserted: number, duplicates: number, lagsMs: readonly number[]): void {
    archiveRows.inc({ result: "inserted" }, inserted);
    archiveRows.inc({ result: "duplicate" }, duplicates);
    for (const ms of lagsMs) archiveLag.observe(Math.max(0, ms) / 1000);
  },
  lost(reason: "trimmed" | "malformed" | "rejected", count: number): void {
    archiveLost.inc({ reason }, count);
  },
  backlog(entries: number): void {
    archiveBacklog.set(entries);
  },
  databaseUp(up: boolean): void {
    archiveDatabaseUp.set(up ? 1 : 0);
  },
  deleted(rows: number): void {
    archiveDeleted.inc(rows);
  },
};

/** Records one finished RPC. `code` is the snake_case code name used in the logs ("ok", "not_found"). */
const unreadable = new Counter({
  name: "sessiond_unreadable_entries_total",
  help:
    "Stored entries skipped because they could not be read, by kind: event (a log entry that does not decode), " +
    "event_metadata (an event whose metadata does not decrypt), record (a session record in a listing)",
  labelNames: ["kind"] as const,
  registers: [registry],
});

export type UnreadableKind = "event" | "event_metadata" | "record";

/** Counts one skipped entry (each entry once per process where the caller can tell). */
export function countUnreadable(kind: UnreadableKind): void {
  unreadable.inc({ kind });
}

export function observeRpc(service: string, method: string, code: string, durationSeconds: number): void {
  rpcHandled.inc({ service, method, code });
  rpcDuration.observe({ service, method, code }, durationSeconds);
}

/** Counts an open watch stream; call the returned function once it ends (further calls do nothing). */
export function trackWatcher(): () => void {
  activeWatchers.inc();
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    activeWatchers.dec();
  };
}

/** Records how long after its expire_time a session was archived as expired, in milliseconds (negative counts as 0). */
export function observeExpiryLag(ms: number): void {
  if (!Number.isFinite(ms)) return;
  expiryLag.observe(Math.max(0, ms) / 1000);
}

/** The part of an ioredis client (or any EventEmitter) this needs. */
export interface RedisEvents {
  on(event: "error" | "reconnecting", listener: (...args: unknown[]) => void): unknown;
  off(event: "error" | "reconnecting", listener: (...args: unknown[]) => void): unknown;
}

/**
 * Counts a Redis client's `error` and `reconnecting` events under the label
 * `connection` (e.g. "store", "events"). Returns a function that detaches the
 * listeners. Adding an `error` listener does not change how ioredis behaves:
 * it only stops Node from treating an unhandled `error` event as fatal, which
 * the client's owner has to prevent anyway.
 */
export function instrumentRedis(client: RedisEvents, connection: string): () => void {
  const onError = (): void => void redisErrors.inc({ connection });
  const onReconnecting = (): void => void redisReconnects.inc({ connection });
  client.on("error", onError);
  client.on("reconnecting", onReconnecting);
  // Present from the start, so a dashboard shows 0 rather than no data.
  redisErrors.inc({ connection }, 0);
  redisReconnects.inc({ connection }, 0);
  return () => {
    client.off("error", onError);
    client.off("reconnecting", onReconnecting);
  };
}

/** Makes the active sessions gauge read `tenant`'s live count at every scrape; returns the function that stops it. */
export function addActiveSessionsSource(tenant: string, read: ActiveSessionsReader): () => void {
  const key = {};
  sessionSources.set(key, { tenant, read });
  return () => {
    sessionSources.delete(key);
  };
}

/** Makes the watch-start gauge read `waiting` at every scrape; returns the function that stops it. */
export function addWatchStartGateSource(waiting: () => number): () => void {
  const key = {};
  startGates.set(key, waiting);
  return () => {
    startGates.delete(key);
  };
}

/** The exposition text and its content type, for the /metrics endpoint. */
export async function scrape(): Promise<{ readonly contentType: string; readonly body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
