/**
 * RedisStore: the shared conformance suite on a private redis-server, plus what
 * only Redis has: key TTLs, the key layout left behind by close and expiry,
 * atomicity under parallel calls, exactly-once expiry across store instances,
 * and index keys that die even when the sweeper never ran.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionError } from "../src/domain/errors.js";
import type { SessionRecord } from "../src/domain/model.js";
import type { CreateSessionInput, StoreLimits } from "../src/store/store.js";
import { indexMember, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { HASH_VALUE_BYTES } from "../src/store/redis/compact-hashes.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisServer } from "./support/redis-server.js";
import { readArchive } from "./support/archive.js";

const PREFIX = "sdtest:";

const server = useRedisServer();

function openStore(limits: StoreLimits = CONFORMANCE_LIMITS): RedisStore {
  return new RedisStore({ url: server.url, keyPrefix: PREFIX, limits, commandTimeoutMs: 2000 });
}

const openFlushed = async (): Promise<{ store: RedisStore; cleanup: () => Promise<void> }> => {
  await server.raw.flushall();
  const store = openStore();
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("redis", openFlushed);
runGuardConformance("redis", openFlushed);

describe("RedisStore on Redis", () => {
  const TENANT = "tenant-r";
  const keys = new RedisKeys(PREFIX, TENANT);
  /** Long enough that Redis never deletes a record before a test sweeps it, even on a busy machine. */
  const GRACE = 5_000;
  /** For the tests where Redis must delete the session's keys because nobody swept them. */
  const SHORT_GRACE = 150;
  const RETENTION = 30_000;
  const limits: StoreLimits = { maxDataKeys: 64, archiveRetentionMs: RETENTION, expiryGraceMs: GRACE };

  function input(overrides: Partial<CreateSessionInput> = {}): CreateSessionInput {
    return {
      tenant: TENANT,
      userId: "user-1",
      dataSource: "source-1",
      accessLevel: "write",
      ttlMs: 60_000,
      metadata: '{"secret":"do-not-log"}',
      requestId: "",
      ...overrides,
    };
  }

  async function withStore(fn: (store: RedisStore) => Promise<void>, grace = GRACE): Promise<void> {
    await server.raw.flushall();
    const store = openStore({ ...limits, expiryGraceMs: grace });
    try {
      await fn(store);
    } finally {
      await store.dispose();
    }
  }

  async function expireTimeOf(key: string): Promise<number> {
    return Number(await server.raw.call("PEXPIRETIME", key));
  }

  /** The score of a session in the user's index, or null. */
  async function userScore(userId: string, sessionId: string): Promise<number | null> {
    const score = await server.raw.zscore(keys.userIndex(userId), indexMember(sessionId));
    return score === null ? null : Number(score);
  }

  /** The data source's index keys: its directory and its buckets (lua/indexes.ts). */
  async function sourceIndexKeys(dataSource: string): Promise<string[]> {
    const bounds = await server.raw.zrange(keys.dataSourceDirectory(dataSource), "0", "-1");
    return [keys.dataSourceDirectory(dataSource), ...bounds.map((lb) => keys.dataSourceBucket(dataSource, lb))];
  }

  /** The score of a session in the data source's index (any bucket), or null. */
  async function sourceScore(dataSource: string, sessionId: string): Promise<number | null> {
    for (const bucket of (await sourceIndexKeys(dataSource)).slice(1)) {
      const score = await server.raw.zscore(bucket, indexMember(sessionId));
      if (score !== null) return Number(score);
    }
    return null;
  }

  /** Every key of the tenant (SCAN is fine in a test; the store never scans). */
  async function tenantKeys(): Promise<string[]> {
    return (await server.raw.keys(`${PREFIX}${TENANT}:*`)).sort();
  }

  it("every key of a session expires at expireTime + grace, and follows extend", () =>
    withStore(async (store) => {
      const { session } = await store.create(input({ requestId: "req-ttl" }));
      await store.setData(TENANT, session.sessionId, "k", '"v"');
      const sid = session.sessionId;
      const sessionKeys = [keys.record(sid), keys.data(sid), keys.requestId("req-ttl")];
      const indexKeys = async (): Promise<string[]> => [keys.userIndex("user-1"), ...(await sourceIndexKeys("source-1"))];
      assert.equal((await indexKeys()).length, 3, "user index, data-source directory and one bucket");
      for (const key of [...sessionKeys, ...(await indexKeys())]) {
        assert.ok((await server.raw.pttl(key)) > 0, `${key} has a TTL`);
        assert.equal(await expireTimeOf(key), session.expireTime + GRACE, `${key} expires with the session`);
      }
      assert.equal(await userScore("user-1", sid), session.expireTime);
      assert.equal(await sourceScore("source-1", sid), session.expireTime);

      const later = await store.extend(TENANT, sid, 120_000);
      for (const key of [...sessionKeys, ...(await indexKeys())]) {
        assert.equal(await expireTimeOf(key), later.expireTime + GRACE, `${key} follows a later expiry`);
      }
      assert.equal(await userScore("user-1", sid), later.expireTime);
      assert.equal(await sourceScore("source-1", sid), later.expireTime);

      const earlier = await store.extend(TENANT, sid, 30_000);
      for (const key of sessionKeys) {
        assert.equal(await expireTimeOf(key), earlier.expireTime + GRACE, `${key} follows an earlier expiry`);
      }
      for (const key of await indexKeys()) {
        // An index key lives as long as its longest-lived member ever did.
        assert.ok((await expireTimeOf(key)) >= earlier.expireTime + GRACE, `${key} still covers the session`);
      }
      assert.equal(await sourceScore("source-1", sid), earlier.expireTime);
      const due = await server.raw.zscore(keys.due(), keys.dueMember("source-1"));
      assert.ok(due !== null && Number(due) <= earlier.expireTime, "the due queue knows the earlier expiry");
    }));

  it("create answers with the record Redis stored: sealed forms, a lone surrogate, the sessions it closed, a replay", async () => {
    // The script answers a new session with what only it chose; the store builds the rest from what it sent.
    const stored = async (store: RedisStore, record: SessionRecord): Promise<SessionRecord> =>
      store.get(TENANT, record.sessionId, { touch: false, includeEnded: true });
    await withStore(async (store) => {
      const sealed = { user: "e1:k1:sealed-user", dataSource: "e1:k1:sealed-source", metadataTag: "tag-1" };
      const made = await store.create(input({ ttlMs: 60_000.75, sealed }));
      assert.deepEqual(made.session, await stored(store, made.session));
      assert.deepEqual(made.session.sealed, sealed);
      // Redis keeps UTF-8: a lone surrogate comes back as U+FFFD.
      const odd = await store.create(input({ userId: "user-\ud800", metadata: '{"a":"\udc00"}' }));
      assert.deepEqual(odd.session, await stored(store, odd.session));
      assert.equal(odd.session.userId, "user-\ufffd");
      const replay = await store.create(input({ requestId: "req-replay" }));
      const again = await store.create(input({ requestId: "req-replay", metadata: "{}" }));
      assert.equal(again.created, false);
      assert.deepEqual(again.session, await stored(store, replay.session));
    });
    await server.raw.flushall();
    const capped = openStore({ ...limits, maxSessionsPerUser: 1, sessionsPerUserPolicy: "close_oldest" });
    try {
      const first = await capped.create(input());
      const second = await capped.create(input({ accessLevel: "read" }));
      assert.deepEqual(second.session, await stored(capped, second.session));
      assert.deepEqual(second.evicted, [await stored(capped, first.session)]);
    } finally {
      await capped.dispose();
    }
  });

  it("all keys of one session share the {sessionId} hash tag", () =>
    withStore(async (store) => {
      const { session } = await store.create(input());
      const sid = session.sessionId;
      for (const key of [keys.record(sid), keys.data(sid), keys.archive(sid)]) {
        assert.ok(key.includes(`{${sid}}`), key);
        assert.equal(key.indexOf("{"), key.indexOf(`{${sid}}`), `${key}: the first brace opens the session id`);
      }
    }));

  it("close leaves only the archive (kept for the retention) and the counters", () =>
    withStore(async (store) => {
      const { session } = await store.create(input({ requestId: "req-close" }));
      await store.setData(TENANT, session.sessionId, "k", '"v"');
      const closed = await store.close(TENANT, session.sessionId);
      assert.deepEqual(await tenantKeys(), [keys.counters(), keys.lastEvent(), keys.archive(session.sessionId)].sort());
      const ttl = await server.raw.pttl(keys.archive(session.sessionId));
      assert.ok(ttl > RETENTION - 2000 && ttl <= RETENTION, `archive TTL ${ttl} ≈ retention`);
      assert.equal(await expireTimeOf(keys.archive(session.sessionId)), closed.endTime + RETENTION);
    }));

  it("an archive is one compact MessagePack string; an archive hash of an earlier version still reads", () =>
    withStore(async (store) => {
      const { session } = await store.create(input({ metadata: '{"k":"v"}' }));
      const closed = await store.close(TENANT, session.sessionId);
      const key = keys.archive(session.sessionId);
      assert.equal(await server.raw.type(key), "string");
      const raw = await readArchive(server.raw, key);
      assert.deepEqual(raw, {
        u: closed.userId, d: closed.dataSource, l: closed.accessLevel, c: String(closed.createTime), e: String(closed.expireTime),
        a: String(closed.lastAccessTime), m: '{"k":"v"}', v: String(closed.version), s: "closed", t: String(closed.endTime),
      });
      // The same archive as the hash earlier versions wrote: read back identically.
      await server.raw.del(key);
      await server.raw.hset(key, { ...raw });
      assert.deepEqual(await store.get(TENANT, session.sessionId, { touch: false, includeEnded: true }), closed);
    }));

  it("a live record as earlier versions wrote it (level spelled out, its own sealed data-source name) reads the same", () =>
    withStore(async (store) => {
      const { session } = await store.create(input({ accessLevel: "write" }));
      const key = keys.record(session.sessionId);
      await server.raw.hset(key, { l: "write" });
      assert.deepEqual(await store.get(TENANT, session.sessionId, { touch: false, includeEnded: false }), session);
      // Sealed fields make the reply carry them: the record's own sealed data-source name is the one answered.
      await server.raw.hset(key, { U: "sealed-user", D: "sealed-source", mt: "tag" });
      const sealed = await store.get(TENANT, session.sessionId, { touch: false, includeEnded: false });
      assert.deepEqual(sealed, { ...session, sealed: { user: "sealed-user", dataSource: "sealed-source", metadataTag: "tag" } });
    }));

  it("expiry leaves only the archive, kept for the retention after expireTime", () =>
    withStore(async (store) => {
      const { session } = await store.create(input({ ttlMs: 200, requestId: "req-exp" }));
      await store.setData(TENANT, session.sessionId, "k", '"v"');
      await sleep(250);
      const expired = await store.expireDue(10);
      assert.deepEqual(expired.map((r) => r.sessionId), [session.sessionId]);
      assert.deepEqual(await tenantKeys(), [keys.counters(), keys.lastEvent(), keys.archive(session.sessionId)].sort());
      assert.equal(await expireTimeOf(keys.archive(session.sessionId)), session.expireTime + RETENTION);
      assert.equal(await server.raw.zcard(keys.due()), 0, "an empty data-source index leaves the due queue");
    }));

  it("an unfiltered listing reads one index, whatever the number of data sources (bounded by its page)", () =>
    withStore(async (store) => {
      for (let i = 0; i < 300; i++) await store.create(input({ dataSource: `source-${i}`, ttlMs: 60_000 + i }));
      const zrangeCalls = async (): Promise<number> => {
        const info = await server.raw.info("commandstats");
        const line = info.split("\n").find((l) => l.startsWith("cmdstat_zrange:"));
        return Number(/calls=(\d+)/.exec(line ?? "")?.[1] ?? 0);
      };
      const before = await zrangeCalls();
      const page = await store.list(TENANT, {}, 10);
      const calls = (await zrangeCalls()) - before;
      assert.equal(page.sessions.length, 10);
      assert.deepEqual(page.sessions.map((s) => s.dataSource), Array.from({ length: 10 }, (_, i) => `source-${i}`), "soonest-expiring first");
      // The directory's bucket lookup and walk, and the bucket read: none per data source.
      assert.ok(calls <= 4, `${calls} ZRANGE calls for one page over 300 data sources`);
      const next = await store.list(TENANT, {}, 10, page.next);
      assert.deepEqual(next.sessions.map((s) => s.dataSource), Array.from({ length: 10 }, (_, i) => `source-${i + 10}`));
    }));

  it("50 parallel updates with the same expectedVersion: exactly one succeeds", () =>
    withStore(async (store) => {
      const { session } = await store.create(input());
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => store.update(TENANT, session.sessionId, { metadata: `{"n":${i}}` }, 1)),
      );
      const ok = results.filter((r) => r.status === "fulfilled");
      assert.equal(ok.length, 1);
      for (const r of results) {
        if (r.status === "rejected") {
          assert.ok(r.reason instanceof SessionError);
          assert.equal(r.reason.kind, "version_mismatch");
        }
      }
      assert.equal((await store.get(TENANT, session.sessionId, { touch: false, includeEnded: false })).version, 2);
    }));

  it("50 parallel setData on distinct keys all survive", () =>
    withStore(async (store) => {
      const { session } = await store.create(input());
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => store.setData(TENANT, session.sessionId, `key-${i}`, `${i}`)),
      );
      assert.equal(new Set(results.map((r) => r.version)).size, 50, "50 distinct versions");
      const data = await store.listData(TENANT, session.sessionId, true);
      assert.equal(data.size, 50);
      for (let i = 0; i < 50; i++) assert.equal(data.get(`key-${i}`), `${i}`);
      assert.equal(await server.raw.hlen(keys.data(session.sessionId)), 50);
    }));

  it("three store instances sweeping at once expire each due session exactly once, in order per call", async () => {
    await server.raw.flushall();
    const stores = [openStore(limits), openStore(limits), openStore(limits)];
    try {
      const [first] = stores;
      assert.ok(first);
      const tenants = ["t-1", "t-2", "t-3"];
      const created: SessionRecord[] = [];
      for (let i = 0; i < 90; i++) {
        const { session } = await first.create(
          input({ tenant: tenants[i % 3] ?? "t-1", dataSource: `ds-${i % 4}`, userId: `u-${i % 7}`, ttlMs: 200 + (i % 10) * 5 }),
        );
        created.push(session);
      }
      const live = await first.create(input({ tenant: "t-1", dataSource: "ds-0" }));
      // Past the last expiry (creating 90 sessions may take a while on a busy machine).
      const lastExpiry = Math.max(...created.map((s) => s.expireTime));
      await sleep(Math.max(0, lastExpiry - Date.now()) + 50);
      const returned: SessionRecord[] = [];
      await Promise.all(
        stores.map(async (store) => {
          for (;;) {
            const batch = await store.expireDue(7);
            for (let i = 1; i < batch.length; i++) {
              const prev = batch[i - 1];
              const cur = batch[i];
              assert.ok(prev && cur && prev.expireTime <= cur.expireTime, "one call returns sessions in expiry order");
            }
            returned.push(...batch);
            if (batch.length === 0) return;
          }
        }),
      );
      assert.equal(returned.length, created.length, "sum of returned records == number of due sessions");
      assert.deepEqual(returned.map((r) => r.sessionId).sort(), created.map((r) => r.sessionId).sort());
      for (const r of returned) {
        assert.equal(r.status, "expired");
        assert.equal(r.endTime, r.expireTime);
        assert.equal(r.version, 2);
      }
      for (const tenant of tenants) {
        const c = await first.counters(tenant);
        assert.equal(c.expired, 30, `${tenant}: expired`);
        assert.equal(c.total, tenant === "t-1" ? 31 : 30, `${tenant}: total`);
        assert.equal(c.active, tenant === "t-1" ? 1 : 0, `${tenant}: active`);
        assert.deepEqual(c.activeByDataSource, tenant === "t-1" ? { "ds-0": 1 } : {});
      }
      assert.equal((await first.get("t-1", live.session.sessionId, { touch: false, includeEnded: false })).status, "active");
      assert.deepEqual(await server.raw.zrange(new RedisKeys(PREFIX, "t-1").due(), "0", "-1"), ["t-1\nds-0"], "only the live session's source stays queued");
    } finally {
      await Promise.all(stores.map((s) => s.dispose()));
    }
  });

  it("a session Redis deleted after the grace leaves no index entry behind", () =>
    withStore(async (store) => {
      const { session } = await store.create(input({ ttlMs: 200, userId: "forgotten", dataSource: "forgotten-src" }));
      const indexKeys = [keys.userIndex("forgotten"), ...(await sourceIndexKeys("forgotten-src"))];
      for (const key of indexKeys) assert.equal(await expireTimeOf(key), session.expireTime + SHORT_GRACE, key);
      // Nobody sweeps: wait until Redis itself has dropped everything of the session.
      await sleep(200 + SHORT_GRACE + 100);
      for (const key of [keys.record(session.sessionId), ...indexKeys]) {
        assert.equal(await server.raw.exists(key), 0, `${key} is gone without the sweeper`);
      }
      assert.deepEqual(await store.list(TENANT, { userId: "forgotten" }, 10), { sessions: [] });
      await assertNotFound(store.get(TENANT, session.sessionId, { touch: false, includeEnded: true }));
      assert.deepEqual(await store.expireDue(10), [], "nothing left to archive");
      assert.equal(await server.raw.zcard(keys.due()), 0, "the sweeper drops the empty source from the due queue");
    }, SHORT_GRACE));

  it("the sweeper drops index entries whose record Redis already deleted", () =>
    withStore(async (store) => {
      const gone = await store.create(input({ ttlMs: 200, dataSource: "shared-src" }));
      const kept = await store.create(input({ ttlMs: 60_000, dataSource: "shared-src" }));
      await sleep(200 + SHORT_GRACE + 100);
      assert.equal(await server.raw.exists(keys.record(gone.session.sessionId)), 0);
      assert.notEqual(await sourceScore("shared-src", gone.session.sessionId), null, "the entry outlived its record");
      assert.deepEqual(await store.expireDue(10), []);
      assert.equal(await sourceScore("shared-src", gone.session.sessionId), null, "orphan removed");
      const c = await store.counters(TENANT);
      assert.equal(c.active, 1);
      assert.equal(c.expired, 1);
      assert.deepEqual(c.activeByDataSource, { "shared-src": 1 });
      assert.equal(Number(await server.raw.zscore(keys.due(), keys.dueMember("shared-src"))), kept.session.expireTime);
    }, SHORT_GRACE));

  it("tenants with key-like characters stay apart and survive the due queue", () =>
    withStore(async (store) => {
      const odd = "a:u{x}\nb";
      const { session } = await store.create(input({ tenant: odd, userId: "u", ttlMs: 200 }));
      const plain = await store.create(input({ tenant: "a", userId: "u:u{x}", ttlMs: 200 }));
      assert.equal(session.tenant, odd);
      assert.deepEqual((await store.list(odd, {}, 10)).sessions.map((s) => s.sessionId), [session.sessionId]);
      assert.deepEqual((await store.list("a", {}, 10)).sessions.map((s) => s.sessionId), [plain.session.sessionId]);
      assert.equal((await store.counters(odd)).active, 1);
      assert.equal((await store.counters("a")).active, 1);
      await sleep(250);
      const swept = await store.expireDue(10);
      assert.deepEqual(
        swept.map((r) => [r.tenant, r.sessionId]).sort(),
        [[odd, session.sessionId], ["a", plain.session.sessionId]].sort(),
        "expireDue names each session's own tenant",
      );
      assert.equal((await store.get(odd, session.sessionId, { touch: false, includeEnded: true })).status, "expired");
    }));

  it("unfiltered listing merges the data-source indexes in order across pages", () =>
    withStore(async (store) => {
      const made: SessionRecord[] = [];
      for (let i = 0; i < 25; i++) {
        made.push((await store.create(input({ dataSource: `src-${i % 6}`, ttlMs: 60_000 + (i % 5) * 1000 }))).session);
      }
      const seen: string[] = [];
      let cursor: { expireTime: number; sessionId: string } | undefined;
      for (;;) {
        const page = await store.list(TENANT, {}, 4, cursor);
        seen.push(...page.sessions.map((s) => s.sessionId));
        if (page.next === undefined) break;
        cursor = page.next;
      }
      const want = [...made]
        .sort((a, b) => a.expireTime - b.expireTime || (a.sessionId < b.sessionId ? -1 : 1))
        .map((s) => s.sessionId);
      assert.deepEqual(seen, want);
    }));

  it("logs no metadata or data values", async () => {
    await server.raw.flushall();
    const lines: string[] = [];
    const { pino } = await import("pino");
    const logger = pino({ level: "trace" }, { write: (line: string) => void lines.push(line) });
    const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits, commandTimeoutMs: 2000, logger });
    try {
      const { session } = await store.create(input());
      await store.setData(TENANT, session.sessionId, "k", '"value-do-not-log"');
      await store.getData(TENANT, session.sessionId, "k");
      await store.close(TENANT, session.sessionId);
    } finally {
      await store.dispose();
    }
    const all = lines.join("\n");
    assert.ok(!all.includes("do-not-log"), "no values in logs");
  });

  it("after a Redis restart, the server settings are applied again, even when the command connection comes back late", async () => {
    await server.raw.flushall();
    let command: Redis | undefined;
    const store = new RedisStore({
      url: server.url,
      keyPrefix: PREFIX,
      limits,
      commandTimeoutMs: 2000,
      onConnection: (client, name) => {
        if (name === "store" && client instanceof Redis) command = client;
      },
    });
    assert.ok(command !== undefined);
    const settings = await store.keepServerSettings();
    const listpackValue = async (): Promise<number> => Number(((await server.raw.config("GET", "hash-max-listpack-value")) as [string, string])[1]);
    /** Polls `condition` until it holds, failing with `what` after a bound generous enough for a loaded machine. */
    const eventually = async (what: string, condition: () => Promise<boolean>): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (!(await condition())) {
        assert.ok(Date.now() < deadline, what);
        await sleep(20);
      }
    };
    try {
      assert.equal(await listpackValue(), HASH_VALUE_BYTES);
      // The command connection's first retry comes 3 s after the stop, after the event reader's.
      command.options.retryStrategy = () => 3000;
      await server.stop();
      await server.start(); // an empty Redis with its default settings
      await eventually("the settings are set again", async () => (await listpackValue()) === HASH_VALUE_BYTES);
      await eventually("the store's command connection is back", () => store.ping().then(() => true, () => false));
      // Expiry needs no keyspace notification: none is enabled, and the due queue finds the session.
      const [, flags] = (await server.raw.config("GET", "notify-keyspace-events")) as [string, string];
      assert.equal(flags, "");
      const { session } = await store.create(input({ ttlMs: 200 }));
      await eventually("the session expires from the due queue", async () => (await store.expireDue(10)).some((r) => r.sessionId === session.sessionId));
    } finally {
      await settings.stop();
      await store.dispose();
    }
  });
});

async function assertNotFound(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof SessionError && e.kind === "not_found");
}
