/**
 * WatchSessions end to end on a private redis-server: the real app (startApp
 * on RedisStore) and real network clients (gRPC over h2c).
 *
 * Covers: EXPIRED on time for a 1 s TTL with the last metadata; resume after a
 * disconnect with no gap and no duplicate; OUT_OF_RANGE for a stale cursor;
 * every filter; snapshot + live under concurrent writes; a slow watcher ended
 * with RESOURCE_EXHAUSTED and its cursor; shutdown with UNAVAILABLE and the
 * cursor; the client helper resuming across a server restart; and 1000
 * open/cancel cycles leaving no subscription, timer or Redis connection behind.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { App } from "../src/app.js";
import {
  AccessLevel,
  Code,
  ConnectError,
  createSessionClient,
  EventType,
  SessionStatus,
  WATCH_CURSOR_METADATA,
  watchSessions,
  WatchOutOfRangeError,
  type SessionClient,
  type SessionEvent,
  WatchSessionsRequestSchema,
  WatchSessionsResponseSchema,
} from "@sessiond/client";
import { compareEventIds } from "../src/store/event-id.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";

const redis = useRedisServer();

const ENV = { SESSION_TTL_MIN: "100ms", WATCH_HEARTBEAT: "1h" };
/**
 * How long a wait for something that must happen may take before the test calls it a hang: generous, since on a
 * machine loaded many times over its cores, a batch of a hundred streams opening in this process gets its first
 * events after many seconds. What is asserted is that the event comes, not how soon.
 */
const EVENTUALLY_MS = 60_000;

async function app(env: Record<string, string> = {}): Promise<{ app: App; client: SessionClient }> {
  const started = await startTestApp({ redisUrl: redis.url, env: { ...ENV, ...env } });
  return { app: started, client: createSessionClient(started.url, { timeoutMs: 5000 }) };
}

type WatchInit = MessageInitShape<typeof WatchSessionsRequestSchema>;

/** A raw watch stream with a per-read timeout. */
function openWatch(client: SessionClient, request: WatchInit) {
  const abort = new AbortController();
  const iterator = client.watchSessions(request, { signal: abort.signal, timeoutMs: 0 })[Symbol.asyncIterator]();
  return {
    async next(timeoutMs = EVENTUALLY_MS): Promise<SessionEvent> {
      // A timer that is cleared: the leak test counts the process's timers.
      const timer = new AbortController();
      const result = await Promise.race([iterator.next(), sleep(timeoutMs, "timeout" as const, { signal: timer.signal }).catch(() => "cancelled" as const)]);
      timer.abort();
      if (result === "timeout" || result === "cancelled") assert.fail("no watch event within the timeout");
      assert.ok(!result.done, "watch ended");
      assert.ok(result.value.event !== undefined);
      return result.value.event;
    },
    /** Events until one matches; heartbeats skipped unless asked for. */
    async until(pred: (e: SessionEvent) => boolean, timeoutMs = EVENTUALLY_MS): Promise<SessionEvent[]> {
      const seen: SessionEvent[] = [];
      for (;;) {
        const event = await this.next(timeoutMs);
        seen.push(event);
        if (pred(event)) return seen;
      }
    },
    /** The error the stream ends with. */
    async failure(timeoutMs = EVENTUALLY_MS): Promise<ConnectError> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const result = await Promise.race([iterator.next().then((r) => ({ r }), (e: unknown) => ({ e })), sleep(Math.max(1, deadline - Date.now()), "timeout" as const)]);
        if (result === "timeout") assert.fail("the watch did not fail in time");
        if ("e" in result) return ConnectError.from(result.e);
        if (result.r.done) assert.fail("the watch ended without an error");
      }
    },
    close(): void {
      abort.abort();
    },
  };
}

/** Waits until the server-side hub has `n` watchers (a watch is registered once its first read happened). */
async function waitForSubscribers(target: App, n: number): Promise<void> {
  const deadline = Date.now() + EVENTUALLY_MS;
  while (target.events.subscriberCount !== n) {
    if (Date.now() > deadline) assert.fail(`expected ${n} watchers, have ${target.events.subscriberCount}`);
    await sleep(5);
  }
}

const types = (events: readonly SessionEvent[]): string[] => events.map((e) => EventType[e.type] ?? String(e.type));

describe("WatchSessions on Redis", () => {
  it("EXPIRED for a 1 s TTL session, on time, with its last metadata", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app();
    const watch = openWatch(client, { eventTypes: [EventType.EXPIRED] });
    try {
      await waitForSubscribers(a, 1);
      const { session } = await client.createSession({ userId: "u", dataSource: "d", ttl: durationFromMs(1000), metadata: { step: 1 } });
      await client.updateSession({ sessionId: session?.sessionId ?? "", metadata: { step: 2, last: "metadata" } });
      const event = await watch.next(5000);
      const arrived = Date.now();
      assert.equal(event.type, EventType.EXPIRED);
      assert.equal(event.session?.sessionId, session?.sessionId);
      assert.equal(event.session?.status, SessionStatus.EXPIRED);
      assert.deepEqual(event.session?.metadata, { step: 2, last: "metadata" });
      const expireMs = Number(event.session?.expireTime?.seconds) * 1000 + Math.floor((event.session?.expireTime?.nanos ?? 0) / 1e6);
      assert.ok(arrived >= expireMs - 50, "not before its expire time");
      const archived = await client.getSession({ sessionId: session?.sessionId ?? "", includeEnded: true });
      assert.deepEqual(archived.session?.metadata, { step: 2, last: "metadata" }, "the archive keeps the last metadata");
      // The due queue alone drives expiry: no shadow key, and keyspace notifications left off.
      assert.equal(await redis.raw.exists(`sd:default:{${session?.sessionId}}:x`), 0, "no shadow key");
      const [, flags] = (await redis.raw.config("GET", "notify-keyspace-events")) as [string, string];
      assert.equal(flags, "", "notify-keyspace-events untouched");
    } finally {
      watch.close();
      await a.close();
    }
  });

  it("resumes after a disconnect with no gap and no duplicate", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app();
    try {
      const first = openWatch(client, { userId: "r" });
      await waitForSubscribers(a, 1);
      const { session } = await client.createSession({ userId: "r", dataSource: "d", accessLevel: AccessLevel.WRITE });
      const id = session?.sessionId ?? "";
      for (let i = 0; i < 3; i++) await client.updateSession({ sessionId: id, metadata: { i } });
      const seen = await first.until((e) => e.type === EventType.UPDATED && e.session?.metadata?.["i"] === 2);
      const cursor = seen.at(-1)?.cursor ?? "";
      first.close();
      await waitForSubscribers(a, 0);
      // Missed while disconnected: 5 matching writes, and writes that must stay filtered out.
      for (let i = 3; i < 6; i++) await client.updateSession({ sessionId: id, metadata: { i } });
      await client.createSession({ userId: "someone-else", dataSource: "d" });
      await client.setSessionData({ sessionId: id, key: "k", value: { kind: { case: "numberValue", value: 1 } } });
      await client.extendSession({ sessionId: id, ttl: durationFromMs(60_000) });

      const resumed = openWatch(client, { userId: "r", resumeCursor: cursor });
      const replay = await resumed.until((e) => e.type === EventType.EXTENDED);
      assert.deepEqual(types(replay), ["UPDATED", "UPDATED", "UPDATED", "DATA_CHANGED", "EXTENDED"]);
      assert.deepEqual(replay.slice(0, 3).map((e) => e.session?.metadata?.["i"]), [3, 4, 5]);
      // Then live, continuing the same order.
      await client.closeSession({ sessionId: id });
      const live = await resumed.next();
      assert.equal(live.type, EventType.CLOSED);
      const cursors = [cursor, ...replay.map((e) => e.cursor), live.cursor];
      assert.deepEqual([...cursors].sort(compareEventIds), cursors, "in order");
      assert.equal(new Set(cursors).size, cursors.length, "no duplicate");
      const versions = [...replay, live].map((e) => Number(e.session?.version));
      assert.deepEqual(versions, [5, 6, 7, 8, 9, 10].slice(0, versions.length), "no gap in the session's versions");
      resumed.close();
    } finally {
      await a.close();
    }
  });

  it("OUT_OF_RANGE for a cursor older than the retention, INVALID_ARGUMENT for a malformed one", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app({ WATCH_RETENTION_EVENTS: "20" });
    try {
      const { session } = await client.createSession({ userId: "u", dataSource: "d" });
      const early = openWatch(client, { resumeCursor: "0-0" });
      const created = await early.next();
      early.close();
      for (let i = 0; i < 250; i++) await client.updateSession({ sessionId: session?.sessionId ?? "", metadata: { i } });
      const stale = openWatch(client, { resumeCursor: created.cursor });
      const error = await stale.failure();
      assert.equal(error.code, Code.OutOfRange, error.message);
      assert.match(error.rawMessage, /older than the retained event history/);
      const bad = openWatch(client, { resumeCursor: "yesterday" });
      assert.equal((await bad.failure()).code, Code.InvalidArgument);
      // The client helper surfaces OUT_OF_RANGE as its own error, so the caller re-lists.
      await assert.rejects(
        (async () => {
          for await (const _ of watchSessions(client, {}, { resumeCursor: created.cursor })) assert.fail("no event expected");
        })(),
        (e: unknown) => e instanceof WatchOutOfRangeError && e.cursor === created.cursor,
      );
    } finally {
      await a.close();
    }
  });

  it("filters by user, data source, session ids and event types", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app();
    const byUser = openWatch(client, { userId: "fu" });
    const bySource = openWatch(client, { dataSource: "fs" });
    const byTypes = openWatch(client, { eventTypes: [EventType.CLOSED, EventType.DATA_CHANGED] });
    const s1 = (await client.createSession({ userId: "x", dataSource: "y", accessLevel: AccessLevel.WRITE })).session?.sessionId ?? "";
    const byId = openWatch(client, { sessionIds: [s1.toUpperCase()] });
    try {
      await waitForSubscribers(a, 4);
      const s2 = (await client.createSession({ userId: "fu", dataSource: "y", accessLevel: AccessLevel.WRITE })).session?.sessionId ?? "";
      const s3 = (await client.createSession({ userId: "z", dataSource: "fs" })).session?.sessionId ?? "";
      await client.setSessionData({ sessionId: s1, key: "secret-key", value: { kind: { case: "stringValue", value: "SECRET" } } });
      await client.updateSession({ sessionId: s2, metadata: { a: 1 } });
      await client.closeSession({ sessionId: s3 });
      await client.closeSession({ sessionId: s1 });
      await client.closeSession({ sessionId: s2 });

      const u = await byUser.until((e) => e.type === EventType.CLOSED);
      assert.deepEqual(types(u), ["CREATED", "UPDATED", "CLOSED"]);
      assert.ok(u.every((e) => e.session?.sessionId === s2));
      const src = await bySource.until((e) => e.type === EventType.CLOSED);
      assert.deepEqual(types(src), ["CREATED", "CLOSED"]);
      assert.ok(src.every((e) => e.session?.sessionId === s3));
      const t = await byTypes.until((e) => e.type === EventType.CLOSED && e.session?.sessionId === s2);
      assert.deepEqual(types(t), ["DATA_CHANGED", "CLOSED", "CLOSED", "CLOSED"]);
      assert.deepEqual(t[0]?.dataKeys, ["secret-key"]);
      assert.ok(!JSON.stringify(t, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)).includes("SECRET\""), "no data value");
      const ids = await byId.until((e) => e.type === EventType.CLOSED);
      assert.deepEqual(types(ids), ["DATA_CHANGED", "CLOSED"]);
      assert.ok(ids.every((e) => e.session?.sessionId === s1));
    } finally {
      for (const w of [byUser, bySource, byTypes, byId]) w.close();
      await a.close();
    }
  });

  it("snapshot then live under concurrent writes: every session's last state, no gap, no duplicate", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 60; i++) ids.push((await client.createSession({ userId: "snap", dataSource: "d", metadata: { n: 0 } })).session?.sessionId ?? "");
      // Writers run while the watch lists and replays.
      let writing = true;
      const expected = new Map<string, number>();
      const writers = Array.from({ length: 4 }, async (_, w) => {
        let n = 0;
        while (writing) {
          const id = ids[(n * 4 + w) % ids.length] ?? "";
          n += 1;
          const updated = await client.updateSession({ sessionId: id, metadata: { n } });
          const v = Number(updated.session?.version);
          expected.set(id, Math.max(expected.get(id) ?? 0, v));
        }
      });
      await sleep(30);
      const watch = openWatch(client, { userId: "snap", sendInitialSnapshot: true });
      const state = new Map<string, number>();
      const apply = (e: SessionEvent): void => {
        const id = e.session?.sessionId ?? "";
        const v = Number(e.session?.version);
        const before = state.get(id);
        if (before !== undefined) assert.equal(v, before + 1, `session ${id}: version ${v} follows ${before} (no gap, no duplicate)`);
        state.set(id, v);
      };
      const head = await watch.until((e) => e.type === EventType.HEARTBEAT);
      assert.ok(head.slice(0, -1).every((e) => e.type === EventType.SNAPSHOT));
      assert.equal(head.length - 1, 60, "every live session in the snapshot");
      assert.ok(head.slice(0, -1).every((e) => e.cursor === ""), "snapshot items carry no cursor");
      assert.notEqual(head.at(-1)?.cursor, "", "the heartbeat ending the snapshot carries one");
      for (const e of head.slice(0, -1)) apply(e);
      await sleep(200);
      writing = false;
      await Promise.all(writers);
      // Drain until every session reached the last version a writer saw.
      const deadline = Date.now() + EVENTUALLY_MS;
      while ([...expected].some(([id, v]) => (state.get(id) ?? 0) < v)) {
        if (Date.now() > deadline) assert.fail("the watch did not reach the writers' last versions");
        const e = await watch.next();
        if (e.type === EventType.UPDATED) apply(e);
      }
      watch.close();
    } finally {
      await a.close();
    }
  });

  it("a slow watcher is ended with RESOURCE_EXHAUSTED and the cursor of the last event it was sent", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app({ WATCH_QUEUE_LIMIT: "5", MAX_METADATA_BYTES: "65536" });
    // grpc-js, because pausing its stream stops reading: HTTP/2 flow control then stalls the server's writes.
    const definition = protoLoader.loadSync("session/v1/session.proto", {
      includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
      longs: String,
      enums: String,
      defaults: true,
    });
    const v1 = (grpc.loadPackageDefinition(definition)["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject;
    const Service = v1["SessionService"] as grpc.ServiceClientConstructor;
    const slow = new Service(new URL(a.url).host, grpc.credentials.createInsecure());
    try {
      const call = slow.makeServerStreamRequest("/session.v1.SessionService/WatchSessions", (m: object) => Buffer.from(toBinary(WatchSessionsRequestSchema, create(WatchSessionsRequestSchema, m))), (b: Buffer) => fromBinary(WatchSessionsResponseSchema, b), {});
      const received: string[] = [];
      const ended = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
      call.on("data", (response: { event?: { cursor: string } }) => {
        received.push(response.event?.cursor ?? "");
        if (received.length === 1) call.pause();
      });
      await waitForSubscribers(a, 1);
      const { session } = await client.createSession({ userId: "u", dataSource: "d" });
      const big = "x".repeat(60_000);
      for (let i = 0; i < 1500 && a.events.subscriberCount > 0; i++) {
        await client.updateSession({ sessionId: session?.sessionId ?? "", metadata: { big, i } });
      }
      assert.equal(a.events.subscriberCount, 0, "the hub dropped the slow watcher");
      call.resume();
      const error = await ended;
      await sleep(300); // messages grpc-js still holds are delivered before and after its 'error'
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED, error.details);
      const cursor = String(error.metadata.get(WATCH_CURSOR_METADATA)[0] ?? "");
      const last = received.at(-1) ?? "";
      // The trailer names the last event the server sent. A client may not have read all of those
      // (grpc-js drops what it still buffers once the status arrives), so a client resumes from its
      // own last cursor when it has one, as the client helper does.
      assert.ok(compareEventIds(cursor, last) >= 0, `trailer ${cursor} is not before the last received ${last}`);
      assert.equal((await redis.raw.xrange("sd:ev", cursor, cursor)).length, 1, "the trailer names a logged event");
      assert.match(error.details, /resume with resume_cursor/);
      // Resuming from the client's last cursor continues with exactly the next event: no gap.
      const resumed = openWatch(client, { resumeCursor: last });
      const next = await resumed.next();
      const following = await redis.raw.xrange("sd:ev", `(${last}`, "+", "COUNT", 1);
      assert.equal(next.cursor, following[0]?.[0], "exactly the event after the cursor");
      resumed.close();
    } finally {
      slow.close();
      await a.close();
    }
  });

  it("on shutdown, watches end with UNAVAILABLE and their cursor; the client helper resumes on the restarted server", async () => {
    await redis.raw.flushall();
    const first = await app();
    const port = first.app.port;
    const helperAbort = new AbortController();
    const got: SessionEvent[] = [];
    const reconnects: Code[] = [];
    const helper = (async () => {
      for await (const event of watchSessions(first.client, { userId: "h" }, { signal: helperAbort.signal, initialBackoffMs: 50, onReconnect: (e) => reconnects.push(e.code) })) {
        if (event.type !== EventType.HEARTBEAT) got.push(event);
      }
    })();
    const raw1 = openWatch(first.client, { userId: "h" });
    let second: { app: App; client: SessionClient } | undefined;
    try {
      await waitForSubscribers(first.app, 2);
      const id = (await first.client.createSession({ userId: "h", dataSource: "d" })).session?.sessionId ?? "";
      const created = await raw1.next();
      await first.app.close();
      const error = await raw1.failure();
      assert.equal(error.code, Code.Unavailable, error.message);
      assert.equal(error.metadata.get(WATCH_CURSOR_METADATA), created.cursor);
      // Written while no server runs (straight through a store the test owns would do too; the next server will do).
      second = await app({ PORT: String(port) });
      await second.client.updateSession({ sessionId: id, metadata: { after: "restart" } });
      const deadline = Date.now() + EVENTUALLY_MS;
      while (got.length < 2 && Date.now() < deadline) await sleep(20);
      assert.deepEqual(types(got), ["CREATED", "UPDATED"], "every event once, across the restart");
      assert.ok(reconnects.includes(Code.Unavailable));
    } finally {
      helperAbort.abort();
      await helper;
      raw1.close();
      await second?.app.close();
    }
  });

  it("1000 open/cancel cycles leave no watcher, timer or Redis connection behind", async () => {
    await redis.raw.flushall();
    const { app: a, client } = await app({ WATCH_HEARTBEAT: "50ms", MAX_WATCHERS_PER_PRINCIPAL: "1000" });
    try {
      const clients = async (): Promise<number> => String(await redis.raw.call("CLIENT", "LIST")).split("\n").filter((l: string) => l.trim() !== "").length;
      const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
      // Warm up one cycle so lazily created connections exist before counting.
      const warm = openWatch(client, {});
      await warm.next();
      warm.close();
      await waitForSubscribers(a, 0);
      await sleep(100);
      const clientsBefore = await clients();
      const timersBefore = timers();
      for (let round = 0; round < 10; round++) {
        const batch = Array.from({ length: 100 }, () => openWatch(client, {}));
        await Promise.all(batch.map((w) => w.next()));
        for (const w of batch) w.close();
      }
      await waitForSubscribers(a, 0);
      await sleep(200);
      assert.equal(a.events.subscriberCount, 0);
      assert.equal(await clients(), clientsBefore, "Redis connections (CLIENT LIST)");
      assert.ok(timers() <= timersBefore + 2, `timers: ${timers()} now, ${timersBefore} before`);
    } finally {
      await a.close();
    }
  });
});
