/**
 * RedisStore on a real Redis Cluster (3 primaries, 1 replica each, started on
 * loopback by the test, see support/redis-cluster.ts): the whole store
 * conformance suite on the partitioned layout (keys.ts).
 */
import { Cluster } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 1 });

function seeds(): { host: string; port: number }[] {
  return cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
}

/** FLUSHALL on every primary: each test starts from an empty cluster. */
async function flushAll(): Promise<void> {
  const raw = new Cluster(seeds(), { redisOptions: { maxRetriesPerRequest: 1 } });
  raw.on("error", () => {});
  try {
    await raw.ping();
    await Promise.all(raw.nodes("master").map((node) => node.flushall()));
  } finally {
    raw.disconnect();
  }
}

const openFlushed = async (): Promise<{ store: RedisStore; cleanup: () => Promise<void> }> => {
  await flushAll();
  const store = new RedisStore({ url: "", cluster: { nodes: seeds() }, keyPrefix: "sdc:", partitions: 16, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 3000 });
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("redis cluster, 16 partitions", openFlushed, { requestIdScope: "user" });
runGuardConformance("redis cluster, 16 partitions", openFlushed);
