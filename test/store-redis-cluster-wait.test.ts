/**
 * REDIS_WAIT_REPLICAS on a real Redis Cluster (3 primaries with a replica
 * each, one cluster for the file): WAIT goes to the primary that owns the
 * partition's slot, so a primary whose replica stopped acknowledging fails
 * its partitions' writes with UNAVAILABLE (NOT_REPLICATED_MESSAGE) while the
 * other partitions' writes succeed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionError } from "../src/domain/errors.js";
import { generationKey, keySlot, Partitioning } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { NOT_REPLICATED_MESSAGE } from "../src/store/redis/replica-wait.js";
import { useRedisCluster, type ClusterNode } from "./support/redis-cluster.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 1, nodeTimeoutMs: 5000 });
const PARTITIONS = 16;
const TENANT = "t-wait";
const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };

function openStore(prefix: string): RedisStore {
  const nodes = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  return new RedisStore({
    url: "",
    cluster: { nodes },
    keyPrefix: prefix,
    partitions: PARTITIONS,
    limits: LIMITS,
    // Generous bounds: the machine is shared and busy; a paused replica never answers, whatever the bound.
    commandTimeoutMs: 5000,
    replicaWait: { replicas: 1, timeoutMs: 1000 },
  });
}

/** A user id of each partition (the user decides the partition). */
function usersByPartition(): string[] {
  const partitioning = new Partitioning(PARTITIONS);
  const users: string[] = [];
  for (let i = 0; users.filter((u) => u !== undefined).length < PARTITIONS; i++) {
    const user = `user-${i}`;
    const p = partitioning.ofUser(TENANT, user);
    users[p] ??= user;
  }
  return users;
}

function create(store: RedisStore, userId: string, requestId = ""): ReturnType<RedisStore["create"]> {
  return store.create({ tenant: TENANT, userId, dataSource: "ds", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId });
}

async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (error) {
    if (error instanceof SessionError && error.kind === "unavailable" && error.message === NOT_REPLICATED_MESSAGE) return "not-replicated";
    return `other: ${error instanceof SessionError ? `${error.kind} ${error.message}` : String(error)}`;
  }
}

describe("REDIS_WAIT_REPLICAS on a Redis Cluster", () => {
  it("confirms writes on every partition's own primary, and fails only the partitions whose replica does not acknowledge", async () => {
    const prefix = "wait1:";
    const store = openStore(prefix);
    const users = usersByPartition();
    const partitioning = new Partitioning(PARTITIONS);
    let paused: ClusterNode | undefined;
    await cluster().waitReplicasOnline(1);
    try {
      // Replicas up: a create and an update in every partition succeed with WAIT 1.
      for (const user of users) {
        const { session } = await create(store, user);
        await store.update(TENANT, session.sessionId, { metadata: '{"a":1}' });
      }
      // A create replayed by its request id (it writes nothing itself) is confirmed too.
      const first = await create(store, users[0] as string, "req-1");
      const replay = await create(store, users[0] as string, "req-1");
      assert.equal(replay.created, false);
      assert.equal(replay.session.sessionId, first.session.sessionId);

      // Which primary owns each partition, and the replica of one of them.
      const owners: number[] = [];
      for (let p = 0; p < PARTITIONS; p++) owners.push((await cluster().primaryOf(keySlot(generationKey(prefix, partitioning.tags[p])))).port);
      const victim = cluster().nodes.find((n) => n.port === owners[0]) as ClusterNode;
      const [replica] = await cluster().replicasOf(victim);
      assert.ok(replica !== undefined, "the primary has a replica");
      paused = replica;
      replica.pause();

      const results = await Promise.all(users.map((user) => outcome(create(store, user))));
      for (let p = 0; p < PARTITIONS; p++) {
        const expected = owners[p] === victim.port ? "not-replicated" : "ok";
        assert.equal(results[p], expected, `partition ${p} (primary ${owners[p]}, paused replica of ${victim.port})`);
      }
      // The replay of a request id in a partition whose replica is paused cannot be confirmed either.
      assert.equal(await outcome(create(store, users[0] as string, "req-1")), "not-replicated");

      replica.resume();
      paused = undefined;
      // Once the replica acknowledges again, the partition's writes succeed by themselves.
      const deadline = Date.now() + 30_000;
      let last = "";
      while (Date.now() < deadline) {
        last = await outcome(create(store, users[0] as string));
        if (last === "ok") break;
        await sleep(200);
      }
      assert.equal(last, "ok");
    } finally {
      paused?.resume();
      store.dispose();
    }
  });
});
