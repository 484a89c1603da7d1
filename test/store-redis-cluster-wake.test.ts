/**
 * The merged event tail on a real 3-primary Redis Cluster
 * (test/support/redis-cluster.ts, 16 partitions) waits on blocking reads of
 * every partition's log (src/store/redis/partition-wake.ts) instead of
 * polling: while idle it runs no script at all, a write to any partition ends
 * its wait long before its block time, and it keeps doing so after the
 * partition's slot moved to another primary (redis-cli --cluster reshard).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import type { EventTail, StoredEvent } from "../src/store/store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { keySlot, Partitioning } from "../src/store/redis/keys.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const PARTITIONS = 16;
const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };
/** Far longer than any wait below: a read that returns before it was woken, not timed out. */
const BLOCK_MS = 120_000;

const cluster = useRedisCluster({ primaries: 3, replicas: 0 });

function openStore(): RedisStore {
  const nodes = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  return new RedisStore({ url: "", cluster: { nodes }, keyPrefix: "wk:", partitions: PARTITIONS, limits: LIMITS, commandTimeoutMs: 5000 });
}

/** Scripts run by every primary so far (FCALL, EVALSHA and EVAL calls). */
async function scriptCalls(): Promise<number> {
  let total = 0;
  for (const node of await cluster().primaries()) {
    const client = cluster().client(node);
    try {
      const stats = await client.info("commandstats");
      for (const name of ["fcall", "evalsha", "eval"]) total += Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, "m").exec(stats)?.[1] ?? 0);
    } finally {
      client.disconnect();
    }
  }
  return total;
}

/** A user whose sessions land in `partition`. */
function userIn(partition: number): string {
  const partitions = new Partitioning(PARTITIONS);
  for (let i = 0; ; i++) if (partitions.ofUser("t", `user-${i}`) === partition) return `user-${i}`;
}

/** One tail read from `after`, with the time it took. */
async function timedRead(tail: EventTail, after: string): Promise<{ events: StoredEvent[]; ms: number }> {
  const started = Date.now();
  const events = await tail.read(after, 100, BLOCK_MS);
  return { events, ms: Date.now() - started };
}

describe("the merged event tail on a Redis Cluster waits without polling", () => {
  it("runs no script while idle, and a create in any partition ends its wait", { timeout: 300_000 }, async () => {
    const reader = openStore();
    const writer = openStore();
    const tail = reader.openEventTail();
    try {
      let cursor = await reader.lastEventId();
      // The first read runs one round and finds nothing; the reads after it are idle waits.
      for (const partition of [0, 7, 15]) {
        const pending = timedRead(tail, cursor);
        await sleep(1500);
        const before = await scriptCalls();
        await sleep(2000);
        const idle = (await scriptCalls()) - before;
        assert.ok(idle < PARTITIONS, `${idle} scripts in 2 s of waiting (a poll every 25 ms would be about ${PARTITIONS * 80})`);
        const { session } = await writer.create({ tenant: "t", userId: userIn(partition), dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
        const { events, ms } = await pending;
        assert.deepEqual(
          events.map((e) => e.session.sessionId),
          [session.sessionId],
          `the create in partition ${partition} ended the wait (after ${ms} ms of a ${BLOCK_MS} ms block)`,
        );
        cursor = events.at(-1)?.id ?? cursor;
      }
    } finally {
      tail.close();
      await Promise.all([reader.dispose(), writer.dispose()]);
    }
  });

  it("still wakes for a partition whose slot moved to another primary while the tail waited", { timeout: 300_000 }, async () => {
    const reader = openStore();
    const writer = openStore();
    const tail = reader.openEventTail();
    try {
      const cursor = await reader.lastEventId();
      const partitions = new Partitioning(PARTITIONS);
      const slot = keySlot((partitions.tags[0] as string).slice(1, -1));
      // One round, then the tail waits on every partition's log, partition 0's on the primary that holds it now.
      const first = timedRead(tail, cursor);
      await sleep(1500);
      const from = await cluster().primaryOf(slot);
      const to = (await cluster().primaries()).find((n) => n.port !== from.port);
      assert.ok(to !== undefined);
      await cluster().reshard(from, to, 1500);
      assert.equal((await cluster().primaryOf(slot)).port, to.port, "partition 0's slot moved");
      await sleep(1000);
      const { session } = await writer.create({ tenant: "t", userId: userIn(0), dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      const { events, ms } = await first;
      assert.deepEqual(events.map((e) => e.session.sessionId), [session.sessionId], `woken after the reshard (after ${ms} ms of a ${BLOCK_MS} ms block)`);
    } finally {
      tail.close();
      await Promise.all([reader.dispose(), writer.dispose()]);
    }
  });
});
