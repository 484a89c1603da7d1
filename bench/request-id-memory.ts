/**
 * Redis memory of a request id per live session, on a 3-primary loopback
 * cluster (16 partitions: the claim in the request id's partition, the
 * record's `r` and `rc` fields; src/store/redis/request-claims.ts) and on one
 * Redis (the `P T:r:<requestId>` key and the record's `r`), in the same run.
 *
 * Each round flushes, creates `sessions` sessions without a request id and
 * the same number with one (36-character request ids, 1,000 users), each
 * batch measured as the used_memory delta summed over the primaries; the
 * difference per session is the request id's cost. The event log grows by
 * one entry per create in both batches, so it cancels out. Rounds alternate
 * cluster and one Redis; the median of the rounds is printed, with MEMORY
 * USAGE of one claim key and one request id key for reference.
 *
 *   npx tsx bench/request-id-memory.ts [sessions] [rounds]
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { Partitioning, RedisKeys } from "../src/store/redis/keys.js";
import { startRedisCluster } from "../test/support/redis-cluster.js";
import { startRedisServer } from "../test/support/redis-server.js";

const SESSIONS = Number(process.argv[2] ?? 20_000);
const ROUNDS = Number(process.argv[3] ?? 3);
const TENANT = "default";
const PREFIX = "sd:";
const PARTITIONS = 16;
const CONCURRENCY = 100;
const limits = { maxDataKeys: 1000, archiveRetentionMs: 86_400_000, expiryGraceMs: 60_000 };

async function usedMemory(nodes: readonly Redis[]): Promise<number> {
  let sum = 0;
  for (const node of nodes) sum += Number(/^used_memory:(\d+)/m.exec(await node.info("memory"))?.[1]);
  return sum;
}

async function fill(store: RedisStore, withRequestId: boolean): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < SESSIONS; i = next++) {
        const requestId = withRequestId ? randomUUID() : "";
        await store.create({ tenant: TENANT, userId: `user-${i % 1000}`, dataSource: `ds-${i % 10}`, accessLevel: "write", ttlMs: 3_600_000, metadata: '{"k":"v"}', requestId });
        if (withRequestId) ids.push(requestId);
      }
    }),
  );
  return ids;
}

/** used_memory delta per session of a batch without and one with request ids, and a sample key's MEMORY USAGE. */
async function round(store: RedisStore, primaries: readonly Redis[], sampleKey: (requestId: string) => string): Promise<{ without: number; with: number; key: number }> {
  await Promise.all(primaries.map((p) => p.flushall()));
  // The first creates make each partition's fixed keys: not a session's cost.
  await store.create({ tenant: TENANT, userId: "warm", dataSource: "ds-0", accessLevel: "write", ttlMs: 3_600_000, metadata: "{}", requestId: "" });
  const m0 = await usedMemory(primaries);
  await fill(store, false);
  const m1 = await usedMemory(primaries);
  const ids = await fill(store, true);
  const m2 = await usedMemory(primaries);
  const key = sampleKey(ids[0] as string);
  // The primary holding the key answers; the others refuse it (MOVED).
  const usages = await Promise.all(primaries.map((p) => p.call("MEMORY", "USAGE", key).catch(() => null)));
  const usage = Number(usages.find((u) => typeof u === "number") ?? 0);
  return { without: (m1 - m0) / SESSIONS, with: (m2 - m1) / SESSIONS, key: usage };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const cluster = await startRedisCluster({ primaries: 3, replicas: 0 });
const single = await startRedisServer();
try {
  const seeds = cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  const onCluster = new RedisStore({ url: "", cluster: { nodes: seeds }, keyPrefix: PREFIX, partitions: PARTITIONS, limits, commandTimeoutMs: 10_000 });
  const onOne = new RedisStore({ url: single.url, keyPrefix: PREFIX, limits, commandTimeoutMs: 10_000 });
  const clusterPrimaries = (await cluster.primaries()).map((n) => cluster.client(n));
  const singleClient = single.client();
  const clusterKeys = new RedisKeys(PREFIX, TENANT, new Partitioning(PARTITIONS));
  const singleKeys = new RedisKeys(PREFIX, TENANT);
  const results: Record<"cluster" | "one", { without: number; with: number; key: number }[]> = { cluster: [], one: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const which of r % 2 === 0 ? (["cluster", "one"] as const) : (["one", "cluster"] as const)) {
      const out =
        which === "cluster"
          ? await round(onCluster, clusterPrimaries, (rid) => clusterKeys.requestClaim(rid))
          : await round(onOne, [singleClient], (rid) => singleKeys.requestId(rid));
      results[which].push(out);
      console.log(`round ${r + 1} ${which}: ${out.without.toFixed(0)} B/session without a request id, ${out.with.toFixed(0)} B with; sample key ${out.key} B`);
    }
  }
  for (const which of ["cluster", "one"] as const) {
    const rs = results[which];
    const extra = median(rs.map((x) => x.with - x.without));
    console.log(`${which}: median ${median(rs.map((x) => x.without)).toFixed(0)} B/session without, ${median(rs.map((x) => x.with)).toFixed(0)} B with: a request id costs ${extra.toFixed(0)} B (key ${median(rs.map((x) => x.key))} B)`);
  }
  await onCluster.dispose();
  await onOne.dispose();
  for (const c of clusterPrimaries) c.disconnect();
  singleClient.disconnect();
} finally {
  await cluster.stop();
  await single.stop();
}
