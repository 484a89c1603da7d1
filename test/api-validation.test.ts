/**
 * The SessionService handlers through a real in-process HTTP/2 server and a
 * real gRPC client, over MemoryStore: request validation (INVALID_ARGUMENT
 * naming the field, nothing changed), the mapping of domain errors to status
 * codes, ListSessions paging, and WatchSessions (events, filters, snapshot,
 * heartbeats, resume).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import {
  AccessLevel,
  EventType,
  SessionService,
  SessionStatus,
  type GetSessionMetricsResponse,
  type SessionEvent,
  type WatchSessionsRequestSchema,
} from "../gen/session/v1/session_pb.js";
import { BadRequestSchema } from "../src/api/bad-request.js";
import { sessionServiceRoutes } from "../src/api/session-service.js";
import { loadConfig, type Config } from "../src/config/config.js";
import type { SessionManager } from "../src/session/session-manager.js";
import type { EventHub } from "../src/streaming/event-hub.js";
import { sessionCore } from "./support/session-core.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import type { SessionStore } from "../src/store/store.js";
import { compareEventIds } from "../src/store/event-id.js";
import { waitForWatchers } from "./support/server.js";

type SessionClient = Client<typeof SessionService>;

const TENANT = "api-tenant";

function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    DEFAULT_TENANT: TENANT,
    SESSION_TTL_MIN: "10ms",
    SESSION_TTL_DEFAULT: "10m",
    SESSION_TTL_MAX: "24h",
    SWEEP_INTERVAL: "20ms",
    WATCH_HEARTBEAT: "1h",
    MAX_METADATA_BYTES: "512",
    MAX_DATA_VALUE_BYTES: "256",
    MAX_DATA_KEY_LENGTH: "16",
    MAX_DATA_KEYS: "3",
    DEFAULT_PAGE_SIZE: "10",
    MAX_PAGE_SIZE: "50",
    ...overrides,
  });
}

interface TestServer {
  readonly client: SessionClient;
  readonly manager: SessionManager;
  readonly events: EventHub;
  /** Log lines written by the service. */
  readonly logs: string[];
  close(): Promise<void>;
}

async function startServer(options: { config?: Config; wrapStore?: (store: SessionStore) => SessionStore } = {}): Promise<TestServer> {
  const config = options.config ?? testConfig();
  const memory = new MemoryStore({
    limits: { maxDataKeys: config.limits.maxDataKeys, archiveRetentionMs: config.archiveRetentionMs, expiryGraceMs: config.expiryGraceMs },
  });
  const store = options.wrapStore === undefined ? memory : options.wrapStore(memory);
  const logs: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void logs.push(line) });
  const { manager, background } = sessionCore({ store, config, logger });
  const routes = sessionServiceRoutes(manager, { config, logger, events: background.events, tenant: () => config.defaultTenant, actingUser: () => undefined });
  const server = http2.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const client = createClient(SessionService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  await background.start();
  return {
    client,
    manager,
    events: background.events,
    logs,
    async close() {
      await background.stop();
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await memory.dispose();
    },
  };
}

async function rejectsWith(promise: Promise<unknown>, code: Code, messageMatch?: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${Code[code]}, got ${Code[error.code]}: ${error.message}`);
    if (messageMatch !== undefined) assert.match(error.rawMessage, messageMatch);
    caught = error;
    return true;
  });
  assert.ok(caught !== undefined);
  return caught;
}

/** Opens a watch and returns a reader of its events with a per-read timeout. */
function openWatch(client: SessionClient, request: MessageInitShape<typeof WatchSessionsRequestSchema>) {
  const abort = new AbortController();
  const iterator = client.watchSessions(request, { signal: abort.signal })[Symbol.asyncIterator]();
  return {
    async next(timeoutMs = 5000): Promise<SessionEvent> {
      const timeout = sleep(timeoutMs, "timeout" as const);
      const result = await Promise.race([iterator.next(), timeout]);
      if (result === "timeout") assert.fail("no watch event within the timeout");
      assert.ok(!result.done, "watch ended");
      assert.ok(result.value.event !== undefined);
      return result.value.event;
    },
    /** Reads until an event of `type` arrives; returns every event read, that one last. */
    async until(type: EventType): Promise<SessionEvent[]> {
      const seen: SessionEvent[] = [];
      for (;;) {
        const event = await this.next();
        seen.push(event);
        if (event.type === type) return seen;
      }
    },
    /** The next call's outcome, for streams expected to fail. */
    nextRaw: () => iterator.next(),
    close: () => abort.abort(),
  };
}

function metricsSnapshot(m: GetSessionMetricsResponse): unknown {
  return {
    total: m.totalSessions,
    active: m.activeSessions,
    expired: m.expiredSessions,
    closed: m.closedSessions,
    byLevel: { ...m.activeByAccessLevel },
    bySource: { ...m.activeByDataSource },
  };
}

describe("SessionService validation", () => {
  let srv: TestServer;
  let sessionId: string;
  before(async () => {
    srv = await startServer();
    const created = await srv.client.createSession({ userId: "u1", dataSource: "ds1", accessLevel: AccessLevel.WRITE, metadata: { keep: "me" } });
    sessionId = created.session?.sessionId ?? "";
    await srv.client.setSessionData({ sessionId, key: "k1", value: create(ValueSchema, { kind: { case: "stringValue", value: "v1" } }) });
  });
  after(async () => {
    await srv.close();
  });

  const ID = () => sessionId;
  const str = (value: string) => create(ValueSchema, { kind: { case: "stringValue", value } });

  /** [description, field, call] — every call must fail with INVALID_ARGUMENT naming the field. */
  const cases: [string, string, (c: SessionClient) => Promise<unknown>][] = [
    ["malformed session_id", "session_id", (c) => c.getSession({ sessionId: "not-a-uuid" })],
    ["session_id with braces", "session_id", (c) => c.getSession({ sessionId: `{${ID()}}` })],
    ["empty session_id", "session_id", (c) => c.closeSession({ sessionId: "" })],
    ["missing user_id", "user_id", (c) => c.createSession({ dataSource: "ds" })],
    ["user_id too long", "user_id", (c) => c.createSession({ userId: "u".repeat(257), dataSource: "ds" })],
    ["user_id with a control character", "user_id", (c) => c.createSession({ userId: "u\u0001", dataSource: "ds" })],
    ["missing data_source", "data_source", (c) => c.createSession({ userId: "u" })],
    ["data_source with a newline", "data_source", (c) => c.createSession({ userId: "u", dataSource: "d\ns" })],
    ["request_id too long", "request_id", (c) => c.createSession({ userId: "u", dataSource: "d", requestId: "r".repeat(129) })],
    ["request_id with CR LF", "request_id", (c) => c.createSession({ userId: "u", dataSource: "d", requestId: "r\r\nx" })],
    ["request_id with NUL", "request_id", (c) => c.createSession({ userId: "u", dataSource: "d", requestId: "r\u0000" })],
    ["request_id with a zero-width space", "request_id", (c) => c.createSession({ userId: "u", dataSource: "d", requestId: "r\u200bx" })],
    ["request_id with a tab", "request_id", (c) => c.createSession({ userId: "u", dataSource: "d", requestId: "r\tx" })],
    ["access_level outside the enum", "access_level", (c) => c.createSession({ userId: "u", dataSource: "d", accessLevel: 9 as AccessLevel })],
    ["ttl below the minimum", "ttl", (c) => c.createSession({ userId: "u", dataSource: "d", ttl: durationFromMs(5) })],
    ["ttl above the maximum", "ttl", (c) => c.createSession({ userId: "u", dataSource: "d", ttl: durationFromMs(25 * 3_600_000) })],
    ["ttl with negative nanos", "ttl", (c) => c.createSession({ userId: "u", dataSource: "d", ttl: { seconds: 60n, nanos: -1 } })],
    ["ttl with nanos out of range", "ttl", (c) => c.createSession({ userId: "u", dataSource: "d", ttl: { seconds: 60n, nanos: 1_000_000_000 } })],
    ["negative ttl", "ttl", (c) => c.createSession({ userId: "u", dataSource: "d", ttl: { seconds: -60n, nanos: 0 } })],
    ["huge ttl", "ttl", (c) => c.createSession({ userId: "u", dataSource: "d", ttl: { seconds: 9_000_000_000_000n, nanos: 0 } })],
    ["metadata too large", "metadata", (c) => c.createSession({ userId: "u", dataSource: "d", metadata: { big: "x".repeat(600) } })],
    ["metadata with NaN", "metadata", (c) => c.createSession({ userId: "u", dataSource: "d", metadata: { n: Number.NaN } })],
    ["update with nothing to change", "metadata", (c) => c.updateSession({ sessionId: ID() })],
    ["merge_metadata without metadata", "merge_metadata", (c) => c.updateSession({ sessionId: ID(), mergeMetadata: true, dataSource: "x" })],
    ["update to UNSPECIFIED access_level", "access_level", (c) => c.updateSession({ sessionId: ID(), accessLevel: AccessLevel.UNSPECIFIED })],
    ["update to an out-of-enum access_level", "access_level", (c) => c.updateSession({ sessionId: ID(), accessLevel: 42 as AccessLevel })],
    ["update to an empty data_source", "data_source", (c) => c.updateSession({ sessionId: ID(), dataSource: "" })],
    ["merged metadata too large", "metadata", (c) => c.updateSession({ sessionId: ID(), metadata: { more: "y".repeat(500) }, mergeMetadata: true })],
    ["update with a malformed session_id", "session_id", (c) => c.updateSession({ sessionId: "x", metadata: {} })],
    ["extend beyond the maximum", "ttl", (c) => c.extendSession({ sessionId: ID(), ttl: durationFromMs(25 * 3_600_000) })],
    ["extend with a malformed session_id", "session_id", (c) => c.extendSession({ sessionId: "x" })],
    ["empty data key", "key", (c) => c.setSessionData({ sessionId: ID(), key: "", value: str("v") })],
    ["data key too long", "key", (c) => c.setSessionData({ sessionId: ID(), key: "k".repeat(17), value: str("v") })],
    ["data key with a control character", "key", (c) => c.setSessionData({ sessionId: ID(), key: "k\u007f", value: str("v") })],
    ["missing value", "value", (c) => c.setSessionData({ sessionId: ID(), key: "k2" })],
    ["value without a kind", "value", (c) => c.setSessionData({ sessionId: ID(), key: "k2", value: create(ValueSchema, {}) })],
    ["value too large", "value", (c) => c.setSessionData({ sessionId: ID(), key: "k2", value: str("v".repeat(300)) })],
    ["value that is NaN", "value", (c) => c.setSessionData({ sessionId: ID(), key: "k2", value: create(ValueSchema, { kind: { case: "numberValue", value: Number.NaN } }) })],
    ["get with an empty key", "key", (c) => c.getSessionData({ sessionId: ID(), key: "" })],
    ["delete with an empty key", "key", (c) => c.deleteSessionData({ sessionId: ID(), key: "" })],
    ["clear with a malformed session_id", "session_id", (c) => c.clearSessionData({ sessionId: "nope" })],
    ["list data with a malformed session_id", "session_id", (c) => c.listSessionData({ sessionId: "nope" })],
    ["negative page_size", "page_size", (c) => c.listSessions({ pageSize: -1 })],
    ["page_size above the maximum", "page_size", (c) => c.listSessions({ pageSize: 51 })],
    ["garbage page_token", "page_token", (c) => c.listSessions({ pageToken: "%%%not-a-token" })],
    ["page_token of the wrong shape", "page_token", (c) => c.listSessions({ pageToken: Buffer.from("hello").toString("base64url") })],
    ["list filter with a control character", "user_id", (c) => c.listSessions({ userId: "\u0000" })],
  ];

  it("rejects every invalid field with INVALID_ARGUMENT naming it, and changes nothing", async () => {
    const before = await srv.client.getSessionMetrics({});
    const sessionBefore = (await srv.client.getSession({ sessionId })).session;
    for (const [description, field, call] of cases) {
      const error = await rejectsWith(call(srv.client), Code.InvalidArgument).catch((e: unknown) => {
        throw new Error(`${description}: ${String(e)}`);
      });
      assert.ok(error.rawMessage.startsWith(`${field}: `), `${description}: message ${JSON.stringify(error.rawMessage)} names ${field}`);
      const details = error.findDetails(BadRequestSchema) as unknown as { fieldViolations: { field: string }[] }[];
      assert.equal(details[0]?.fieldViolations[0]?.field, field, `${description}: BadRequest detail`);
      assert.ok(!error.rawMessage.includes("xxxxxxxx") && !error.rawMessage.includes("vvvvvvvv"), `${description}: no value in the message`);
    }
    assert.deepEqual(metricsSnapshot(await srv.client.getSessionMetrics({})), metricsSnapshot(before));
    const sessionAfter = (await srv.client.getSession({ sessionId })).session;
    assert.equal(sessionAfter?.version, sessionBefore?.version, "the session was not written");
    assert.deepEqual(sessionAfter?.metadata, { keep: "me" });
    const data = await srv.client.listSessionData({ sessionId, includeValues: true });
    assert.deepEqual(data.keys, ["k1"]);
  });

  it("rejects invalid watch requests with INVALID_ARGUMENT naming the field", async () => {
    const watches: [MessageInitShape<typeof WatchSessionsRequestSchema>, string][] = [
      [{ sessionIds: ["nope"] }, "session_ids"],
      [{ eventTypes: [EventType.UNSPECIFIED] }, "event_types"],
      [{ eventTypes: [99 as EventType] }, "event_types"],
      [{ dataSource: "\u0007" }, "data_source"],
    ];
    for (const [request, field] of watches) {
      const watch = openWatch(srv.client, request);
      const error = await rejectsWith(watch.nextRaw(), Code.InvalidArgument);
      assert.ok(error.rawMessage.startsWith(`${field}: `), error.rawMessage);
    }
  });

  it("accepts a session_id in upper case and normalises it", async () => {
    const got = await srv.client.getSession({ sessionId: sessionId.toUpperCase() });
    assert.equal(got.session?.sessionId, sessionId);
  });

  it("applies the defaults: READ access, the default TTL, the default page size", async () => {
    const created = await srv.client.createSession({ userId: "defaults", dataSource: "d" });
    const s = created.session;
    assert.ok(s?.createTime !== undefined && s.expireTime !== undefined);
    assert.equal(s.accessLevel, AccessLevel.READ);
    assert.equal(timestampMs(s.expireTime) - timestampMs(s.createTime), 600_000);
    assert.equal(s.endTime, undefined, "end_time is absent while the session is live");
    for (let i = 0; i < 11; i++) await srv.client.createSession({ userId: "paged-default", dataSource: "d" });
    const page = await srv.client.listSessions({ userId: "paged-default" });
    assert.equal(page.sessions.length, 10);
    assert.notEqual(page.nextPageToken, "");
    const extended = await srv.client.extendSession({ sessionId: s.sessionId });
    assert.ok(extended.session?.expireTime !== undefined);
    assert.ok(timestampMs(extended.session.expireTime) >= timestampMs(s.expireTime), "extend without ttl uses the default TTL");
    await srv.client.closeSession({ sessionId: s.sessionId });
  });
});

describe("SessionService error mapping", () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.close();
  });

  async function newSession(level = AccessLevel.WRITE, ttlMs?: number): Promise<string> {
    const created = await srv.client.createSession({
      userId: "mapper",
      dataSource: "ds",
      accessLevel: level,
      ...(ttlMs === undefined ? {} : { ttl: durationFromMs(ttlMs) }),
    });
    return created.session?.sessionId ?? "";
  }
  const num = (value: number) => create(ValueSchema, { kind: { case: "numberValue", value } });

  it("NOT_FOUND: unknown session, absent key, ended session without include_ended", async () => {
    const unknown = "6f1c1c4e-5c9a-4b61-9d35-3a0c6f0f7a11";
    await rejectsWith(srv.client.getSession({ sessionId: unknown }), Code.NotFound);
    await rejectsWith(srv.client.closeSession({ sessionId: unknown }), Code.NotFound);
    await rejectsWith(srv.client.setSessionData({ sessionId: unknown, key: "k", value: num(1) }), Code.NotFound);
    const id = await newSession();
    await rejectsWith(srv.client.getSessionData({ sessionId: id, key: "absent" }), Code.NotFound, /^key "absent" not found$/);
    await srv.client.closeSession({ sessionId: id });
    await rejectsWith(srv.client.getSession({ sessionId: id }), Code.NotFound);
    await rejectsWith(srv.client.getSessionData({ sessionId: id, key: "k" }), Code.NotFound);
    const archived = await srv.client.getSession({ sessionId: id, includeEnded: true });
    assert.equal(archived.session?.status, SessionStatus.CLOSED);
    assert.ok(archived.session?.endTime !== undefined);
  });

  it("FAILED_PRECONDITION for changes to a closed or expired session", async () => {
    const closed = await newSession();
    await srv.client.closeSession({ sessionId: closed });
    for (const call of [
      srv.client.updateSession({ sessionId: closed, metadata: { a: 1 } }),
      srv.client.updateSession({ sessionId: closed, metadata: { a: 1 }, mergeMetadata: true }),
      srv.client.extendSession({ sessionId: closed, ttl: durationFromMs(60_000) }),
      srv.client.closeSession({ sessionId: closed }),
    ]) {
      await rejectsWith(call, Code.FailedPrecondition, /closed or it expired/);
    }
    const expiring = await newSession(AccessLevel.WRITE, 20);
    await sleep(60);
    await rejectsWith(srv.client.extendSession({ sessionId: expiring, ttl: durationFromMs(60_000) }), Code.FailedPrecondition);
    const archived = await srv.client.getSession({ sessionId: expiring, includeEnded: true });
    assert.equal(archived.session?.status, SessionStatus.EXPIRED);
  });

  it("ABORTED on an expected_version mismatch", async () => {
    const id = await newSession();
    const current = (await srv.client.getSession({ sessionId: id })).session;
    await srv.client.updateSession({ sessionId: id, metadata: { a: 1 } });
    await rejectsWith(srv.client.updateSession({ sessionId: id, metadata: { b: 2 }, expectedVersion: current?.version }), Code.Aborted);
    await rejectsWith(srv.client.updateSession({ sessionId: id, metadata: { b: 2 }, mergeMetadata: true, expectedVersion: current?.version }), Code.Aborted);
    const ok = await srv.client.updateSession({ sessionId: id, metadata: { b: 2 }, mergeMetadata: true, expectedVersion: (current?.version ?? 0n) + 1n });
    assert.deepEqual(ok.session?.metadata, { a: 1, b: 2 });
  });

  it("PERMISSION_DENIED for data writes on a READ session", async () => {
    const id = await newSession(AccessLevel.READ);
    await rejectsWith(srv.client.setSessionData({ sessionId: id, key: "k", value: num(1) }), Code.PermissionDenied);
    await rejectsWith(srv.client.deleteSessionData({ sessionId: id, key: "k" }), Code.PermissionDenied);
    await rejectsWith(srv.client.clearSessionData({ sessionId: id }), Code.PermissionDenied);
    assert.deepEqual((await srv.client.listSessionData({ sessionId: id })).keys, []);
  });

  it("RESOURCE_EXHAUSTED beyond the data key limit", async () => {
    const id = await newSession();
    for (const key of ["a", "b", "c"]) await srv.client.setSessionData({ sessionId: id, key, value: num(1) });
    await rejectsWith(srv.client.setSessionData({ sessionId: id, key: "d", value: num(1) }), Code.ResourceExhausted);
    await srv.client.setSessionData({ sessionId: id, key: "a", value: num(2) });
    const listing = await srv.client.listSessionData({ sessionId: id, includeValues: true });
    assert.deepEqual(listing.keys, ["a", "b", "c"]);
    assert.equal(listing.values["a"]?.kind.value, 2);
  });

  it("INVALID_ARGUMENT for a malformed resume cursor, OUT_OF_RANGE for one the log never reached", async () => {
    await rejectsWith(openWatch(srv.client, { resumeCursor: "17" }).nextRaw(), Code.InvalidArgument, /^resume_cursor: /);
    await rejectsWith(openWatch(srv.client, { resumeCursor: "1-0", sendInitialSnapshot: true }).nextRaw(), Code.InvalidArgument, /^resume_cursor: /);
    await rejectsWith(openWatch(srv.client, { resumeCursor: "99999999999999-0" }).nextRaw(), Code.OutOfRange, /older than the retained event history/);
  });
});

describe("SessionService internal errors", () => {
  it("answers INTERNAL with a generic message and logs no values", async () => {
    const srv = await startServer({
      wrapStore: (store) =>
        new Proxy(store, {
          get(target, property) {
            if (property === "counters") return () => Promise.reject(new Error('boom near {"secret":"LEAKED-VALUE"}'));
            const value: unknown = Reflect.get(target, property, target);
            return typeof value === "function" ? value.bind(target) : value;
          },
        }),
    });
    try {
      const error = await rejectsWith(srv.client.getSessionMetrics({}), Code.Internal);
      assert.equal(error.rawMessage, "internal error");
      const logged = srv.logs.join("");
      assert.ok(logged.includes("internal error") && logged.includes("GetSessionMetrics"), "the failure is logged");
      assert.ok(!logged.includes("LEAKED-VALUE"), "without the error's message");
    } finally {
      await srv.close();
    }
  });
});

describe("ListSessions paging", () => {
  it("visits each live session exactly once, soonest-expiring first, filtered", async () => {
    const srv = await startServer();
    try {
      const mine = new Set<string>();
      for (let i = 0; i < 23; i++) {
        const created = await srv.client.createSession({ userId: i % 3 === 0 ? "other" : "pager", dataSource: "d", ttl: durationFromMs(60_000 + (i % 5) * 1000) });
        if (i % 3 !== 0) mine.add(created.session?.sessionId ?? "");
      }
      const closedId = [...mine][0] ?? "";
      await srv.client.closeSession({ sessionId: closedId });
      mine.delete(closedId);

      const seen: string[] = [];
      const expiries: number[] = [];
      let token = "";
      let pages = 0;
      do {
        const page = await srv.client.listSessions({ userId: "pager", pageSize: 4, pageToken: token });
        pages++;
        assert.ok(page.sessions.length <= 4);
        for (const s of page.sessions) {
          seen.push(s.sessionId);
          assert.ok(s.expireTime !== undefined);
          expiries.push(timestampMs(s.expireTime));
          assert.equal(s.userId, "pager");
        }
        token = page.nextPageToken;
      } while (token !== "" && pages < 20);
      assert.equal(seen.length, mine.size);
      assert.deepEqual(new Set(seen), mine, "each session once, the closed one never");
      assert.deepEqual(expiries, [...expiries].sort((a, b) => a - b));
      assert.ok(pages >= 4);

      const all = await srv.client.listSessions({ pageSize: 50 });
      assert.equal(all.sessions.length, 22);
      assert.equal(all.nextPageToken, "", "the last page has no token");
    } finally {
      await srv.close();
    }
  });
});

describe("WatchSessions", () => {
  it("streams CREATED, UPDATED, EXTENDED, DATA_CHANGED, CLOSED and EXPIRED matching the filters", async () => {
    const srv = await startServer();
    const c = srv.client;
    const byUser = openWatch(c, { userId: "watched" });
    const closedOnly = openWatch(c, { eventTypes: [EventType.CLOSED] });
    const bySource = openWatch(c, { dataSource: "src-b" });
    try {
      // Write only once the three streams are registered.
      await waitForWatchers(srv, 3);
      const other = await c.createSession({ userId: "someone-else", dataSource: "src-a" });
      const s = (await c.createSession({ userId: "watched", dataSource: "src-a", accessLevel: AccessLevel.WRITE, metadata: { m: 1 } })).session;
      assert.ok(s !== undefined);
      await c.updateSession({ sessionId: s.sessionId, metadata: { m: 2 }, mergeMetadata: true });
      await c.extendSession({ sessionId: s.sessionId, ttl: durationFromMs(120_000) });
      await c.setSessionData({ sessionId: s.sessionId, key: "k", value: create(ValueSchema, { kind: { case: "stringValue", value: "SECRET" } }) });
      await c.updateSession({ sessionId: s.sessionId, dataSource: "src-b" });
      await c.closeSession({ sessionId: s.sessionId });
      const short = (await c.createSession({ userId: "watched", dataSource: "src-c", ttl: durationFromMs(30) })).session;
      await c.closeSession({ sessionId: other.session?.sessionId ?? "" });

      const events = await byUser.until(EventType.EXPIRED);
      assert.deepEqual(
        events.map((e) => EventType[e.type]),
        ["CREATED", "UPDATED", "EXTENDED", "DATA_CHANGED", "UPDATED", "CLOSED", "CREATED", "EXPIRED"],
      );
      assert.ok(events.every((e) => e.session?.userId === "watched"), "only the watched user's sessions");
      assert.deepEqual(events[1]?.session?.metadata, { m: 2 }, "the session after the event");
      assert.deepEqual(events[3]?.dataKeys, ["k"]);
      assert.equal(events[5]?.session?.status, SessionStatus.CLOSED);
      assert.equal(events[7]?.session?.sessionId, short?.sessionId);
      assert.equal(events[7]?.session?.status, SessionStatus.EXPIRED);
      const cursors = events.map((e) => e.cursor);
      assert.deepEqual(cursors, [...cursors].sort(compareEventIds), "cursors increase");
      assert.ok(events.every((e) => e.eventTime !== undefined));
      assert.ok(!JSON.stringify(events, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)).includes("SECRET"), "no data value in events");

      const closedEvents = await closedOnly.until(EventType.CLOSED);
      assert.deepEqual(closedEvents.map((e) => e.session?.sessionId), [s.sessionId]);
      const secondClosed = await closedOnly.next();
      assert.equal(secondClosed.type, EventType.CLOSED);
      assert.equal(secondClosed.session?.sessionId, other.session?.sessionId);

      const sourceEvents = await bySource.until(EventType.CLOSED);
      assert.deepEqual(sourceEvents.map((e) => EventType[e.type]), ["UPDATED", "CLOSED"], "events once the session is in src-b");
    } finally {
      byUser.close();
      closedOnly.close();
      bySource.close();
      await srv.close();
    }
  });

  it("filters on session_ids", async () => {
    const srv = await startServer();
    const c = srv.client;
    try {
      const a = (await c.createSession({ userId: "u", dataSource: "d" })).session?.sessionId ?? "";
      const b = (await c.createSession({ userId: "u", dataSource: "d" })).session?.sessionId ?? "";
      const watch = openWatch(c, { sessionIds: [b.toUpperCase()] });
      await waitForWatchers(srv, 1);
      await c.extendSession({ sessionId: a, ttl: durationFromMs(60_000) });
      await c.extendSession({ sessionId: b, ttl: durationFromMs(60_000) });
      const event = await watch.next();
      assert.equal(event.type, EventType.EXTENDED);
      assert.equal(event.session?.sessionId, b);
      watch.close();
    } finally {
      await srv.close();
    }
  });

  it("sends a snapshot of the matching live sessions, then a HEARTBEAT, then live events", async () => {
    const srv = await startServer();
    const c = srv.client;
    try {
      const ids = new Set<string>();
      for (let i = 0; i < 3; i++) ids.add((await c.createSession({ userId: "snap", dataSource: "d", metadata: { i } })).session?.sessionId ?? "");
      await c.createSession({ userId: "not-snap", dataSource: "d" });
      const ended = (await c.createSession({ userId: "snap", dataSource: "d" })).session?.sessionId ?? "";
      await c.closeSession({ sessionId: ended });

      const watch = openWatch(c, { userId: "snap", sendInitialSnapshot: true });
      const first = await watch.until(EventType.HEARTBEAT);
      assert.deepEqual(first.map((e) => EventType[e.type]), ["SNAPSHOT", "SNAPSHOT", "SNAPSHOT", "HEARTBEAT"]);
      assert.deepEqual(new Set(first.slice(0, 3).map((e) => e.session?.sessionId)), ids);
      assert.equal(first[3]?.session, undefined, "a heartbeat carries no session");
      assert.notEqual(first[3]?.cursor, "");

      const live = (await c.createSession({ userId: "snap", dataSource: "d" })).session?.sessionId;
      const next = await watch.next();
      assert.equal(next.type, EventType.CREATED);
      assert.equal(next.session?.sessionId, live);
      assert.ok(compareEventIds(next.cursor, first[3]?.cursor ?? "") > 0, "live events continue after the heartbeat's cursor");
      watch.close();

      // With session_ids, the snapshot names only those that are live.
      const byId = openWatch(c, { sessionIds: [[...ids][0] ?? "", ended], sendInitialSnapshot: true });
      const idEvents = await byId.until(EventType.HEARTBEAT);
      assert.deepEqual(idEvents.map((e) => [EventType[e.type], e.session?.sessionId]), [["SNAPSHOT", [...ids][0]], ["HEARTBEAT", undefined]]);
      byId.close();
    } finally {
      await srv.close();
    }
  });

  it("sends a HEARTBEAT every watch_heartbeat on an idle stream", async () => {
    const srv = await startServer({ config: testConfig({ WATCH_HEARTBEAT: "50ms" }) });
    try {
      const watch = openWatch(srv.client, {});
      const first = await watch.next();
      const second = await watch.next();
      assert.equal(first.type, EventType.HEARTBEAT);
      assert.equal(second.type, EventType.HEARTBEAT);
      await srv.client.createSession({ userId: "u", dataSource: "d" });
      const events = await watch.until(EventType.CREATED);
      const created = events.at(-1);
      const third = await watch.next();
      assert.equal(third.type, EventType.HEARTBEAT);
      assert.equal(third.cursor, created?.cursor, "an idle heartbeat carries the position reached");
      watch.close();
    } finally {
      await srv.close();
    }
  });

  it("ends the stream when the client cancels, releasing the subscription", async () => {
    const srv = await startServer();
    try {
      const subscribers = (): number => srv.events.subscriberCount;
      const watch = openWatch(srv.client, {});
      const pending = watch.nextRaw();
      await waitForWatchers(srv, 1);
      assert.equal(subscribers(), 1);
      watch.close();
      await rejectsWith(pending, Code.Canceled);
      const deadline = Date.now() + 5000;
      while (subscribers() !== 0 && Date.now() < deadline) await sleep(10);
      assert.equal(subscribers(), 0);
    } finally {
      await srv.close();
    }
  });
});
