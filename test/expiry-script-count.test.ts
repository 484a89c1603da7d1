/**
 * What an expiry costs Redis in scripts, counted with INFO commandstats on a
 * real redis-server and a real 3-primary Redis Cluster (16 partitions), not
 * timed:
 * - the scheduler on one Redis runs one script per look that expires
 *   (expire_due, whose reply carries the due queue's next head), and reads a
 *   head it does not know with plain commands, not a script;
 * - on a cluster, looking at the heads and expiring runs a script only in
 *   the partition that has something due;
 * - the merged event tail delivers an event of one partition running the
 *   read script in that partition only: the other partitions prove that
 *   nothing earlier is pending with TIME and their log's last id.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import type { Redis } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { Partitioning } from "../src/store/redis/keys.js";
import { ExpiryScheduler } from "../src/session/expiry-scheduler.js";
import type { SessionRecord } from "../src/domain/model.js";
import { useRedisServer } from "./support/redis-server.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };
const PARTITIONS = 16;

/** Scripts run so far (FCALL, EVALSHA and EVAL calls), summed over `clients`. */
async function scriptCalls(clients: readonly Redis[]): Promise<number> {
  let total = 0;
  for (const client of clients) {
    const stats = await client.info("commandstats");
    for (const name of ["fcall", "evalsha", "eval"]) total += Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, "m").exec(stats)?.[1] ?? 0);
  }
  return total;
}

function session(userId: string, ttlMs: number): Parameters<RedisStore["create"]>[0] {
  return { tenant: "t", userId, dataSource: "d", accessLevel: "write", ttlMs, metadata: "{}", requestId: "" };
}

describe("expiry on one redis-server", () => {
  const server = useRedisServer();

  it("the scheduler runs one script per look that expires, and none to find its next wake-up", { timeout: 120_000 }, async () => {
    const store = new RedisStore({ url: server.url, keyPrefix: "xc:", limits: LIMITS, commandTimeoutMs: 10_000 });
    let looks = 0;
    const expired: SessionRecord[] = [];
    const counted = {
      expireDue: async (limit: number) => {
        looks += 1;
        const batch = await store.expireDue(limit);
        expired.push(...batch);
        return batch;
      },
      nextDue: () => store.nextDue(),
      waitDue: (until: number, signal: AbortSignal) => store.waitDue(until, signal),
    };
    const scheduler = new ExpiryScheduler({ store: counted, maxSleepMs: 250, batchSize: 100, logger: pino({ level: "silent" }) });
    try {
      const total = 12;
      for (let i = 0; i < total; i++) await store.create(session(`user-${i}`, 600 + i * 60));
      const before = await scriptCalls([server.raw]);
      await scheduler.start();
      for (let waited = 0; expired.length < total && waited < 60_000; waited += 20) await sleep(20);
      await scheduler.stop();
      const scripts = (await scriptCalls([server.raw])) - before;
      assert.equal(expired.length, total, "every session expired");
      assert.ok(looks >= 1);
      // Before: a next_due script on every look as well (twice the scripts of the looks that expired).
      assert.equal(scripts, looks, `${scripts} scripts for ${looks} looks that expired ${expired.length} sessions`);
    } finally {
      await scheduler.stop();
      await store.dispose();
    }
  });
});

describe("expiry and delivery on a Redis Cluster", () => {
  const cluster = useRedisCluster({ primaries: 3, replicas: 0 });
  const clients = async (): Promise<Redis[]> => (await cluster().primaries()).map((node) => cluster().client(node));
  const openStore = (): RedisStore =>
    new RedisStore({ url: "", cluster: { nodes: cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port })) }, keyPrefix: "xk:", partitions: PARTITIONS, limits: LIMITS, commandTimeoutMs: 10_000 });
  const userIn = (partition: number): string => {
    const partitions = new Partitioning(PARTITIONS);
    for (let i = 0; ; i++) if (partitions.ofUser("t", `user-${i}`) === partition) return `user-${i}`;
  };

  it("a look at the due heads and the expiry run a script only in the partition with something due", { timeout: 300_000 }, async () => {
    const store = openStore();
    const raw = await clients();
    try {
      await store.nextDue();
      const { session: due } = await store.create(session(userIn(5), 400));
      // Every head is older than its refresh time by then: the look reads all 16.
      await sleep(1000);
      const before = await scriptCalls(raw);
      const head = await store.nextDue();
      assert.ok(head.dueAt !== undefined && head.dueAt <= head.now, "the look finds the session due");
      const batch = await store.expireDue(100);
      const scripts = (await scriptCalls(raw)) - before;
      assert.deepEqual(
        batch.map((r) => r.sessionId),
        [due.sessionId],
      );
      // Before: a next_due script per partition (16), and expire_due wherever a head was unknown.
      assert.equal(scripts, 1, `${scripts} scripts for reading ${PARTITIONS} heads and expiring in one partition`);
    } finally {
      for (const c of raw) c.disconnect();
      await store.dispose();
    }
  });

  it("the merged tail delivers an event of one partition running the read script there only", { timeout: 300_000 }, async () => {
    const reader = openStore();
    const writer = openStore();
    const tail = reader.openEventTail();
    const raw = await clients();
    try {
      // The writer's first write makes every partition's log generation (a script each): not counted below.
      await writer.create(session(userIn(0), 60_000));
      let cursor = await reader.lastEventId();
      // The first read reads every partition (nothing new), then waits.
      for (const partition of [3, 11]) {
        const pending = tail.read(cursor, 100, 120_000);
        await sleep(1500);
        const before = await scriptCalls(raw);
        const { session: created } = await writer.create(session(userIn(partition), 60_000));
        const events = await pending;
        // Less the create's own script.
        const scripts = (await scriptCalls(raw)) - before - 1;
        assert.deepEqual(
          events.map((e) => e.session.sessionId),
          [created.sessionId],
        );
        // Before: the read script in every partition (16), again for those whose clock had not passed the event.
        assert.ok(scripts <= 2, `${scripts} scripts to deliver one event of partition ${partition} (of ${PARTITIONS})`);
        cursor = events.at(-1)?.id ?? cursor;
      }
    } finally {
      tail.close();
      for (const c of raw) c.disconnect();
      await Promise.all([reader.dispose(), writer.dispose()]);
    }
  });
});
