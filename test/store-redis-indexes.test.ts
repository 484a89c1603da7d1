// The Redis store's session indexes (src/store/redis/lua/indexes.ts): bucketed
// data-source and tenant-wide indexes that stay listpacks, listings across
// buckets in (expire time, session id) order, and indexes of the earlier
// layout (text members, one sorted set each) read and emptied.
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../src/domain/errors.js";
import type { SessionRecord } from "../src/domain/model.js";
import type { CreateSessionInput, ListFilter } from "../src/store/store.js";
import { indexMember, RedisKeys } from "../src/store/redis/keys.js";
import { indexesLua } from "../src/store/redis/lua/indexes.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { useRedisServer } from "./support/redis-server.js";

const PREFIX = "sdidx:";
const TENANT = "tenant-i";
const keys = new RedisKeys(PREFIX, TENANT);
const server = useRedisServer();

function input(overrides: Partial<CreateSessionInput> = {}): CreateSessionInput {
  return { tenant: TENANT, userId: "user-1", dataSource: "source-1", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "", ...overrides };
}

async function withStore(fn: (store: RedisStore) => Promise<void>, maxSessionsPerUser = 0): Promise<void> {
  await server.raw.flushall();
  const store = new RedisStore({
    url: server.url,
    keyPrefix: PREFIX,
    limits: { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 5_000, maxSessionsPerUser },
    commandTimeoutMs: 5000,
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
    }, 2));
});
