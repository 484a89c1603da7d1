/**
 * The partition secret (src/store/partition-secret.ts) across a total Redis
 * data loss while a store keeps running (src/store/partition-secret-keeper.ts),
 * on a real 3-primary Redis Cluster and on one redis-server with a partitioned
 * layout: the running store writes its secret back, so a store started after
 * the loss places every user where the running one does (listing by user from
 * either sees the sessions both made since). When another process made a new
 * secret before the running one restored its own (a split), the running one
 * refuses what places users, reports the split (gauge, an event, a log line
 * naming the key and never a value) and leaves Redis's secret alone. Copies
 * lost from other partitions alone are written back by the running store too.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { Cluster, type Redis } from "ioredis";
import { pino } from "pino";
import { KeyedFieldCipher } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { registry } from "../src/observability/metrics.js";
import { sealNew } from "../src/store/partition-secret.js";
import { PartitionSecretSplit } from "../src/store/partition-secret-keeper.js";
import { Partitioning, partitionSecretKey } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { openSealedStore } from "../src/store/sealed-store.js";
import type { SessionStore } from "../src/store/store.js";
import { assertRejectsKind, CONFORMANCE_LIMITS } from "./conformance/store-conformance.js";
import { useRedisCluster, type ClusterNode } from "./support/redis-cluster.js";
import { useRedisServer } from "./support/redis-server.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 0 });
const server = useRedisServer();
const PARTITIONS = 16;
const TENANT = "acme";
/** Enough users to land in most partitions, so on every primary. */
const USERS = Array.from({ length: 12 }, (_, i) => `user-${i}@example.com`);
const cipher = new KeyedFieldCipher(parseKeyring(`k1:${Buffer.alloc(32, 7).toString("base64")}`));
/** Short, so the test waits little; what is tested is that the check happens, not how often. */
const CHECK_MS = 100;
/** Generous: a loaded machine runs the checks late. */
const WAIT_MS = 30_000;

interface Layout {
  name: string;
  prefix: string;
  open: (prefix: string) => RedisStore;
  raw: () => Redis | Cluster;
  flushAll: () => Promise<void>;
  /** Flushes everything, and sets `key` in the same transaction as the flush of its primary. */
  flushAllSetting: (key: string, value: string) => Promise<void>;
}

const clusterNodes = (): { host: string; port: number }[] => cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
let clusterClient: Cluster | undefined;

const LAYOUTS: Layout[] = [
  {
    name: "a 3-primary Redis Cluster",
    prefix: "sdcl:",
    open: (prefix) => new RedisStore({ url: "", cluster: { nodes: clusterNodes() }, keyPrefix: prefix, partitions: PARTITIONS, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 5000 }),
    raw: () => (clusterClient ??= new Cluster(clusterNodes())),
    flushAll: () => flushPrimaries(),
    flushAllSetting: (key, value) => flushPrimaries(key, value),
  },
  {
    name: "one redis-server (the primary of a single or Sentinel setup)",
    prefix: "sdsg:",
    open: (prefix) => new RedisStore({ url: server.url, keyPrefix: prefix, partitions: PARTITIONS, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 5000 }),
    raw: () => server.raw,
    flushAll: async () => {
      await server.raw.flushall();
    },
    flushAllSetting: async (key, value) => {
      await server.raw.multi().flushall().set(key, value).exec();
    },
  },
];

/** FLUSHALL on every primary of the cluster; with `key`, its primary also sets it in the flush's transaction. */
async function flushPrimaries(key?: string, value = ""): Promise<void> {
  const primaries = await cluster().primaries();
  const owner = key === undefined ? undefined : (await cluster().primaryOf(await slotOf(primaries[0], key))).port;
  for (const node of primaries) {
    const client = cluster().client(node);
    try {
      if (node.port === owner && key !== undefined) await client.multi().flushall().set(key, value).exec();
      else await client.flushall();
    } finally {
      client.disconnect();
    }
  }
}

/** The key's hash slot, as Redis computes it (hash tags included). */
async function slotOf(node: ClusterNode | undefined, key: string): Promise<number> {
  assert.ok(node !== undefined);
  const client = cluster().client(node);
  try {
    return Number(await client.call("CLUSTER", "KEYSLOT", key));
  } finally {
    client.disconnect();
  }
}

/** A store as the service opens it, with its log lines collected. */
async function open(layout: Layout, split = new PartitionSecretSplit()): Promise<{ store: SessionStore; split: PartitionSecretSplit; logs: string[] }> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  const inner = layout.open(layout.prefix);
  try {
    return { store: await openSealedStore(inner, cipher, pino(sink), { checkIntervalMs: CHECK_MS, split }), split, logs };
  } catch (error) {
    await inner.dispose();
    throw error;
  }
}

const create = async (store: SessionStore, userId: string): Promise<string> =>
  (await store.create({ tenant: TENANT, userId, dataSource: "d", accessLevel: "read", ttlMs: 600_000, metadata: "{}", requestId: "" })).session.sessionId;

const listed = async (store: SessionStore, userId: string): Promise<Set<string>> => new Set((await store.list(TENANT, { userId }, 100)).sessions.map((s) => s.sessionId));

const secretKeys = (prefix: string): string[] => new Partitioning(PARTITIONS).tags.map((tag) => partitionSecretKey(prefix, tag));

/** Resolves once `holds` does, read every CHECK_MS; fails naming `what` after WAIT_MS. */
async function until(what: string, holds: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await holds())) {
    assert.ok(Date.now() < deadline, `${what} (not within ${WAIT_MS} ms)`);
    await new Promise((resolve) => setTimeout(resolve, CHECK_MS));
  }
}

const splitGauge = async (): Promise<string> => (await registry.getSingleMetricAsString("sessiond_partition_secret_split")).split("\n").find((l) => l.startsWith("sessiond_partition_secret_split ")) ?? "";

for (const layout of LAYOUTS) {
  describe(`the partition secret after a total data loss, on ${layout.name}`, () => {
    it("a running store writes its secret back: a store started after the loss lists every user's sessions made since by both", async () => {
      await layout.flushAll();
      const first = await open(layout);
      try {
        for (const user of USERS) await create(first.store, user);
        await layout.flushAll();
        const keys = secretKeys(layout.prefix);
        await until("the running store restored the partition secret in every partition", async () => (await Promise.all(keys.map((k) => layout.raw().get(k)))).every((c) => c !== null));

        const made = new Map<string, string[]>(USERS.map((u) => [u, []]));
        for (const user of USERS) made.get(user)?.push(await create(first.store, user));
        const second = await open(layout);
        try {
          for (const user of USERS) made.get(user)?.push(await create(second.store, user));
          for (const user of USERS) {
            const expected = new Set(made.get(user));
            assert.deepEqual(await listed(second.store, user), expected, `${user}: the new store lists the sessions both made since the loss`);
            assert.deepEqual(await listed(first.store, user), expected, `${user}: so does the running one`);
          }
          assert.equal(second.split.split || first.split.split, false);
        } finally {
          await second.store.dispose();
        }
        assert.ok(first.logs.some((l) => l.includes("restored from this process's copy")), "the restore is logged");
      } finally {
        await first.store.dispose();
      }
    });

    it("a secret made by another process before the restore: the running store refuses placing users, reports the split, and leaves Redis's secret alone", async () => {
      await layout.flushAll();
      const first = await open(layout);
      try {
        const before = await create(first.store, USERS[0] ?? "");
        assert.deepEqual(await listed(first.store, USERS[0] ?? ""), new Set([before]));
        const splitSeen = new Promise<void>((resolve) => first.split.watch(() => first.split.split && resolve()));
        // A process that started right after the loss made its own secret: the flush and its SET in one transaction on
        // partition 0's primary, so no check of the running store can come between them.
        const [key0 = "", ...others] = secretKeys(layout.prefix);
        const theirs = sealNew(cipher);
        await layout.flushAllSetting(key0, theirs);

        await Promise.race([splitSeen, new Promise((_, reject) => setTimeout(() => reject(new Error("no split reported")), WAIT_MS))]);
        assert.equal(await splitGauge(), "sessiond_partition_secret_split 1");
        await assertRejectsKind(create(first.store, USERS[0] ?? ""), "unavailable");
        await assertRejectsKind(first.store.list(TENANT, { userId: USERS[0] ?? "" }, 10), "unavailable");
        // What does not place users still works.
        assert.equal((await first.store.list(TENANT, {}, 10)).sessions.length, 0);
        const logged = first.logs.filter((l) => l.includes("is not this process's"));
        assert.equal(logged.length, 1, "logged once");
        assert.ok(logged[0]?.includes(key0), "naming the key");
        assert.ok(!first.logs.some((l) => l.includes(theirs)), "never the value");

        // Redis's secret stays (the running store never spread its own), and the next start opens it and restores the other copies from it.
        assert.equal(await layout.raw().get(key0), theirs, "partition 0's copy untouched");
        for (const key of others) assert.equal(await layout.raw().get(key), null, `${key}: no copy of the running store's secret`);
        const next = await open(layout);
        try {
          const id = await create(next.store, USERS[0] ?? "");
          assert.deepEqual(await listed(next.store, USERS[0] ?? ""), new Set([id]));
          for (const key of secretKeys(layout.prefix)) assert.equal(await layout.raw().get(key), theirs, `${key}: the copy of Redis's secret`);
        } finally {
          await next.store.dispose();
        }
      } finally {
        await first.store.dispose();
      }
      first.split.set(false);
    });

    it("copies gone from other partitions alone (a primary other than partition 0's restarted empty) are written back by a running store", async () => {
      await layout.flushAll();
      const first = await open(layout);
      try {
        const [key0 = "", ...others] = secretKeys(layout.prefix);
        const ours = await layout.raw().get(key0);
        assert.ok(ours !== null);
        const lost = others.filter((_, i) => i % 2 === 0);
        for (const key of lost) await layout.raw().del(key);
        await until("the running store wrote the lost copies back", async () => (await Promise.all(lost.map((k) => layout.raw().get(k)))).every((c) => c === ours));
        assert.equal(await layout.raw().get(key0), ours, "partition 0's copy untouched");
        // Redis answers the store's last write before this test's read; the store may read that answer after it.
        await until("the repair is logged", () => Promise.resolve(first.logs.some((l) => l.includes("copies of the partition secret were gone"))));
        assert.equal(first.split.split, false);
      } finally {
        await first.store.dispose();
      }
    });
  });
}

after(() => clusterClient?.disconnect());
