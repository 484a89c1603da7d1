/**
 * Chooses the store from the configuration: Redis when REDIS_URL or
 * REDIS_SENTINELS or REDIS_CLUSTER_NODES is set, else the in-process
 * MemoryStore, which is for development and tests only.
 */
import type { Logger } from "pino";
import type { Config } from "../config/config.js";
import { MemoryStore } from "./memory/memory-store.js";
import { RedisStore, type RedisStoreOptions } from "./redis/redis-store.js";
import type { RedisTarget } from "./redis/connections.js";
import type { SessionStore, StoreLimits } from "./store.js";

/** The limits a store enforces itself, because they must be checked atomically with the write. */
export function storeLimits(config: Config): StoreLimits {
  return {
    maxDataKeys: config.limits.maxDataKeys,
    maxDataBytes: config.limits.maxDataBytes,
    maxSessionsPerUser: config.limits.maxSessionsPerUser,
    maxSessionsPerTenant: config.limits.maxSessionsPerTenant,
    maxDataSourcesPerTenant: config.limits.maxDataSourcesPerTenant,
    sessionsPerUserPolicy: config.limits.sessionsPerUserPolicy,
    archiveRetentionMs: config.archiveRetentionMs,
    expiryGraceMs: config.expiryGraceMs,
    eventRetentionCount: config.watchRetentionEvents,
    eventRetentionMs: config.watchRetentionMs,
  };
}

/** Where the configured Redis is; undefined: no Redis (the in-process store). */
export function redisTarget(config: Pick<Config, "redisUrl" | "redisSentinel">): RedisTarget | undefined {
  if (config.redisSentinel !== undefined) return { sentinel: config.redisSentinel };
  return config.redisUrl === undefined ? undefined : { url: config.redisUrl };
}

export interface CreateStoreHooks {
  /** Every Redis connection the store opens, with its name (app.ts counts their errors and reconnects). */
  readonly onRedisConnection?: RedisStoreOptions["onConnection"];
  /** A close under memory pressure kept a shortened archive (app.ts counts them). */
  readonly onArchiveShortened?: () => void;
}

export function createStore(config: Config, logger: Logger, hooks: CreateStoreHooks = {}): SessionStore {
  const limits = storeLimits(config);
  const target = config.redisCluster === undefined ? redisTarget(config) : { url: "" };
  if (target !== undefined) {
    return new RedisStore({
      ...target,
      ...(config.redisCluster === undefined ? {} : { cluster: config.redisCluster }),
      partitions: config.redisPartitions,
      replicaWait: { replicas: config.redisWaitReplicas, timeoutMs: config.redisWaitTimeoutMs },
      keyPrefix: config.keyPrefix,
      limits,
      commandTimeoutMs: config.redisCommandTimeoutMs,
      logger: logger.child({ component: "redis-store" }),
      ...(hooks.onRedisConnection === undefined ? {} : { onConnection: hooks.onRedisConnection }),
      ...(hooks.onArchiveShortened === undefined ? {} : { onArchiveShortened: hooks.onArchiveShortened }),
    });
  }
  // Loud on purpose: running without REDIS_URL by accident in production loses every session on restart.
  logger.warn(
    { store: "memory" },
    "REDIS_URL (or REDIS_SENTINELS) is not set: sessions are kept in this process only; nothing is persisted, data is lost on restart, and processes do not share sessions",
  );
  return new MemoryStore({ limits });
}
