/**
 * RedisStore with a partitioned key layout (keys.ts, REDIS_PARTITIONS > 1) on
 * one redis-server: the shared conformance suite, so the partition routing,
 * the merged listings, counters and event log are checked without a cluster
 * (test/store-redis-cluster.test.ts runs them on one).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../src/domain/errors.js";
import { EVENT_LOG_RESET_MESSAGE } from "../src/store/store.js";
import { compareEventIds } from "../src/store/event-id.js";
import { Partitioning, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { sealStore } from "../src/store/sealed-store.js";
import { KeyedFieldCipher } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisServer } from "./support/redis-server.js";

const server = useRedisServer();

const openFlushed = async (): Promise<{ store: RedisStore; cleanup: () => Promise<void> }> => {
  await server.raw.flushall();
  const store = new RedisStore({ url: server.url, keyPrefix: "sdpart:", partitions: 5, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 2000 });
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("redis, 5 partitions", openFlushed);
runGuardConformance("redis, 5 partitions", openFlushed);

describe("RedisStore with 5 partitions on one Redis", () => {
  it("waitDue: another process's create due sooner, in any partition, wakes the wait; writes due later do not", async () => {
    const { store: sleeper, cleanup } = await openFlushed();
    const writer = new RedisStore({ url: server.url, keyPrefix: "sdpart:", partitions: 5, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 2000 });
    const never = new AbortController().signal;
    const partitions = new Partitioning(5);
    const byPartition = new Map(Array.from({ length: 100 }, (_, i) => `u-${i}`).map((u) => [partitions.ofUser("t", u), u]));
    const make = (userId: string, ttlMs: number): Promise<unknown> => writer.create({ tenant: "t", userId, dataSource: "d", accessLevel: "read", ttlMs, metadata: "{}", requestId: "" });
    try {
      assert.equal(byPartition.size, 5, "a user in every partition");
      // Every partition's queue holds a session due in an hour.
      for (const user of byPartition.values()) await make(user, 3_600_000);
      await sleeper.nextDue();
      for (const user of byPartition.values()) await make(user, 7_200_000);
      assert.equal(await sleeper.waitDue(Date.now() + 300, never), false, "sessions due later wake nothing");
      for (const [partition, user] of byPartition) {
        await sleeper.nextDue();
        const waiting = sleeper.waitDue(Date.now() + 10_000, never);
        const started = Date.now();
        await make(user, 60_000 - partition * 1000);
        assert.equal(await waiting, true, `partition ${partition}: a session due sooner wakes it`);
        assert.ok(Date.now() - started < 5000, "at once, not at until");
        assert.equal((await sleeper.nextDue()).dueAt !== undefined, true);
      }
      const { dueAt, now } = await sleeper.nextDue();
      assert.ok(dueAt !== undefined && dueAt - now <= 56_000 && dueAt - now > 50_000, "the next look sees the soonest");
    } finally {
      await writer.dispose();
      await cleanup();
    }
  });

  it("session ids drawn for a user are distinct UUID v4 in the user's partition, whatever the partition count", () => {
    const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const count of [2, 5, 64, 1024]) {
      const partitions = new Partitioning(count);
      const ids = new Set<string>();
      for (let i = 0; i < 500; i++) {
        const user = `user-${i % 23}`;
        const id = partitions.newSessionId("tënant", user);
        assert.match(id, V4);
        assert.equal(partitions.ofSession(id), partitions.ofUser("tënant", user), `${count} partitions`);
        ids.add(id);
      }
      assert.equal(ids.size, 500);
    }
  });

  it("behind the sealing wrapper (encryption on), sessions land in their user's partition and list by user", async () => {
    const { store, cleanup } = await openFlushed();
    const sealed = sealStore(store, new KeyedFieldCipher(parseKeyring(`k1:${Buffer.alloc(32, 7).toString("base64")}`)));
    try {
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push((await sealed.create({ tenant: "t", userId: "alice", dataSource: `d-${i}`, accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" })).session.sessionId);
      const listed = await sealed.list("t", { userId: "alice" }, 100);
      assert.deepEqual(new Set(listed.sessions.map((s) => s.sessionId)), new Set(ids));
      assert.ok(listed.sessions.every((s) => s.userId === "alice"), "names opened");
      assert.equal((await sealed.get("t", ids[3] ?? "", { touch: false, includeEnded: false })).dataSource, "d-3");
    } finally {
      await cleanup();
    }
  });

  it("a cursor naming an event its partition's log no longer holds (lost in a failover) is out_of_range, saying the log was reset", async () => {
    const { store, cleanup } = await openFlushed();
    try {
      for (let i = 0; i < 20; i++) await store.create({ tenant: "t", userId: `u-${i}`, dataSource: "d", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" });
      const events = await store.readEvents("0-0", 100);
      assert.equal(events.length, 20);
      const lost = events[10]?.id ?? "";
      const partition = Number(lost.split("-")[1]) % 5;
      assert.equal(await server.raw.xdel(new RedisKeys("sdpart:", "", new Partitioning(5)).events(partition), lost), 1, "the event's partition holds it");
      await assert.rejects(store.readEvents(lost, 10), (e: unknown) => e instanceof SessionError && e.kind === "out_of_range" && e.message === EVENT_LOG_RESET_MESSAGE);
      const kept = events[12]?.id ?? "";
      assert.deepEqual((await store.readEvents(kept, 100)).map((e) => e.id), events.slice(13).map((e) => e.id), "a cursor still held resumes");
    } finally {
      await cleanup();
    }
  });

  it("catching up a backlog over 16 partitions transfers each entry about once, whatever the page (merged-log.ts buffers)", async (t) => {
    await server.raw.flushall();
    const partitions = 16;
    const store = new RedisStore({ url: server.url, keyPrefix: "sdbl:", partitions, limits: { ...CONFORMANCE_LIMITS, eventRetentionCount: 100_000 }, commandTimeoutMs: 5000 });
    const keys = new RedisKeys("sdbl:", "", new Partitioning(partitions));
    /** Bytes Redis sent to its clients so far (INFO stats): the transfer a read costs, not its time. */
    const sent = async (): Promise<number> => Number(/total_net_output_bytes:(\d+)/.exec(await server.raw.info("stats"))?.[1]);
    try {
      const creates = Array.from({ length: 3000 }, (_, i) => i);
      for (let i = 0; i < creates.length; i += 100) {
        await Promise.all(creates.slice(i, i + 100).map((n) => store.create({ tenant: "t", userId: `u-${n}`, dataSource: "d", accessLevel: "read", ttlMs: 600_000, metadata: "{}", requestId: "" })));
      }
      // The anchor: every partition's log read once, as is.
      const before = await sent();
      const raw = await Promise.all(Array.from({ length: partitions }, (_, p) => server.raw.xrange(keys.events(p), "-", "+")));
      const once = (await sent()) - before;
      const all = raw.flat().map(([id]) => id).sort((a, b) => compareEventIds(a, b));
      assert.equal(all.length, creates.length);

      const tailFrom = await sent();
      const tail = store.openEventTail();
      const seen: string[] = [];
      try {
        for (let cursor = "0-0"; seen.length < all.length; ) {
          const batch = await tail.read(cursor, 200, 1000);
          seen.push(...batch.map((e) => e.id));
          cursor = batch.at(-1)?.id ?? cursor;
        }
      } finally {
        tail.close();
      }
      const tailBytes = (await sent()) - tailFrom;
      assert.deepEqual(seen, all, "the tail delivers every event once, in id order");

      const pagesFrom = await sent();
      const paged: string[] = [];
      for (let cursor = "0-0"; ; ) {
        const page = await store.readEvents(cursor, 200);
        paged.push(...page.map((e) => e.id));
        if (page.length < 200) break;
        cursor = page.at(-1)?.id ?? cursor;
      }
      const pageBytes = (await sent()) - pagesFrom;
      assert.deepEqual(paged, all, "paged reads deliver every event once, in id order");
      t.diagnostic(`transferred: tail ${(tailBytes / once).toFixed(2)} x, paged reads ${(pageBytes / once).toFixed(2)} x the log`);
      // Reading every partition's page for each merged page transfers about 16 times the log.
      assert.ok(tailBytes < 3 * once, `the tail transferred ${(tailBytes / once).toFixed(2)} x the log`);
      assert.ok(pageBytes < 4 * once, `paged reads transferred ${(pageBytes / once).toFixed(2)} x the log`);
    } finally {
      await store.dispose();
    }
  });

  it("a tail following 16 partitions while they are written concurrently delivers each event once, in id order", async () => {
    await server.raw.flushall();
    const partitions = 16;
    const store = new RedisStore({ url: server.url, keyPrefix: "sdlive:", partitions, limits: { ...CONFORMANCE_LIMITS, eventRetentionCount: 100_000 }, commandTimeoutMs: 5000 });
    const keys = new RedisKeys("sdlive:", "", new Partitioning(partitions));
    const total = 1500;
    try {
      // A backlog to catch up while more arrive: pages cut by the limit, entries held back by the clocks, both.
      const create = (n: number) => store.create({ tenant: "t", userId: `u-${n}`, dataSource: "d", accessLevel: "read", ttlMs: 600_000, metadata: "{}", requestId: "" });
      await Promise.all(Array.from({ length: 500 }, (_, n) => create(n)));
      const writes = (async () => {
        for (let n = 500; n < total; n += 20) await Promise.all(Array.from({ length: 20 }, (_, k) => create(n + k)));
      })();
      const tail = store.openEventTail();
      const seen: string[] = [];
      const deadline = Date.now() + 120_000;
      try {
        for (let cursor = "0-0"; seen.length < total && Date.now() < deadline; ) {
          const batch = await tail.read(cursor, 50, 500);
          seen.push(...batch.map((e) => e.id));
          cursor = batch.at(-1)?.id ?? cursor;
        }
      } finally {
        tail.close();
        await writes;
      }
      const raw = await Promise.all(Array.from({ length: partitions }, (_, p) => server.raw.xrange(keys.events(p), "-", "+")));
      assert.deepEqual(seen, raw.flat().map(([id]) => id).sort((a, b) => compareEventIds(a, b)), "every event once, in id order");
    } finally {
      await store.dispose();
    }
  });
});
