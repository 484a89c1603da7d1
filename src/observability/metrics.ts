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
 * - `addActiveSessionsSource(tenants, read)` (app.ts): read at scrape time
 *   for a bounded TenantSet.
 * - `rpcStarted` / `rpcMessageReceived` / `rpcMessageSent` / `rpcHandled`
 *   (the RPC interceptor, src/server/rpc-logging.ts): the standard gRPC
 *   server metrics, one place for every protocol and serving path.
 * - `countUnreadable(kind)` when an event-log entry or record is skipped as unreadable.
 * - `countPartitionSecretRestored()` / `setPartitionSecretSplit(split)`
 *   (src/store/partition-secret-keeper.ts): the partition secret kept in Redis.
 * - `addWatchStartGateSource(waiting)` (app.ts): watch-start reads waiting at
 *   the read gate, read at scrape time.
 * - `countRejected(kind, reason)` for every connection or request refused at
 *   the edge (limits, authentication, bad bytes, slow clients).
 * - `addEdgeSource(read)` (single-port server): open connections and
 *   long-lived streams, read at scrape time.
 * - `archiveMetrics` (app.ts): what the archive sink (src/archive) reports.
 */
import { createContextKey } from "@connectrpc/connect";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/**
 * Seconds: Prometheus's default buckets (what go-grpc-prometheus uses) with
 * finer ones below 5 ms, where most of this service's calls end.
 */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** grpc_type as go-grpc-prometheus names it. */
export type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** The labels of the standard gRPC server metrics (grpc-ecosystem/go-grpc-prometheus), shared by every protocol served. */
export interface RpcLabels {
  readonly grpc_type: GrpcType;
  readonly grpc_service: string;
  readonly grpc_method: string;
}

const RPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"] as const;

/**
 * Status code names as grpc-go's codes.Code.String() spells them, which is
 * what the grpc_code label carries in go-grpc-prometheus (and so in every
 * gRPC dashboard and alert): "OK", "NotFound", "DeadlineExceeded".
 */
export const GRPC_CODE_NAMES: readonly string[] = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

const rpcStartedTotal = new Counter({
  name: "grpc_server_started_total",
  help: "Total number of RPCs started on the server.",
  labelNames: RPC_LABELS,
  registers: [registry],
  collect: flushRpcCounts,
});

const rpcHandledTotal = new Counter({
  name: "grpc_server_handled_total",
  help: "Total number of RPCs completed on the server, regardless of success or failure.",
  labelNames: [...RPC_LABELS, "grpc_code"] as const,
  registers: [registry],
  collect: flushRpcCounts,
});

const rpcMsgReceived = new Counter({
  name: "grpc_server_msg_received_total",
  help: "Total number of RPC stream messages received on the server.",
  labelNames: RPC_LABELS,
  registers: [registry],
  collect: flushRpcCounts,
});

const rpcMsgSent = new Counter({
  name: "grpc_server_msg_sent_total",
  help: "Total number of gRPC stream messages sent by the server.",
  labelNames: RPC_LABELS,
  registers: [registry],
  collect: flushRpcCounts,
});

const rpcHandlingSeconds = new Histogram({
  name: "grpc_server_handling_seconds",
  help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
  labelNames: RPC_LABELS,
  buckets: RPC_BUCKETS,
  registers: [registry],
});

const rpcInFlight = new Gauge({
  name: "sessiond_rpcs_in_flight",
  help: "RPCs started and not yet completed on this process (open streams included), by grpc_type, grpc_service and grpc_method",
  labelNames: RPC_LABELS,
  registers: [registry],
  collect: flushRpcCounts,
});

const buildInfoGauge = new Gauge({
  name: "sessiond_build_info",
  help: "Always 1; the labels say what is running: package version, source revision (SOURCE_REVISION at build) and Node version",
  labelNames: ["version", "revision", "nodejs_version"] as const,
  registers: [registry],
});

/** Sets sessiond_build_info (main.ts and the test apps, at start). */
export function setBuildInfo(info: { readonly version: string; readonly revision: string; readonly nodeVersion: string }): void {
  buildInfoGauge.reset();
  buildInfoGauge.set({ version: info.version, revision: info.revision, nodejs_version: info.nodeVersion }, 1);
}

/** A method's series, all codes included, exist from the start (as go-grpc-prometheus's InitializeMetrics does), so rates and alerts see 0, not "no data". */
export function initializeRpcMetrics(methods: Iterable<RpcLabels>): void {
  for (const labels of methods) {
    rpcStartedTotal.inc(labels, 0);
    rpcMsgReceived.inc(labels, 0);
    rpcMsgSent.inc(labels, 0);
    rpcInFlight.inc(labels, 0);
    rpcHandlingSeconds.zero(labels);
    for (const grpc_code of GRPC_CODE_NAMES) rpcHandledTotal.inc({ ...labels, grpc_code }, 0);
  }
}

/**
 * A method's counts not yet in the metrics above. A call adds to plain
 * numbers here (no label set to validate and hash per count); a scrape (each
 * of those metrics' collect) moves them in first, so it reads every call
 * counted. Keyed by the labels object (one per method: rpc-logging.ts).
 */
interface PendingCounts {
  started: number;
  received: number;
  sent: number;
  /** Started minus handled. */
  inFlight: number;
  /** Handled, by code (GRPC_CODE_NAMES). */
  readonly handled: Map<string, number>;
}

const pending = new Map<RpcLabels, PendingCounts>();
/** Label objects with counts waiting beyond which they are moved in at once: bounds the map when callers make labels per call. */
const PENDING_METHODS_MAX = 1000;

function pendingOf(labels: RpcLabels): PendingCounts {
  let counts = pending.get(labels);
  if (counts === undefined) {
    if (pending.size >= PENDING_METHODS_MAX) flushRpcCounts();
    counts = { started: 0, received: 0, sent: 0, inFlight: 0, handled: new Map() };
    pending.set(labels, counts);
  }
  return counts;
}

/** Moves the waiting counts into the metrics (a scrape does, before it reads them). */
function flushRpcCounts(): void {
  for (const [labels, counts] of pending) {
    if (counts.started > 0) rpcStartedTotal.inc(labels, counts.started);
    if (counts.received > 0) rpcMsgReceived.inc(labels, counts.received);
    if (counts.sent > 0) rpcMsgSent.inc(labels, counts.sent);
    if (counts.inFlight !== 0) rpcInFlight.inc(labels, counts.inFlight);
    for (const [code, n] of counts.handled) rpcHandledTotal.inc(handledLabels(labels, code), n);
  }
  pending.clear();
}

/** An RPC started: counts it and holds it in flight until rpcHandled. */
export function rpcStarted(labels: RpcLabels): void {
  const counts = pendingOf(labels);
  counts.started++;
  counts.inFlight++;
}

export function rpcMessageReceived(labels: RpcLabels): void {
  pendingOf(labels).received++;
}

export function rpcMessageSent(labels: RpcLabels): void {
  pendingOf(labels).sent++;
}

/** Counts one message a handler wrote to its stream itself (WatchSessions' direct path), past the interceptors; set per call by the RPC interceptor. */
export const COUNT_MESSAGE_SENT = createContextKey<() => void>(() => {}, { description: "sessiond count message sent" });

/** The grpc_server_handled_total labels of a method and code, made once per pair (labels objects are per method). */
const handledLabelSets = new WeakMap<RpcLabels, Map<string, RpcLabels & { readonly grpc_code: string }>>();

function handledLabels(labels: RpcLabels, code: string): RpcLabels & { readonly grpc_code: string } {
  let byCode = handledLabelSets.get(labels);
  if (byCode === undefined) {
    byCode = new Map();
    handledLabelSets.set(labels, byCode);
  }
  let set = byCode.get(code);
  if (set === undefined) {
    set = { ...labels, grpc_code: code };
    byCode.set(code, set);
  }
  return set;
}

/** An RPC completed with `code` (a GRPC_CODE_NAMES entry) after `seconds` (for streams, the stream's lifetime). */
export function rpcHandled(labels: RpcLabels, code: string, seconds: number): void {
  const counts = pendingOf(labels);
  counts.handled.set(code, (counts.handled.get(code) ?? 0) + 1);
  counts.inFlight--;
  rpcHandlingSeconds.observe(labels, seconds);
}

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

const partitionSecretRestored = new Counter({
  name: "sessiond_partition_secret_restored_total",
  help: "Times this process found the partition secret, or some partitions' copies of it, gone from Redis (Redis lost data) and wrote its own copy back",
  registers: [registry],
});

const partitionSecretSplit = new Gauge({
  name: "sessiond_partition_secret_split",
  help: "1 while the partition secret in Redis is not this process's (it refuses creating sessions and listing by user: restart it), else 0",
  registers: [registry],
});
partitionSecretSplit.set(0);

export function countPartitionSecretRestored(): void {
  partitionSecretRestored.inc();
}

export function setPartitionSecretSplit(split: boolean): void {
  partitionSecretSplit.set(split ? 1 : 0);
}

/** Reads the live session count of one tenant; may reject (store unreachable). */
export type ActiveSessionsReader = (tenant: string) => Promise<number>;

/**
 * The tenants with a sessiond_active_sessions series: the pinned ones (the
 * default tenant) and, up to `max` in all, the tenants that most recently
 * made a call on this process. The bound keeps the series count (and the
 * store reads per scrape) fixed however many tenants there are.
 */
export class TenantSet {
  private readonly recent = new Set<string>();

  constructor(
    private readonly pinned: readonly string[],
    private readonly max: number,
  ) {}

  /** A call of `tenant`: it gets (or keeps) a series, pushing out the least recently seen one when full. */
  note(tenant: string): void {
    if (this.pinned.includes(tenant)) return;
    if (this.recent.delete(tenant)) {
      this.recent.add(tenant);
      return;
    }
    if (this.pinned.length + this.recent.size >= this.max) {
      const oldest = this.recent.values().next();
      if (oldest.done === true) return;
      this.recent.delete(oldest.value);
      tenantSeriesEvicted.inc();
    }
    this.recent.add(tenant);
  }

  tenants(): string[] {
    return [...this.pinned, ...this.recent];
  }
}

const tenantSeriesEvicted = new Counter({
  name: "sessiond_active_sessions_tenants_evicted_total",
  help: "Tenants whose sessiond_active_sessions series was dropped to stay within METRICS_MAX_TENANTS (the least recently active made way)",
  registers: [registry],
});

const sessionSources = new Map<object, { readonly tenants: TenantSet; readonly read: ActiveSessionsReader }>();

new Gauge({
  name: "sessiond_active_sessions",
  help:
    "Live sessions, by tenant, from the store's counters at scrape time (absent while the store is unreachable); " +
    "DEFAULT_TENANT and up to METRICS_MAX_TENANTS tenants recently active on this process",
  labelNames: ["tenant"] as const,
  registers: [registry],
  // Every worker reads the same store counters: across workers (WORKERS > 1) the value is one worker's, not their sum.
  aggregator: "max",
  async collect() {
    // Read at scrape time from counters the store keeps on every write: no scan, and the value agrees across replicas.
    this.reset();
    const reads = [...sessionSources.values()].flatMap((s) => s.tenants.tenants().map(async (tenant) => ({ tenant, n: await s.read(tenant) })));
    const readings = await Promise.allSettled(reads);
    for (const reading of readings) {
      // An unreachable store leaves the series absent: a stale or zero value would be a lie.
      if (reading.status === "fulfilled") this.set({ tenant: reading.value.tenant }, reading.value.n);
    }
  },
});

const readerSources = new Map<object, () => boolean>();

new Gauge({
  name: "sessiond_event_reader_following",
  help:
    "1 while this process's event reader follows the event log, 0 while it is paused (no watcher and no in-process " +
    "listener for EVENT_READER_IDLE); summed across workers: how many read every write",
  registers: [registry],
  collect() {
    this.set(total(readerSources, (following) => (following() ? 1 : 0)));
  },
});

/** Makes sessiond_event_reader_following read `following` at every scrape; returns the function that stops it. */
export function addEventReaderSource(following: () => boolean): () => void {
  return registered(readerSources, following);
}

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

const rejected = new Counter({
  name: "sessiond_rejected_total",
  help: "Connections and requests refused at the edge, by kind (connection, request, stream) and reason",
  labelNames: ["kind", "reason"] as const,
  registers: [registry],
});

/** What the edge holds now; reasons are a fixed set (see the callers), never caller input. */
export interface EdgeReading {
  readonly connections: number;
  readonly longLivedStreams: number;
}

const edgeSources = new Map<object, () => EdgeReading>();

new Gauge({
  name: "sessiond_open_connections",
  help: "Connections open on this process (HTTP/1 and HTTP/2, including ones still being identified)",
  registers: [registry],
  collect() {
    this.set(total(edgeSources, (read) => read().connections));
  },
});

new Gauge({
  name: "sessiond_long_lived_streams",
  help: "Long-lived streams (Health/Watch, WatchSessions, reflection) open on this process, counted before authentication",
  registers: [registry],
  collect() {
    this.set(total(edgeSources, (read) => read().longLivedStreams));
  },
});

/** A process's read cache (src/session/read-cache.ts): its lookups so far by outcome, and the sessions it holds. */
export interface ReadCacheReading {
  readonly outcomes: Readonly<Record<"hit" | "miss" | "bypass", number>>;
  readonly size: number;
}

const readCacheSources = new Map<object, () => ReadCacheReading>();

// The cache counts its own lookups (a plain field per get); the scrape copies them here.
new Counter({
  name: "sessiond_read_cache_lookups_total",
  help: "GetSession calls by what answered: hit (a copy in this process), miss (Redis; the answer may become a copy), bypass (Redis; the event reader was not reading). Only with READ_CACHE_MAX_AGE",
  labelNames: ["outcome"],
  registers: [registry],
  collect() {
    this.reset();
    for (const outcome of ["hit", "miss", "bypass"] as const) {
      this.inc({ outcome }, total(readCacheSources, (read) => read().outcomes[outcome]));
    }
  },
});

new Gauge({
  name: "sessiond_read_cache_sessions",
  help: "Sessions this process holds a copy of (or is reading for one) for GetSession; bounded by READ_CACHE_ENTRIES",
  registers: [registry],
  collect() {
    this.set(total(readCacheSources, (read) => read().size));
  },
});

/** Makes the read cache metrics read `read` at every scrape; returns the function that stops it. */
export function addReadCacheSource(read: () => ReadCacheReading): () => void {
  return registered(readCacheSources, read);
}

/** Counts one refused connection, request or stream. `reason` must come from a fixed set of our own. */
export function countRejected(kind: "connection" | "request" | "stream", reason: string): void {
  rejected.inc({ kind, reason });
}

/** Makes the edge gauges read `read` at every scrape; returns the function that stops it. */
export function addEdgeSource(read: () => EdgeReading): () => void {
  return registered(edgeSources, read);
}
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

/** Makes the active sessions gauge read each of `tenants`' live count at every scrape; returns the function that stops it. */
export function addActiveSessionsSource(tenants: TenantSet, read: ActiveSessionsReader): () => void {
  return registered(sessionSources, { tenants, read });
}

/** Makes the watch-start gauge read `waiting` at every scrape; returns the function that stops it. */
export function addWatchStartGateSource(waiting: () => number): () => void {
  return registered(startGates, waiting);
}

/** The sum over a scrape-time source map of what `pick` reads of each source. */
function total<V>(sources: Map<object, V>, pick: (source: V) => number): number {
  let n = 0;
  for (const source of sources.values()) n += pick(source);
  return n;
}

/** Adds `value` to a scrape-time source map under a key of its own; returns the function that removes it. */
function registered<V>(sources: Map<object, V>, value: V): () => void {
  const key = {};
  sources.set(key, value);
  return () => {
    sources.delete(key);
  };
}

/** The exposition text and its content type, for the /metrics endpoint. */
export async function scrape(): Promise<{ readonly contentType: string; readonly body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
