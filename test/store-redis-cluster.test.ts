/**
 * RedisStore on a real Redis Cluster (3 primaries, 1 replica each, started on
 * loopback by the test, see support/redis-cluster.ts): the whole store
 * conformance suite on the partitioned layout (keys.ts).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
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
runStoreConformance("redis cluster, 16 partitions", openFlushed);
runGuardConformance("redis cluster, 16 partitions", openFlushed);

describe("RedisStore on a Redis Cluster: readiness", () => {
  it("reads the memory state of every primary, and names an evicting one", async () => {
    const { store, cleanup } = await openFlushed();
    const primary = cluster().nodes[0];
    assert.ok(primary !== undefined);
    const raw = cluster().client(primary);
    try {
      assert.deepEqual(await store.problems(), { problems: [], evictionPolicy: "noeviction" });
      // redis-cli --cluster create makes the first nodes given the primaries.
      assert.equal(((await raw.call("ROLE")) as unknown[])[0], "master");
      await raw.config("SET", "maxmemory-policy", "allkeys-lru");
      assert.deepEqual(await store.problems(), { problems: ["eviction_policy"], evictionPolicy: "allkeys-lru" });
    } finally {
      await raw.config("SET", "maxmemory-policy", "noeviction");
      raw.disconnect();
      await cleanup();
    }
  });
});

describe("RedisStore on a Redis Cluster: the script library", () => {
  it("a primary without the library (never loaded there, or flushed) serves its partitions once the store loads it again", async () => {
    const { store, cleanup } = await openFlushed();
    const primaries = await cluster().primaries();
    const libraries = async (): Promise<number[]> =>
      Promise.all(
        primaries.map(async (node) => {
          const client = cluster().client(node);
          try {
            return ((await client.call("FUNCTION", "LIST", "LIBRARYNAME", "sessiond_*")) as unknown[]).length;
          } finally {
            client.disconnect();
          }
        }),
      );
    const createFor40 = (round: number): Promise<unknown[]> =>
      Promise.all(Array.from({ length: 40 }, (_, i) => store.create({ tenant: "lib", userId: `u-${round}-${i}`, dataSource: "ds", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" })));
    try {
      await createFor40(0);
      for (const node of primaries) {
        const client = cluster().client(node);
        try {
          await client.call("FUNCTION", "FLUSH");
        } finally {
          client.disconnect();
        }
      }
      assert.deepEqual(await libraries(), primaries.map(() => 0), "no primary has the library");
      await createFor40(1);
      assert.equal((await store.list("lib", {}, 100)).sessions.length, 80, "every partition answered");
      assert.deepEqual(await libraries(), primaries.map(() => 1), "every primary has it again");
    } finally {
      await cleanup();
    }
  });
});
