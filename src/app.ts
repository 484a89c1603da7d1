/**
 * Composes the service: config → store → session manager, event hub (the
 * process's one reader of the store's event log) and expiry scheduler → Connect routes (SessionService, and grpc.health.v1.Health
 * answered from a cached store ping) → the single-port RPC server.
 *
 * main.ts runs it as a process; tests and the benchmark start it in-process on
 * port 0 and talk to it over the network like any client.
 */
import type { ContextValues } from "@connectrpc/connect";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { DestinationStream, Logger } from "pino";
import pLimit from "p-limit";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { SessionService } from "../gen/session/v1/session_pb.js";
import { sessionServiceRoutes, watchStartGate } from "./api/session-service.js";
import { guardRequestBodies, invalidProtobuf } from "./api/request-body-check.js";
import { PEER } from "./auth/principal.js";
import { createArchive, sinkServing, type Archive } from "./archive/archive.js";
import { setUpSecurity } from "./auth/security.js";
import { ConfigError, type Config } from "./config/config.js";
import { HealthMonitor, type HealthComponent } from "./health/health-monitor.js";
import { healthServiceRoutes } from "./health/health-service.js";
import { createLogger } from "./logging/logger.js";
import { buildInfo } from "./observability/build-info.js";
import {
  addActiveSessionsSource,
  addWatchStartGateSource,
  addReadCacheSource,
  addEventReaderSource,
  archiveMetrics,
  countArchiveShortened,
  countDataLoss,
  instrumentRedis,
  observeExpiryLag,
  scrape,
  setBuildInfo,
  setStoreProblems,
  TenantSet,
  trackWatcher,
} from "./observability/metrics.js";
import { reflectionServiceRoutes } from "./reflection/reflection-service.js";
import { startRpcServer } from "./server/rpc-server.js";
import { sessionRequestDecoders } from "./api/session-decoding.js";
import { sessionResponseEncoders } from "./api/session-encoding.js";
import { ExpiryScheduler } from "./session/expiry-scheduler.js";
import { SessionManager } from "./session/session-manager.js";
import { ReadCache } from "./session/read-cache.js";
import { assertRedisReachable } from "./startup/redis-reachable.js";
import { StartError } from "./startup/start-error.js";
import { createStore, redisTarget } from "./store/create-store.js";
import { describeTarget, redisClient } from "./store/redis/connections.js";
import type { RedisOptions } from "ioredis";
import { SealedNames } from "./store/sealed-names.js";
import { openSealedStore } from "./store/sealed-store.js";
import { PartitionSecretSplit } from "./store/partition-secret-keeper.js";
import type { ServerSettingsKeeper, SessionStore, StoredEvent } from "./store/store.js";
import { EventHub } from "./streaming/event-hub.js";

/** The reflection services reflectionServiceRoutes serves (the gate judges their paths too). */
const REFLECTION_SERVICES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/**
 * How often the health monitor pings the store. Probes read the cached status,
 * so this bounds how stale a probe's answer can be, not how often Redis is hit per probe.
 */
const HEALTH_INTERVAL_MS = 1000;

/** The grpc.health.v1 name under which the archive sink reports (not part of the overall status). */
export const ARCHIVE_HEALTH_SERVICE = "sessiond.archive";

export interface AppOptions {
  /** Default: a pino logger on stdout at config.logLevel. */
  readonly logger?: Logger;
  /** Audit records go here instead of where config.auditLog says (tests read them in-process). */
  readonly auditDestination?: DestinationStream;
  /** Serves /metrics; default: this process's registry (a cluster worker passes one that gathers every worker's). */
  readonly metrics?: () => Promise<{ readonly contentType: string; readonly body: string }>;
  /**
   * Whether the expiry scheduler wakes early for a session due before its
   * planned wake-up (default true; ExpiryScheduler wakesEarly). Of a host's
   * workers one does (cluster/worker.ts).
   */
  readonly expiryWakesEarly?: boolean;
}

export interface App {
  /** Base URL for clients, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  readonly port: number;
  readonly store: SessionStore;
  readonly manager: SessionManager;
  /** The event log reader watch streams subscribe to. */
  readonly events: EventHub;
  /** The durable archive, when ARCHIVE_DATABASE_URL is set. */
  readonly archive: Archive | undefined;
  /** Turns readiness NOT_SERVING, keeps serving for SHUTDOWN_DELAY, then stops health checks, the expiry scheduler and the event reader (watch streams end with UNAVAILABLE and their cursor), drains and closes the server, then disposes of the store. Idempotent. */
  close(): Promise<void>;
}

export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger({ level: config.logLevel, format: config.logFormat });
  setBuildInfo(buildInfo());
  // Before anything holds a connection: an unreadable certificate fails the start cleanly.
  const tls = await readTls(config);
  // Refuses insecure configurations (ConfigError) before anything holds a connection.
  const services = [SessionService.typeName, Health.typeName, ...REFLECTION_SERVICES];
  const security = setUpSecurity(config, logger, { services, ...(options.auditDestination === undefined ? {} : { auditDestination: options.auditDestination }) });
  // A wrong address or password fails the start here, naming the address and the cause.
  const redis = redisTarget(config);
  if (redis !== undefined) {
    const endpoint = {
      open: (options: RedisOptions) => redisClient(redis, options),
      address: describeTarget(redis),
      setting: redis.sentinel === undefined ? "REDIS_URL" : "REDIS_SENTINELS",
    };
    await assertRedisReachable(endpoint, Math.max(config.redisCommandTimeoutMs, 1000)).catch((error: unknown) => {
      security.close();
      throw error;
    });
  }
  // Every connection the store opens counts its errors and reconnects on /metrics (the store knows nothing of metrics).
  // With encryption on, identifiers reach the store only as keyed HMACs (sealed-store.ts); a partitioned
  // layout's partition secret is opened here, before anything uses the store (a StartError when it cannot be).
  const innerStore = createStore(config, logger, {
    onRedisConnection: (client, name) => void instrumentRedis(client, name),
    onArchiveShortened: countArchiveShortened,
  });
  const secretSplit = new PartitionSecretSplit();
  const store = await openSealedStore(innerStore, security.cipher, logger.child({ component: "sessions" }), { split: secretSplit }).catch(async (error: unknown) => {
    await innerStore.dispose();
    security.close();
    throw error;
  });
  await refuseEvictingRedis(store, config, logger).catch(async (error: unknown) => {
    await store.dispose();
    throw error;
  });
  const sealedNames = new SealedNames(security.cipher);
  // Config guarantees Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES) with ARCHIVE_DATABASE_URL: the sink reads the Redis event log.
  const archive =
    config.archiveDatabase === undefined || (redis === undefined && config.redisCluster === undefined)
      ? undefined
      : createArchive({
          database: config.archiveDatabase,
          redis: redis ?? { url: "" },
          ...(config.redisCluster === undefined ? {} : { redisCluster: { ...config.redisCluster, partitions: config.redisPartitions } }),
          keyPrefix: config.keyPrefix,
          redisCommandTimeoutMs: config.redisCommandTimeoutMs,
          logger: logger.child({ component: "archive" }),
          observer: archiveMetrics,
          onRedisConnection: (client) => void instrumentRedis(client, "archive"),
          ...(security.cipher.encrypts ? { openEvent: (event: StoredEvent) => sealedNames.event(event) } : {}),
        });
  // Copies for GetSession (READ_CACHE_MAX_AGE): they answer only once they follow the event reader (below).
  const readCache = config.readCache.maxAgeMs > 0 ? new ReadCache({ maxAgeMs: config.readCache.maxAgeMs, entries: config.readCache.entries }) : undefined;
  const manager = new SessionManager({
    ...(archive === undefined ? {} : { endedArchive: archive.database }),
    ...(readCache === undefined ? {} : { readCache }),
    store,
    config,
    logger: logger.child({ component: "sessions" }),
    cipher: security.cipher,
    onSystemEnd: (reason, record, at) => {
      security.onSystemEnd(reason, record);
      // Expiry lag: from expire_time to the moment this process archived the session and wrote its EXPIRED event.
      if (reason === "expired") observeExpiryLag(at - record.expireTime);
    },
  });
  // Each admitted WatchSessions stream counts on the active watchers gauge until the handler's finally releases it.
  const admitWatch = (context: Parameters<typeof security.admitWatch>[0]): (() => void) => {
    const release = security.admitWatch(context);
    const untrack = trackWatcher();
    return () => {
      untrack();
      release();
    };
  };
  // Starting watches read the store a few at a time; the gauge shows how many wait (a reconnect storm).
  const startReads = pLimit(config.watchStartConcurrency);
  const stopStartGauge = addWatchStartGateSource(() => startReads.pendingCount);
  const background = createBackground(store, config, logger, { expiryWakesEarly: options.expiryWakesEarly ?? true });
  const stopReaderGauge = addEventReaderSource(() => background.events.running && !background.events.paused);
  const metricTenants = new TenantSet([config.defaultTenant], config.metricsMaxTenants);
  const sessionRoutes = sessionServiceRoutes(manager, {
    config,
    logger: logger.child({ component: "session-manager" }),
    events: background.events,
    // Each call's tenant may get an active-sessions series (bounded by METRICS_MAX_TENANTS).
    tenant: (context) => {
      const tenant = security.tenant(context);
      metricTenants.note(tenant);
      return tenant;
    },
    actingUser: security.actingUser,
    admitWatch,
    watchQueueLimit: config.watchQueueLimit,
    watchStartGate: watchStartGate(startReads),
  });
  const events = background.events;
  readCache?.follow(events);
  const stopReadCacheMetrics = readCache === undefined ? undefined : addReadCacheSource(() => readCache);
  // Data loss is announced: watchers end with OUT_OF_RANGE (event-hub.ts); here it is audited and counted.
  const stopResetWatch = events.onReset(() => {
    countDataLoss();
    security.audit.record({ principal: "system", operation: "data_loss", outcome: "ok" });
  });
  const components = new Map<string, HealthComponent>();
  if (archive !== undefined) {
    components.set(ARCHIVE_HEALTH_SERVICE, { serving: () => sinkServing(archive.sink.state), subscribe: (listener) => archive.sink.onState(listener) });
  }
  const health = new HealthMonitor({
    store,
    components,
    // While the event reader is not reading, watchers hear nothing: not ready.
    conditions: [
      { reason: "event reader not reading", ok: () => events.reading || !events.running, watch: (listener) => events.watchReading(listener) },
      // A process whose partition secret is not Redis's refuses placing users: it must be restarted (partition-secret-keeper.ts).
      { reason: "partition secret differs from redis's: restart", ok: () => !secretSplit.split, watch: (listener) => secretSplit.watch(listener) },
    ],
    acceptedProblems: config.allowRedisEviction ? ["eviction_policy"] : [],
    onProblems: (found) => setStoreProblems(found.problems),
    intervalMs: HEALTH_INTERVAL_MS,
    timeoutMs: config.redisCommandTimeoutMs,
    logger: logger.child({ component: "health" }),
    problem: () => background.events.stalled,
  });
  const healthRoutes = healthServiceRoutes(health);
  // Every service the router serves, so grpcurl can list and describe them (the reflection services add themselves).
  const reflectionRoutes = reflectionServiceRoutes([SessionService, Health]);
  let shuttingDown = false;

  // The event reader, the store's server settings and the expiry scheduler.
  await background.start().catch(async (error: unknown) => {
    await archive?.stop();
    await store.dispose();
    throw error;
  });
  // In the background: an unreachable archive database delays archiving, never the start.
  archive?.start();
  // Known status before the first probe can arrive (settles, never rejects, within the ping timeout).
  await health.start();
  const reportMalformed = (method: string, values: ContextValues | undefined, reason: "malformed_body" | "too_large" = "malformed_body"): void =>
    security.rejections.report({
      kind: "request",
      reason,
      outcome: reason === "too_large" ? "resource_exhausted" : "invalid_argument",
      method,
      peer: values?.get(PEER).address,
    });
  const server = await startRpcServer({
    routes: (router) => {
      sessionRoutes(router);
      healthRoutes(router);
      reflectionRoutes(router);
      // Bad bytes: INVALID_ARGUMENT with our message, before connect's parser can answer INTERNAL with its own.
      guardRequestBodies(router, {
        readMaxBytes: config.limits.maxRequestBytes,
        onMalformed: (method, request, reason) => reportMalformed(method, request.contextValues, reason),
      });
    },
    // The fast gRPC unary path decodes its own bodies: the same message and the same count.
    malformedBody: { error: invalidProtobuf, report: reportMalformed },
    // ... and writes the session responses with their own encoder (the same bytes as toBinary).
    responseEncoders: sessionResponseEncoders(),
    requestDecoders: sessionRequestDecoders(),
    config,
    logger,
    httpEndpoints: {
      notReadyReason: () => {
        if (shuttingDown) return "shutting down";
        if (health.status("") === HealthCheckResponse_ServingStatus.SERVING) return undefined;
        return health.notServingReason() ?? background.events.stalled ?? "store unreachable";
      },
      metrics: options.metrics ?? scrape,
      ...(security.authorizeMetrics === undefined ? {} : { authorizeMetrics: security.authorizeMetrics }),
      onError: (error) => logger.error({ error: describeError(error) }, "metrics scrape failed"),
    },
    ...(tls === undefined ? {} : { tls }),
    interceptors: security.interceptors,
    contextValues: security.contextValues,
    gate: security.gate,
    rejections: security.rejections,
    openStreams: () => security.streams.open,
    drainTimeoutMs: drainTimeoutMs(config.shutdownTimeoutMs),
  }).catch(async (error: unknown) => {
    // Nothing else holds the store yet: release it so the process can exit.
    health.stop();
    await background.stop();
    await archive?.stop();
    await store.dispose();
    throw error;
  });
  const stopSessionsGauge = addActiveSessionsSource(metricTenants, async (tenant) => (await store.counters(tenant)).active);

  let closed: Promise<void> | undefined;
  return {
    url: server.url,
    port: server.port,
    store,
    manager,
    events: background.events,
    archive,
    close(): Promise<void> {
      closed ??= (async () => {
        // NOT_SERVING first (health and /readyz), so health watchers move away before the port closes.
        shuttingDown = true;
        stopSessionsGauge();
        stopResetWatch();
        stopStartGauge();
        stopReaderGauge();
        stopReadCacheMetrics?.();
        readCache?.close();
        health.stop();
        // The port keeps serving while load balancers and Kubernetes endpoints take this replica out
        // (they follow readiness, which says NOT_SERVING from here on); only then GOAWAY and drain.
        if (config.shutdownDelayMs > 0) await sleep(config.shutdownDelayMs);
        // No new connections or calls from here on; calls in flight go on (bounded by SHUTDOWN_TIMEOUT).
        server.stopAccepting();
        await background.stop();
        // Streams still open end with UNAVAILABLE; waits for the unary calls in flight.
        await server.close();
        // The batch in hand is written and acknowledged, or left pending for another replica.
        await archive?.stop();
        await store.dispose();
        security.close();
      })();
      return closed;
    },
  };
}

export interface BackgroundOptions {
  /** Most sessions one expireDue call archives (default 100). */
  readonly sweepBatchSize?: number;
  /** Whether the scheduler wakes early for a session due sooner (default true; see AppOptions). */
  readonly expiryWakesEarly?: boolean;
}

/** The process's event hub and expiry scheduler (and the store's server settings), started and stopped together. */
export interface Background {
  readonly events: EventHub;
  /**
   * Starts the event reader, then keeps the store's server settings applied
   * (SessionStore.keepServerSettings), then starts the scheduler. Rejects when
   * the event reader cannot start; nothing is left running then.
   */
  start(): Promise<void>;
  /** Stops the scheduler, then the event reader (watch streams end with UNAVAILABLE and their cursor). Does not dispose of the store. */
  stop(): Promise<void>;
}

const DEFAULT_SWEEP_BATCH = 100;

export function createBackground(store: SessionStore, config: Config, logger: Logger, options: BackgroundOptions = {}): Background {
  const events = new EventHub({ store, logger: logger.child({ component: "event-hub" }), idleMs: config.eventReaderIdleMs });
  const scheduler = new ExpiryScheduler({
    store,
    wakesEarly: options.expiryWakesEarly ?? true,
    maxSleepMs: config.sweepIntervalMs,
    batchSize: options.sweepBatchSize ?? DEFAULT_SWEEP_BATCH,
    logger: logger.child({ component: "expiry-scheduler" }),
  });
  let settings: ServerSettingsKeeper | undefined;
  return {
    events,
    async start() {
      await events.start();
      try {
        settings = await store.keepServerSettings?.();
        await scheduler.start();
      } catch (error) {
        await settings?.stop();
        await events.stop();
        throw error;
      }
    },
    async stop() {
      await scheduler.stop();
      await settings?.stop();
      settings = undefined;
      await events.stop();
    },
  };
}

/**
 * Refuses to start on a Redis whose maxmemory-policy may evict keys, unless
 * ALLOW_REDIS_EVICTION accepts it (then warns). Eviction deletes records
 * without their index entries, due-queue members and events: sessions vanish
 * with no EXPIRED event or archive, and counters drift. A Redis that cannot be
 * reached at start is checked by the health monitor once it answers.
 */
async function refuseEvictingRedis(store: SessionStore, config: Config, logger: Logger): Promise<void> {
  if (store.problems === undefined) return;
  let found;
  try {
    found = await store.problems();
  } catch {
    logger.warn("redis unreachable at start: its maxmemory-policy is checked once it answers");
    return;
  }
  if (!found.problems.includes("eviction_policy")) return;
  const policy = found.evictionPolicy ?? "unknown";
  if (!config.allowRedisEviction) {
    throw new ConfigError(
      `REDIS_URL: redis maxmemory-policy is ${policy}; it can delete sessions, their indexes and events without notice. ` +
        "Set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf), or accept the risk with ALLOW_REDIS_EVICTION=true",
    );
  }
  logger.warn({ evictionPolicy: policy }, "redis maxmemory-policy may evict keys; accepted by ALLOW_REDIS_EVICTION=true");
}

/**
 * How long in-flight calls may run on after close() starts: the shutdown
 * bound less a reserve for closing the store and flushing logs, so the
 * process still exits within SHUTDOWN_TIMEOUT when a call hangs.
 */
export function drainTimeoutMs(shutdownTimeoutMs: number): number {
  return shutdownTimeoutMs - Math.min(1000, Math.round(shutdownTimeoutMs / 5));
}

/** Reads the TLS files named by the configuration; a file that cannot be read fails the start, naming the setting. */
async function readTls(config: Config): Promise<{ cert: Buffer; key: Buffer; ca?: Buffer } | undefined> {
  if (config.tls === undefined) return undefined;
  const read = async (setting: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
      throw new StartError(`${setting}=${JSON.stringify(path)} cannot be read (${code})`);
    }
  };
  const cert = await read("TLS_CERT_FILE", config.tls.certFile);
  const key = await read("TLS_KEY_FILE", config.tls.keyFile);
  // Mutual TLS: client certificates are verified against this CA (config requires TLS_CERT_FILE with it).
  const caFile = config.auth.clientCaFile;
  return caFile === undefined ? { cert, key } : { cert, key, ca: await read("TLS_CLIENT_CA_FILE", caFile) };
}

/** Class and message of a failure of our own code (collectors), for the log. */
function describeError(error: unknown): { type: string; message?: string } {
  return error instanceof Error ? { type: error.constructor.name, message: error.message } : { type: typeof error };
}
