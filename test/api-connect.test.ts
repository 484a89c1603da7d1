/**
 * The full API lifecycle through real network clients against the real
 * single-port server: the exported createSessionClient (gRPC over h2c), the
 * Connect protocol over HTTP/1.1 and gRPC-Web over HTTP/1.1, on MemoryStore and
 * on RedisStore (a private redis-server).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { App } from "../src/app.js";
import {
  AccessLevel,
  Code,
  ConnectError,
  createSessionClient,
  DEFAULT_TIMEOUT_MS,
  SessionService,
  SessionStatus,
  type Interceptor,
  type Session,
  type SessionClient,
} from "@sessiond/client";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";

async function rejectsWithCode(promise: Promise<unknown>, code: Code): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${Code[code]}, got ${Code[error.code]}: ${error.message}`);
    return true;
  });
}

function ms(timestamp: Session["expireTime"]): number {
  assert.ok(timestamp !== undefined, "timestamp is set");
  return timestampMs(timestamp);
}

/** create → get → update → extend → list → data → metrics → close, through one client. */
async function runLifecycle(client: SessionClient): Promise<void> {
  const userId = `user-${crypto.randomUUID()}`;
  const requestId = `req-${crypto.randomUUID()}`;

  // create, idempotent on request_id
  const created = await client.createSession({
    userId,
    dataSource: "warehouse",
    accessLevel: AccessLevel.WRITE,
    ttl: durationFromMs(300_000),
    metadata: { team: "blue", tags: ["a", "b"] },
    requestId,
  });
  assert.equal(created.created, true);
  const session = created.session;
  assert.ok(session !== undefined);
  assert.match(session.sessionId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(session.userId, userId);
  assert.equal(session.accessLevel, AccessLevel.WRITE);
  assert.equal(session.status, SessionStatus.ACTIVE);
  assert.equal(session.version, 1n);
  assert.deepEqual(session.metadata, { team: "blue", tags: ["a", "b"] });
  assert.equal(ms(session.expireTime) - ms(session.createTime), 300_000);
  assert.equal(session.endTime, undefined);

  const retried = await client.createSession({ userId, dataSource: "warehouse", accessLevel: AccessLevel.WRITE, requestId });
  assert.equal(retried.created, false);
  assert.equal(retried.session?.sessionId, session.sessionId);

  const id = session.sessionId;

  // get
  const got = await client.getSession({ sessionId: id });
  assert.equal(got.session?.sessionId, id);
  assert.equal(got.session?.dataSource, "warehouse");
  assert.equal(got.session?.version, 1n, "reading does not change the version");

  // update with expected_version
  const updated = await client.updateSession({ sessionId: id, expectedVersion: 1n, metadata: { team: "red" }, mergeMetadata: true });
  assert.equal(updated.session?.version, 2n);
  assert.deepEqual(updated.session?.metadata, { team: "red", tags: ["a", "b"] });
  await rejectsWithCode(client.updateSession({ sessionId: id, expectedVersion: 1n, dataSource: "lake" }), Code.Aborted);
  assert.equal((await client.getSession({ sessionId: id })).session?.dataSource, "warehouse", "a rejected update changes nothing");

  // extend: expire_time moves
  const before = ms(updated.session?.expireTime);
  const extended = await client.extendSession({ sessionId: id, ttl: durationFromMs(3_600_000) });
  assert.equal(extended.session?.version, 3n);
  assert.ok(ms(extended.session?.expireTime) > before + 3_000_000, "expire_time moved to about an hour from now");

  // list, paged
  const second = await client.createSession({ userId, dataSource: "lake", ttl: durationFromMs(60_000) });
  const page1 = await client.listSessions({ userId, pageSize: 1 });
  assert.equal(page1.sessions.length, 1);
  assert.equal(page1.sessions[0]?.sessionId, second.session?.sessionId, "soonest-expiring first");
  assert.notEqual(page1.nextPageToken, "");
  const page2 = await client.listSessions({ userId, pageSize: 1, pageToken: page1.nextPageToken });
  assert.deepEqual(
    page2.sessions.map((s) => s.sessionId),
    [id],
  );
  const byLake = await client.listSessions({ userId, dataSource: "lake" });
  assert.deepEqual(
    byLake.sessions.map((s) => s.sessionId),
    [second.session?.sessionId],
  );

  // data
  const set1 = await client.setSessionData({ sessionId: id, key: "cart", value: fromJson(ValueSchema, { items: [1, 2], total: 9.5 }) });
  assert.equal(set1.version, 4n);
  await client.setSessionData({ sessionId: id, key: "note", value: fromJson(ValueSchema, "hello") });
  const value = await client.getSessionData({ sessionId: id, key: "cart" });
  assert.ok(value.value !== undefined);
  assert.deepEqual(toJson(ValueSchema, value.value), { items: [1, 2], total: 9.5 });
  await rejectsWithCode(client.getSessionData({ sessionId: id, key: "absent" }), Code.NotFound);

  const keysOnly = await client.listSessionData({ sessionId: id });
  assert.deepEqual(keysOnly.keys, ["cart", "note"]);
  assert.deepEqual(keysOnly.values, {});
  const withValues = await client.listSessionData({ sessionId: id, includeValues: true });
  assert.deepEqual(
    Object.fromEntries(Object.entries(withValues.values).map(([k, v]) => [k, toJson(ValueSchema, v)])),
    { cart: { items: [1, 2], total: 9.5 }, note: "hello" },
  );

  const deleted = await client.deleteSessionData({ sessionId: id, key: "note" });
  assert.equal(deleted.deleted, true);
  assert.equal(deleted.version, 6n);
  assert.equal((await client.deleteSessionData({ sessionId: id, key: "note" })).deleted, false);
  const cleared = await client.clearSessionData({ sessionId: id });
  assert.equal(cleared.deletedCount, 1n);
  assert.deepEqual((await client.listSessionData({ sessionId: id })).keys, []);

  // metrics
  const metrics = await client.getSessionMetrics({});
  assert.ok(metrics.totalSessions >= 2n);
  assert.ok(metrics.activeSessions >= 2n);
  assert.ok((metrics.activeByAccessLevel["WRITE"] ?? 0n) >= 1n);
  assert.ok((metrics.activeByDataSource["lake"] ?? 0n) >= 1n);

  // close: the archive stays readable with include_ended
  const closed = await client.closeSession({ sessionId: id });
  assert.equal(closed.session?.status, SessionStatus.CLOSED);
  assert.ok(closed.session?.endTime !== undefined);
  await rejectsWithCode(client.getSession({ sessionId: id }), Code.NotFound);
  const archived = await client.getSession({ sessionId: id, includeEnded: true });
  assert.equal(archived.session?.status, SessionStatus.CLOSED);
  assert.deepEqual(archived.session?.metadata, { team: "red", tags: ["a", "b"] });
  await rejectsWithCode(client.closeSession({ sessionId: id }), Code.FailedPrecondition);
  await rejectsWithCode(client.getSessionData({ sessionId: id, key: "cart" }), Code.NotFound);
  const afterClose = await client.getSessionMetrics({});
  assert.equal(afterClose.closedSessions, metrics.closedSessions + 1n);
  assert.equal(afterClose.activeSessions, metrics.activeSessions - 1n);

  // an ended session frees its request_id
  const again = await client.createSession({ userId, dataSource: "warehouse", requestId });
  assert.equal(again.created, true);
  assert.notEqual(again.session?.sessionId, id);
}

/** The same server through the Connect protocol on HTTP/1.1, and gRPC-Web on HTTP/1.1. */
async function runHttp1Protocols(app: App): Promise<void> {
  const connect = createClient(SessionService, createConnectTransport({ baseUrl: app.url, httpVersion: "1.1" }));
  const created = await connect.createSession({ userId: "carol", dataSource: "crm", accessLevel: AccessLevel.ADMIN });
  const id = created.session?.sessionId ?? "";
  assert.equal((await connect.getSession({ sessionId: id })).session?.userId, "carol");
  await connect.setSessionData({ sessionId: id, key: "k", value: fromJson(ValueSchema, [true, null]) });
  const value = (await connect.getSessionData({ sessionId: id, key: "k" })).value;
  assert.ok(value !== undefined);
  assert.deepEqual(toJson(ValueSchema, value), [true, null]);
  await rejectsWithCode(connect.getSession({ sessionId: "not-a-uuid" }), Code.InvalidArgument);

  const grpcWeb = createClient(SessionService, createGrpcWebTransport({ baseUrl: app.url, httpVersion: "1.1" }));
  const viaGrpcWeb = await grpcWeb.getSession({ sessionId: id });
  assert.equal(viaGrpcWeb.session?.accessLevel, AccessLevel.ADMIN);
  await rejectsWithCode(grpcWeb.getSession({ sessionId: crypto.randomUUID() }), Code.NotFound);

  const closed = await connect.closeSession({ sessionId: id });
  assert.equal(closed.session?.status, SessionStatus.CLOSED);
}

describe("API on MemoryStore", () => {
  let app: App;
  before(async () => {
    app = await startTestApp();
  });
  after(async () => {
    await app.close();
  });

  test("the store is the in-process one", () => {
    assert.equal(app.store.kind, "memory");
  });

  test("full lifecycle with the exported gRPC client (h2c)", async () => {
    await runLifecycle(createSessionClient(app.url));
  });

  test("full lifecycle with the exported client on the Connect protocol (HTTP/2)", async () => {
    await runLifecycle(createSessionClient(app.url, { protocol: "connect" }));
  });

  test("Connect over HTTP/1.1 and gRPC-Web over HTTP/1.1 on the same port", async () => {
    await runHttp1Protocols(app);
  });

  test("grpc.health.v1.Health is served on the same port", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: app.url }));
    assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    assert.equal((await health.check({ service: "session.v1.SessionService" })).status, HealthCheckResponse_ServingStatus.SERVING);
  });

  test("the client puts a deadline on every call: 5 s by default, or its timeoutMs", async () => {
    const sent: (string | null)[] = [];
    const recordDeadline: Interceptor = (next) => async (req) => {
      sent.push(req.header.get("grpc-timeout"));
      return next(req);
    };
    await createSessionClient(app.url, { interceptors: [recordDeadline] }).getSessionMetrics({});
    await createSessionClient(app.url, { interceptors: [recordDeadline], timeoutMs: 250 }).getSessionMetrics({});
    assert.deepEqual(sent, [`${DEFAULT_TIMEOUT_MS}m`, "250m"]);
    assert.equal(DEFAULT_TIMEOUT_MS, 5_000);
  });
});

describe("API on RedisStore", () => {
  let redis: RedisServerHandle;
  let app: App;
  before(async () => {
    redis = await startRedisServer();
    app = await startTestApp({ redisUrl: redis.url });
  });
  after(async () => {
    await app?.close();
    await redis?.stop();
  });

  test("the store is Redis", () => {
    assert.equal(app.store.kind, "redis");
  });

  test("full lifecycle with the exported gRPC client (h2c)", async () => {
    await runLifecycle(createSessionClient(app.url));
  });

  test("Connect over HTTP/1.1 and gRPC-Web over HTTP/1.1 on the same port", async () => {
    await runHttp1Protocols(app);
  });
});
