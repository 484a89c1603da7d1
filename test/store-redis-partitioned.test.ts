/**
 * RedisStore with a partitioned key layout (keys.ts, REDIS_PARTITIONS > 1) on
 * one redis-server: the shared conformance suite, so the partition routing,
 * the merged listings, counters and event log are checked without a cluster
 * (test/store-redis-cluster.test.ts runs them on one).
 */
import { RedisStore } from "../src/store/redis/redis-store.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisServer } from "./support/redis-server.js";

const server = useRedisServer();

const openFlushed = async (): Promise<{ store: RedisStore; cleanup: () => Promise<void> }> => {
  await server.raw.flushall();
  const store = new RedisStore({ url: server.url, keyPrefix: "sdpart:", partitions: 5, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 2000 });
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("redis, 5 partitions", openFlushed, { requestIdScope: "user" });
runGuardConformance("redis, 5 partitions", openFlushed);
