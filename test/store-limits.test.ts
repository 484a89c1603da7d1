/**
 * What issue 5 added to the storage contract, on both backends: a session id
 * chosen by the caller, the sessions-per-user cap (reject or close the
 * oldest, atomically in create) and the total bytes of data values per session
 * (atomically in setData). Each cap is tried below, at and above its limit, and
 * a rejected write must leave everything as it was.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { CreateSessionInput, SessionStore, StoreLimits } from "../src/store/store.js";
import { assertRejectsKind } from "./conformance/store-conformance.js";
import { useRedisServer } from "./support/redis-server.js";

const T = "tenant-limits";
const BASE: StoreLimits = { maxDataKeys: 10, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };

const server = useRedisServer();

type Open = (limits: StoreLimits) => Promise<SessionStore>;

const backends: [string, Open][] = [
  ["memory", async (limits) => new MemoryStore({ limits })],
  [
    "redis",
    async (limits) => {
      await server.raw.flushall();
      return new RedisStore({ url: server.url, keyPrefix: "sl:", limits, commandTimeoutMs: 2000 });
    },
  ],
];

function input(overrides: Partial<CreateSessionInput> = {}): CreateSessionInput {
  return { tenant: T, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "", ...overrides };
}

for (const [name, open] of backends) {
  describe(`${name}: store limits`, () => {
    async function withStore(limits: StoreLimits, fn: (store: SessionStore) => Promise<void>): Promise<void> {
      const store = await open(limits);
      try {
        await fn(store);
      } finally {
        await store.dispose();
      }
    }

    it("uses the session id the caller chose; a requestId retry returns the first session", () =>
      withStore(BASE, async (store) => {
        const id = randomUUID();
        const first = await store.create(input({ sessionId: id, requestId: "r-1" }));
        assert.equal(first.session.sessionId, id);
        assert.equal((await store.get(T, id, { touch: false, includeEnded: false })).sessionId, id);
        const retry = await store.create(input({ sessionId: randomUUID(), requestId: "r-1" }));
        assert.equal(retry.created, false);
        assert.equal(retry.session.sessionId, id);
        assert.equal((await store.counters(T)).total, 1);
      }));

    it("sessions per user, reject: below and at the cap succeed, above fails and changes nothing", () =>
      withStore({ ...BASE, maxSessionsPerUser: 3 }, async (store) => {
        const made = [];
        for (let i = 0; i < 3; i++) made.push((await store.create(input())).session);
        await store.create(input({ userId: "other" }));
        const before = await store.counters(T);
        await assertRejectsKind(store.create(input({ requestId: "r-over" })), "limit_exceeded");
        assert.deepEqual(await store.counters(T), before, "counters unchanged");
        assert.equal((await store.list(T, { userId: "u" }, 10)).sessions.length, 3);
        // The rejected create did not claim its request id.
        await store.close(T, made[0]!.sessionId);
        const again = await store.create(input({ requestId: "r-over" }));
        assert.equal(again.created, true);
        assert.equal(again.evicted, undefined);
      }));

    it("sessions per user: due sessions do not count", () =>
      withStore({ ...BASE, maxSessionsPerUser: 1 }, async (store) => {
        await store.create(input({ ttlMs: 100 }));
        await assertRejectsKind(store.create(input()), "limit_exceeded");
        await sleep(150);
        assert.equal((await store.create(input())).created, true);
      }));

    it("sessions per user, close_oldest: closes the oldest by create time to make room, atomically", () =>
      withStore({ ...BASE, maxSessionsPerUser: 2, sessionsPerUserPolicy: "close_oldest" }, async (store) => {
        const a = (await store.create(input({ ttlMs: 90_000 }))).session;
        await sleep(5);
        const b = (await store.create(input({ ttlMs: 30_000 }))).session;
        await sleep(5);
        const c = await store.create(input());
        assert.deepEqual(c.evicted?.map((r) => [r.sessionId, r.status]), [[a.sessionId, "closed"]]);
        const live = (await store.list(T, { userId: "u" }, 10)).sessions.map((s) => s.sessionId).sort();
        assert.deepEqual(live, [b.sessionId, c.session.sessionId].sort());
        const archived = await store.get(T, a.sessionId, { touch: false, includeEnded: true });
        assert.equal(archived.status, "closed");
        const counters = await store.counters(T);
        assert.equal(counters.active, 2);
        assert.equal(counters.closed, 1);
        assert.equal(counters.total, 3);
      }));

    it("data bytes: below and at the cap succeed, above fails and changes nothing; overwrites, deletes and clears free bytes", () =>
      withStore({ ...BASE, maxDataBytes: 10 }, async (store) => {
        const { session } = await store.create(input());
        const id = session.sessionId;
        await store.setData(T, id, "a", "1234"); // 4
        const v = (await store.setData(T, id, "b", "123456")).version; // 10: at the cap
        await assertRejectsKind(store.setData(T, id, "c", "1"), "limit_exceeded");
        await assertRejectsKind(store.setData(T, id, "a", "12345"), "limit_exceeded", "a larger overwrite");
        assert.equal((await store.get(T, id, { touch: false, includeEnded: false })).version, v, "version unchanged");
        assert.deepEqual([...(await store.listData(T, id, true))], [["a", "1234"], ["b", "123456"]]);
        await store.setData(T, id, "a", "12"); // overwrite with less: 8
        await store.setData(T, id, "c", "ab"); // 10
        await store.deleteData(T, id, "b"); // 4
        await store.setData(T, id, "d", "éééé".slice(0, 3)); // 3 chars, 6 UTF-8 bytes: 10
        await assertRejectsKind(store.setData(T, id, "e", "x"), "limit_exceeded", "bytes, not characters");
        await store.clearData(T, id);
        await store.setData(T, id, "big", "0123456789");
        assert.equal((await store.getData(T, id, "big")), "0123456789");
      }));

    it("sessions per tenant: at the cap a create fails and changes nothing; other tenants, ended sessions and close_oldest make room", () =>
      withStore({ ...BASE, maxSessionsPerTenant: 3, maxSessionsPerUser: 2, sessionsPerUserPolicy: "close_oldest" }, async (store) => {
        const a1 = (await store.create(input({ userId: "a" }))).session;
        await sleep(5);
        await store.create(input({ userId: "a" }));
        const b = (await store.create(input({ userId: "b" }))).session;
        const before = await store.counters(T);
        await assertRejectsKind(store.create(input({ userId: "d", requestId: "r-over" })), "limit_exceeded");
        assert.deepEqual(await store.counters(T), before, "counters unchanged");
        assert.equal((await store.list(T, {}, 10)).sessions.length, 3);
        // Another tenant has its own cap.
        assert.equal((await store.create(input({ tenant: "other-tenant" }))).created, true);
        // A user at its own cap with close_oldest replaces its oldest session: the tenant's count stays, so it fits.
        const replaced = await store.create(input({ userId: "a" }));
        assert.deepEqual(replaced.evicted?.map((r) => r.sessionId), [a1.sessionId]);
        assert.equal((await store.counters(T)).active, 3);
        await store.close(T, b.sessionId);
        const made = await store.create(input({ userId: "d", requestId: "r-over" }));
        assert.equal(made.created, true, "an ended session freed a place, and the refused create had not claimed its request id");
        await assertRejectsKind(store.create(input({ userId: "e" })), "limit_exceeded");
      }));

    it("data sources per tenant: a create or update adding one beyond the cap fails and changes nothing; existing sources stay open", () =>
      withStore({ ...BASE, maxDataSourcesPerTenant: 2 }, async (store) => {
        const one = (await store.create(input({ dataSource: "s1" }))).session;
        await store.create(input({ dataSource: "s2" }));
        await store.create(input({ dataSource: "s2" }));
        const before = await store.counters(T);
        await assertRejectsKind(store.create(input({ dataSource: "s3" })), "limit_exceeded");
        await assertRejectsKind(store.update(T, one.sessionId, { dataSource: "s3" }), "limit_exceeded");
        assert.deepEqual(await store.counters(T), before, "counters unchanged");
        assert.equal((await store.get(T, one.sessionId, { touch: false, includeEnded: false })).dataSource, "s1");
        assert.equal((await store.create(input({ dataSource: "s1" }))).created, true, "an existing source takes more sessions");
        assert.equal((await store.create(input({ tenant: "other-tenant", dataSource: "s9" }))).created, true);
        // Moving the last session of s1 elsewhere frees s1... once every s1 session is gone.
        for (const s of (await store.list(T, { dataSource: "s1" }, 10)).sessions) await store.close(T, s.sessionId);
        assert.equal((await store.create(input({ dataSource: "s3" }))).created, true, "a source with no live session no longer counts");
        await assertRejectsKind(store.create(input({ dataSource: "s4" })), "limit_exceeded");
      }));

    it("with no caps configured, nothing is capped beyond the keys", () =>
      withStore(BASE, async (store) => {
        for (let i = 0; i < 5; i++) await store.create(input());
        const { session } = await store.create(input());
        await store.setData(T, session.sessionId, "k", "x".repeat(100_000));
        assert.equal((await store.counters(T)).active, 6);
      }));
  });
}
