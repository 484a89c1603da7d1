/**
 * SessionManager over both stores: MemoryStore, and RedisStore on a private
 * redis-server. Covers what the manager adds on top of the store: JSON
 * metadata and values, replace versus merge (including 20 concurrent merges),
 * size limits checked before any write, one logged event per write, and
 * the expiry scheduler (EXPIRED events, batches, store errors, stop).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { loadConfig, type Config } from "../src/config/config.js";
import { SessionError, type SessionErrorKind } from "../src/domain/errors.js";
import type { SessionManager } from "../src/session/session-manager.js";
import type { Background } from "../src/app.js";
import { sessionCore } from "./support/session-core.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { SessionStore, StoredEvent, StoreLimits } from "../src/store/store.js";
import { watchSessions, WatchInterrupted } from "../src/streaming/watch-sessions.js";
import { useRedisServer } from "./support/redis-server.js";

const TENANT = "t1";
const OTHER_TENANT = "t2";
const LIMITS: StoreLimits = { maxDataKeys: 50, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };

function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    SESSION_TTL_MIN: "10ms",
    SESSION_TTL_DEFAULT: "10m",
    SWEEP_INTERVAL: "20ms",
    MAX_METADATA_BYTES: "512",
    MAX_DATA_VALUE_BYTES: "256",
    ...overrides,
  });
}

const silent = pino({ level: "silent" });

interface Harness {
  readonly manager: SessionManager;
  readonly background: Background;
  readonly store: SessionStore;
  /** Every event in the store's log (each harness starts with an empty store). */
  events(): Promise<StoredEvent[]>;
  close(): Promise<void>;
}

type OpenStore = () => Promise<SessionStore>;

async function harness(openStore: OpenStore, config = testConfig(), wrap?: (store: SessionStore) => SessionStore): Promise<Harness> {
  const store = await openStore();
  const { manager, background } = sessionCore({ store: wrap === undefined ? store : wrap(store), config, logger: silent });
  return {
    manager,
    background,
    store,
    events: () => store.readEvents("0-0", 10_000),
    async close() {
      await background.stop();
      await store.dispose();
    },
  };
}

async function assertKind(promise: Promise<unknown>, kind: SessionErrorKind, messageIncludes?: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SessionError, `expected a SessionError, got ${String(error)}`);
    assert.equal(error.kind, kind);
    if (messageIncludes !== undefined) assert.ok(error.message.includes(messageIncludes), `message ${JSON.stringify(error.message)}`);
    return true;
  });
}

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A store whose methods are the real store's, except the ones overridden. */
function overriding(store: SessionStore, overrides: Partial<SessionStore>): SessionStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (typeof property === "string" && property in overrides) return overrides[property as keyof SessionStore];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

const BASE = { userId: "u1", dataSource: "ds1", accessLevel: "write" } as const;

function managerSuite(name: string, openStore: OpenStore): void {
  describe(`SessionManager over ${name}`, () => {
    it("creates with decoded metadata and the default TTL, and reads it back", async () => {
      const h = await harness(openStore);
      try {
        const { session, created } = await h.manager.create(TENANT, { ...BASE, metadata: { a: 1, nested: { b: [true, null] } } });
        assert.equal(created, true);
        assert.deepEqual(session.metadata, { a: 1, nested: { b: [true, null] } });
        assert.equal(session.expireTime - session.createTime, 600_000);
        const again = await h.manager.get(TENANT, session.sessionId, false);
        assert.deepEqual(again.metadata, session.metadata);
        const plain = await h.manager.create(TENANT, BASE);
        assert.deepEqual(plain.session.metadata, {});
        await assertKind(h.manager.get(OTHER_TENANT, session.sessionId, false), "not_found");
      } finally {
        await h.close();
      }
    });

    it("replaces metadata, or merges top-level keys with null removing a key", async () => {
      const h = await harness(openStore);
      try {
        const { session } = await h.manager.create(TENANT, { ...BASE, metadata: { keep: 1, drop: 2, change: "old" } });
        const merged = await h.manager.update(TENANT, session.sessionId, {
          metadata: { drop: null, change: { now: "an object" }, added: [1] },
          mergeMetadata: true,
        });
        assert.deepEqual(merged.metadata, { keep: 1, change: { now: "an object" }, added: [1] });
        assert.equal(merged.version, session.version + 1);

        const replaced = await h.manager.update(TENANT, session.sessionId, { metadata: { kept: true, nothing: null } });
        assert.deepEqual(replaced.metadata, { kept: true, nothing: null }, "replace keeps the object as given, nulls included");

        const moved = await h.manager.update(TENANT, session.sessionId, { dataSource: "ds2", accessLevel: "admin" });
        assert.equal(moved.dataSource, "ds2");
        assert.equal(moved.accessLevel, "admin");
        assert.deepEqual(moved.metadata, { kept: true, nothing: null }, "an update without metadata keeps it");

        const protoKey = await h.manager.update(TENANT, session.sessionId, { metadata: JSON.parse('{"__proto__": {"x": 1}}') as { [k: string]: null }, mergeMetadata: true });
        assert.deepEqual(Object.keys(protoKey.metadata).sort(), ["__proto__", "kept", "nothing"], "__proto__ is an ordinary key");
      } finally {
        await h.close();
      }
    });

    it("20 concurrent merges of distinct keys all survive", async () => {
      const h = await harness(openStore);
      try {
        const { session } = await h.manager.create(TENANT, { ...BASE, metadata: { base: true } });
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            h.manager.update(TENANT, session.sessionId, { metadata: { [`k${i}`]: i }, mergeMetadata: true }),
          ),
        );
        const versions = results.map((r) => r.version).sort((a, b) => a - b);
        assert.deepEqual(versions, Array.from({ length: 20 }, (_, i) => session.version + 1 + i), "each merge is its own version");
        const final = await h.manager.get(TENANT, session.sessionId, false);
        const expected: Record<string, unknown> = { base: true };
        for (let i = 0; i < 20; i++) expected[`k${i}`] = i;
        assert.deepEqual(final.metadata, expected);
        assert.equal((await h.events()).filter((e) => e.type === "updated").length, 20);
      } finally {
        await h.close();
      }
    });

    it("honours expected_version without retrying, and refuses to change an ended session", async () => {
      const h = await harness(openStore);
      try {
        const { session } = await h.manager.create(TENANT, { ...BASE, metadata: { a: 1 } });
        await h.manager.update(TENANT, session.sessionId, { metadata: { b: 2 }, mergeMetadata: true });
        await assertKind(
          h.manager.update(TENANT, session.sessionId, { metadata: { c: 3 }, mergeMetadata: true, expectedVersion: session.version }),
          "version_mismatch",
        );
        await assertKind(h.manager.update(TENANT, session.sessionId, { metadata: { c: 3 }, expectedVersion: session.version }), "version_mismatch");
        const current = await h.manager.get(TENANT, session.sessionId, false);
        assert.deepEqual(current.metadata, { a: 1, b: 2 }, "nothing written by the rejected updates");
        const ok = await h.manager.update(TENANT, session.sessionId, { metadata: { c: 3 }, mergeMetadata: true, expectedVersion: current.version });
        assert.deepEqual(ok.metadata, { a: 1, b: 2, c: 3 });

        await h.manager.close(TENANT, session.sessionId);
        await assertKind(h.manager.update(TENANT, session.sessionId, { metadata: { d: 4 }, mergeMetadata: true }), "ended");
        await assertKind(h.manager.update(TENANT, session.sessionId, { metadata: { d: 4 } }), "ended");
        await assertKind(h.manager.update(TENANT, "00000000-0000-4000-8000-000000000000", { metadata: {}, mergeMetadata: true }), "not_found");
      } finally {
        await h.close();
      }
    });

    it("checks metadata and value sizes before writing anything", async () => {
      const h = await harness(openStore);
      try {
        const big = "x".repeat(600);
        await assertKind(h.manager.create(TENANT, { ...BASE, metadata: { big } }), "invalid_argument", "metadata:");
        assert.equal((await h.manager.metrics(TENANT)).total, 0, "no session created");

        const { session } = await h.manager.create(TENANT, { ...BASE, metadata: { half: "y".repeat(300) } });
        await assertKind(
          h.manager.update(TENANT, session.sessionId, { metadata: { other: "z".repeat(300) }, mergeMetadata: true }),
          "invalid_argument",
          "metadata:",
        );
        await assertKind(h.manager.update(TENANT, session.sessionId, { metadata: { n: Number.NaN } }), "invalid_argument", "metadata:");
        await assertKind(h.manager.setData(TENANT, session.sessionId, "k", "v".repeat(300)), "invalid_argument", "value:");
        await assertKind(h.manager.setData(TENANT, session.sessionId, "k", [1, Number.POSITIVE_INFINITY]), "invalid_argument", "value:");
        const after = await h.manager.get(TENANT, session.sessionId, false);
        assert.equal(after.version, session.version, "version unchanged");
        assert.deepEqual((await h.manager.listData(TENANT, session.sessionId, false)).keys, []);
      } finally {
        await h.close();
      }
    });

    it("stores data values as JSON and reports an absent key as not_found", async () => {
      const h = await harness(openStore);
      try {
        const { session } = await h.manager.create(TENANT, BASE);
        const id = session.sessionId;
        await h.manager.setData(TENANT, id, "b", { deep: [1, "two", null, false] });
        await h.manager.setData(TENANT, id, "a", null);
        const w = await h.manager.setData(TENANT, id, "c", "text");
        assert.equal(w.version, session.version + 3);
        assert.deepEqual(await h.manager.getData(TENANT, id, "b"), { deep: [1, "two", null, false] });
        assert.equal(await h.manager.getData(TENANT, id, "a"), null);
        await assertKind(h.manager.getData(TENANT, id, "missing"), "not_found", 'key "missing" not found');

        const listing = await h.manager.listData(TENANT, id, true);
        assert.deepEqual(listing.keys, ["a", "b", "c"]);
        assert.deepEqual([...(listing.values ?? new Map())], [["a", null], ["b", { deep: [1, "two", null, false] }], ["c", "text"]]);
        assert.equal((await h.manager.listData(TENANT, id, false)).values, undefined);

        assert.deepEqual(await h.manager.deleteData(TENANT, id, "a"), { deleted: true, version: w.version + 1 });
        assert.deepEqual(await h.manager.deleteData(TENANT, id, "a"), { deleted: false, version: w.version + 2 });
        assert.deepEqual(await h.manager.clearData(TENANT, id), { deletedCount: 2, version: w.version + 3 });

        const reader = await h.manager.create(TENANT, { ...BASE, accessLevel: "read" });
        await assertKind(h.manager.setData(TENANT, reader.session.sessionId, "k", 1), "permission_denied");
      } finally {
        await h.close();
      }
    });

    it("logs one event per write, with data keys and without data values", async () => {
      const h = await harness(openStore);
      try {
        const { session } = await h.manager.create(TENANT, { ...BASE, requestId: "req-1" });
        const repeat = await h.manager.create(TENANT, { ...BASE, requestId: "req-1" });
        assert.equal(repeat.created, false);
        const id = session.sessionId;
        await h.manager.get(TENANT, id, false);
        await h.manager.update(TENANT, id, { metadata: { m: 1 } });
        await h.manager.update(TENANT, id, { metadata: { n: 2 }, mergeMetadata: true });
        await h.manager.extend(TENANT, id, 120_000);
        await h.manager.setData(TENANT, id, "secret-key", "SECRET-VALUE");
        await h.manager.getData(TENANT, id, "secret-key");
        await h.manager.deleteData(TENANT, id, "secret-key");
        await h.manager.setData(TENANT, id, "b", 1);
        await h.manager.setData(TENANT, id, "a", 2);
        await h.manager.clearData(TENANT, id);
        await h.manager.close(TENANT, id);

        const events = await h.events();
        assert.deepEqual(
          events.map((e) => e.type),
          ["created", "updated", "updated", "extended", "data_changed", "data_changed", "data_changed", "data_changed", "data_changed", "closed"],
        );
        const ids = events.map((e) => e.id);
        assert.equal(new Set(ids).size, ids.length, "unique ids");
        assert.ok(events.every((e) => e.session.sessionId === id && e.session.tenant === TENANT));
        assert.deepEqual(
          events.filter((e) => e.type === "data_changed").map((e) => e.dataKeys),
          [["secret-key"], ["secret-key"], ["b"], ["a"], ["a", "b"]],
          "a clear names every key it removed",
        );
        assert.ok((events[3]?.session.expireTime ?? Infinity) < session.expireTime, "the extended event carries the new, earlier expiry");
        const closed = events.at(-1);
        assert.equal(closed?.session.status, "closed");
        assert.ok(!JSON.stringify(events).includes("SECRET-VALUE"), "no data value in any event");
        // Each event carries the session after its write.
        const versions = events.map((e) => e.session.version);
        assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
      } finally {
        await h.close();
      }
    });

    it("watch: only the tenant's events; a watcher that falls behind is ended with its cursor and unsubscribed", async () => {
      const h = await harness(openStore);
      const abort = new AbortController();
      try {
        await h.background.start();
        const watch = watchSessions(h.manager, h.background.events, TENANT, {}, { sendInitialSnapshot: false, resumeCursor: "", heartbeatMs: 60_000, signal: abort.signal, queueLimit: 3 });
        const first = watch.next();
        await waitFor("the watch to register", () => h.background.events.subscriberCount === 1);
        await h.manager.create(OTHER_TENANT, BASE);
        const mine = await h.manager.create(TENANT, BASE);
        const item = await first;
        assert.equal(item.done, false);
        assert.equal(item.value?.type, "created");
        assert.equal(item.value?.session?.sessionId, mine.session.sessionId, "the other tenant's event was skipped");
        const logged = await h.events();
        assert.equal(item.value?.cursor, logged[1]?.id, "the cursor is the event's log id");
        // The consumer does not read while four more events arrive: one more than the queue holds.
        for (let i = 0; i < 4; i++) await h.manager.create(TENANT, BASE);
        await waitFor("the hub to drop the slow watcher", () => h.background.events.subscriberCount === 0);
        // What was queued before the overflow is still delivered, then the watch ends with the last cursor.
        const drained: string[] = [];
        for (let i = 0; i < 3; i++) drained.push((await watch.next()).value?.cursor ?? "");
        const all = await h.events();
        assert.deepEqual(drained, all.slice(2, 5).map((e) => e.id));
        await assert.rejects(watch.next(), (error: unknown) => {
          assert.ok(error instanceof WatchInterrupted);
          assert.equal(error.kind, "limit_exceeded");
          assert.equal(error.cursor, drained[2], "the last cursor delivered");
          assert.match(error.message, /resume with resume_cursor/);
          return true;
        });
      } finally {
        abort.abort();
        await h.close();
      }
    });

    it("watch: returns when the signal aborts while it waits", async () => {
      const h = await harness(openStore);
      const abort = new AbortController();
      try {
        await h.background.start();
        const watch = watchSessions(h.manager, h.background.events, TENANT, {}, { sendInitialSnapshot: false, resumeCursor: "", heartbeatMs: 60_000, signal: abort.signal });
        const pending = watch.next();
        await sleep(20);
        assert.equal(h.background.events.subscriberCount, 1);
        abort.abort();
        assert.deepEqual(await pending, { done: true, value: undefined });
        assert.equal(h.background.events.subscriberCount, 0, "the watch unsubscribed");
      } finally {
        await h.close();
      }
    });

    it("reports metrics from the store's counters, with the average duration of ended sessions", async () => {
      const h = await harness(openStore);
      try {
        const none = await h.manager.metrics(TENANT);
        assert.equal(none.averageDurationMs, 0);
        const a = await h.manager.create(TENANT, { ...BASE, accessLevel: "read" });
        const b = await h.manager.create(TENANT, { ...BASE, dataSource: "ds2" });
        await h.manager.create(TENANT, BASE);
        await sleep(20);
        const closedA = await h.manager.close(TENANT, a.session.sessionId);
        const closedB = await h.manager.close(TENANT, b.session.sessionId);
        const m = await h.manager.metrics(TENANT);
        assert.equal(m.total, 3);
        assert.equal(m.active, 1);
        assert.equal(m.closed, 2);
        assert.deepEqual(m.activeByAccessLevel, { write: 1 });
        assert.deepEqual(m.activeByDataSource, { ds1: 1 });
        const durations = [closedA, closedB].map((s) => s.endTime - s.createTime);
        assert.equal(m.averageDurationMs, (durations[0]! + durations[1]!) / 2);
        // Node's timers can fire up to a millisecond early against the wall clock the store reads.
        assert.ok(m.averageDurationMs >= 19, `average duration ${m.averageDurationMs} ms after a 20 ms sleep`);
      } finally {
        await h.close();
      }
    });

    it("scheduler logs EXPIRED for each due session, looping over full batches", async () => {
      // A one-hour bound on sleeps: the scheduler wakes for the due time it read, and loops over full batches.
      const config = testConfig({ SWEEP_INTERVAL: "1h" });
      const store = await openStore();
      let calls = 0;
      const counting = overriding(store, {
        expireDue: (limit: number) => {
          calls++;
          return store.expireDue(limit);
        },
      });
      const { manager, background } = sessionCore({ store: counting, config, logger: silent, sweepBatchSize: 2 });
      try {
        const ids = new Set<string>();
        for (let i = 0; i < 5; i++) ids.add((await manager.create(TENANT, { ...BASE, ttlMs: 30 })).session.sessionId);
        await sleep(60);
        await background.start();
        const expired = async (): Promise<StoredEvent[]> => (await store.readEvents("0-0", 100)).filter((e) => e.type === "expired");
        await waitFor("five EXPIRED events", async () => (await expired()).length === 5);
        assert.equal(calls, 3, "batches of 2, 2 and 1");
        const events = await expired();
        assert.deepEqual(new Set(events.map((e) => e.session.sessionId)), ids);
        assert.ok(events.every((e) => e.session.status === "expired" && e.session.endTime === e.session.expireTime));
        assert.equal((await manager.metrics(TENANT)).expired, 5);
      } finally {
        await background.stop();
        await store.dispose();
      }
    });

    it("scheduler wakes at the expire time of a session created while it sleeps", async () => {
      const store = await openStore();
      const { manager, background } = sessionCore({ store, config: testConfig({ SWEEP_INTERVAL: "1h" }), logger: silent });
      try {
        await background.start();
        await sleep(50); // asleep for an hour now, with nothing due
        const { session } = await manager.create(TENANT, { ...BASE, ttlMs: 100 });
        await waitFor("the EXPIRED event", async () => (await store.readEvents("0-0", 100)).some((e) => e.type === "expired" && e.session.sessionId === session.sessionId), 3000);
      } finally {
        await background.stop();
        await store.dispose();
      }
    });

    it("scheduler stops cleanly: no store call after stop() resolves", async () => {
      const store = await openStore();
      let calls = 0;
      const counting = overriding(store, {
        nextDue: async () => {
          calls++;
          await sleep(5);
          return store.nextDue();
        },
      });
      const { manager, background } = sessionCore({ store: counting, config: testConfig(), logger: silent });
      try {
        await background.start();
        await waitFor("a few looks at the due queue", () => calls >= 3);
        await background.stop();
        const atStop = calls;
        await manager.create(TENANT, { ...BASE, ttlMs: 10 });
        await sleep(150);
        assert.equal(calls, atStop, "no look after stop");
        // It can be started again.
        await background.start();
        await waitFor("a look after restart", () => calls > atStop);
      } finally {
        await background.stop();
        await store.dispose();
      }
    });

    it("scheduler logs store errors without values and keeps going", async () => {
      const store = await openStore();
      const lines: string[] = [];
      const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
      let failures = 3;
      const flaky = overriding(store, {
        expireDue: async (limit: number) => {
          if (failures > 0) {
            failures--;
            throw new Error('store fault quoting {"secret":"METADATA-VALUE"}');
          }
          return store.expireDue(limit);
        },
      });
      const { manager, background } = sessionCore({ store: flaky, config: testConfig(), logger });
      try {
        const { session } = await manager.create(TENANT, { ...BASE, ttlMs: 10, metadata: { secret: "METADATA-VALUE" } });
        await background.start();
        await waitFor("the EXPIRED event after the failures", async () =>
          (await store.readEvents("0-0", 100)).some((e) => e.type === "expired" && e.session.sessionId === session.sessionId),
        );
        assert.equal(failures, 0);
        assert.ok(lines.some((l) => l.includes("store call failed")), "the failure is logged");
        assert.ok(!lines.join("").includes("METADATA-VALUE"), "no value in the logs");
      } finally {
        await background.stop();
        await store.dispose();
      }
    });
  });
}

managerSuite("MemoryStore", async () => new MemoryStore({ limits: LIMITS }));

describe("SessionManager over RedisStore", () => {
  const server = useRedisServer();

  managerSuite("RedisStore", async () => {
    const raw = server.client();
    await raw.flushall();
    raw.disconnect();
    return new RedisStore({ url: server.url, keyPrefix: "sm:", limits: LIMITS, commandTimeoutMs: 2000 });
  });

  it("the scheduler survives Redis going away and coming back", async () => {
    const config = testConfig();
    const store = new RedisStore({ url: server.url, keyPrefix: "sm:", limits: LIMITS, commandTimeoutMs: 300 });
    const { manager, background } = sessionCore({ store, config, logger: silent });
    try {
      await background.start();
      await server.stop();
      await sleep(200);
      await server.start();
      // The store reconnects with a backoff longer than its 300 ms deadline: retry UNAVAILABLE as a client would.
      let created: Awaited<ReturnType<typeof manager.create>> | undefined;
      await waitFor(
        "a create after the restart",
        async () => {
          created = await manager.create(TENANT, { ...BASE, ttlMs: 20 }).catch((error: unknown) => {
            if (error instanceof SessionError && error.kind === "unavailable") return undefined;
            throw error;
          });
          return created !== undefined;
        },
        10_000,
      );
      const session = created!.session;
      await waitFor(
        "an EXPIRED event after the restart",
        async () => (await store.readEvents("0-0", 100).catch(() => [])).some((e) => e.type === "expired" && e.session.sessionId === session.sessionId),
        10_000,
      );
    } finally {
      await background.stop();
      await store.dispose();
    }
  });
});
