// The Redis store's session indexes (src/store/redis/lua/indexes.ts): bucketed
// data-source and tenant-wide indexes that stay listpacks, listings across
// buckets in (expire time, session id) order, and indexes of the earlier
// layout (text members, one sorted set each) read and emptied.
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../src/domain/errors.js";
import type { SessionRecord } from "../src/domain/model.js";
import type { CreateSessionInput, ListFilter, StoreLimits } from "../src/store/store.js";
import { indexMember, RedisKeys } from "../src/store/redis/keys.js";
import { BUCKET_MAX, indexesLua } from "../src/store/redis/lua/indexes.js";
import { DEFAULT_FCALL_BATCH_BOUNDS, type FcallBatchBounds } from "../src/store/redis/fcall-batcher.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { useRedisServer } from "./support/redis-server.js";

const PREFIX = "sdidx:";
const TENANT = "tenant-i";
const keys = new RedisKeys(PREFIX, TENANT);
const server = useRedisServer();

function input(overrides: Partial<CreateSessionInput> = {}): CreateSessionInput {
  return { tenant: TENANT, userId: "user-1", dataSource: "source-1", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "", ...overrides };
}

const GRACE = 5_000;

/** Batches of up to 64 calls: more creates in one batch than a bucket holds (BUCKET_MAX). */
const WIDE_BATCHES: FcallBatchBounds = { ...DEFAULT_FCALL_BATCH_BOUNDS, maxCalls: 64 };

async function withStore(fn: (store: RedisStore) => Promise<void>, limits: Partial<StoreLimits> = {}, batchBounds?: FcallBatchBounds): Promise<void> {
  await server.raw.flushall();
  const store = new RedisStore({
    url: server.url,
    keyPrefix: PREFIX,
    limits: { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: GRACE, maxSessionsPerUser: 0, ...limits },
    commandTimeoutMs: 5000,
    ...(batchBounds === undefined ? {} : { batchBounds }),
  });
  try {
    await fn(store);
  } finally {
    await store.dispose();
  }
}

/** Every page of a listing with the given page size, concatenated. */
async function listAll(store: RedisStore, filter: ListFilter, pageSize: number): Promise<SessionRecord[]> {
  const out: SessionRecord[] = [];
  let page = await store.list(TENANT, filter, pageSize);
  for (;;) {
    assert.ok(page.sessions.length <= pageSize);
    out.push(...page.sessions);
    if (page.next === undefined) return out;
    page = await store.list(TENANT, filter, pageSize, page.next);
  }
}

/** The ids of the sessions in listing order: (expire time, session id). */
function ordered(sessions: readonly SessionRecord[]): string[] {
  return [...sessions].sort((a, b) => a.expireTime - b.expireTime || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0)).map((s) => s.sessionId);
}

describe("Redis session indexes", () => {
  it("a lowercase UUID is indexed as its 16 bytes (as indexMember), any other id as it is", async () => {
    // The index source compiles on its own: what the member functions use is defined in it.
    const member = (sid: string): Promise<[Buffer, Buffer]> =>
      server.raw.callBuffer("EVAL", `${indexesLua}\nlocal m = sid_member(ARGV[1]) return { m, member_sid(m) }`, 0, sid) as Promise<[Buffer, Buffer]>;
    for (const sid of [randomUUID(), randomUUID(), "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]) {
      const [m, back] = await member(sid);
      assert.deepEqual(m, indexMember(sid), sid);
      assert.equal(back.toString(), sid);
    }
    const uuid = "0123abcd-4567-89ef-0123-456789abcdef";
    const others = [
      uuid.toUpperCase(),
      uuid.replace("a", "g"),
      uuid.replace("-", "0").replace("0123a", "0123-"),
      `${uuid.slice(0, 30)}-${uuid.slice(31)}`,
      `${uuid}0`,
      uuid.slice(1),
      "not-a-uuid",
      "",
    ];
    for (const sid of others) {
      const [m] = await member(sid);
      assert.equal(m.toString(), sid, `${sid} stays text`);
    }
  });

  it("a data source with many sessions is split into listpack buckets, and listings walk them in order", () =>
    withStore(async (store) => {
      // Several sessions per expire time (created together with one TTL) make ties across page ends.
      const live: SessionRecord[] = [];
      for (let round = 0; round < 60; round++) {
        const batch = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.create(input({ userId: `user-${i % 3}`, ttlMs: 600_000 + ((round * 7919) % 50) * 1000 }))),
        );
        live.push(...batch.map((b) => b.session));
      }
      const bounds = await server.raw.zrange(keys.dataSourceDirectory("source-1"), "0", "-1");
      assert.ok(bounds.length > 2, `${bounds.length} buckets for 600 sessions`);
      for (const lb of bounds) {
        assert.equal(await server.raw.object("ENCODING", keys.dataSourceBucket("source-1", lb)), "listpack", `bucket ${lb}`);
      }
      const allBounds = await server.raw.zrange(keys.allDirectory(), "0", "-1");
      for (const lb of allBounds) assert.equal(await server.raw.object("ENCODING", keys.allBucket(lb)), "listpack", `tenant-wide bucket ${lb}`);

      assert.deepEqual((await listAll(store, { dataSource: "source-1" }, 7)).map((s) => s.sessionId), ordered(live), "by data source");
      assert.deepEqual((await listAll(store, {}, 50)).map((s) => s.sessionId), ordered(live), "unfiltered");
      assert.deepEqual((await listAll(store, { userId: "user-1" }, 9)).map((s) => s.sessionId), ordered(live.filter((s) => s.userId === "user-1")), "by user");

      // Closing and extending moves members between buckets; the listings follow.
      const kept: SessionRecord[] = [];
      for (const [i, s] of live.entries()) {
        if (i % 3 === 0) await store.close(TENANT, s.sessionId);
        else if (i % 3 === 1) kept.push(await store.extend(TENANT, s.sessionId, 900_000 + (i % 13) * 1000));
        else kept.push(s);
      }
      assert.deepEqual((await listAll(store, { dataSource: "source-1" }, 11)).map((s) => s.sessionId), ordered(kept), "by data source after changes");
      assert.deepEqual((await listAll(store, {}, 100)).map((s) => s.sessionId), ordered(kept), "unfiltered after changes");
      const members = async (): Promise<number> => {
        let n = 0;
        for (const lb of await server.raw.zrange(keys.dataSourceDirectory("source-1"), "0", "-1")) n += await server.raw.zcard(keys.dataSourceBucket("source-1", lb));
        return n;
      };
      assert.equal(await members(), kept.length, "one member per live session");

      for (const s of kept) await store.close(TENANT, s.sessionId);
      assert.equal(await server.raw.exists(keys.dataSourceDirectory("source-1"), keys.allDirectory(), keys.userIndex("user-1")), 0, "empty indexes leave no key");
    }));

  it("the sweeper expires sessions across buckets and leaves none behind", () =>
    withStore(async (store) => {
      const short = await Promise.all(Array.from({ length: 300 }, (_, i) => store.create(input({ userId: `user-${i % 5}`, ttlMs: 300 + (i % 40) * 5 }))));
      const long = await store.create(input({ ttlMs: 600_000 }));
      await new Promise((resolve) => setTimeout(resolve, 700));
      const expired: string[] = [];
      for (let i = 0; i < 20 && expired.length < short.length; i++) expired.push(...(await store.expireDue(100)).map((r) => r.sessionId));
      assert.deepEqual(expired.sort(), short.map((s) => s.session.sessionId).sort());
      assert.deepEqual((await listAll(store, {}, 10)).map((s) => s.sessionId), [long.session.sessionId]);
      assert.deepEqual(await server.raw.zrange(keys.dataSourceDirectory("source-1"), "0", "-1").then(async (lbs) => {
        const out: string[] = [];
        for (const lb of lbs) out.push(...(await server.raw.zrangeBuffer(keys.dataSourceBucket("source-1", lb), "0", "-1")).map((b) => b.toString("hex")));
        return out;
      }), [indexMember(long.session.sessionId).toString("hex")]);
      assert.equal(Number(await server.raw.zscore(keys.due(), keys.dueMember("source-1"))), long.session.expireTime);
    }));

  it("indexes of the earlier layout are read, merged in order, and emptied as their sessions end", () =>
    withStore(async (store) => {
      const made: SessionRecord[] = [];
      for (let i = 0; i < 8; i++) made.push((await store.create(input({ ttlMs: 600_000 + i * 1000 }))).session);
      // The even ones as an earlier version indexed them: text members in one sorted set per index.
      const old = made.filter((_, i) => i % 2 === 0);
      for (const s of old) {
        const member = indexMember(s.sessionId);
        await server.raw.zrem(keys.userIndex("user-1"), member);
        for (const lb of await server.raw.zrange(keys.dataSourceDirectory("source-1"), "0", "-1")) await server.raw.zrem(keys.dataSourceBucket("source-1", lb), member);
        for (const lb of await server.raw.zrange(keys.allDirectory(), "0", "-1")) await server.raw.zrem(keys.allBucket(lb), member);
        await server.raw.zadd(keys.user("user-1"), s.expireTime, s.sessionId);
        await server.raw.zadd(keys.dataSource("source-1"), s.expireTime, s.sessionId);
        await server.raw.zadd(keys.all(), s.expireTime, s.sessionId);
      }
      const all = ordered(made);
      for (const filter of [{}, { userId: "user-1" }, { dataSource: "source-1" }, { userId: "user-1", dataSource: "source-1" }]) {
        assert.deepEqual((await listAll(store, filter, 3)).map((s) => s.sessionId), all, JSON.stringify(filter));
      }
      // Extending one moves it to the current layout; closing the others empties the earlier keys.
      const moved = await store.extend(TENANT, (old[0] as SessionRecord).sessionId, 700_000);
      assert.equal(await server.raw.zscore(keys.user("user-1"), moved.sessionId), null);
      assert.equal(Number(await server.raw.zscore(keys.userIndex("user-1"), indexMember(moved.sessionId))), moved.expireTime);
      for (const s of old.slice(1)) await store.close(TENANT, s.sessionId);
      assert.equal(await server.raw.exists(keys.user("user-1"), keys.dataSource("source-1"), keys.all()), 0, "the earlier-layout keys are gone");
      const left = ordered([...made.filter((_, i) => i % 2 === 1), moved]);
      assert.deepEqual((await listAll(store, {}, 4)).map((s) => s.sessionId), left);
    }));

  it("the per-user cap and the sweeper see sessions indexed in the earlier layout", () =>
    withStore(async (store) => {
      const first = (await store.create(input({ ttlMs: 400 }))).session;
      const member = indexMember(first.sessionId);
      await server.raw.zrem(keys.userIndex("user-1"), member);
      for (const lb of await server.raw.zrange(keys.dataSourceDirectory("source-1"), "0", "-1")) await server.raw.zrem(keys.dataSourceBucket("source-1", lb), member);
      await server.raw.zadd(keys.user("user-1"), first.expireTime, first.sessionId);
      await server.raw.zadd(keys.dataSource("source-1"), first.expireTime, first.sessionId);
      await store.create(input());
      await assert.rejects(store.create(input()), (error: unknown) => error instanceof SessionError && error.kind === "limit_exceeded", "the cap counts the earlier-layout session");
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.deepEqual((await store.expireDue(10)).map((r) => r.sessionId), [first.sessionId]);
      assert.equal(await server.raw.exists(keys.user("user-1"), keys.dataSource("source-1")), 0);
    }, { maxSessionsPerUser: 2 }));

  it("creates sent as one batch that splits a bucket midway each land in their bucket, and every index key keeps its expiry", () =>
    withStore(async (store) => {
      const live: SessionRecord[] = [];
      for (let i = 0; i < 100; i++) live.push((await store.create(input({ userId: `user-${i % 4}`, ttlMs: 600_000 + (i % 10) * 1000 }))).session);
      const dirBefore = await server.raw.zcard(keys.dataSourceDirectory("source-1"));
      await server.raw.config("RESETSTAT");
      // Scores below, among and above the ones indexed, so the batch's creates meet different buckets before and after the split.
      const batch = await Promise.all(Array.from({ length: 64 }, (_, i) => store.create(input({ userId: `user-${i % 4}`, ttlMs: 595_000 + ((i * 37) % 23) * 1000 }))));
      const stats = await server.raw.info("commandstats");
      assert.equal(/^cmdstat_fcall:calls=(\d+)/m.exec(stats)?.[1], "1", "the 64 creates ran as one batch");
      live.push(...batch.map((b) => b.session));
      assert.ok((await server.raw.zcard(keys.dataSourceDirectory("source-1"))) > dirBefore, "the batch split a bucket");

      const expireOf = new Map(live.map((s) => [indexMember(s.sessionId).toString("hex"), s.expireTime]));
      for (const [dir, bucket] of [[keys.dataSourceDirectory("source-1"), (lb: string) => keys.dataSourceBucket("source-1", lb)], [keys.allDirectory(), (lb: string) => keys.allBucket(lb)]] as const) {
        const bounds = (await server.raw.zrange(dir, "0", "-1")).map(Number);
        const seen: string[] = [];
        let latest = 0;
        for (const [i, lb] of bounds.entries()) {
          const members = await server.raw.zrangeBuffer(bucket(String(lb)), "0", "-1", "WITHSCORES");
          let top = 0;
          for (let k = 0; k < members.length; k += 2) {
            const id = (members[k] as Buffer).toString("hex");
            const score = Number((members[k + 1] as Buffer).toString());
            assert.equal(score, expireOf.get(id), "scored with its expire time");
            assert.ok(score >= lb && score < (bounds[i + 1] ?? Infinity), `${score} belongs in bucket ${lb}`);
            top = Math.max(top, score);
            seen.push(id);
          }
          const at = Number(await server.raw.call("PEXPIRETIME", bucket(String(lb))));
          assert.ok(at >= top + GRACE, `bucket ${lb} outlives its members by the grace`);
          latest = Math.max(latest, at);
        }
        assert.deepEqual(seen.sort(), [...expireOf.keys()].sort(), `${dir}: each session once`);
        assert.ok(Number(await server.raw.call("PEXPIRETIME", dir)) >= latest, `${dir} outlives its buckets`);
      }
      for (let u = 0; u < 4; u++) {
        const mine = live.filter((s) => s.userId === `user-${u}`);
        assert.equal(Number(await server.raw.call("PEXPIRETIME", keys.userIndex(`user-${u}`))), Math.max(...mine.map((s) => s.expireTime)) + GRACE);
        assert.deepEqual((await listAll(store, { userId: `user-${u}` }, 6)).map((s) => s.sessionId), ordered(mine), `user-${u}`);
      }
      assert.deepEqual((await listAll(store, { dataSource: "source-1" }, 7)).map((s) => s.sessionId), ordered(live), "by data source");
      assert.deepEqual((await listAll(store, {}, 13)).map((s) => s.sessionId), ordered(live), "unfiltered");
      assert.equal(Number(await server.raw.zscore(keys.due(), keys.dueMember("source-1"))), Math.min(...live.map((s) => s.expireTime)), "the due queue has the earliest");
    }, {}, WIDE_BATCHES));

  it("a bucket of one expire time grows past the bucket size in a batch, and the batch's first later expire time splits off", () =>
    withStore(async (store) => {
      // The creates of one batch share its clock: one TTL gives one expire time, which no split can divide.
      const same = BUCKET_MAX + 2;
      // Another tenant's create loads the function library first.
      await store.create(input({ tenant: "tenant-other" }));
      await server.raw.config("RESETSTAT");
      const batch = await Promise.all(
        Array.from({ length: same + 2 }, (_, i) => store.create(input({ userId: `user-${i % 4}`, ttlMs: i < same ? 600_000 : 700_000 }))),
      );
      assert.equal(/^cmdstat_fcall:calls=(\d+)/m.exec(await server.raw.info("commandstats"))?.[1], "1", "the creates ran as one batch");
      const at = (ttl: number): number => (batch.find((b) => b.session.expireTime - b.session.createTime === ttl) as { session: SessionRecord }).session.expireTime;
      for (const [dir, bucket] of [[keys.dataSourceDirectory("source-1"), (lb: string) => keys.dataSourceBucket("source-1", lb)], [keys.allDirectory(), (lb: string) => keys.allBucket(lb)]] as const) {
        const buckets: [string, number][] = [];
        for (const lb of await server.raw.zrange(dir, "0", "-1")) {
          const scores = (await server.raw.zrange(bucket(lb), "0", "-1", "WITHSCORES")).filter((_, k) => k % 2 === 1);
          buckets.push([[...new Set(scores)].join(" "), scores.length]);
        }
        assert.deepEqual(buckets, [[String(at(600_000)), same], [String(at(700_000)), 2]], `${dir}: the later expire time left the full bucket`);
      }
      assert.deepEqual((await listAll(store, {}, 17)).map((s) => s.sessionId), ordered(batch.map((b) => b.session)));
    }, {}, WIDE_BATCHES));

  it("sessions arriving with the latest expire time fill each bucket before the next one starts", () =>
    withStore(async (store) => {
      // One create at a time, each expiring after the one before: every split is at the top of the newest bucket.
      const made = 2 * BUCKET_MAX + 10;
      for (let i = 0; i < made; i++) await store.create(input({ ttlMs: 600_000 + i * 1000 }));
      for (const [dir, bucket] of [[keys.dataSourceDirectory("source-1"), (lb: string) => keys.dataSourceBucket("source-1", lb)], [keys.allDirectory(), (lb: string) => keys.allBucket(lb)]] as const) {
        const sizes: number[] = [];
        for (const lb of await server.raw.zrange(dir, "0", "-1")) sizes.push(await server.raw.zcard(bucket(lb)));
        assert.deepEqual(sizes, [BUCKET_MAX, BUCKET_MAX, 10], `${dir}: the buckets left behind are full`);
      }
    }));

  it("the creates of one batch, sealed or not, with a request id or not, each store their own record's fields only", () =>
    withStore(async (store) => {
      const shapes = [
        { sealed: true, requestId: "r-0" },
        { sealed: false, requestId: "" },
        { sealed: true, requestId: "" },
        { sealed: false, requestId: "r-3" },
        { sealed: false, requestId: "" },
      ];
      // Another tenant's create loads the function library first.
      await store.create(input({ tenant: "tenant-other" }));
      await server.raw.config("RESETSTAT");
      const made = await Promise.all(
        shapes.map((shape, i) =>
          store.create(input({ userId: `user-${i}`, requestId: shape.requestId, metadata: `{"i":${i}}`, ...(shape.sealed ? { sealed: { user: `e1:u${i}`, dataSource: "e1:s", metadataTag: `t${i}` } } : {}) })),
        ),
      );
      assert.equal(/^cmdstat_fcall:calls=(\d+)/m.exec(await server.raw.info("commandstats"))?.[1], "1", "the creates ran as one batch");
      for (const [i, { session }] of made.entries()) {
        const shape = shapes[i] as (typeof shapes)[number];
        const stored = await server.raw.hgetall(keys.record(session.sessionId));
        const expected: Record<string, string> = {
          u: `user-${i}`, d: "source-1", l: "w", c: String(session.createTime), e: String(session.expireTime), a: String(session.createTime), m: `{"i":${i}}`, v: "1",
          ...(shape.sealed ? { U: `e1:u${i}`, mt: `t${i}` } : {}),
          ...(shape.requestId === "" ? {} : { r: shape.requestId }),
        };
        assert.deepEqual(stored, expected, `create ${i}`);
      }
    }));

  it("a batch whose creates close the one before (close_oldest) remakes every index key with an expiry", () =>
    withStore(async (store) => {
      // Each create empties the user's index and the buckets, and makes them again.
      const made = await Promise.all(Array.from({ length: 8 }, () => store.create(input({ userId: "solo" }))));
      const last = (made[made.length - 1] as { session: SessionRecord }).session;
      assert.equal(made.slice(1).every((m) => m.evicted?.length === 1), true, "each create closed one");
      const indexKeys = [
        keys.userIndex("solo"),
        keys.dataSourceDirectory("source-1"),
        ...(await server.raw.zrange(keys.dataSourceDirectory("source-1"), "0", "-1")).map((lb) => keys.dataSourceBucket("source-1", lb)),
        keys.allDirectory(),
        ...(await server.raw.zrange(keys.allDirectory(), "0", "-1")).map((lb) => keys.allBucket(lb)),
      ];
      for (const key of indexKeys) assert.equal(Number(await server.raw.call("PEXPIRETIME", key)), last.expireTime + GRACE, key);
      assert.deepEqual((await listAll(store, {}, 10)).map((s) => s.sessionId), [last.sessionId]);
      const counters = await store.counters(TENANT);
      assert.deepEqual([counters.total, counters.active, counters.closed], [8, 1, 7]);
      assert.deepEqual(counters.activeByAccessLevel, { write: 1 });
      assert.deepEqual(counters.activeByDataSource, { "source-1": 1 });
    }, { maxSessionsPerUser: 1, sessionsPerUserPolicy: "close_oldest" }));

  it("the creates of one batch count each other: counters, the tenant's caps and the event log's tenant position", () =>
    withStore(async (store) => {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => store.create(input({ userId: `user-${i}`, dataSource: `source-${i % 4}`, accessLevel: i % 2 === 0 ? "read" : "write" }))),
      );
      const refused = outcomes.map((o) => o.status === "rejected" && o.reason instanceof SessionError && o.reason.kind === "limit_exceeded");
      // The 4th data source is one too many, and the 7th session of the rest.
      assert.deepEqual(refused, [false, false, false, true, false, false, false, true, true, true, true, true]);
      const counters = await store.counters(TENANT);
      assert.deepEqual([counters.total, counters.active], [6, 6]);
      assert.deepEqual(counters.activeByAccessLevel, { read: 4, write: 2 });
      assert.deepEqual(counters.activeByDataSource, { "source-0": 2, "source-1": 2, "source-2": 2 });
      const newest = await server.raw.xrevrange(keys.events(), "+", "-", "COUNT", 1);
      assert.equal(await server.raw.get(keys.lastEvent()), newest[0]?.[0], "the tenant's newest event id");
    }, { maxSessionsPerTenant: 6, maxDataSourcesPerTenant: 3 }));
});
