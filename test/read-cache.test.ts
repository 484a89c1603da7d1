/**
 * READ_CACHE_MAX_AGE (src/session/read-cache.ts): GetSession answered from a
 * process's copy of a live session.
 * - Two services on one private redis-server, called with the generated
 *   client: a copy answers (a field changed in Redis behind the services'
 *   backs does not show through it, while a service without copies shows
 *   it); writes through the other process (close, update, extend, data) reach
 *   the copy through the event log long before the copy's max age; a write
 *   through the same process is read back at once; copies are counted on
 *   /metrics; off by default.
 * - The session layer on a MemoryStore with the real event hub: gets acting
 *   for a user answer from the copy only for the session's own user.
 * - The cache alone: a read in flight when a write is heard leaves no copy, a
 *   reader that stops reading drops every copy and answers none, max age,
 *   expire time, the entry bound, another tenant's id.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { fromJson } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccessLevel, createSessionClient, type SessionClient } from "@sessiond/client";
import type { App } from "../src/app.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { SessionError } from "../src/domain/errors.js";
import type { SessionView } from "../src/session/session-view.js";
import { ReadCache, type WriteSource } from "../src/session/read-cache.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import type { EventHead, SessionStore } from "../src/store/store.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";
import { sessionCore } from "./support/session-core.js";

const redis = useRedisServer();

/** Long enough that only the event log can explain a copy dropped within a test. */
const MAX_AGE = "60s";
/** What must happen may take this long on a loaded machine; it is the event, not its speed, that is asserted. */
const EVENTUALLY_MS = 30_000;

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + EVENTUALLY_MS;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${EVENTUALLY_MS} ms`);
    await sleep(20);
  }
}

describe("GetSession from a process's copy (two services, one redis-server)", () => {
  const apps: App[] = [];
  let a: SessionClient;
  let b: SessionClient;
  let plain: SessionClient;
  let aUrl = "";

  before(async () => {
    const start = async (env: Record<string, string>): Promise<SessionClient> => {
      const app = await startTestApp({ redisUrl: redis.url, env: { WATCH_HEARTBEAT: "1h", ...env } });
      apps.push(app);
      return createSessionClient(app.url, { timeoutMs: 10_000 });
    };
    a = await start({ READ_CACHE_MAX_AGE: MAX_AGE });
    aUrl = apps[0]?.url ?? "";
    b = await start({ READ_CACHE_MAX_AGE: MAX_AGE });
    plain = await start({});
    // Copies answer only while the event reader reads (it starts reading soon after the app does).
    await eventually(async () => apps.every((app) => app.events.reading), "every event reader reads");
  });
  after(async () => {
    for (const app of apps) await app.close();
  });

  const newSession = async (client: SessionClient = a): Promise<string> => {
    const { session } = await client.createSession({ userId: "u-cache", dataSource: "ds", accessLevel: AccessLevel.WRITE, ttl: durationFromMs(3_600_000), metadata: { step: 1 } });
    assert.ok(session !== undefined);
    return session.sessionId;
  };

  /** Sets the record's last-access field in Redis directly: no service hears of it (no event). */
  const touchBehindTheServices = async (sessionId: string, at: number): Promise<void> => {
    const client = redis.raw;
    const keys = (await client.keys(`*${sessionId}*`)).filter((key) => !key.includes(":d:"));
    let set = 0;
    for (const key of keys) {
      if ((await client.type(key)) !== "hash" || (await client.hexists(key, "a")) !== 1) continue;
      await client.hset(key, "a", String(at));
      set += 1;
    }
    assert.equal(set, 1, "exactly one record hash holds the session");
  };

  it("answers from the copy: a change made in Redis behind the services shows only where there are no copies", async () => {
    const id = await newSession();
    const first = await a.getSession({ sessionId: id });
    const marked = Date.now() - 3_600_000;
    await touchBehindTheServices(id, marked);
    const fromCopy = await a.getSession({ sessionId: id });
    assert.deepEqual(fromCopy.session?.lastAccessTime, first.session?.lastAccessTime, "the copy answers as it was read");
    // The service without copies reads Redis (and records the access, moving the field on).
    const direct = await plain.getSession({ sessionId: id });
    assert.notDeepEqual(direct.session?.lastAccessTime, first.session?.lastAccessTime);
    assert.equal(fromCopy.session?.version, first.session?.version);
    assert.deepEqual(fromCopy.session?.metadata, first.session?.metadata);
  });

  it("a close through the other process reaches the copy through the event log", async () => {
    const id = await newSession();
    await a.getSession({ sessionId: id });
    await a.getSession({ sessionId: id });
    await b.closeSession({ sessionId: id });
    await eventually(async () => {
      try {
        await a.getSession({ sessionId: id });
        return false;
      } catch (error) {
        assert.ok(error instanceof ConnectError);
        assert.equal(error.code, Code.NotFound);
        return true;
      }
    }, "the closed session is gone from the copy");
  });

  it("updates, extensions and data writes through the other process reach the copy", async () => {
    const id = await newSession();
    const before = (await a.getSession({ sessionId: id })).session;
    await b.updateSession({ sessionId: id, metadata: { step: 2 } });
    await eventually(async () => (await a.getSession({ sessionId: id })).session?.metadata?.["step"] === 2, "the update shows");
    const afterUpdate = (await a.getSession({ sessionId: id })).session;
    await b.extendSession({ sessionId: id, ttl: durationFromMs(7_200_000) });
    await eventually(async () => ((await a.getSession({ sessionId: id })).session?.expireTime?.seconds ?? 0n) > (afterUpdate?.expireTime?.seconds ?? 0n), "the extension shows");
    const afterExtend = (await a.getSession({ sessionId: id })).session;
    await b.setSessionData({ sessionId: id, key: "k", value: fromJson(ValueSchema, "v") });
    await eventually(async () => ((await a.getSession({ sessionId: id })).session?.version ?? 0n) > (afterExtend?.version ?? 0n), "the data write's version shows");
    assert.ok((afterUpdate?.version ?? 0n) > (before?.version ?? 0n));
  });

  it("a write through the same process is read back at once", async () => {
    const id = await newSession();
    await a.getSession({ sessionId: id });
    const updated = await a.updateSession({ sessionId: id, metadata: { step: 3 } });
    const read = (await a.getSession({ sessionId: id })).session;
    assert.equal(read?.version, updated.session?.version);
    assert.equal(read?.metadata?.["step"], 3);
    await a.closeSession({ sessionId: id });
    await assert.rejects(a.getSession({ sessionId: id }), (error: unknown) => error instanceof ConnectError && error.code === Code.NotFound);
  });

  it("counts hits and misses on /metrics", async () => {
    const id = await newSession();
    await a.getSession({ sessionId: id });
    await a.getSession({ sessionId: id });
    const text = await (await fetch(`${aUrl}/metrics`)).text();
    const hits = Number(/\nsessiond_read_cache_lookups_total\{outcome="hit"\} (\d+)/.exec(text)?.[1] ?? "0");
    const misses = Number(/\nsessiond_read_cache_lookups_total\{outcome="miss"\} (\d+)/.exec(text)?.[1] ?? "0");
    assert.ok(hits >= 1 && misses >= 1, `hits ${hits}, misses ${misses}`);
    assert.match(text, /\nsessiond_read_cache_sessions \d+\n/);
  });

  it("is off by default: every get reads Redis", async () => {
    assert.equal(loadConfig({}).readCache.maxAgeMs, 0);
    const id = await newSession(plain);
    const first = await plain.getSession({ sessionId: id });
    await touchBehindTheServices(id, Date.now() - 3_600_000);
    const second = await plain.getSession({ sessionId: id });
    assert.notDeepEqual(second.session?.lastAccessTime, first.session?.lastAccessTime);
  });
});

describe("READ_CACHE_* settings", () => {
  it("refuse a max age above 60s, without a unit, or an entry bound below 1", () => {
    for (const env of [{ READ_CACHE_MAX_AGE: "61s" }, { READ_CACHE_MAX_AGE: "5" }, { READ_CACHE_ENTRIES: "0" }]) {
      assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && error.message.includes(Object.keys(env)[0] ?? "?"));
    }
    assert.deepEqual(loadConfig({ READ_CACHE_MAX_AGE: "2s", READ_CACHE_ENTRIES: "50" }).readCache, { maxAgeMs: 2000, entries: 50 });
  });
});

describe("gets acting for a user (the session layer on a MemoryStore, real event hub)", () => {
  it("the owner's answer from the copy; another user's read the store and are refused as without copies", async () => {
    const config = loadConfig({ READ_CACHE_MAX_AGE: MAX_AGE });
    const memory = new MemoryStore({ limits: { maxDataKeys: 10, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 } });
    let reads = 0;
    const counting: SessionStore = Object.create(memory, {
      get: { value: (...args: Parameters<SessionStore["get"]>) => ((reads += 1), memory.get(...args)) },
    }) as SessionStore;
    const cache = new ReadCache({ maxAgeMs: config.readCache.maxAgeMs, entries: 100 });
    const { manager, background } = sessionCore({ store: counting, config, logger: pino({ level: "silent" }), readCache: cache });
    await background.start();
    cache.follow(background.events);
    try {
      await eventually(async () => background.events.reading, "the event reader reads");
      const { session } = await manager.create("t", { userId: "alice", dataSource: "ds", accessLevel: "read" });
      for (let i = 0; i < 3; i++) assert.equal((await manager.get("t", session.sessionId, false, "alice")).userId, "alice");
      assert.equal(reads, 1, "the first of alice's gets read the store, the others the copy");
      for (let i = 0; i < 2; i++) {
        await assert.rejects(manager.get("t", session.sessionId, false, "mallory"), (error: unknown) => error instanceof SessionError && error.kind === "not_found");
      }
      assert.equal(reads, 3, "each of mallory's gets read the store");
      await manager.get("t", session.sessionId, false);
      await manager.get("t", session.sessionId, false, "alice");
      assert.equal(reads, 3, "mallory's gets left alice's copy in place; a caller acting for no user gets it too");
    } finally {
      cache.close();
      await background.stop();
      await memory.dispose();
    }
  });
});

describe("ReadCache", () => {
  class Source implements WriteSource {
    reading = true;
    private readonly listeners = new Set<(event: EventHead) => void>();
    private readonly readingListeners = new Set<(reading: boolean) => void>();
    private readonly resetListeners = new Set<() => void>();
    addListener(listener: (event: EventHead) => void): () => void {
      this.listeners.add(listener);
      return () => void this.listeners.delete(listener);
    }
    watchReading(listener: (reading: boolean) => void): () => void {
      this.readingListeners.add(listener);
      return () => void this.readingListeners.delete(listener);
    }
    onReset(listener: () => void): () => void {
      this.resetListeners.add(listener);
      return () => void this.resetListeners.delete(listener);
    }
    write(sessionId: string): void {
      for (const listener of this.listeners) listener({ id: "1-0", type: "updated", tenant: "t", sessionId, expireTime: 0 });
    }
    setReading(reading: boolean): void {
      this.reading = reading;
      for (const listener of this.readingListeners) listener(reading);
    }
    reset(): void {
      for (const listener of this.resetListeners) listener();
    }
  }

  let clock = 1_000_000;
  const view = (sessionId: string, overrides: Partial<SessionView> = {}): SessionView => ({
    tenant: "t",
    sessionId,
    userId: "u",
    dataSource: "d",
    accessLevel: "read",
    status: "active",
    createTime: clock,
    expireTime: clock + 3_600_000,
    lastAccessTime: clock,
    endTime: 0,
    metadata: { nested: { list: [1, 2] } },
    version: 1,
    ...overrides,
  });
  const cached = (entries = 100): { cache: ReadCache; source: Source } => {
    const cache = new ReadCache({ maxAgeMs: 1000, entries, now: () => clock });
    const source = new Source();
    cache.follow(source);
    return { cache, source };
  };
  const read = (cache: ReadCache, v: SessionView): void => cache.land(cache.reserve(v.tenant, v.sessionId), v);

  it("keeps what a read brought, frozen, and hands it out until a write is heard", () => {
    const { cache, source } = cached();
    const v = view("s1");
    assert.equal(cache.lookup("t", "s1"), undefined);
    read(cache, v);
    assert.equal(cache.lookup("t", "s1"), v);
    assert.ok(Object.isFrozen(v) && Object.isFrozen(v.metadata["nested"]));
    source.write("s1");
    assert.equal(cache.lookup("t", "s1"), undefined);
    assert.deepEqual(cache.outcomes, { hit: 1, miss: 2, bypass: 0 });
  });

  it("a read in flight when a write is heard leaves no copy; a failed read leaves none either", () => {
    const { cache, source } = cached();
    const ticket = cache.reserve("t", "s1");
    source.write("s1");
    cache.land(ticket, view("s1"));
    assert.equal(cache.lookup("t", "s1"), undefined);
    const failed = cache.reserve("t", "s2");
    cache.abandon(failed, "s2");
    assert.equal(cache.size, 0);
  });

  it("of two reads in flight, only the later one's answer stays", () => {
    const { cache } = cached();
    const first = cache.reserve("t", "s1");
    const second = cache.reserve("t", "s1");
    const older = view("s1", { version: 1 });
    const newer = view("s1", { version: 2 });
    cache.land(second, newer);
    cache.land(first, older);
    assert.equal(cache.lookup("t", "s1")?.version, 2);
  });

  it("answers nothing while the reader does not read, and drops every copy when it stops or the log resets", () => {
    const { cache, source } = cached();
    read(cache, view("s1"));
    source.setReading(false);
    assert.equal(cache.lookup("t", "s1"), undefined);
    assert.equal(cache.reserve("t", "s1"), undefined);
    source.setReading(true);
    assert.equal(cache.lookup("t", "s1"), undefined, "the copy went when the reader stopped");
    read(cache, view("s1"));
    source.reset();
    assert.equal(cache.lookup("t", "s1"), undefined);
    assert.equal(cache.outcomes.bypass, 1);
  });

  it("a copy answers for maxAgeMs, and never at or past its session's expire time", () => {
    const { cache } = cached();
    read(cache, view("s1"));
    clock += 999;
    assert.ok(cache.lookup("t", "s1") !== undefined);
    clock += 1;
    assert.equal(cache.lookup("t", "s1"), undefined);
    read(cache, view("s2", { expireTime: clock + 10 }));
    clock += 10;
    assert.equal(cache.lookup("t", "s2"), undefined);
  });

  it("keeps no ended session, never answers for another tenant, and holds at most `entries`", () => {
    const { cache } = cached(3);
    read(cache, view("ended", { status: "closed", endTime: clock }));
    assert.equal(cache.lookup("t", "ended"), undefined);
    read(cache, view("s1"));
    assert.equal(cache.lookup("other", "s1"), undefined);
    assert.ok(cache.lookup("t", "s1") !== undefined);
    for (const id of ["s2", "s3", "s4"]) read(cache, view(id));
    assert.equal(cache.size, 3);
    assert.equal(cache.lookup("t", "s1"), undefined, "the oldest went");
    assert.ok(cache.lookup("t", "s4") !== undefined);
  });

  it("answers nothing before it follows a source or after it is closed", () => {
    const cache = new ReadCache({ maxAgeMs: 1000, entries: 10, now: () => clock });
    assert.equal(cache.reserve("t", "s1"), undefined);
    const source = new Source();
    cache.follow(source);
    read(cache, view("s1"));
    cache.close();
    assert.equal(cache.lookup("t", "s1"), undefined);
    assert.throws(() => new ReadCache({ maxAgeMs: 0, entries: 1 }));
  });
});
