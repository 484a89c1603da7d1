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
import { Partitioning, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { sealStore } from "../src/store/sealed-store.js";
import { AesGcmFieldCipher } from "../src/crypto/field-cipher.js";
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
runStoreConformance("redis, 5 partitions", openFlushed, { requestIdScope: "user" });
runGuardConformance("redis, 5 partitions", openFlushed);

describe("RedisStore with 5 partitions on one Redis", () => {
  it("behind the sealing wrapper (encryption on), sessions land in their user's partition and list by user", async () => {
    const { store, cleanup } = await openFlushed();
    const sealed = sealStore(store, new AesGcmFieldCipher(parseKeyring(`k1:${Buffer.alloc(32, 7).toString("base64")}`)));
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
});
