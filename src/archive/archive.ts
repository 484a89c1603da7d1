/**
 * Composes the durable archive (ARCHIVE_DATABASE_URL): the PostgreSQL archive
 * (read back by the session layer), the sink that fills it from the event log
 * through a Redis consumer group, and the retention purge.
 */
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Cluster, Redis } from "ioredis";
import type { Logger } from "pino";
import type { ArchiveDatabaseConfig } from "../config/config.js";
import { ArchiveRetention } from "./archive-retention.js";
import { ArchiveSink, type ArchiveSinkObserver, type ArchiveSinkState } from "./archive-sink.js";
import { PgArchive } from "./pg-archive.js";
import { RedisEventGroup, type RedisEventGroupOptions } from "./redis-event-group.js";
import { PartitionedEventGroup } from "./partitioned-event-group.js";
import type { RedisClusterTarget, RedisTarget } from "../store/redis/connections.js";

/**
 * Longest wait at shutdown for the batch in hand (one read's block, one
 * INSERT): past it the batch stays pending and another replica takes it over,
 * so a hung database cannot hold the process past SHUTDOWN_TIMEOUT.
 */
const STOP_WAIT_MS = 3000;

/** The consumer group of the event log that archive sinks of every replica share. */
export const ARCHIVE_GROUP = "archive";

export interface ArchiveOptions {
  readonly database: ArchiveDatabaseConfig;
  readonly redis: RedisTarget;
  /** A Redis Cluster with its partition count (REDIS_CLUSTER_NODES), instead of `redis`: one consumer group per partition's log. */
  readonly redisCluster?: RedisClusterTarget & { readonly partitions: number };
  readonly keyPrefix: string;
  readonly redisCommandTimeoutMs: number;
  readonly logger: Logger;
  /** This process's consumer name in the group (default: host name and process id). */
  readonly consumer?: string;
  readonly observer?: ArchiveSinkObserver & { deleted(rows: number): void };
  readonly onRedisConnection?: (client: Redis | Cluster) => void;
  /** See RedisEventGroupOptions.openEvent. */
  readonly openEvent?: RedisEventGroupOptions["openEvent"];
}

export interface Archive {
  readonly database: PgArchive;
  readonly sink: ArchiveSink;
  readonly retention: ArchiveRetention;
  /** Starts the sink and the retention purge in the background. */
  start(): void;
  /** Stops them (the sink finishes or leaves pending its batch), then closes the database pool. */
  stop(): Promise<void>;
}

export function createArchive(options: ArchiveOptions): Archive {
  const { database: config, logger } = options;
  const database = new PgArchive({
    url: config.url,
    ...(config.password === undefined ? {} : { password: config.password }),
    poolSize: config.poolSize,
    timeoutMs: config.timeoutMs,
    logger: logger.child({ component: "archive-database" }),
  });
  const blockMs = 1000;
  const consumer = options.consumer ?? `${hostname()}-${process.pid}`;
  const cluster = options.redisCluster;
  const group =
    cluster !== undefined
      ? new PartitionedEventGroup({
          cluster,
          partitions: cluster.partitions,
          keyPrefix: options.keyPrefix,
          group: ARCHIVE_GROUP,
          consumer,
          commandTimeoutMs: options.redisCommandTimeoutMs,
          logger,
          ...(options.onRedisConnection === undefined ? {} : { onConnection: options.onRedisConnection }),
          ...(options.openEvent === undefined ? {} : { openEvent: options.openEvent }),
        })
      : new RedisEventGroup({
          target: options.redis,
          keyPrefix: options.keyPrefix,
          group: ARCHIVE_GROUP,
          consumer,
          commandTimeoutMs: options.redisCommandTimeoutMs,
          maxBlockMs: blockMs,
          logger,
          ...(options.onRedisConnection === undefined ? {} : { onConnection: options.onRedisConnection }),
          ...(options.openEvent === undefined ? {} : { openEvent: options.openEvent }),
        });
  const sink = new ArchiveSink({
    group,
    archive: database,
    batchSize: config.batchSize,
    claimIdleMs: config.claimIdleMs,
    blockMs,
    logger: logger.child({ component: "archive-sink" }),
    ...(options.observer === undefined ? {} : { observer: options.observer }),
  });
  const observer = options.observer;
  const retention = new ArchiveRetention({
    archive: database,
    retentionMs: config.retentionMs,
    logger: logger.child({ component: "archive-retention" }),
    ...(observer === undefined ? {} : { onDeleted: (rows: number) => observer.deleted(rows) }),
  });
  let stopped: Promise<void> | undefined;
  return {
    database,
    sink,
    retention,
    start() {
      sink.start();
      // The purge needs the table the sink's migration creates.
      void sink.schemaReady.then(() => retention.start());
    },
    stop() {
      stopped ??= (async () => {
        const stopping = Promise.all([sink.stop(), retention.stop()]);
        const timer = new AbortController();
        const done = await Promise.race([stopping.then(() => true), sleep(STOP_WAIT_MS, false, { signal: timer.signal }).catch(() => false)]);
        timer.abort();
        // A statement still running keeps its connection; the pool is ended only when nothing is in flight.
        if (done) await database.close();
        else logger.warn("archive sink: the batch in hand did not finish in time at shutdown; it stays pending for another replica");
      })();
      return stopped;
    },
  };
}

/** Whether the sink state means archiving works now (the health detail). */
export function sinkServing(state: ArchiveSinkState): boolean {
  return state === "running";
}
