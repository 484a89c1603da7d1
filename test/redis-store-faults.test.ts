/**
 * RedisStore when Redis goes away: every call rejects with
 * SessionError("unavailable") within a bounded time (never hangs, never a raw
 * ioredis error), or "deadline_exceeded" when the command was sent and its
 * answer did not come, and the same store instance works again once Redis is back,
 * including after Redis lost its loaded scripts.
 *
 * The elapsed-time bounds are generous correctness bounds (5× the timeout), not
 * speed targets.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionError } from "../src/domain/errors.js";
import type { SessionStore } from "../src/store/store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { CONFORMANCE_LIMITS } from "./conformance/store-conformance.js";
import { useRedisServer } from "./support/redis-server.js";

const TIMEOUT_MS = 300;
const BOUND_MS = 5 * TIMEOUT_MS;
const T = "tenant-f";

function newStore(url: string): RedisStore {
  return new RedisStore({ url, keyPrefix: "sdf:", limits: CONFORMANCE_LIMITS, commandTimeoutMs: TIMEOUT_MS });
}

/** One call of every kind the store offers (the session id may be unknown: only reachability matters). */
function everyCall(store: SessionStore, sid: string): Array<[string, () => Promise<unknown>]> {
  return [
    ["ping", () => store.ping()],
    ["create", () => store.create({ tenant: T, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "r" })],
    ["get", () => store.get(T, sid, { touch: true, includeEnded: true })],
    ["update", () => store.update(T, sid, { metadata: "{}" }, 1)],
    ["extend", () => store.extend(T, sid, 60_000)],
    ["close", () => store.close(T, sid)],
    ["list", () => store.list(T, {}, 10)],
    ["setData", () => store.setData(T, sid, "k", '"v"')],
    ["getData", () => store.getData(T, sid, "k")],
    ["deleteData", () => store.deleteData(T, sid, "k")],
    ["listData", () => store.listData(T, sid, true)],
    ["clearData", () => store.clearData(T, sid)],
    ["counters", () => store.counters(T)],
    ["expireDue", () => store.expireDue(10)],
  ];
}

async function assertUnavailableInTime(name: string, call: () => Promise<unknown>, kind: SessionError["kind"] = "unavailable"): Promise<void> {
  const started = performance.now();
  await assert.rejects(call(), (e: unknown) => {
    assert.ok(e instanceof SessionError, `${name}: a SessionError, not ${String(e)}`);
    assert.equal(e.kind, kind, `${name}: kind`);
    return true;
  });
  const elapsed = performance.now() - started;
  assert.ok(elapsed < BOUND_MS, `${name}: rejected after ${elapsed.toFixed(0)} ms (bound ${BOUND_MS} ms)`);
}

/** Waits until the store answers again (ioredis reconnects on its own, within about a second). */
async function waitUntilServing(store: SessionStore): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await store.ping();
      return;
    } catch (e) {
      if (!(e instanceof SessionError && e.kind === "unavailable") || Date.now() > deadline) throw e;
      await sleep(50);
    }
  }
}

describe("RedisStore with Redis unreachable", () => {
  const server = useRedisServer();

  it("every call rejects with unavailable in bounded time while Redis is down, and the same store recovers", async () => {
    const store = newStore(server.url);
    try {
      const { session } = await store.create({ tenant: T, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      await server.stop();
      for (const [name, call] of everyCall(store, session.sessionId)) await assertUnavailableInTime(name, call);
      // Many calls at once while down: all bounded too.
      await Promise.all(everyCall(store, session.sessionId).map(([name, call]) => assertUnavailableInTime(`parallel ${name}`, call)));

      await server.start(); // an empty Redis: no data, no loaded scripts
      await waitUntilServing(store);
      const { session: fresh, created } = await store.create({ tenant: T, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      assert.equal(created, true);
      assert.equal((await store.setData(T, fresh.sessionId, "k", '"v"')).version, 2);
      assert.equal(await store.getData(T, fresh.sessionId, "k"), '"v"');
      assert.deepEqual((await store.list(T, {}, 10)).sessions.map((s) => s.sessionId), [fresh.sessionId]);
      assert.equal((await store.counters(T)).active, 1);
      assert.equal((await store.close(T, fresh.sessionId)).status, "closed");
      await assert.rejects(store.get(T, session.sessionId, { touch: false, includeEnded: true }), (e: unknown) => e instanceof SessionError && e.kind === "not_found");
    } finally {
      await store.dispose();
    }
  });

  it("a store created while Redis is down starts serving once Redis is up", async () => {
    await server.stop();
    const store = newStore(server.url);
    try {
      await assertUnavailableInTime("ping before Redis started", () => store.ping());
      await assertUnavailableInTime("create before Redis started", () => everyCall(store, "x")[1]![1]());
      await server.start();
      await waitUntilServing(store);
      assert.deepEqual(await store.expireDue(10), []);
    } finally {
      await store.dispose();
    }
  });

  it("a Redis that accepts the connection but does not answer: calls fail in bounded time with deadline_exceeded (sent, outcome unknown)", async () => {
    const store = newStore(server.url);
    try {
      await store.ping();
      await server.raw.call("CLIENT", "PAUSE", String(4 * TIMEOUT_MS), "ALL");
      // The command reached Redis and may run once the pause ends: never "unavailable", which promises it did not.
      await assertUnavailableInTime("create while paused", () => everyCall(store, "x")[1]![1](), "deadline_exceeded");
      await assertUnavailableInTime("list while paused", () => store.list(T, {}, 10), "deadline_exceeded");
      await server.raw.call("CLIENT", "UNPAUSE");
      await waitUntilServing(store);
      await store.list(T, {}, 10);
    } finally {
      await store.dispose();
    }
  });

  it("the connection breaks with a write in flight: outcome_unknown (it may have been applied), never unavailable", async () => {
    const store = new RedisStore({ url: server.url, keyPrefix: "sdf:", limits: CONFORMANCE_LIMITS, commandTimeoutMs: 5000 });
    try {
      await store.ping();
      await server.raw.call("CLIENT", "PAUSE", "3000", "ALL");
      const pending = everyCall(store, "x")[1]![1]();
      pending.catch(() => {}); // asserted below, once Redis is gone
      await sleep(100);
      await server.stop();
      await assertUnavailableInTime("create cut by the kill", () => pending, "outcome_unknown");
    } finally {
      await store.dispose();
      await server.start();
    }
  });

  it("the script library flushed from a running Redis (FUNCTION FLUSH) is loaded again, once for calls that meet its absence together", async () => {
    await server.raw.flushall(); // a write that timed out while paused may still have landed
    const store = newStore(server.url);
    try {
      await store.list(T, {}, 10);
      await store.expireDue(1);
      await server.raw.call("FUNCTION", "FLUSH");
      assert.deepEqual(await server.raw.call("FUNCTION", "LIST"), [], "no library left");
      assert.deepEqual(await store.list(T, {}, 10), { sessions: [] });
      assert.deepEqual(await store.expireDue(1), []);
      await server.raw.call("FUNCTION", "FLUSH");
      await server.raw.config("RESETSTAT");
      const created = await Promise.all(
        Array.from({ length: 20 }, (_, i) => store.create({ tenant: T, userId: `u${i}`, dataSource: "ds", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" })),
      );
      assert.equal(new Set(created.map((c) => c.session.sessionId)).size, 20);
      const stats = await server.raw.info("commandstats");
      assert.equal(/^cmdstat_function\|load:calls=(\d+)/m.exec(stats)?.[1], "1", "one load for the calls that met the flushed library together");
    } finally {
      await store.dispose();
    }
  });

  it("a disposed store rejects with unavailable instead of hanging", async () => {
    const store = newStore(server.url);
    await store.ping();
    await store.dispose();
    await assertUnavailableInTime("ping after dispose", () => store.ping());
  });
});
